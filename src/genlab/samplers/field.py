"""A model's prediction seen in every parameterisation along its Gaussian path.

Samplers need different views of the same network: ODE solvers a velocity, reverse SDEs and
Langevin a score, DDIM / DPM-Solver the data (x_1) and noise (x_0) predictions. All of them
are conversions of one output through :meth:`GaussianPath.convert`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from genlab.paths import GaussianPath, Prediction

ModelFn = Callable[..., torch.Tensor]


class PredictionField:
    """Wraps ``fn(x, t[, y]) -> prediction`` (of kind ``prediction``) on ``path``.

    Args:
        path: the Gaussian path the model was trained on.
        fn: the network (or an exact field), called with t of shape (B,).
        prediction: what ``fn`` outputs: velocity, x0 (noise), x1 (data) or score.
        y: optional labels passed to ``fn``.
    """

    def __init__(
        self,
        path: GaussianPath,
        fn: ModelFn,
        prediction: str | Prediction,
        y: torch.Tensor | None = None,
    ) -> None:
        if not callable(fn):
            raise ValueError(f"fn must be callable as fn(x, t), got {type(fn).__name__}")
        self.path, self.fn, self.prediction, self.y = path, fn, Prediction.parse(prediction), y

    def raw(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.fn(x, t) if self.y is None else self.fn(x, t, self.y)

    def get(self, x: torch.Tensor, t: torch.Tensor, kind: str | Prediction) -> torch.Tensor:
        """The prediction at (x, t) converted to ``kind``; t is (B,)."""
        return self.path.convert(self.raw(x, t), x, t, self.prediction, kind)

    def velocity(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.get(x, t, Prediction.VELOCITY)

    def score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.get(x, t, Prediction.SCORE)

    def data(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.get(x, t, Prediction.DATA)

    def noise(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.get(x, t, Prediction.NOISE)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The velocity, so a PredictionField can be integrated like a velocity network."""
        return self.velocity(x, t)


def batch_time(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A solver's 0-dim time as a (B,) tensor for a batch x, clamped to [0, 1]."""
    return t.to(x.dtype).clamp(0.0, 1.0).expand(x.shape[0])
