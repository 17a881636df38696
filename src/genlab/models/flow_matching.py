"""Flow matching (Lipman et al. 2023; Tong et al. 2023) on a Gaussian conditional path.

Training minimises the conditional flow matching loss

    L(theta) = E_{t, (x_0, x_1) ~ q} || f_theta(x_t, t) - (alpha'_t x_1 + sigma'_t x_0) ||^2

with t ~ U[0, 1 - T_END_GAP] (the gap keeps singular schedules finite), whose gradient
equals that of the (intractable) marginal loss against u_t(x). The network may instead
predict x_0 or x_1 (``prediction``); the target changes accordingly and sampling converts
the output to a velocity through :meth:`GaussianPath.convert`.

The coupling decides where x_0 comes from: independent Gaussian noise, the same noise
re-paired by minibatch optimal transport (OT-CFM), the entropic plan with the Brownian-bridge
path (SB-CFM), another data set (a :class:`~genlab.paths.DataSource`), a corrupted copy of
x_1 (data couplings: inpainting, super-resolution, denoising), or given pairs (a dict batch
with key ``x0``, as reflow trains). Labels y condition the network; with ``label_dropout``
eta > 0 the same network also learns the unconditional field, for classifier-free guidance.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from genlab._validate import ConfigError, check_choice
from genlab.data import TOY_DATASETS, make_toy
from genlab.models.base import (
    Batch,
    GaussianPathConfig,
    GaussianPathModel,
    SampleRequest,
    Solution,
    split_batch,
)
from genlab.models.nets import build_time_network
from genlab.models.registry import DataInfo, Family, register
from genlab.paths import (
    COUPLINGS,
    SCHEDULES,
    T_END_GAP,
    CoupledBatch,
    Coupling,
    DataCoupling,
    GaussianPath,
    GaussianSource,
    IndependentCoupling,
    OTCoupling,
    Prediction,
    SchrodingerBridgeCoupling,
    make_corruption,
    make_schedule,
)
from genlab.paths.bridge import BridgePath
from genlab.paths.couplings import DataSource

#: tolerance of the end-point conditions alpha_0 = sigma_1 = 0, alpha_1 = sigma_0 = 1 that a
#: path must meet to carry a non-Gaussian source
INTERPOLANT_TOL = 1e-6


class FlowMatching(GaussianPathModel):
    """A velocity (or x_0 / x_1) network trained by conditional flow matching.

    Args:
        net: module called as net(x, t) or net(x, t, y), x (B, *D), t (B,).
        data_shape: shape of one sample, e.g. (2,) or (1, 8, 8).
        path: Gaussian conditional path (default: linear).
        coupling: how x_0 is paired with x_1 (default: independent, x_0 ~ N(0, I)).
        prediction: what ``net`` outputs: "velocity", "noise" (x_0) or "data" (x_1).
        label_dropout: probability eta of replacing a label by "no label" in training.
    """

    def __init__(
        self,
        net: nn.Module,
        data_shape: Sequence[int],
        *,
        path: GaussianPath | None = None,
        coupling: Coupling | None = None,
        prediction: str | Prediction = Prediction.VELOCITY,
        label_dropout: float = 0.0,
    ) -> None:
        path = path if path is not None else GaussianPath("linear")
        super().__init__(net, data_shape, path, prediction, label_dropout)
        self.coupling = coupling if coupling is not None else IndependentCoupling()
        if not isinstance(self.coupling, Coupling):
            raise ValueError(f"coupling must be a Coupling, got {type(self.coupling).__name__}")
        if not self.coupling.gaussian_source:
            _check_interpolant(path, self.coupling)
            if isinstance(self.coupling.source, DataSource):
                self.source = self.coupling.source  # sampling starts from the other data set
        if isinstance(path, BridgePath) and self.prediction != Prediction.VELOCITY:
            raise ValueError("the bridge path (SB-CFM) trains a velocity network; use prediction='velocity'")
        if self.prediction == Prediction.SCORE:
            raise ValueError("prediction='score' is for diffusion models; use velocity, x0 or x1")
        alpha0 = float(self.path.schedule.values(torch.zeros((), dtype=torch.float64)).alpha)
        if self.prediction == Prediction.NOISE and alpha0 < 1e-3:
            raise ValueError(
                "prediction='x0' cannot give a velocity near t = 0 on the "
                f"{self.path.schedule.name} path (alpha_0 = {alpha0:.3g}: "
                "x_1 = (x - sigma x_0) / alpha); use velocity or x1"
            )

    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Conditional flow matching loss on one batch; returns {"loss": scalar}."""
        x1, y = split_batch(batch)
        self._check_data(x1)  # the one validation of this step; the calls below trust it
        if isinstance(batch, dict) and "x0" in batch:  # given pairs (reflow)
            x0 = batch["x0"]
            if x0.shape != x1.shape:
                raise ValueError(f"batch x0 has shape {tuple(x0.shape)} but x has {tuple(x1.shape)}")
            pair = CoupledBatch(x0=x0, x1=x1, y=y)
        else:
            pair = self.coupling.pair(x1, generator, y)
        t = (1.0 - T_END_GAP) * torch.rand(x1.shape[0], generator=generator, dtype=x1.dtype, device=x1.device)
        ps = self.path.interpolate(pair.x0, pair.x1, t, generator)
        target = {
            Prediction.VELOCITY: ps.dxt,
            Prediction.NOISE: ps.x0,
            Prediction.DATA: ps.x1,
        }[self.prediction]
        pred = self._net(ps.xt, ps.t, self._train_labels(pair.y, generator))  # (B, *D)
        loss = ((pred - target) ** 2).flatten(1).mean(1).mean()
        return {"loss": loss}

    def _gaussian_start(self) -> bool:
        return self.coupling.gaussian_source and super()._gaussian_start()

    def _start_repr(self) -> str:
        return repr(self.coupling)

    @property
    def starts_from_inputs(self) -> bool:
        """Whether sampling needs x0 built from inputs (a data coupling: corrupted images)."""
        return callable(getattr(self.coupling, "inputs", None))

    def _dispatch(self, sampler: str, req: SampleRequest) -> Solution:
        noise_free = not self.coupling.gaussian_source or isinstance(self.path, BridgePath)
        if sampler != "ode" and noise_free:
            raise ValueError(
                f"sampler {sampler!r} assumes Gaussian noise on a Gaussian path at t = 0; this model "
                f"({self.coupling!r} on {self.path!r}) samples with sampler='ode'"
            )
        return super()._dispatch(sampler, req)

    def _source_samples(
        self, n: int, generator: torch.Generator | None, dtype: torch.dtype, device: torch.device | None
    ) -> torch.Tensor:
        if self.starts_from_inputs:
            raise ValueError(
                "this model maps corrupted inputs to data: pass x0=model.coupling.inputs(x1) for "
                "held-out images x1"
            )
        return super()._source_samples(n, generator, dtype, device)


def _check_interpolant(path: GaussianPath, coupling: Coupling) -> None:
    """A non-Gaussian x_0 needs x_t to run from x_0 exactly to x_1: alpha_0 = sigma_1 = 0,
    alpha_1 = sigma_0 = 1."""
    ends = path.schedule.values(torch.tensor([0.0, 1.0], dtype=torch.float64))
    a0, a1 = float(ends.alpha[0]), float(ends.alpha[1])
    s0, s1 = float(ends.sigma[0]), float(ends.sigma[1])
    if max(abs(a0), abs(s1), abs(a1 - 1.0), abs(s0 - 1.0)) > INTERPOLANT_TOL:
        raise ValueError(
            f"{coupling!r} gives a non-Gaussian x_0, but the {path.schedule.name} path needs Gaussian "
            f"noise at t = 0 (alpha_0 = {a0:.3g}, sigma_0 = {s0:.3g}, alpha_1 = {a1:.3g}, "
            f"sigma_1 = {s1:.3g}); use path linear, cosine or polynomial, whose x_t runs from x_0 to x_1"
        )


@dataclass(kw_only=True)
class FlowMatchingConfig(GaussianPathConfig):
    """``model`` settings of flow matching (``model.family: flow_matching``)."""

    family: str = "flow_matching"
    path: str = "linear"  # linear, ot, vp, ve, cosine, polynomial, ddpm
    path_args: dict[str, float] = field(default_factory=dict)  # e.g. {sigma_min: 0.01}
    coupling: str = "independent"  # independent, ot, sb, inpaint, superres, denoise
    coupling_args: dict[str, int | float | bool | str] = field(default_factory=dict)  # {method: exact}
    source: str = "gaussian"  # gaussian, or a 2D toy data set (8gaussians -> moons)
    reflow_pairs: str | None = None  # train on the pairs file `genlab reflow` wrote

    def validate(self) -> None:
        super().validate()
        check_choice("model.path", self.path, SCHEDULES)
        check_choice("model.coupling", self.coupling, COUPLINGS)
        check_choice("model.source", self.source, ["gaussian", *TOY_DATASETS])
        if self.coupling == "sb" and self.path != "linear":
            raise ConfigError(
                "model.coupling=sb trains on the Brownian-bridge path around the linear one; "
                f"leave model.path=linear (got {self.path})"
            )
        if self.coupling_args.get("label_aware") and not self.net.class_conditional:
            raise ConfigError("model.coupling_args.label_aware=true needs model.net.class_conditional=true")

    def has_log_prob(self) -> bool:
        # the change of variables needs the Gaussian density of x_0
        return self.source == "gaussian" and self.coupling in ("independent", "ot", "sb")

    def build(self, data: DataInfo) -> nn.Module:
        try:
            schedule = make_schedule(self.path, **self.path_args)
        except ValueError as err:
            raise ConfigError(f"model.path_args: {err}") from None
        coupling = self.build_coupling(data.shape)
        path = BridgePath(coupling.sigma) if isinstance(coupling, SchrodingerBridgeCoupling) else None
        net = build_time_network(self.family, self.net, data.shape, data.num_classes)
        return FlowMatching(
            net,
            data.shape,
            path=path or GaussianPath(schedule),
            coupling=coupling,
            prediction=self.prediction or "velocity",
            label_dropout=self.label_dropout,
        )

    def build_coupling(self, shape: tuple[int, ...]) -> Coupling:
        """The configured coupling (``model.coupling`` with ``model.coupling_args``) and source."""
        args: dict[str, Any] = dict(self.coupling_args)
        if self.source == "gaussian":
            source: GaussianSource | DataSource = GaussianSource()
        else:
            if shape != (2,):
                raise ConfigError(
                    f"model.source={self.source} gives 2D points but the data have shape {shape}"
                )
            source = DataSource(make_toy(self.source), self.source)
        factory: Callable[..., Coupling]
        if self.coupling == "independent":
            factory = IndependentCoupling
        elif self.coupling == "ot":
            factory = OTCoupling
        elif self.coupling == "sb":
            factory = SchrodingerBridgeCoupling
        else:  # a data coupling, named by its corruption
            if len(shape) != 3:
                raise ConfigError(
                    f"model.coupling={self.coupling} corrupts images; the data have shape {shape}"
                )
            if self.source != "gaussian":
                raise ConfigError(
                    f"model.coupling={self.coupling} builds x_0 from the data; leave model.source=gaussian"
                )
            noise_std = args.pop("noise_std", 0.0)
            try:
                return DataCoupling(make_corruption(self.coupling, shape, **args), noise_std)
            except ValueError as err:
                raise ConfigError(f"model.coupling_args: {err}") from None
        valid = [k for k in inspect.signature(factory).parameters if k != "source"]
        unknown = sorted(set(args) - set(valid))
        if unknown:
            raise ConfigError(
                f"model.coupling_args.{unknown[0]} is not an argument of model.coupling={self.coupling}; "
                f"valid: {', '.join(valid) or 'none'}"
            )
        try:
            return factory(source=source, **args)
        except ValueError as err:
            raise ConfigError(f"model.coupling_args: {err}") from None


register(
    Family(
        "flow_matching",
        FlowMatching,
        FlowMatchingConfig,
        predictions=("velocity", "noise", "data"),
        has_log_prob=True,
    )
)
