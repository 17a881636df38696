"""Reflow (Liu et al. 2022, "Flow straight and fast: rectified flow"): retraining on the
deterministic coupling of a trained flow.

A trained flow's ODE maps each source sample x_0 to one point x_1 = ODE_1(x_0). The pairs
(x_0, ODE_1(x_0)) are a *deterministic* coupling of the source and (approximately) the
data; training flow matching again on these fixed pairs instead of independent ones
("reflow", or 2-rectified flow) gives straighter paths. Liu et al. prove that rectifying
a coupling never increases any convex transport cost E c(x_1 - x_0) (their Thm. 3.5), and
that the straightness S = E int_0^1 ||(x_1 - x_0) - dx/dt||^2 dt of the k-times rectified
flows sums to at most E ||x_1 - x_0||^2 of the first coupling, so min_{j <= k} S_j = O(1/k)
(Thm. 3.7; in practice S drops at every round). A flow with S = 0 is straight at constant
speed and its Euler step is exact, so after one or two reflows one or two Euler steps
sample about as well as a hundred steps on the original flow.

- :func:`genlab.samplers.reflow.generate_pairs` draws x_0 from a model's source and
  integrates its ODE (sampling, so it lives with the samplers);
- :class:`ReflowPairs` holds the fixed pairs as a data set: ``sample(n, generator)``
  returns ``{"x": x_1, "x0": x_0}`` batches that the flow matching loss trains on as given
  pairs; ``save`` / ``load`` keep them in an ``.npz`` file, so a costly generation runs once.

Measure the effect with :func:`genlab.metrics.straightness.straightness` on the model's
ODE trajectories before and after reflow.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab._validate import check_finite, check_positive_int, check_tensor

__all__ = ["ReflowPairs"]

PathLike = str | os.PathLike[str]

#: array names inside a saved ``.npz`` file
_KEYS = ("x0", "x1")
_LABEL_KEY = "y"


class ReflowPairs:
    """A fixed set of pairs (x_0, x_1) -- a deterministic coupling -- used as a data set.

    ``sample(n, generator)`` draws n pair indices uniformly with replacement (like every
    data set of genlab) and returns ``{"x": x1[idx], "x0": x0[idx]}`` (plus ``"y"`` when
    labels are held). Flow matching trains on a dict batch with key ``"x0"`` as given pairs
    instead of drawing fresh source noise.

    Args:
        x0: (N, *D) source samples, floating, finite.
        x1: (N, *D) their images under the flow, same shape.
        y: optional (N,) labels of the pairs (class-conditional models).

    Attributes:
        x0, x1, y: the stored tensors.
        shape: *D, the shape of one sample.
        dim: number of scalars in one sample (prod of ``shape``).
        name: "reflow".
    """

    name = "reflow"

    def __init__(self, x0: torch.Tensor, x1: torch.Tensor, y: torch.Tensor | None = None) -> None:
        for value, label in ((x0, "x0"), (x1, "x1")):
            check_tensor(value, label)
            if value.dim() < 2 or value.shape[0] < 1 or value[0].numel() < 1:
                raise ValueError(
                    f"{label} must have shape (N, *D) with N >= 1 and non-empty samples, "
                    f"got {tuple(value.shape)}"
                )
            if not value.is_floating_point():
                raise ValueError(f"{label} must be a floating-point tensor, got {value.dtype}")
            check_finite(value, label)
        if x0.shape != x1.shape:
            raise ValueError(
                f"x0 and x1 must have the same shape; got {tuple(x0.shape)} and {tuple(x1.shape)}"
            )
        if x0.device != x1.device:
            raise ValueError(f"x0 and x1 must be on the same device; got {x0.device} and {x1.device}")
        if y is not None:
            check_tensor(y, "y")
            if y.shape != (x0.shape[0],):
                raise ValueError(f"y must have shape (N,) = ({x0.shape[0]},), got {tuple(y.shape)}")
            if y.is_floating_point() or y.is_complex():
                raise ValueError(f"y must hold integer labels, got dtype {y.dtype}")
            y = y.to(x0.device)
        self.x0 = x0.detach()
        self.x1 = x1.detach()
        self.y = y
        self.shape: tuple[int, ...] = tuple(int(d) for d in x0.shape[1:])
        self.dim = int(x0[0].numel())

    def __len__(self) -> int:
        return int(self.x0.shape[0])

    def __repr__(self) -> str:
        labels = ", labelled" if self.y is not None else ""
        return f"ReflowPairs(N={len(self)}, shape={self.shape}{labels})"

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> dict[str, torch.Tensor]:
        """Draw ``n`` pairs uniformly with replacement.

        Args:
            n: batch size.
            generator: randomness of the indices (drawn on the generator's device).
            dtype: floating dtype of x and x0; None keeps the stored one.

        Returns:
            ``{"x": (n, *D) x_1, "x0": (n, *D) x_0}`` and ``"y": (n,)`` if labels are held.
        """
        n = check_positive_int(n, "n")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
            raise ValueError(f"dtype must be a floating torch.dtype or None, got {dtype!r}")
        device = generator.device if generator is not None else torch.device("cpu")
        idx = torch.randint(0, len(self), (n,), generator=generator, device=device).to(self.x0.device)
        x1, x0 = self.x1[idx], self.x0[idx]
        if dtype is not None:
            x1, x0 = x1.to(dtype), x0.to(dtype)
        batch = {"x": x1, "x0": x0}
        if self.y is not None:
            batch["y"] = self.y[idx]
        return batch

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: PathLike) -> Path:
        """Write the pairs to an uncompressed ``.npz`` file (keys x0, x1 and y if labelled).

        The write is atomic (a temporary file renamed over ``path``); ``.npz`` is appended
        to a path without that suffix. bfloat16 is stored as float32 (numpy has no
        bfloat16). Returns the path written.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise ValueError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        p = Path(path)
        if p.suffix != ".npz":
            p = p.with_name(p.name + ".npz")
        arrays: dict[str, Any] = {"x0": _to_numpy(self.x0), "x1": _to_numpy(self.x1)}
        if self.y is not None:
            arrays[_LABEL_KEY] = self.y.detach().cpu().numpy()

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:  # a file object: numpy appends no suffix
                np.savez(fh, **arrays)

        from genlab._atomic import atomic_write

        atomic_write(p, write)
        return p

    @classmethod
    def load(
        cls,
        path: PathLike,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> ReflowPairs:
        """Read pairs written by :meth:`save`.

        Args:
            path: the ``.npz`` file.
            dtype: floating dtype of x0 and x1; None keeps the stored one.
            device: where to put the tensors (default CPU).

        Raises:
            ValueError: missing or unreadable file (object arrays are refused), or a file
                without the arrays x0 and x1.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise ValueError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
            raise ValueError(f"dtype must be a floating torch.dtype or None, got {dtype!r}")
        p = Path(path)
        if not p.is_file():
            raise ValueError(
                f"path {str(p)!r} does not exist or is not a file (reflow pairs are saved as .npz)"
            )
        unreadable = (OSError, EOFError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError)
        try:
            loaded = np.load(p, allow_pickle=False)
        except unreadable as err:
            raise ValueError(
                f"cannot read reflow pairs from {str(p)!r} (object arrays are refused): {err}"
            ) from err
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError(f"{str(p)!r} holds a single array, not an .npz archive of reflow pairs")
        with loaded as f:
            missing = [k for k in _KEYS if k not in f.files]
            if missing:
                raise ValueError(
                    f"{str(p)!r} lacks the array(s) {', '.join(missing)}; reflow pairs need keys "
                    f"{', '.join(_KEYS)} (and optionally {_LABEL_KEY}), found {sorted(f.files)}"
                )
            try:
                arrays = {k: np.array(f[k]) for k in (*_KEYS, _LABEL_KEY) if k in f.files}
            except unreadable as err:
                raise ValueError(f"cannot read reflow pairs from {str(p)!r}: {err}") from err
        for key in _KEYS:
            if arrays[key].dtype.kind != "f":
                raise ValueError(f"{str(p)!r}: array {key} must hold floats, got dtype {arrays[key].dtype}")
        x0, x1 = (torch.from_numpy(arrays[k]).to(device=device, dtype=dtype) for k in _KEYS)
        y = torch.from_numpy(arrays[_LABEL_KEY]).to(device) if _LABEL_KEY in arrays else None
        return cls(x0, x1, y)


def _to_numpy(x: torch.Tensor) -> np.ndarray:
    x = x.detach().cpu()
    return (x.float() if x.dtype == torch.bfloat16 else x).numpy()
