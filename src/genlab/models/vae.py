"""Variational autoencoder (Kingma & Welling, 2014) with ELBO and IWAE bounds.

Model: ``z ~ N(0, I_L)``, ``x | z ~ p_theta(x | z)``; the encoder gives the diagonal Gaussian
``q_phi(z | x) = N(mu(x), diag exp(logvar(x)))``. With ``K`` samples ``z_k ~ q(z | x)``

    ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || N(0, I))                 <= log p(x)
    IWAE_K(x) = E[log (1/K) sum_k p(x, z_k) / q(z_k | x)]                  (Burda et al., 2016)

and ``ELBO = IWAE_1 <= IWAE_K <= IWAE_{K'} <= log p(x)`` for ``K <= K'``. The KL term is
analytic (:func:`gaussian_kl`), the reconstruction term a reparameterised Monte-Carlo average.

Likelihoods ``p(x | z)``:

    gaussian   N(x; decoder(z), s^2 I) with a fixed std ``decoder_std`` or a learned
               per-dimension log-std (``decoder_std=None``)
    bernoulli  Bernoulli((x + 1) / 2; sigmoid(decoder(z))): data in [-1, 1] are mapped to
               [0, 1] (soft targets for grey levels); ``decode`` returns the logits

Networks (:mod:`genlab.models.coders`) are chosen by the data shape: an MLP for vectors
(D,), a small conv encoder / decoder for images (C, H, W) of any size.
Custom ``encoder`` (x -> (B, 2L): mean then log-variance) and ``decoder`` (z -> (B,
*data_shape), reshaped if flat) modules may be passed instead, e.g. linear maps with known weights.

Sampling prior (``prior``): ``standard`` samples z ~ N(0, I), the prior of training;
``gmm`` fits a Gaussian mixture to the aggregate posterior after training (:meth:`VAE.fit_prior`,
:mod:`genlab.models.latent_prior`) and samples from it. Once fitted, the ELBO and IWAE bounds
use its log-density (the ELBO's KL then by Monte Carlo), so they bound the model that samples;
training's loss always uses N(0, I) and the analytic KL.

All log-densities are in nats, summed over the event dims and shaped (B,).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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
    choose,
)
from genlab.devices import make_generator
from genlab.models.base import Batch, split_batch
from genlab.models.coders import (
    IMAGE_SIZES,
    ConvDecoder,
    ConvEncoder,
    MLPCoder,
    check_data_shape,
    check_image_shape,
)
from genlab.models.latent import LatentModel
from genlab.models.latent_prior import GaussianMixturePrior
from genlab.models.nets import NetConfig, check_net_kind
from genlab.models.registry import DataInfo, Family, FamilyConfig, register

__all__ = ["IMAGE_SIZES", "LIKELIHOODS", "SAMPLING_PRIORS", "VAE", "gaussian_kl"]

#: observation models p(x | z) by name
LIKELIHOODS: Mapping[str, str] = {
    "gaussian": "N(x; decoder(z), s^2 I)",
    "bernoulli": "Bernoulli((x + 1) / 2; sigmoid(decoder(z)))",
}
#: priors z is sampled from: the training prior, or a mixture fitted after training
SAMPLING_PRIORS: Mapping[str, str] = {
    "standard": "N(0, I)",
    "gmm": "a Gaussian mixture fitted to the aggregate posterior after training",
}
#: draws of z ~ q(z | x) per training image that the mixture prior is fitted to
PRIOR_DRAWS = 4
#: draws of z per chunk in ``iwae_bound`` (bounds memory at chunk * B decoder passes)
IWAE_CHUNK = 64
_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) = 0.5 sum(mu^2 + exp(logvar) - logvar - 1).

    Shapes: mu, logvar (B, L) -> (B,).
    """
    check_tensor(mu, "mu")
    check_tensor(logvar, "logvar")
    if mu.shape != logvar.shape or mu.dim() != 2:
        raise ValueError(
            f"mu and logvar must have the same shape (B, L); got {tuple(mu.shape)} and {tuple(logvar.shape)}"
        )
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).sum(1)


def _std_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dim. Shapes: (..., L) -> (...)."""
    return -0.5 * (z.pow(2) + _LOG_2PI).sum(-1)


def _diag_normal_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag exp(logvar)) summed over the last dim; broadcasts. (..., L) -> (...)."""
    return -0.5 * ((z - mu).pow(2) * torch.exp(-logvar) + logvar + _LOG_2PI).sum(-1)


class VAE(LatentModel):
    """Variational autoencoder with a diagonal Gaussian encoder; see the module docstring.

    Args:
        data_shape: (D,) for vectors or (C, H, W) for images of any size.
        latent_dim: L >= 1; None gives 2 for vectors and 16 for images.
        hidden: MLP width for vectors; channels of the first conv layer for images.
        likelihood: "gaussian" or "bernoulli".
        decoder_std: fixed std s > 0 of the Gaussian likelihood; None learns a per-dimension
            log-std (initialised at log 1 = 0). Ignored (must be None) for "bernoulli".
        beta: weight of the KL term in the training loss (beta-VAE); >= 0. The bounds
            (``elbo``, ``iwae_bound``) always use beta = 1.
        encoder: optional module x -> (B, 2L) (means, then log-variances).
        decoder: optional module z -> (B, *data_shape) or (B, prod(data_shape)).
        iwae_k: importance samples K of :meth:`log_prob` (the IWAE bound).
        kl_warmup_steps: the KL weight of the training loss rises linearly from beta / W to
            beta over the first W training calls (Bowman et al. 2016; 0: none), which keeps
            the posterior from collapsing onto the prior before the decoder learns to use z.
        prior: "standard" (N(0, I)) or "gmm" (a mixture fitted after training, see the module).
        prior_components: K of the "gmm" prior.

    >>> vae = VAE((2,), latent_dim=2, hidden=8)
    >>> vae.elbo(torch.randn(4, 2), torch.Generator().manual_seed(0)).shape
    torch.Size([4])
    """

    def __init__(
        self,
        data_shape: Sequence[int] | int,
        *,
        latent_dim: int | None = None,
        hidden: int | None = None,
        likelihood: str = "gaussian",
        decoder_std: float | None = None,
        beta: float = 1.0,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        iwae_k: int = 64,
        kl_warmup_steps: int = 0,
        prior: str = "standard",
        prior_components: int = 20,
    ) -> None:
        super().__init__()
        self.iwae_k = check_positive_int(iwae_k, "iwae_k")
        if isinstance(kl_warmup_steps, bool) or not isinstance(kl_warmup_steps, int) or kl_warmup_steps < 0:
            raise ValueError(f"kl_warmup_steps must be an integer >= 0, got {kl_warmup_steps!r}")
        self.kl_warmup_steps = kl_warmup_steps
        if kl_warmup_steps:  # the count travels with the checkpoint, so a resumed run goes on
            self.register_buffer("kl_steps", torch.zeros((), dtype=torch.long))
        self.data_shape = check_data_shape(data_shape)
        image = len(self.data_shape) == 3
        if latent_dim is None:
            latent_dim = 16 if image else 2
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        if hidden is None:
            hidden = 32 if image else 128
        check_positive_int(hidden, "hidden")
        choose("likelihood", likelihood, LIKELIHOODS)
        self.likelihood = likelihood
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0 or math.isinf(beta):
            raise ValueError(f"beta must be a finite number >= 0 (KL weight), got {beta!r}")
        self.beta = float(beta)
        if encoder is not None and not isinstance(encoder, nn.Module):
            raise ValueError(
                f"encoder must be an nn.Module mapping x to (B, 2 * latent_dim), got {encoder!r}"
            )
        if decoder is not None and not isinstance(decoder, nn.Module):
            raise ValueError(f"decoder must be an nn.Module mapping z to (B, *data_shape), got {decoder!r}")
        if image and (encoder is None or decoder is None):
            check_image_shape(self.data_shape)
        dim = math.prod(self.data_shape)
        if encoder is None:
            encoder = (
                ConvEncoder(self.data_shape, 2 * self.latent_dim, hidden)
                if image
                else MLPCoder(dim, 2 * self.latent_dim, hidden)
            )
        if decoder is None:
            decoder = (
                ConvDecoder(self.latent_dim, self.data_shape, hidden)
                if image
                else MLPCoder(self.latent_dim, dim, hidden)
            )
        self.encoder = encoder
        self.decoder = decoder
        choose("prior", prior, SAMPLING_PRIORS)
        self.prior = prior
        #: the fitted mixture (its state keys start with "prior_", as the EMA copy expects)
        self.prior_gmm: GaussianMixturePrior | None = None
        if prior == "gmm":
            self.prior_gmm = GaussianMixturePrior(prior_components, self.latent_dim)
            self.register_buffer("prior_fitted", torch.zeros((), dtype=torch.bool))

        self.log_std: nn.Parameter | None = None
        self.decoder_std: float | None = None
        if likelihood == "gaussian":
            if decoder_std is None:
                self.log_std = nn.Parameter(torch.zeros(self.data_shape))
            else:
                if isinstance(decoder_std, bool) or not isinstance(decoder_std, (int, float)):
                    raise ValueError(f"decoder_std must be a positive number or None, got {decoder_std!r}")
                if not decoder_std > 0 or math.isinf(decoder_std):
                    raise ValueError(f"decoder_std must be a positive number or None, got {decoder_std!r}")
                self.decoder_std = float(decoder_std)
        elif decoder_std is not None:
            raise ValueError(
                f"decoder_std={decoder_std!r} only applies to likelihood='gaussian'; "
                "pass decoder_std=None with likelihood='bernoulli'"
            )

    # -- helpers ------------------------------------------------------------------------
    def _check_x(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        check_tensor(x, name)
        if x.dim() < 1 or tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(
                f"{name} must have shape (B, *data_shape) = (B, {', '.join(map(str, self.data_shape))}); "
                f"got {tuple(x.shape)}"
            )
        return check_finite(x, name)

    def _check_z(self, z: torch.Tensor, name: str = "z") -> torch.Tensor:
        check_tensor(z, name)
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(
                f"{name} must have shape (B, latent_dim) = (B, {self.latent_dim}); got {tuple(z.shape)}"
            )
        return z

    def _param(self) -> torch.Tensor:
        return next(self.parameters())

    # -- encoder / decoder --------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x) = N(mu, diag exp(logvar)). Shapes: x (B, *D) -> mu, logvar (B, L)."""
        self._check_x(x)
        h = self.encoder(x)
        if h.dim() != 2 or h.shape[1] != 2 * self.latent_dim:
            raise ValueError(
                "the encoder must return (B, 2 * latent_dim) = "
                f"(B, {2 * self.latent_dim}), got {tuple(h.shape)}"
            )
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder parameters: Gaussian means or Bernoulli logits. (B, L) -> (B, *D)."""
        self._check_z(z)
        out = self.decoder(z)
        if out.shape[0] != z.shape[0] or out[0].numel() != math.prod(self.data_shape):
            raise ValueError(
                f"the decoder must return (B, *data_shape) = (B, {', '.join(map(str, self.data_shape))}), "
                f"got {tuple(out.shape)}"
            )
        return out.reshape(z.shape[0], *self.data_shape)

    def decoder_mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z] in data space: the Gaussian mean, or 2 sigmoid(logits) - 1 in [-1, 1]."""
        out = self.decode(z)
        return out if self.likelihood == "gaussian" else 2.0 * torch.sigmoid(out) - 1.0

    def decoder_log_std(self) -> torch.Tensor:
        """log s of the Gaussian likelihood, shape data_shape (fixed or learned)."""
        if self.likelihood != "gaussian":
            raise ValueError("decoder_log_std is only defined for likelihood='gaussian'")
        if self.log_std is not None:
            return self.log_std
        p = self._param()
        return torch.full(self.data_shape, math.log(self.decoder_std), dtype=p.dtype, device=p.device)  # type: ignore[arg-type]

    def _log_lik_params(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """log p(x | decoder output) summed over the event dims; x broadcasts against out."""
        if self.likelihood == "gaussian":
            log_s = self.decoder_log_std().to(out)
            lp = -0.5 * ((x - out) * torch.exp(-log_s)).pow(2) - log_s - 0.5 * _LOG_2PI
        else:
            target = ((x + 1.0) / 2.0).expand_as(out)
            lp = -F.binary_cross_entropy_with_logits(out, target, reduction="none")
        return lp.flatten(1).sum(1)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) in nats. Shapes: x (B, *D), z (B, L) -> (B,)."""
        self._check_x(x)
        self._check_z(z)
        if z.shape[0] != x.shape[0]:
            raise ValueError(f"x and z must have the same batch size; got {x.shape[0]} and {z.shape[0]}")
        return self._log_lik_params(x, self.decode(z))

    # -- the prior ----------------------------------------------------------------------
    @property
    def fits_prior(self) -> bool:
        """Whether a prior is fitted after training (``prior="gmm"``; the app calls
        :meth:`fit_prior`)."""
        return self.prior_gmm is not None

    @property
    def uses_fitted_prior(self) -> bool:
        if self.prior_gmm is None:
            return False
        fitted = self.get_buffer("prior_fitted")
        return fitted.device.type == "meta" or bool(fitted)  # meta: no value to read, shapes alike

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) of the prior in use: the fitted mixture once fitted, else N(0, I).
        Shapes: z (..., L) -> (...)."""
        if self.uses_fitted_prior:
            assert self.prior_gmm is not None
            return self.prior_gmm.log_prob(z)
        return _std_normal_log_prob(z)

    @torch.no_grad()
    def fit_prior(self, x: torch.Tensor, batch_size: int = 512, iters: int = 200) -> list[float]:
        """Fit the mixture prior to PRIOR_DRAWS draws of q(z | x) per image of ``x`` (N, *D)
        (seeded, so a run refits the same prior). Returns EM's log-likelihood history."""
        if self.prior_gmm is None:
            raise ValueError("fit_prior needs prior='gmm' (model.ae.prior: gmm)")
        self._check_x(x)
        g = make_generator(x.device, 0)
        draws = []
        for start in range(0, x.shape[0], batch_size):
            mu, logvar = self.encode(x[start : start + batch_size])
            draws.append(self._draw(mu, logvar, PRIOR_DRAWS, g).reshape(-1, self.latent_dim))
        history = self.prior_gmm.fit(torch.cat(draws), iters, torch.Generator().manual_seed(0))
        self.get_buffer("prior_fitted").fill_(True)
        return history

    # -- bounds -------------------------------------------------------------------------
    def _draw(
        self, mu: torch.Tensor, logvar: torch.Tensor, k: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        """k reparameterised draws z = mu + exp(logvar / 2) eps. Shapes -> (k, B, L)."""
        eps = torch.randn((k, *mu.shape), generator=generator, dtype=mu.dtype, device=mu.device)
        return mu + torch.exp(0.5 * logvar) * eps

    def _log_lik_many(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z_k) for z (k, B, L) -> (k, B)."""
        k, b = z.shape[:2]
        out = self.decode(z.reshape(k * b, self.latent_dim))
        xs = x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *self.data_shape)
        return self._log_lik_params(xs, out).reshape(k, b)

    def elbo_terms(
        self, x: torch.Tensor, generator: torch.Generator | None = None, k: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(E_q[log p(x | z)] estimated with k draws, KL(q(z | x) || p(z))), each (B,).

        The KL is analytic against N(0, I); against a fitted mixture prior it is the average
        of log q(z_k | x) - log p(z_k) over the same k draws."""
        k = check_positive_int(k, "k")
        mu, logvar = self.encode(x)
        z = self._draw(mu, logvar, k, generator)  # (k, B, L)
        recon = self._log_lik_many(x, z).mean(0)  # (B,)
        if not self.uses_fitted_prior:
            return recon, gaussian_kl(mu, logvar)
        return recon, (_diag_normal_log_prob(z, mu, logvar) - self.log_prior(z)).mean(0)

    def elbo(self, x: torch.Tensor, generator: torch.Generator | None = None, k: int = 1) -> torch.Tensor:
        """ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z)), reparameterised, k draws. -> (B,)."""
        recon, kl = self.elbo_terms(x, generator, k)
        return recon - kl

    def iwae_bound(
        self, x: torch.Tensor, k: int, generator: torch.Generator | None = None, chunk: int = IWAE_CHUNK
    ) -> torch.Tensor:
        """One draw of log (1/k) sum_k p(x, z_k) / q(z_k | x), z_k ~ q(z | x) (logsumexp). -> (B,).

        Its expectation is the IWAE bound, non-decreasing in k and <= log p(x); k = 1 gives
        an unbiased estimate of the ELBO. The k draws are decoded ``chunk`` at a time.
        """
        k = check_positive_int(k, "k")
        chunk = check_positive_int(chunk, "chunk")
        mu, logvar = self.encode(x)
        log_w = []
        for start in range(0, k, chunk):
            z = self._draw(mu, logvar, min(chunk, k - start), generator)  # (c, B, L)
            log_joint = self._log_lik_many(x, z) + self.log_prior(z)  # (c, B)
            log_w.append(log_joint - _diag_normal_log_prob(z, mu, logvar))
        return torch.logsumexp(torch.cat(log_w, 0), dim=0) - math.log(k)

    def log_prob(
        self, x: torch.Tensor, generator: torch.Generator | None = None, k: int | None = None, **_: object
    ) -> torch.Tensor:
        """The IWAE_K lower bound on log p(x) in nats, (B,), with K = ``k`` or ``iwae_k``; its
        negative is the NLL the likelihood tables report for a VAE (an upper bound on the true
        NLL). ODE options (steps, divergence) do not apply and are ignored."""
        return self.iwae_bound(x, self.iwae_k if k is None else k, generator)

    # -- training -----------------------------------------------------------------------
    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Negative beta-ELBO, averaged over the batch (one reparameterised draw per point).

        Returns {"loss": -(recon - beta kl).mean(), "recon": recon.mean(), "kl": kl.mean(),
        "elbo": (recon - kl).mean()}; "recon", "kl" and "elbo" are detached diagnostics.
        """
        x, _ = split_batch(batch)
        check_tensor(x, "batch")
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(
                f"batch has sample shape {tuple(x.shape[1:])} but the model was built for {self.data_shape}"
            )
        mu, logvar = self.encode(x)
        recon = self._log_lik_many(x, self._draw(mu, logvar, 1, generator))[0]  # (B,)
        kl = gaussian_kl(mu, logvar)  # training's prior is N(0, I) (a mixture is fitted after)
        beta: float | torch.Tensor = self.beta
        if self.kl_warmup_steps and self.training:
            steps: torch.Tensor = self.get_buffer("kl_steps")
            steps.add_(1)  # a tensor op: no host synchronisation per step
            beta = self.beta * (steps.clamp(max=self.kl_warmup_steps) / self.kl_warmup_steps).to(kl)
        loss = -(recon - beta * kl).mean()
        return {
            "loss": loss,
            "recon": recon.mean().detach(),
            "kl": kl.mean().detach(),
            "elbo": (recon - kl).mean().detach(),
        }

    # -- generation ---------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        n: int,
        generator: torch.Generator | None = None,
        y: torch.Tensor | None = None,
        x0: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """n decoder means E[x | z] at z ~ N(0, I). -> (n, *data_shape).

        ``model.sample(n, generator=g)`` wraps this with the other families' interface."""
        n = check_positive_int(n, "n")
        if self.uses_fitted_prior:
            assert self.prior_gmm is not None
            return self.decoder_mean(self.prior_gmm.sample(n, generator))
        p = self._param()
        z = torch.randn((n, self.latent_dim), generator=generator, dtype=p.dtype, device=p.device)
        return self.decoder_mean(z)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder mean at the posterior mean: E[x | z = mu(x)]. (B, *D) -> (B, *D)."""
        mu, _ = self.encode(x)
        return self.decoder_mean(mu)

    @torch.no_grad()
    def interpolate(self, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 8) -> torch.Tensor:
        """Decoder means along the straight line between the posterior means of x_a and x_b.

        Shapes: x_a, x_b (*D) or (1, *D) -> (steps, *D); both ends included (steps >= 2).
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
            raise ValueError(f"steps must be an int >= 2 (both ends included), got {steps!r}")
        check_tensor(x_a, "x_a")
        check_tensor(x_b, "x_b")
        ends = []
        for x, name in ((x_a, "x_a"), (x_b, "x_b")):
            if tuple(x.shape) == self.data_shape:
                x = x.unsqueeze(0)
            if tuple(x.shape) != (1, *self.data_shape):
                raise ValueError(
                    f"{name} must have shape data_shape or (1, *data_shape); got {tuple(x.shape)}"
                )
            ends.append(self.encode(x)[0])
        w = torch.linspace(0.0, 1.0, steps, dtype=ends[0].dtype, device=ends[0].device)[:, None]
        z = (1.0 - w) * ends[0] + w * ends[1]  # (steps, L)
        return self.decoder_mean(z)


@dataclass
class VAEOptions:
    """The ``model.ae`` section of a VAE."""

    latent_dim: int | None = None  # size of z (None: 2 for vectors, 16 for images)
    likelihood: str = "gaussian"  # gaussian or bernoulli (binarised images)
    decoder_std: float | None = None  # fixed std of the Gaussian decoder (None: learned)
    beta: float | None = None  # KL weight (None: 1)
    iwae_k: int = 64  # importance samples of the NLL estimate (metric nll)
    kl_warmup_steps: int = 0  # KL weight rises linearly to beta over these training steps (0: none)
    prior: str = "gmm"  # sample z from: gmm (a mixture fitted after training) or standard (N(0, I))
    prior_components: int = 20  # components of the gmm prior

    def validate(self) -> None:
        check_min("model.ae.latent_dim", self.latent_dim, 1)
        check_choice("model.ae.likelihood", self.likelihood, ["gaussian", "bernoulli"])
        check_min("model.ae.decoder_std", self.decoder_std, 0.0, strict=True)
        check_min("model.ae.beta", self.beta, 0.0)
        check_min("model.ae.iwae_k", self.iwae_k, 1)
        check_min("model.ae.kl_warmup_steps", self.kl_warmup_steps, 0)
        check_choice("model.ae.prior", self.prior, list(SAMPLING_PRIORS))
        check_min("model.ae.prior_components", self.prior_components, 1)
        if self.likelihood == "bernoulli" and self.decoder_std is not None:
            raise ConfigError("model.ae.decoder_std applies to model.ae.likelihood=gaussian only")


@dataclass(kw_only=True)
class VAEConfig(FamilyConfig):
    """``model`` settings of a VAE (``model.family: vae``): MLPs for vectors, conv nets for images."""

    family: str = "vae"
    net: NetConfig = field(default_factory=NetConfig)  # mlp for vectors, conv for images
    ae: VAEOptions = field(default_factory=VAEOptions)

    def has_log_prob(self) -> bool:
        # the Bernoulli decoder's bound is on binarised images, not comparable with densities
        return self.ae.likelihood == "gaussian"

    def build(self, data: DataInfo) -> nn.Module:
        kind = check_net_kind(self.family, self.net, data.shape, ("conv",))
        ae = self.ae
        return VAE(
            data.shape,
            latent_dim=ae.latent_dim,
            hidden=self.net.width if kind == "mlp" else self.net.base_channels,
            likelihood=ae.likelihood,
            decoder_std=ae.decoder_std,
            beta=1.0 if ae.beta is None else ae.beta,
            iwae_k=ae.iwae_k,
            kl_warmup_steps=ae.kl_warmup_steps,
            prior=ae.prior,
            prior_components=ae.prior_components,
        )


register(
    Family("vae", VAE, VAEConfig, has_log_prob=True, log_prob_kind="IWAE bound", likelihood_trained=True)
)
