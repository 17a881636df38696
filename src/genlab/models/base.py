"""Shared base of the models that live on a Gaussian path (flow matching, diffusion, DDPM).

A :class:`GaussianPathModel` holds a network, the path it was trained on and what the network
predicts; every sampler sees the same network through :class:`PredictionField` conversions,
so any model can be sampled by any sampler its path supports:

    ode        integrate the velocity (= probability-flow ODE) with any ODE solver
    extension  the SDE extension trick with noise sigma_t (``noise``), same marginals
    ddim       DDIM (variance-preserving paths), ``eta`` in [0, 1]
    dpm        DPM-Solver++(2M), few-step second-order
    em, pc, ald   reverse-SDE Euler-Maruyama, predictor-corrector, annealed Langevin
               (diffusion models, which know their forward SDE)
    ddpm       ancestral DDPM sampling (the discrete DDPM model)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from genlab._validate import ConfigError, check_choice, check_finite
from genlab.likelihood import LogProbResult, log_prob_ode
from genlab.models.nets import NetConfig
from genlab.models.registry import FAMILIES, FamilyConfig
from genlab.paths import DataSource, GaussianPath, GaussianSource, Prediction
from genlab.paths.gaussian import DEPRECATED_PREDICTIONS
from genlab.samplers.ddim import ddim, dpm_solver_pp
from genlab.samplers.field import PredictionField
from genlab.samplers.guidance import GuidedNet, check_labels, drop_labels
from genlab.samplers.ode import sample_ode
from genlab.samplers.sde import SAMPLE_T_EPS, sample_extension
from genlab.solvers import ODESolution, ODESolver, TimeGrid
from genlab.solvers.grids import as_grid
from genlab.solvers.sde import SDESolution

Batch = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | dict[str, torch.Tensor]

#: paths whose sigma_1 is below this end sampling / start log-probs at 1 - SAMPLE_T_EPS when
#: the network does not predict the velocity itself
SIGMA_END_MIN = 1e-3
#: largest alpha_0 / sigma_0 for which N(0, sigma_0^2 I) is accepted as p_0 in log-prob
#: computations (VP 0.0066; VE 1 / sigma_max, so sigma_max >= 20; DDPM with T = 100: 0.75)
ALPHA0_MAX_FOR_LOG_PROB = 0.05
Solution = ODESolution | SDESolution


def split_batch(batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Accept x, (x, y) or {"x": x, "y": y}; return (x, y or None)."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, dict):
        if "x" not in batch:
            raise ValueError(f"a dict batch needs key 'x', got keys {sorted(batch)}")
        return batch["x"], batch.get("y")
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise ValueError("batch must be a tensor x, a pair (x, y) or a dict with keys 'x' and 'y'")


@dataclass
class SampleRequest:
    """Everything a sampler needs besides the model (assembled by ``sample``)."""

    x0: torch.Tensor  # (n, *D) source samples at t = 0
    grid: TimeGrid  # times the sampler steps through
    solver: str | ODESolver  # ODE solver for the ode sampler
    generator: torch.Generator | None  # randomness of stochastic samplers
    y: torch.Tensor | None  # labels for class-conditional networks
    return_trajectory: bool  # keep the states on the grid where the sampler can
    options: dict[str, Any] = field(default_factory=dict)  # sampler-specific settings
    guidance: float | None = None  # classifier-free guidance scale w (None: plain v(x | y))


class GaussianPathModel(nn.Module):
    """A network on a Gaussian path; subclasses define ``loss`` and may add samplers."""

    #: sampler names this model family accepts (subclasses extend it)
    SAMPLERS: ClassVar[tuple[str, ...]] = ("ode", "extension", "ddim", "dpm")

    def __init__(
        self,
        net: nn.Module,
        data_shape: Sequence[int],
        path: GaussianPath,
        prediction: str | Prediction,
        label_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.net = net
        self.data_shape = tuple(int(d) for d in data_shape)
        self.path = path
        self.prediction = Prediction.parse(prediction)
        if not isinstance(label_dropout, (int, float)) or not 0.0 <= label_dropout < 1.0:
            raise ValueError(f"label_dropout must lie in [0, 1), got {label_dropout!r}")
        #: probability eta of training with the "no label" token (classifier-free guidance)
        self.label_dropout = float(label_dropout)
        # Sampling starts from p_0 = N(0, sigma_0^2 I): sigma_0 = 1 except for VE paths.
        self.source: GaussianSource | DataSource = GaussianSource(self.path.schedule.source_std())

    # -- views of the network -----------------------------------------------------------
    def _net(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.net(x, t) if y is None else self.net(x, t, y)

    def _train_labels(self, y: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor | None:
        """Labels as the network sees them in training: dropped to "no label" w.p. eta."""
        return None if y is None else drop_labels(y, self.label_dropout, generator)

    def field(self, y: torch.Tensor | None = None, guidance: float | None = None) -> PredictionField:
        """The network as a PredictionField on this model's path; with ``guidance`` w the
        classifier-free guided network (1 - w) net(x, t) + w net(x, t, y)."""
        if guidance is None:
            return PredictionField(self.path, self.net, self.prediction, y)
        if y is None:
            raise ValueError("guidance needs labels y (the class of each sample)")
        return PredictionField(self.path, GuidedNet(self.net, y, guidance), self.prediction)

    def velocity(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The learned marginal velocity (probability-flow drift in t), shape like x."""
        return self.path.convert(self._net(x, t, y), x, t, self.prediction, Prediction.VELOCITY)

    def score(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The learned score grad log p_t(x), shape like x."""
        return self.path.convert(self._net(x, t, y), x, t, self.prediction, Prediction.SCORE)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.velocity(x, t, y)

    def _check_data(self, x1: torch.Tensor) -> None:
        if tuple(x1.shape[1:]) != self.data_shape:
            raise ValueError(
                f"batch has sample shape {tuple(x1.shape[1:])} but the model was built for {self.data_shape}"
            )
        check_finite(x1, "batch")

    # -- where the data sit ----------------------------------------------------------
    def t_end(self) -> float:
        """Last time a sampler reaches and where log-probs start: 1, or 1 - SAMPLE_T_EPS when
        the network predicts x0 / x1 / score on a path with sigma_1 ~ 0 (the conversion to a
        velocity divides by sigma_t there)."""
        sigma1 = float(self.path.schedule.values(torch.ones((), dtype=torch.float64)).sigma)
        if self.prediction == Prediction.VELOCITY or sigma1 >= SIGMA_END_MIN:
            return 1.0
        return 1.0 - SAMPLE_T_EPS

    # -- likelihood ---------------------------------------------------------------------

    def log_prob(
        self,
        x: torch.Tensor,
        solver: str | ODESolver = "rk4",
        steps: int = 100,
        divergence: str = "exact",
        n_probes: int = 1,
        generator: torch.Generator | None = None,
        y: torch.Tensor | None = None,
        **solver_options: Any,
    ) -> LogProbResult:
        """log p(x) in nats of the model's probability-flow ODE (instantaneous change of
        variables from ``t_end()`` back to t = 0, where the source N(0, sigma_0^2 I) is).

        Refused when alpha_0 / sigma_0 is not small: p_0 is then not the source distribution.
        """
        self._check_data(x)
        if not self._gaussian_start():
            raise ValueError(f"log p needs a Gaussian source; this model starts from {self._start_repr()}")
        v0 = self.path.schedule.values(torch.zeros((), dtype=torch.float64))
        ratio = float(v0.alpha / v0.sigma)  # the data's weight against the noise's at t = 0
        if ratio > ALPHA0_MAX_FOR_LOG_PROB:
            raise ValueError(
                f"log p needs p_0 = N(0, sigma_0^2 I), but alpha_0 / sigma_0 = {ratio:.3g} on this path "
                "(the data still show at t = 0); use more diffusion steps, a larger sigma_max, "
                "or a path with alpha_0 ~ 0"
            )

        def velocity(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.velocity(z, t, y)

        grid = TimeGrid.uniform(steps, self.t_end(), 0.0)
        was_training = self.training
        self.eval()
        try:
            return log_prob_ode(
                velocity,
                self.source.log_prob,
                x,
                solver,
                grid,
                divergence,
                n_probes,
                generator=generator,
                **solver_options,
            )
        finally:
            self.train(was_training)

    # -- sampling -----------------------------------------------------------------------
    def default_grid(self, steps: int) -> TimeGrid:
        """The time grid a sampler uses for ``steps`` steps: uniform on [0, t_end()]."""
        return TimeGrid.uniform(steps, 0.0, self.t_end())

    def sample(
        self,
        n: int,
        solver: str | ODESolver = "rk4",
        grid: TimeGrid | Sequence[float] | torch.Tensor | int | None = None,
        generator: torch.Generator | None = None,
        y: torch.Tensor | None = None,
        return_trajectory: bool = False,
        x0: torch.Tensor | None = None,
        sampler: str = "ode",
        guidance: float | None = None,
        steps: int | None = None,
        **options: Any,
    ) -> Solution:
        """Draw n samples, from the source at t = 0 to the data at t = 1.

        Args:
            n: number of samples.
            solver: ODE solver for ``sampler="ode"``.
            grid: a TimeGrid, a sequence of times, or an int number of steps (default 100).
            generator: randomness of the source and of stochastic samplers.
            y: labels for a class-conditional network.
            return_trajectory: keep the states on the grid (ode, extension, em).
            x0: start from these source samples instead of drawing them.
            sampler: one of ``self.SAMPLERS``.
            guidance: classifier-free guidance scale w >= 0 (needs ``y`` and a network
                trained with label dropout): (1 - w) v(x) + w v(x | y).
            steps: the number of uniform steps, as ``--steps`` on the command line (instead
                of ``grid``).
            options: sampler options (``eta`` for ddim, ``noise`` for extension, ``snr`` and
                ``n_corrector`` for pc, solver tolerances for dopri5, ...).

        Returns the solution: ``.x`` the (n, *D) samples, ``.nfe`` the network evaluations.
        """
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if sampler not in self.SAMPLERS:
            raise ValueError(
                f"sampler {sampler!r} is not available for {type(self).__name__}; "
                f"valid samplers: {', '.join(self.SAMPLERS)}"
            )
        grid = _steps_or_grid(steps, grid)
        if isinstance(grid, int) and not isinstance(grid, bool):
            if grid < 1:
                raise ValueError(f"steps must be a positive integer, got {grid}")
            grid = self.default_grid(grid)
        grid = as_grid(grid)
        y = check_labels(self.net, y, n)
        if guidance is not None and y is None:
            raise ValueError("guidance needs labels y (the class of each sample)")
        param = next(self.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        device = param.device if param is not None else None
        if x0 is None:
            x0 = self._source_samples(n, generator, dtype, device)
        elif tuple(x0.shape) != (n, *self.data_shape):
            raise ValueError(f"x0 must have shape {(n, *self.data_shape)}, got {tuple(x0.shape)}")
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                req = SampleRequest(x0, grid, solver, generator, y, return_trajectory, options, guidance)
                return self._dispatch(sampler, req)
        finally:
            self.train(was_training)

    def _gaussian_start(self) -> bool:
        """Whether x at t = 0 is Gaussian noise (what log p and the noise samplers assume)."""
        return bool(getattr(self.source, "gaussian", False))

    def _start_repr(self) -> str:
        return repr(self.source)

    def _source_samples(
        self, n: int, generator: torch.Generator | None, dtype: torch.dtype, device: torch.device | None
    ) -> torch.Tensor:
        """n draws from the source p_0, (n, *D)."""
        return self.source.sample((n, *self.data_shape), generator, dtype, device)

    def _dispatch(self, sampler: str, req: SampleRequest) -> Solution:
        """Run ``sampler``; subclasses handle their own samplers and defer to this one."""
        x0, grid, solver, generator, options = req.x0, req.grid, req.solver, req.generator, req.options
        return_trajectory = req.return_trajectory
        pf = self.field(req.y, req.guidance)
        if sampler == "ode":
            return sample_ode(pf, x0, solver, grid, None, return_trajectory, **options)
        if sampler == "extension":
            noise = _pop(options, "noise", 0.0)
            return sample_extension(pf, x0, noise, grid, generator, return_trajectory=return_trajectory)
        if sampler == "ddim":
            eta = _pop(options, "eta", 0.0)
            return _wrap(ddim(pf, x0, grid, eta, generator), grid, grid.steps)
        if sampler == "dpm":
            _pop(options)
            return _wrap(dpm_solver_pp(pf, x0, grid), grid, grid.steps)
        raise ValueError(f"sampler {sampler!r} is not implemented by {type(self).__name__}")


#: uniform steps of a sampler when neither ``steps`` nor ``grid`` is given
DEFAULT_SAMPLE_STEPS = 100


def _steps_or_grid(steps: int | None, grid: Any) -> Any:
    """``steps`` (the CLI's word) or ``grid`` (a TimeGrid, times or a step count), not both."""
    if steps is not None and grid is not None:
        raise ValueError("give steps (a number of uniform steps) or grid (a TimeGrid or times), not both")
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int):
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        return steps
    return DEFAULT_SAMPLE_STEPS if grid is None else grid


def _pop(options: dict[str, Any], key: str | None = None, default: Any = None) -> Any:
    """Take ``key`` from options; anything left over is an error naming it."""
    value = options.pop(key, default) if key is not None else default
    if options:
        raise ValueError(f"unexpected sampler option(s): {', '.join(sorted(options))}")
    return value


def _wrap(x: torch.Tensor, grid: TimeGrid, nfe: int) -> ODESolution:
    return ODESolution(x=x, times=grid.times.to(x.dtype), trajectory=None, nfe=nfe)


@dataclass(kw_only=True)
class GaussianPathConfig(FamilyConfig):
    """The ``model`` settings every Gaussian-path family shares: what the network predicts,
    the label dropout of classifier-free guidance and the network."""

    CONDITIONAL = True

    prediction: str | None = None  # network output: velocity, noise, data, score (None: the default)
    label_dropout: float = 0.1  # class-conditional nets: probability of the "no label" token
    net: NetConfig = field(default_factory=NetConfig)  # the velocity / noise / score network

    def validate(self) -> None:
        super().validate()
        if self.prediction in DEPRECATED_PREDICTIONS:  # saved runs and old configs keep loading
            new = DEPRECATED_PREDICTIONS[self.prediction]
            warnings.warn(
                f"model.prediction={self.prediction} is now called {new} (genlab's x_0 is the noise, "
                f"x_1 the data); read as model.prediction={new}",
                FutureWarning,
                stacklevel=4,
            )
            self.prediction = new
        if self.prediction is not None:
            check_choice("model.prediction", self.prediction, FAMILIES[self.family].predictions)
        if not 0.0 <= self.label_dropout < 1.0:
            raise ConfigError(f"model.label_dropout must be in [0, 1), got {self.label_dropout}")
