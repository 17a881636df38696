"""What genlab knows of each model family, written once: a :class:`Family` descriptor that the
family's own module registers next to its class. The app (config validation, builders,
``eval``, ``compare``) asks this registry instead of keeping its own lists.

>>> from genlab.models import FAMILIES
>>> FAMILIES["cnf"].predictions, FAMILIES["cnf"].likelihood_trained
(('velocity',), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["FAMILIES", "Family", "register"]


@dataclass(frozen=True)
class Family:
    """One model family.

    Attributes:
        name: the ``model.family`` of a config.
        model: the model class; its ``SAMPLERS`` name the samplers it accepts.
        predictions: what its network may predict (``velocity``, ``noise``, ``data``,
            ``score``); empty when no path quantity applies (VAEs, GANs, RealNVP).
        has_log_prob: whether the model has ``log_prob(x)`` (for the VAE, a bound).
        log_prob_kind: how to read that log-probability ("exact", or e.g. "IWAE bound").
        likelihood_trained: trained by maximum likelihood, so it sees dequantised images.
        labelled: built with the data's number of classes (a class-conditional GAN).
    """

    name: str
    model: Any
    predictions: tuple[str, ...] = ()
    has_log_prob: bool = False
    log_prob_kind: str = "exact"
    likelihood_trained: bool = False
    labelled: bool = False

    @property
    def samplers(self) -> tuple[str, ...]:
        """The samplers the model accepts, its default first."""
        return tuple(self.model.SAMPLERS)


#: every registered family by name
FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add a family to the registry (a name registers once)."""
    if family.name in FAMILIES:
        raise ValueError(f"model family {family.name!r} is already registered")
    if not getattr(family.model, "SAMPLERS", None):
        raise ValueError(f"{family.name}: the model class must list its SAMPLERS")
    FAMILIES[family.name] = family
    return family


def likelihood_families() -> str:
    """The families with a log-probability, for messages: "flow_matching, ..., vae (IWAE bound)"."""
    return ", ".join(
        f.name + ("" if f.log_prob_kind == "exact" else f" ({f.log_prob_kind})")
        for f in FAMILIES.values()
        if f.has_log_prob
    )
