"""The interface of the families trained by alternating updates (GAN, pix2pix, CycleGAN).

:class:`~genlab.training.trainer.Trainer` keeps one optimiser per player and makes, per
training step (one generator update),

    for k = 1..n_critic:   batch ~ data;  minimise d_loss(batch) over the discriminator(s);
                           after_d_step()          (WGAN: clip the critic's weights)
    minimise g_loss(batch) over the generator(s), on the last batch

(Goodfellow et al. 2014, Alg. 1; Arjovsky et al. 2017, Alg. 1 with n_critic = 5). Losses
return ``{"loss": scalar, ...}``; other entries are detached diagnostics that the trainer
averages into ``metrics.jsonl``. A subclass also implements ``generate`` (see
:class:`~genlab.models.latent.LatentModel`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from genlab._validate import check_choice, check_min
from genlab.models.gan_losses import GAN_LOSSES
from genlab.models.latent import LatentModel

#: the players of an adversarial model, in the order of their updates
PLAYERS = ("d", "g")


class AdversarialModel(LatentModel):
    """Base of the adversarial families; see the module docstring."""

    #: discriminator / critic updates per generator update
    n_critic: int = 1

    def discriminator_parameters(self) -> list[nn.Parameter]:
        """Parameters updated by the discriminator / critic step."""
        raise NotImplementedError

    def generator_parameters(self) -> list[nn.Parameter]:
        """Parameters updated by the generator step."""
        raise NotImplementedError

    def player_parameters(self) -> dict[str, list[nn.Parameter]]:
        """``{"d": discriminator parameters, "g": generator parameters}`` (disjoint)."""
        d, g = self.discriminator_parameters(), self.generator_parameters()
        if {id(p) for p in d} & {id(p) for p in g}:
            raise ValueError(f"{type(self).__name__}: a parameter belongs to both players")
        return {"d": d, "g": g}

    def d_loss(self, batch: Any, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Discriminator / critic loss on a data batch (fakes drawn with ``generator``)."""
        raise NotImplementedError

    def g_loss(self, batch: Any, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Generator loss (needs the data batch for paired or cycle terms)."""
        raise NotImplementedError

    def after_d_step(self) -> None:
        """Called after every discriminator update (WGAN clips the critic's weights here)."""


@dataclass
class AdversarialOptions:
    """The ``model.gan`` settings every adversarial family reads."""

    loss: str = "nonsaturating"  # minimax, nonsaturating, lsgan, wgan, wgan-gp
    loss_args: dict[str, float] = field(default_factory=dict)  # lsgan: {a: 0, b: 1, c: 1}
    n_critic: int = 1  # discriminator updates per generator update (wgan: 5)

    def validate(self) -> None:
        check_choice("model.gan.loss", self.loss, GAN_LOSSES)
        check_min("model.gan.n_critic", self.n_critic, 1)
