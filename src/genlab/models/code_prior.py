"""The autoregressive prior over a VQ-VAE's code grid: p(z) = prod_ij p(z_ij | z_<ij) in raster
order, each factor a softmax of a :class:`~genlab.networks.pixelcnn.PixelCNN`.

It is fitted after the autoencoder, by maximum likelihood on the codes of the training images
(``fit``: cross-entropy of every position given the earlier ones, Adam), and sampled one
position at a time (``sample``: h * w passes of the network). Unlike the per-position
categorical prior it captures the dependencies between positions: strokes that join up, one
digit per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genlab._validate import check_positive_int, check_tensor
from genlab.networks.pixelcnn import PixelCNN, default_kernel

__all__ = ["PixelCNNPrior"]


class PixelCNNPrior(nn.Module):
    """A PixelCNN prior over (h, w) grids of ``num_codes`` codes.

    Args:
        num_codes: K.
        grid_hw: (h, w).
        hidden, layers: the PixelCNN's channels and masked layers.
        steps, batch_size, lr: the fit (Adam).
        seed: the fit starts from the same initial weights and draws the same batches every time,
            so the fitted prior is a function of the codes alone.
    """

    def __init__(
        self,
        num_codes: int,
        grid_hw: tuple[int, int],
        *,
        hidden: int = 64,
        layers: int = 4,
        steps: int = 1500,
        batch_size: int = 128,
        lr: float = 1e-3,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.grid_hw = (int(grid_hw[0]), int(grid_hw[1]))
        self.steps = check_positive_int(steps, "steps")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        self.lr, self.seed = float(lr), int(seed)
        self.net = PixelCNN(num_codes, hidden, layers, default_kernel(self.grid_hw))

    @property
    def num_codes(self) -> int:
        return self.net.num_codes

    def nll(self, codes: torch.Tensor) -> torch.Tensor:
        """-log p(z) / (h w): the mean negative log-likelihood per position, in nats (0-dim)."""
        return F.cross_entropy(self.net(codes), codes)

    def _check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        check_tensor(codes, "codes")
        if codes.dim() != 3 or tuple(codes.shape[1:]) != self.grid_hw or codes.dtype != torch.long:
            raise ValueError(f"codes must be a (N, {self.grid_hw[0]}, {self.grid_hw[1]}) long tensor")
        return codes

    def fit(self, codes: torch.Tensor) -> list[float]:
        """Maximum likelihood on ``codes`` (N, h, w) from fresh, seeded weights for ``steps`` Adam
        steps on batches drawn with replacement. Returns the loss (nats per position) every
        100 steps and at the end."""
        codes = self._check_codes(codes)
        param = next(self.parameters())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for module in self.net.modules():
                if isinstance(module, (nn.Conv2d, nn.Embedding)):
                    module.reset_parameters()
        gen = torch.Generator().manual_seed(self.seed)  # batches drawn on the CPU: the same on every device
        opt = torch.optim.Adam(self.parameters(), lr=self.lr)
        was_training, losses = self.training, []
        self.train()
        with torch.enable_grad():
            for step in range(self.steps):
                idx = torch.randint(codes.shape[0], (self.batch_size,), generator=gen, device=gen.device)
                loss = self.nll(codes[idx.to(codes.device)].to(param.device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if ((step + 1) % 100 == 0 or step + 1 == self.steps) and loss.device.type != "meta":
                    losses.append(float(loss.detach()))  # (the meta device holds no values)
        self.train(was_training)
        return losses

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n grids drawn position by position in raster order: (n, h, w) long."""
        n = check_positive_int(n, "n")
        device = next(self.parameters()).device
        codes = torch.zeros(n, *self.grid_hw, dtype=torch.long, device=device)
        for i in range(self.grid_hw[0]):
            for j in range(self.grid_hw[1]):
                probs = torch.softmax(self.net(codes)[:, :, i, j].double(), dim=1)  # (n, K)
                codes[:, i, j] = torch.multinomial(probs, 1, generator=generator)[:, 0]
        return codes
