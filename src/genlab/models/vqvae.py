"""Vector-quantised VAE (van den Oord et al., 2017) with a per-position categorical prior.

The encoder maps an image (B, C, H, W) to a grid z_e (B, D, h, w) with h = H / f, f in {2, 4};
every D-vector is replaced by its nearest code e_k of a learned codebook (K, D); the decoder
maps the quantised grid back to an image. Training minimises

    loss = ||x - dec(z_q)||^2 + ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2      (beta = 0.25)

(means over all entries) with the straight-through estimator z_q_st = z_e + sg[z_q - z_e]:
the forward pass uses z_q, the backward pass copies the decoder's gradient at z_q to z_e.
The codebook term moves the codes only, the commitment term the encoder only. With Adam the
codes move by about one learning rate per step while the encoder outputs move much faster;
give the codebook a larger learning rate (about 10x) or the encoder outputs drift away from
the codes (codebook / commitment losses spike). ``loss`` also initialises the codebook from
encoder outputs of the first training batch.

Generation needs a prior over code grids, fitted after the autoencoder by ``fit_prior`` on the
codes of the training images (``genlab train`` does it at the end of the run). With
``prior="pixelcnn"`` it is autoregressive, p(z) = prod_ij p(z_ij | z_<ij) with a PixelCNN
(:mod:`genlab.models.code_prior`), as in the paper, and sampling draws the grid position by
position. With ``prior="independent"`` (runs saved before the PixelCNN) ``fit_prior`` counts
code frequencies per position (add-one smoothing) and ``sample`` draws every position
independently: that prior **ignores the dependencies between positions** (strokes that must
join up, digits that must be one class), so its samples are blotchy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genlab._validate import (
    ConfigError,
    check_choice,
    check_finite,
    check_min,
    check_positive_int,
    check_tensor,
    has_values,
)
from genlab.devices import generator_device
from genlab.models.base import Batch, split_batch
from genlab.models.code_prior import PixelCNNPrior
from genlab.models.coders import (
    GridDecoder,
    GridEncoder,
    _check_factor,
    check_data_shape,
    check_image_shape,
)
from genlab.models.latent import LatentModel
from genlab.models.nets import NetConfig, check_net_kind
from genlab.models.registry import DataInfo, Family, FamilyConfig, register

__all__ = ["CODE_PRIORS", "VQVAE", "VectorQuantizer"]

#: priors over the code grid
CODE_PRIORS = ("pixelcnn", "independent")
#: the options of the PixelCNN prior (``model.ae.prior_args``)
PRIOR_ARGS = ("hidden", "layers", "steps", "batch_size", "lr")


class VectorQuantizer(nn.Module):
    """Nearest-code quantisation with a learned codebook (K, D) and the straight-through estimator.

    ``forward(z_e)`` with z_e (B, D, h, w) or (B, D) returns ``(z_q_st, indices, codebook_loss,
    commitment_loss)``: z_q_st shaped like z_e, indices (B, h, w) or (B,) long, and the two
    losses as 0-dim means ||sg[z_e] - e||^2 and ||z_e - sg[e]||^2.
    """

    def __init__(self, num_codes: int, code_dim: int) -> None:
        super().__init__()
        self.num_codes = check_positive_int(num_codes, "num_codes")
        self.code_dim = check_positive_int(code_dim, "code_dim")
        self.codebook = nn.Parameter(
            torch.empty(num_codes, code_dim).uniform_(-1.0 / num_codes, 1.0 / num_codes)
        )

    @torch.no_grad()
    def init_from(self, z_e: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Set the codes to K encoder outputs drawn from ``z_e`` (with replacement when fewer
        than K vectors); codes then start where the encoder outputs are, not near 0."""
        flat = self._flat(z_e).detach()
        n = flat.shape[0]
        device = generator.device if generator is not None else flat.device  # draws where the generator is
        if n >= self.num_codes:
            pick = torch.randperm(n, generator=generator, device=device)[: self.num_codes]
        else:
            pick = torch.randint(n, (self.num_codes,), generator=generator, device=device)
        self.codebook.copy_(flat[pick.to(flat.device)].to(self.codebook))

    def _flat(self, z_e: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) or (B, D) -> (N, D), channel last."""
        check_tensor(z_e, "z_e")
        if z_e.dim() not in (2, 4) or z_e.shape[1] != self.code_dim:
            raise ValueError(
                f"z_e must have shape (B, D) or (B, D, h, w) with D = code_dim = {self.code_dim}; "
                f"got {tuple(z_e.shape)}"
            )
        return z_e if z_e.dim() == 2 else z_e.permute(0, 2, 3, 1).reshape(-1, self.code_dim)

    def nearest(self, z_e: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (squared Euclidean) of every vector: (B, h, w) or (B,)."""
        flat = self._flat(z_e)
        e = self.codebook.to(flat)
        d2 = flat.pow(2).sum(1, keepdim=True) - 2.0 * flat @ e.T + e.pow(2).sum(1)  # (N, K)
        idx = d2.argmin(1)
        return idx if z_e.dim() == 2 else idx.reshape(z_e.shape[0], *z_e.shape[2:])

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes of ``indices`` (B, h, w) -> (B, D, h, w), or (B,) -> (B, D)."""
        check_tensor(indices, "indices")
        if indices.dtype != torch.long:
            raise ValueError(f"indices must be a long tensor, got dtype {indices.dtype}")
        if indices.numel() and has_values(indices):
            low, high = int(indices.min()), int(indices.max())
            if low < 0 or high >= self.num_codes:
                raise ValueError(f"indices must lie in [0, {self.num_codes}), got {low}..{high}")
        z = self.codebook[indices]  # (..., D)
        return z if indices.dim() == 1 else z.permute(0, 3, 1, 2).contiguous()

    def forward(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        indices = self.nearest(z_e)
        z_q = self.lookup(indices).to(z_e)
        codebook_loss = F.mse_loss(z_q, z_e.detach())
        commitment_loss = F.mse_loss(z_e, z_q.detach())
        z_q_st = z_e + (z_q - z_e).detach()
        return z_q_st, indices, codebook_loss, commitment_loss

    def _counts(self, indices: torch.Tensor) -> torch.Tensor:
        """How often each of the K codes occurs in ``indices``, (K,) float64, on their device."""
        check_tensor(indices, "indices")
        if indices.numel() == 0:
            raise ValueError("indices must not be empty")
        flat = indices.reshape(-1).long()
        ones = torch.ones_like(flat, dtype=torch.float64)
        counts = torch.zeros(self.num_codes, dtype=torch.float64, device=flat.device)
        return counts.scatter_add_(0, flat, ones)

    def code_perplexity(self, indices: torch.Tensor) -> torch.Tensor:
        """exp(entropy of the code usage) as a 0-dim tensor on the device of ``indices``."""
        p = self._counts(indices)
        p = p / p.sum()
        return torch.exp(-torch.xlogy(p, p).sum())  # 0 log 0 = 0: unused codes add nothing

    def code_usage(self, indices: torch.Tensor) -> torch.Tensor:
        """Fraction of the K codes used at least once, a 0-dim tensor."""
        return (self._counts(indices) > 0).double().mean()

    def perplexity(self, indices: torch.Tensor) -> float:
        """exp(entropy of the code usage): K for uniform usage, 1 for a single code."""
        return float(self.code_perplexity(indices))

    def usage(self, indices: torch.Tensor) -> float:
        """Fraction of the K codes used at least once in ``indices``."""
        return float((self._counts(indices) > 0).double().mean())


class VQVAE(LatentModel):
    """VQ-VAE for square images with a per-position categorical prior; see the module docstring.

    Args:
        data_shape: (C, H, W), any H and W (padded to multiples of ``downsample``, cropped back).
        num_codes: codebook size K.
        code_dim: code dimension D.
        hidden: channels of the conv encoder / decoder.
        downsample: latent grid side h = H / downsample, 2 or 4.
        beta: commitment weight (0.25 in the paper), >= 0.
        codebook_lr_scale: learning-rate multiplier of the codebook in :meth:`param_groups`
            (the trainer's optimiser groups), > 0.
        prior: "pixelcnn" (autoregressive) or "independent" (per-position categorical).
        prior_args: options of :class:`~genlab.models.code_prior.PixelCNNPrior` (hidden,
            layers, steps, batch_size, lr).
    """

    prior_log_probs: torch.Tensor  # (h*w, K) buffer: log-probabilities of each position's codes
    prior_fitted: torch.Tensor  # () bool buffer
    codebook_initialised: torch.Tensor  # () bool buffer

    def __init__(
        self,
        data_shape: Sequence[int],
        *,
        num_codes: int = 32,
        code_dim: int = 16,
        hidden: int = 32,
        downsample: int = 2,
        beta: float = 0.25,
        codebook_lr_scale: float = 10.0,
        prior: str = "independent",
        prior_args: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if prior not in CODE_PRIORS:
            raise ValueError(f"prior must be one of {', '.join(CODE_PRIORS)}, got {prior!r}")
        if isinstance(codebook_lr_scale, bool) or not isinstance(codebook_lr_scale, (int, float)):
            raise ValueError(f"codebook_lr_scale must be a positive number, got {codebook_lr_scale!r}")
        if not 0 < codebook_lr_scale < math.inf:
            raise ValueError(f"codebook_lr_scale must be a positive number, got {codebook_lr_scale!r}")
        self.codebook_lr_scale = float(codebook_lr_scale)
        self.data_shape = check_image_shape(check_data_shape(data_shape))
        check_positive_int(hidden, "hidden")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0 or math.isinf(beta):
            raise ValueError(f"beta must be a finite number >= 0 (commitment weight), got {beta!r}")
        self.beta = float(beta)
        c, h, w = self.data_shape
        self.downsample = f = _check_factor(downsample)
        # images whose sides f does not divide are padded to the next multiple and cropped back
        self.grid_hw = (-(-h // f), -(-w // f))
        self.grid_size = self.grid_hw[0]  # the side of a square grid
        self.encoder = GridEncoder(c, code_dim, hidden, self.downsample)
        self.quantizer = VectorQuantizer(num_codes, code_dim)
        self.decoder = GridDecoder(c, code_dim, hidden, self.downsample)
        positions = self.grid_hw[0] * self.grid_hw[1]
        self.register_buffer("prior_log_probs", torch.full((positions, num_codes), -math.log(num_codes)))
        self.register_buffer("prior_fitted", torch.zeros((), dtype=torch.bool))
        self.register_buffer("codebook_initialised", torch.zeros((), dtype=torch.bool))
        self.prior = prior
        #: the autoregressive prior (its state keys start with "prior_", as the EMA copy expects)
        self.prior_net = (
            PixelCNNPrior(num_codes, self.grid_hw, **dict(prior_args or {})) if prior == "pixelcnn" else None
        )

    #: a second stage fits the code prior after training (the app calls ``fit_prior``)
    fits_prior = True

    @property
    def num_codes(self) -> int:
        return self.quantizer.num_codes

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimiser groups: encoder and decoder at the base learning rate, the codebook at
        ``codebook_lr_scale`` times it (``lr_scale``, read by the trainer). The PixelCNN prior
        is not trained with them (``fit_prior`` fits it)."""
        codebook = list(self.quantizer.parameters())
        ids = {id(p) for p in codebook}
        if self.prior_net is not None:
            ids |= {id(p) for p in self.prior_net.parameters()}
        rest = [p for p in self.parameters() if id(p) not in ids]
        return [{"params": rest}, {"params": codebook, "lr_scale": self.codebook_lr_scale}]

    def _check_x(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        check_tensor(x, name)
        if x.dim() != 4 or tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(
                f"{name} has shape {tuple(x.shape)} but the model was built for "
                f"(B, {', '.join(map(str, self.data_shape))})"
            )
        return check_finite(x, name)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Code indices of images: (B, C, H, W) -> (B, h, w) long."""
        self._check_x(x)
        return self.quantizer.nearest(self._encode(x))

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """z_e of (B, C, H, W) images, padded at the bottom / right to the code grid's size."""
        f, (gh, gw) = self.downsample, self.grid_hw
        return self.encoder(F.pad(x, (0, gw * f - x.shape[-1], 0, gh * f - x.shape[-2])))

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images from a (B, code_dim, h, w) grid, cropped to the data's H x W."""
        _, h, w = self.data_shape
        return self.decoder(z)[..., :h, :w]

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Decode a grid of code indices: (B, h, w) -> (B, C, H, W)."""
        check_tensor(indices, "indices")
        if indices.dim() != 3 or tuple(indices.shape[1:]) != self.grid_hw:
            gh, gw = self.grid_hw
            raise ValueError(f"indices must have shape (B, {gh}, {gw}), got {tuple(indices.shape)}")
        return self._decode(self.quantizer.lookup(indices))

    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """recon + codebook + beta commitment.

        The first call in training mode sets the codebook to encoder outputs of the batch
        drawn with ``generator`` (data-dependent initialisation, against codes stranded
        near 0 while the encoder outputs drift away); after that the loss is deterministic.

        Returns {"loss", "recon", "codebook", "commitment", "perplexity", "usage"}; all but
        "loss" are detached diagnostics (the trainer logs them).
        """
        x, _ = split_batch(batch)
        self._check_x(x, "batch")
        z_e = self._encode(x)
        if self.training and not _is_set(self.codebook_initialised):
            self.quantizer.init_from(z_e, generator)
            self.codebook_initialised.fill_(True)
        z_q, indices, codebook, commitment = self.quantizer(z_e)
        recon = F.mse_loss(self._decode(z_q), x)
        loss = recon + codebook + self.beta * commitment
        return {
            "loss": loss,
            "recon": recon.detach(),
            "codebook": codebook.detach(),
            "commitment": commitment.detach(),
            "perplexity": self.quantizer.code_perplexity(indices),  # no host sync: the trainer logs it
            "usage": self.quantizer.code_usage(indices),
        }

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the quantised encoding. (B, C, H, W) -> (B, C, H, W)."""
        return self.decode_indices(self.encode(x))

    def fit_prior(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Fit the code prior to the codes of ``x`` (N, C, H, W).

        Counts code k at position (i, j) over the data set, adds one to every count
        (Laplace smoothing) and stores log-probabilities of shape (h*w, K), which it returns;
        then fits the PixelCNN prior, if the model has one, to the same codes.
        """
        self._check_x(x)
        batch_size = check_positive_int(batch_size, "batch_size")
        with torch.no_grad():
            codes = torch.cat([self.encode(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])
            idx = codes.flatten(1)  # (N, h*w)
            counts = torch.ones(idx.shape[1], self.num_codes, dtype=torch.float64, device=x.device)
            counts.scatter_add_(1, idx.T, torch.ones(idx.T.shape, dtype=counts.dtype, device=x.device))
            log_probs = (counts / counts.sum(1, keepdim=True)).log()
            self.prior_log_probs.copy_(log_probs.to(self.prior_log_probs))
        if self.prior_net is not None:
            self.prior_net.fit(codes)
        self.prior_fitted.fill_(True)
        return self.prior_log_probs.clone()

    @torch.no_grad()
    def sample_indices(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n code grids from the fitted prior (autoregressive, or every position independently).
        -> (n, h, w)."""
        n = check_positive_int(n, "n")
        if self.prior_fitted.device.type != "meta" and not bool(self.prior_fitted):  # meta: no value to read
            raise ValueError("the code prior is not fitted; call model.fit_prior(x) on training images first")
        if self.prior_net is not None:
            return self.prior_net.sample(n, generator)
        probs = self.prior_log_probs.double().exp()  # (h*w, K)
        if generator is not None and generator.device != generator_device(probs.device):
            raise ValueError(f"generator is on {generator.device} but the model is on {probs.device}")
        idx = torch.multinomial(probs, n, replacement=True, generator=generator)  # (h*w, n)
        return idx.T.reshape(n, *self.grid_hw)

    @torch.no_grad()
    def generate(
        self,
        n: int,
        generator: torch.Generator | None = None,
        y: torch.Tensor | None = None,
        x0: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decode n code grids drawn from the per-position prior. -> (n, C, H, W).

        ``model.sample(n, generator=g)`` wraps this with the other families' interface."""
        return self.decode_indices(self.sample_indices(n, generator))


def _is_set(flag: torch.Tensor) -> bool:
    """The value of a boolean buffer; unset on the ``meta`` device, which holds no values
    (the device tests then run the first-batch path)."""
    return flag.device.type != "meta" and bool(flag)


@dataclass
class VQVAEOptions:
    """The ``model.ae`` section of a VQ-VAE."""

    num_codes: int = 32  # codebook size K
    code_dim: int = 16  # dimension of a code
    downsample: int = 2  # the code grid is (H / downsample) x (W / downsample)
    codebook_lr_scale: float = 10.0  # learning-rate multiplier of the codebook
    beta: float | None = None  # commitment weight (None: 0.25)
    prior: str = "pixelcnn"  # prior over the code grid: pixelcnn (autoregressive) or independent
    # pixelcnn: hidden, layers, steps, batch_size, lr (models/code_prior.py)
    prior_args: dict[str, int | float] = field(default_factory=dict)

    def validate(self) -> None:
        check_choice("model.ae.prior", self.prior, CODE_PRIORS)
        unknown = sorted(set(self.prior_args) - set(PRIOR_ARGS))
        if unknown:
            raise ConfigError(
                f"model.ae.prior_args.{unknown[0]} is not an option of the PixelCNN prior; "
                f"valid: {', '.join(PRIOR_ARGS)}"
            )
        if self.prior_args and self.prior != "pixelcnn":
            raise ConfigError("model.ae.prior_args sets the PixelCNN prior; set model.ae.prior=pixelcnn")
        check_min("model.ae.num_codes", self.num_codes, 2)
        check_min("model.ae.code_dim", self.code_dim, 1)
        check_choice("model.ae.downsample", str(self.downsample), ["2", "4"])
        check_min("model.ae.codebook_lr_scale", self.codebook_lr_scale, 0.0, strict=True)
        check_min("model.ae.beta", self.beta, 0.0)


@dataclass(kw_only=True)
class VQVAEConfig(FamilyConfig):
    """``model`` settings of a VQ-VAE on images (``model.family: vqvae``)."""

    family: str = "vqvae"
    net: NetConfig = field(default_factory=NetConfig)  # mlp for vectors, conv for images
    ae: VQVAEOptions = field(default_factory=VQVAEOptions)

    def build(self, data: DataInfo) -> nn.Module:
        if len(data.shape) != 3:
            raise ConfigError(
                f"model.family=vqvae quantises image feature grids; the data have shape {data.shape}"
            )
        check_net_kind(self.family, self.net, data.shape, ("conv",))
        ae = self.ae
        return VQVAE(
            data.shape,
            num_codes=ae.num_codes,
            code_dim=ae.code_dim,
            hidden=self.net.base_channels,
            downsample=ae.downsample,
            beta=0.25 if ae.beta is None else ae.beta,
            codebook_lr_scale=ae.codebook_lr_scale,
            prior=ae.prior,
            prior_args=ae.prior_args,
        )


register(Family("vqvae", VQVAE, VQVAEConfig))
