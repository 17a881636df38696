"""What genlab knows of each model family, written once: a :class:`Family` descriptor that the
family's own module registers next to its class, and the family's config dataclass (a
:class:`FamilyConfig`: the ``model`` section of a run, which validates itself and builds the
model). The app (config loading and validation, ``train``, ``eval``, ``compare``) asks this
registry instead of keeping its own lists.

>>> from genlab.models import FAMILIES
>>> FAMILIES["cnf"].predictions, FAMILIES["cnf"].likelihood_trained
(('velocity',), True)
>>> FAMILIES["realnvp"].config(flow_layers=4).build(DataInfo((2,))).data_shape
(2,)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from genlab._validate import ConfigError

__all__ = ["FAMILIES", "DataInfo", "Family", "FamilyConfig", "register"]


@dataclass(frozen=True)
class DataInfo:
    """What a family needs to know of the data to build its model.

    Attributes:
        shape: one sample's shape, (D,) for vectors or (C, H, W) for images.
        num_classes: the number of labels of a labelled data set (None when unlabelled).
        load_dataset: returns the training set, for families that build a second domain
            from it (CycleGAN); None when the model is built without data at hand.
    """

    shape: tuple[int, ...]
    num_classes: int | None = None
    load_dataset: Callable[[], Any] | None = None


@dataclass(kw_only=True)
class FamilyConfig:
    """The ``model`` section of a run for one family: a subclass per family lists its settings
    (the YAML keys under ``model``), checks them in :meth:`validate` and builds the model in
    :meth:`build`. ``family`` names the registered family."""

    family: str = ""

    #: whether the family takes a class-conditional network (model.net.class_conditional)
    CONDITIONAL: ClassVar[bool] = False

    def validate(self) -> None:
        """Value checks that need no data; raise :class:`ConfigError` with one line. A
        subclass adds its own checks and calls this one, which calls ``validate()`` of each
        sub-section (``net``, ``ae``, ``gan``)."""
        for f in dataclasses.fields(self):  # the sub-sections (net, ae, gan) check themselves
            section = getattr(self, f.name)
            if dataclasses.is_dataclass(section) and hasattr(section, "validate"):
                section.validate()
        net = getattr(self, "net", None)
        if net is not None and net.class_conditional and not self.CONDITIONAL:
            conditional = sorted(n for n, f in FAMILIES.items() if f.config.CONDITIONAL)
            raise ConfigError(
                f"model.family={self.family} is not class-conditional; set model.net.class_conditional="
                f"false (conditional families: {', '.join(conditional)})"
            )

    def build(self, data: DataInfo) -> nn.Module:
        """The model for data of ``data.shape`` (random initialisation from the global RNG)."""
        raise NotImplementedError(f"{type(self).__name__} must define build(data)")

    @property
    def class_conditional(self) -> bool:
        """Whether the model is built with labels (its network is class-conditional)."""
        net = getattr(self, "net", None)
        return bool(net is not None and net.class_conditional)

    @property
    def label_dropout_rate(self) -> float:
        """The probability of the "no label" token in training (0 where guidance is not trained)."""
        return float(getattr(self, "label_dropout", 0.0)) if self.class_conditional else 0.0

    def has_log_prob(self) -> bool:
        """Whether this configuration of the family has a log-density (or a bound on it)."""
        return FAMILIES[self.family].has_log_prob

    def dequantised(self) -> bool:
        """Whether training sees dequantised images: the families trained by maximum likelihood
        of a density (a density on a discrete grid is otherwise unbounded)."""
        return FAMILIES[self.family].likelihood_trained and self.has_log_prob()

    def to_dict(self) -> dict[str, Any]:
        """The section as plain YAML values (tuples become lists)."""
        return plain_values(dataclasses.asdict(self))


def plain_values(obj: Any) -> Any:
    """``obj`` with tuples turned into lists, through dicts and lists: what YAML writes."""
    if isinstance(obj, dict):
        return {k: plain_values(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_values(v) for v in obj]
    return obj


@dataclass(frozen=True)
class Family:
    """One model family.

    Attributes:
        name: the ``model.family`` of a config.
        model: the model class; its ``SAMPLERS`` name the samplers it accepts.
        config: its :class:`FamilyConfig` subclass (whose ``family`` default is ``name``).
        predictions: what its network may predict (``velocity``, ``noise``, ``data``,
            ``score``); empty when no path quantity applies (VAEs, GANs, RealNVP).
        has_log_prob: whether the model has ``log_prob(x)`` (for the VAE, a bound).
        log_prob_kind: how to read that log-probability ("exact", or e.g. "IWAE bound").
        likelihood_trained: trained by maximum likelihood, so it sees dequantised images.
    """

    name: str
    model: Any
    config: type[FamilyConfig]
    predictions: tuple[str, ...] = ()
    has_log_prob: bool = False
    log_prob_kind: str = "exact"
    likelihood_trained: bool = False

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
    if not (isinstance(family.config, type) and issubclass(family.config, FamilyConfig)):
        raise ValueError(f"{family.name}: config must be a FamilyConfig subclass")
    if family.config().family != family.name:
        raise ValueError(f"{family.name}: {family.config.__name__}.family must default to {family.name!r}")
    FAMILIES[family.name] = family
    return family


def likelihood_families() -> str:
    """The families with a log-probability, for messages: "flow_matching, ..., vae (IWAE bound)"."""
    return ", ".join(
        f.name + ("" if f.log_prob_kind == "exact" else f" ({f.log_prob_kind})")
        for f in FAMILIES.values()
        if f.has_log_prob
    )
