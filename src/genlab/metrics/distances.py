"""Sample-based distances between distributions: W2, MMD and the Frechet distance.

All metrics take two batch-first sample sets x (N, D) and y (M, D) -- model samples and
reference data -- and return a Python float computed in float64:

- :func:`wasserstein2`: exact 2-Wasserstein distance between the two empirical measures
  (optimal transport by the network simplex of POT);
- :func:`mmd`: the unbiased estimate of the *squared* maximum mean discrepancy MMD^2 with
  a multi-bandwidth RBF kernel;
- :func:`frechet_distance`: the Frechet (2-Wasserstein) distance between two Gaussians,
  fed by :func:`gaussian_stats` of feature vectors (FID-style).

Finite samples of the *same* distribution do not give zero: :func:`metric_floor` measures
the value a perfect model would get at a given sample size, the floor to read every score
against.

>>> x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
>>> wasserstein2(x, x + torch.tensor([3.0, 4.0]))
5.0
>>> compute_metrics(x, x, ["w2"])
{'w2': 0.0}
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.linalg
import torch
from scipy.spatial.distance import cdist

from genlab._validate import check_finite, check_tensor, choose

__all__ = [
    "wasserstein2",
    "mmd",
    "frechet_distance",
    "gaussian_stats",
    "SAMPLE_METRICS",
    "compute_metrics",
    "metric_floor",
    "DEFAULT_BANDWIDTH_FACTORS",
]

#: Multiples of the median pairwise distance used as RBF bandwidths when ``bandwidths`` is
#: None: a small, a typical and a large length scale, so that both local and global
#: mismatches are seen.
DEFAULT_BANDWIDTH_FACTORS: tuple[float, ...] = (0.5, 1.0, 2.0)

#: At most this many points of each sample enter the median heuristic (evenly strided
#: subset), which keeps it O(1) in memory for large inputs and deterministic.
_MEDIAN_SUBSAMPLE = 1000


# --------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------


def _as_points(x: Any, name: str, min_points: int = 1) -> np.ndarray:
    """A finite (N, D) float tensor or array -> float64 numpy array; errors name ``x``."""
    if isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise ValueError(f"{name} must hold real numbers, got dtype {x.dtype}")
        x = torch.from_numpy(np.asarray(x, dtype=np.float64))
    check_tensor(x, name)
    if x.dim() != 2:
        raise ValueError(
            f"{name} must have shape (N, D) (one point per row), got {tuple(x.shape)}; "
            "flatten images with x.flatten(1)"
        )
    if x.shape[0] < min_points or x.shape[1] < 1:
        raise ValueError(f"{name} must have at least {min_points} point(s) and D >= 1, got {tuple(x.shape)}")
    if x.is_complex():
        raise ValueError(f"{name} must be real, got dtype {x.dtype}")
    check_finite(x, name)
    return x.detach().to(device="cpu", dtype=torch.float64).numpy()


def _as_pair(x: Any, y: Any, min_points: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Check x (N, D) and y (M, D) and convert both to float64 numpy arrays."""
    xa = _as_points(x, "x", min_points)
    ya = _as_points(y, "y", min_points)
    if xa.shape[1] != ya.shape[1]:
        raise ValueError(f"x and y must have the same dimension D; got x {xa.shape} and y {ya.shape}")
    return xa, ya


# --------------------------------------------------------------------------------------
# 2-Wasserstein
# --------------------------------------------------------------------------------------


def _pot() -> Any:
    """POT, imported where an exact transport problem is solved (a dependency of genlab; a
    machine without it still has every other metric)."""
    try:
        import ot
    except ImportError:
        raise ImportError("the W2 distance needs POT (pip install pot); the other metrics do not") from None
    return ot


def wasserstein2(x: torch.Tensor, y: torch.Tensor, max_points: int = 5000) -> float:
    """Exact 2-Wasserstein distance between the empirical measures of x and y.

    With mu = (1/N) sum_i delta_{x_i}, nu = (1/M) sum_j delta_{y_j} and the squared Euclidean
    cost C_ij = ||x_i - y_j||^2,

        W2(mu, nu) = ( min_{P in U(a, b)} sum_ij P_ij C_ij )^{1/2},
        U(a, b) = {P >= 0 : P 1 = 1/N, P^T 1 = 1/M},

    solved exactly by the network simplex (``ot.emd2``) in float64. The cost matrix is
    built from differences (``scipy.spatial.distance.cdist``), not from the expansion
    ||x||^2 + ||y||^2 - 2 x.y, so W2(x, x) is exactly 0 and a pure shift y = x + c gives
    exactly ||c|| up to rounding.

    Complexity: O(N M D) to build the cost, O(N M) memory (8 N M bytes) and, for the
    network simplex, roughly O(n^3 log n) time in the worst case with n = max(N, M) --
    about 0.1 s for N = M = 1000, 0.7 s for 2000 and 5 s for 5000 on one CPU core.
    ``max_points`` guards against silently running for minutes.

    Args:
        x: (N, D) samples, e.g. from the model. A torch tensor or numpy array.
        y: (M, D) samples, e.g. reference data.
        max_points: largest N or M accepted; raise it explicitly for bigger problems.

    Returns:
        W2 >= 0 as a Python float (same unit as the data, not squared).
    """
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1:
        raise ValueError(f"max_points must be a positive int, got {max_points!r}")
    xa, ya = _as_pair(x, y)
    n, m = xa.shape[0], ya.shape[0]
    if max(n, m) > max_points:
        raise ValueError(
            f"wasserstein2: N = {n}, M = {m} exceed max_points = {max_points}; exact OT costs "
            f"O(N M) memory and roughly cubic time. Subsample the inputs or pass a larger "
            "max_points explicitly."
        )
    cost = cdist(xa, ya, metric="sqeuclidean")  # (N, M)
    a = np.full(n, 1.0 / n)  # (N,)
    b = np.full(m, 1.0 / m)  # (M,)
    value, log = _pot().emd2(a, b, cost, numItermax=max(100_000, 100 * n * m), log=True)
    if log.get("warning"):
        raise RuntimeError(f"wasserstein2: the exact OT solver did not converge: {log['warning']}")
    return math.sqrt(max(float(value), 0.0))


# --------------------------------------------------------------------------------------
# MMD
# --------------------------------------------------------------------------------------


def _median_distance(xa: np.ndarray, ya: np.ndarray) -> float:
    """Median pairwise Euclidean distance of the pooled sample (distinct pairs)."""
    pooled = np.concatenate([_strided(xa, _MEDIAN_SUBSAMPLE), _strided(ya, _MEDIAN_SUBSAMPLE)], axis=0)
    d2 = cdist(pooled, pooled, metric="sqeuclidean")  # (P, P)
    upper = d2[np.triu_indices(pooled.shape[0], k=1)]
    return math.sqrt(float(np.median(upper)))


def _strided(x: np.ndarray, k: int) -> np.ndarray:
    """At most k rows of x, evenly spaced (deterministic)."""
    if x.shape[0] <= k:
        return x
    return x[np.linspace(0, x.shape[0] - 1, k).round().astype(np.int64)]


def _check_bandwidths(bandwidths: Any) -> tuple[float, ...]:
    if isinstance(bandwidths, (str, bytes)) or not isinstance(bandwidths, Sequence):
        raise ValueError(
            f"bandwidths must be None or a non-empty sequence of positive floats, got {bandwidths!r}"
        )
    if len(bandwidths) == 0:
        raise ValueError("bandwidths must not be empty; pass None for the median heuristic")
    out = []
    for h in bandwidths:
        if isinstance(h, bool) or not isinstance(h, (int, float)) or not 0 < h < math.inf:
            raise ValueError(f"every bandwidth must be a finite positive number, got {h!r}")
        out.append(float(h))
    return tuple(out)


def mmd(x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float] | None = None) -> float:
    """Unbiased estimate of the squared maximum mean discrepancy, MMD^2 (not its root).

    With the kernel k(a, b) = (1/L) sum_l exp(-||a - b||^2 / (2 h_l^2)) (an average of L
    RBF kernels, so k(a, a) = 1 and 0 <= k <= 1), the U-statistic is

        MMD_u^2 = 1/(N(N-1)) sum_{i != i'} k(x_i, x_i') + 1/(M(M-1)) sum_{j != j'} k(y_j, y_j')
                  - 2/(N M) sum_{i, j} k(x_i, y_j),

    an unbiased estimator of MMD^2(p, q) = E k(X, X') + E k(Y, Y') - 2 E k(X, Y). Because
    it is unbiased it fluctuates around 0 when p = q and **may be slightly negative**; its
    standard deviation shrinks like 1/n. It is symmetric in (x, y).

    Bandwidths: if None, h = med * (0.5, 1, 2) (``DEFAULT_BANDWIDTH_FACTORS``), where med is
    the median pairwise Euclidean distance of the pooled sample (computed on at most 1000
    evenly strided points of each set). The median heuristic adapts to the data scale but
    depends on both samples; pass fixed ``bandwidths`` to compare scores across models.

    Cost: O((N + M)^2 D) time and O((N + M)^2) memory, in float64.

    Args:
        x: (N, D) samples, N >= 2.
        y: (M, D) samples, M >= 2.
        bandwidths: RBF length scales h_l > 0, or None for the median heuristic.

    Returns:
        MMD_u^2 as a Python float (MMD squared, possibly slightly negative).
    """
    xa, ya = _as_pair(x, y, min_points=2)
    if bandwidths is None:
        med = _median_distance(xa, ya)
        if med == 0.0:  # more than half of the pooled pairs coincide
            med = 1.0
        hs = tuple(med * f for f in DEFAULT_BANDWIDTH_FACTORS)
    else:
        hs = _check_bandwidths(bandwidths)
    n, m = xa.shape[0], ya.shape[0]
    dxx = cdist(xa, xa, metric="sqeuclidean")  # (N, N)
    dyy = cdist(ya, ya, metric="sqeuclidean")  # (M, M)
    dxy = cdist(xa, ya, metric="sqeuclidean")  # (N, M)
    total = 0.0
    for h in hs:
        gamma = 1.0 / (2.0 * h * h)
        kxx = (np.exp(-gamma * dxx).sum() - n) / (n * (n - 1))  # drop the diagonal (k = 1)
        kyy = (np.exp(-gamma * dyy).sum() - m) / (m * (m - 1))
        kxy = np.exp(-gamma * dxy).mean()
        total += kxx + kyy - 2.0 * kxy
    return float(total / len(hs))


# --------------------------------------------------------------------------------------
# Frechet distance between Gaussians
# --------------------------------------------------------------------------------------


def _as_vector(v: Any, name: str) -> np.ndarray:
    if isinstance(v, np.ndarray):
        v = torch.from_numpy(np.asarray(v, dtype=np.float64))
    check_tensor(v, name)
    check_finite(v, name)
    if v.dim() != 1 or v.shape[0] < 1:
        raise ValueError(f"{name} must have shape (F,), got {tuple(v.shape)}")
    return v.detach().to(device="cpu", dtype=torch.float64).numpy()


def _as_covariance(c: Any, name: str, dim: int) -> np.ndarray:
    if isinstance(c, np.ndarray):
        c = torch.from_numpy(np.asarray(c, dtype=np.float64))
    check_tensor(c, name)
    check_finite(c, name)
    if tuple(c.shape) != (dim, dim):
        raise ValueError(f"{name} must have shape (F, F) = ({dim}, {dim}), got {tuple(c.shape)}")
    ca = c.detach().to(device="cpu", dtype=torch.float64).numpy()
    scale = max(float(np.abs(ca).max()), 1e-300)
    if float(np.abs(ca - ca.T).max()) > 1e-6 * scale:
        raise ValueError(f"{name} must be a symmetric covariance matrix")
    if float(np.linalg.eigvalsh(0.5 * (ca + ca.T)).min()) < -1e-6 * scale:
        raise ValueError(f"{name} must be positive semi-definite (it has a negative eigenvalue)")
    return ca


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """Frechet distance (squared 2-Wasserstein) between N(mu1, C1) and N(mu2, C2).

        FD = ||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1 C2)^{1/2}),

    the quantity behind FID. Note that, unlike :func:`wasserstein2`, it is *squared*.
    (C1 C2)^{1/2} comes from ``scipy.linalg.sqrtm`` in float64. If C1 C2 is (nearly)
    singular and sqrtm fails, eps I (eps = 1e-6 relative to the scale) is added to both
    covariances, as in the reference FID code (a singular-matrix warning from
    sqrtm counts as a failure). Rounding leaves tiny imaginary parts, which
    are discarded after checking they are below 1e-3 relative to the real part; larger ones
    raise a ValueError. The result is clamped at 0.

    Args:
        mu1, mu2: (F,) means.
        cov1, cov2: (F, F) symmetric positive semi-definite covariances.

    Returns:
        FD >= 0 as a Python float.
    """
    m1 = _as_vector(mu1, "mu1")
    m2 = _as_vector(mu2, "mu2")
    if m1.shape != m2.shape:
        raise ValueError(f"mu1 and mu2 must have the same shape; got {m1.shape} and {m2.shape}")
    f = m1.shape[0]
    c1 = _as_covariance(cov1, "cov1", f)
    c2 = _as_covariance(cov2, "cov2", f)

    covmean = _sqrtm(c1 @ c2)
    if covmean is None:
        eps = 1e-6 * max(float(np.trace(c1) + np.trace(c2)) / f, 1e-12)
        offset = eps * np.eye(f)
        covmean = _sqrtm((c1 + offset) @ (c2 + offset))
        if covmean is None:
            raise ValueError(
                "frechet_distance: sqrtm(cov1 @ cov2) failed even after adding "
                f"{eps:.3g} I to both covariances; they are too ill-conditioned"
            )
    if np.iscomplexobj(covmean):
        imag = float(np.abs(covmean.imag).max())
        real_scale = max(float(np.abs(covmean.real).max()), 1e-12)
        if imag > 1e-3 * real_scale:
            raise ValueError(
                f"frechet_distance: sqrtm(cov1 @ cov2) has imaginary part {imag:.3g} "
                f"(real part scale {real_scale:.3g}); the covariances are ill-conditioned"
            )
        covmean = covmean.real
    diff = m1 - m2
    value = float(diff @ diff + np.trace(c1) + np.trace(c2) - 2.0 * np.trace(covmean))
    return max(value, 0.0)


def _sqrtm(a: np.ndarray) -> np.ndarray | None:
    """Principal matrix square root, or None if scipy fails, warns (singular) or gives NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", scipy.linalg.LinAlgWarning)
        try:
            out = np.asarray(scipy.linalg.sqrtm(a))
        except (np.linalg.LinAlgError, ValueError, scipy.linalg.LinAlgWarning):
            return None
    return out if np.isfinite(out).all() else None


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance of features, in float64.

        mu = (1/N) sum_i f_i,   C = 1/(N-1) sum_i (f_i - mu)(f_i - mu)^T

    Args:
        features: (N, F) feature vectors, N >= 2.

    Returns:
        (mu (F,), cov (F, F)) as float64 CPU tensors.
    """
    fa = _as_points(features, "features", min_points=2)
    mu = fa.mean(axis=0)  # (F,)
    centred = fa - mu  # (N, F)
    cov = centred.T @ centred / (fa.shape[0] - 1)  # (F, F)
    return torch.from_numpy(mu), torch.from_numpy(cov)


# --------------------------------------------------------------------------------------
# registry and floors
# --------------------------------------------------------------------------------------

#: Sample-to-sample metrics by name; each maps (x (N, D), y (M, D)) -> float.
SAMPLE_METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor], float]] = {
    "w2": wasserstein2,
    "mmd": mmd,
}


def _check_names(names: Any) -> list[str]:
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, Sequence) or len(names) == 0:
        valid = ", ".join(sorted(SAMPLE_METRICS))
        raise ValueError(f"names must be a non-empty sequence of metric names ({valid})")
    for name in names:
        choose("metric", name, SAMPLE_METRICS)
    return list(names)


def _flatten(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.asarray(x, dtype=np.float64))
    check_tensor(x, name)
    if x.dim() < 2:
        raise ValueError(f"{name} must be batch first with shape (N, *D), got {tuple(x.shape)}")
    return x.flatten(1)


def compute_metrics(samples: torch.Tensor, reference: torch.Tensor, names: Sequence[str]) -> dict[str, float]:
    """Evaluate the named metrics of :data:`SAMPLE_METRICS` between two sample sets.

    Inputs are batch first; anything beyond the batch axis is flattened, so images
    (N, C, H, W) are compared as vectors of dimension C H W. ``"mmd"`` is MMD^2 (see
    :func:`mmd`), ``"w2"`` is W2 itself (not squared).

    Args:
        samples: (N, *D) model samples.
        reference: (M, *D) reference data.
        names: metric names such as ("w2", "mmd"); a single string is one name.

    Returns:
        {name: value} in the order of ``names``.

    >>> x = torch.zeros(3, 2)
    >>> compute_metrics(x, x, "w2")
    {'w2': 0.0}
    """
    chosen = _check_names(names)
    x = _flatten(samples, "samples")
    y = _flatten(reference, "reference")
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"samples and reference must have the same event size; got "
            f"{tuple(samples.shape)} and {tuple(reference.shape)}"
        )
    return {name: float(SAMPLE_METRICS[name](x, y)) for name in chosen}


def metric_floor(
    sampler: Callable[[int, torch.Generator], torch.Tensor],
    n: int,
    names: Sequence[str],
    generator: torch.Generator,
) -> dict[str, float]:
    """The metrics between two independent size-n samples of the *true* distribution.

    A perfect model evaluated with n samples against n reference points scores about this
    much, because empirical measures of the same law differ (W2 between two n-samples
    decays like n^{-1/D} in D >= 3 dimensions, roughly sqrt(log n / n) in 2-D). Report a
    model's score next to its floor.

    Args:
        sampler: ``sampler(n, generator) -> (n, *D)``, e.g. ``make_toy("moons").sample``.
        n: sample size of each of the two draws.
        names: metric names from :data:`SAMPLE_METRICS`.
        generator: the torch.Generator both draws use (consumed in order).

    Returns:
        {name: value} between the two draws.

    >>> g = torch.Generator().manual_seed(0)
    >>> floor = metric_floor(lambda n, g: torch.randn(n, 2, generator=g), 100, ["w2"], g)
    >>> 0.0 < floor["w2"] < 1.0
    True
    """
    if not callable(sampler):
        raise ValueError(f"sampler must be callable as sampler(n, generator), got {sampler!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    if not isinstance(generator, torch.Generator):
        raise ValueError(
            f"generator must be a torch.Generator, got {type(generator).__name__}; "
            "create one with torch.Generator().manual_seed(seed)"
        )
    chosen = _check_names(names)
    first = sampler(n, generator)
    second = sampler(n, generator)
    return compute_metrics(first, second, chosen)
