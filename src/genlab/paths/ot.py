"""Minibatch optimal transport: exact and entropic plans, and the couplings built on them.

OT-CFM (Tong et al. 2023; Pooladian et al. 2023) re-pairs each training batch by the optimal
transport plan between the source samples {x_0^i} and the data {x_1^j} for the squared
Euclidean cost C_ij = ||x_0^i - x_1^j||^2:

    pi* = argmin_{pi in Pi(a, b)} sum_ij pi_ij C_ij,     Pi(a, b) = {pi >= 0, pi 1 = a, pi^T 1 = b}.

For two batches of equal size with uniform weights a = b = 1/n, the vertices of Pi are the
permutation matrices / n (Birkhoff), so an optimal plan is a permutation: the linear
assignment problem, solved exactly by :func:`assignment` (POT's network simplex, with
scipy's shortest augmenting path as the alternative and fallback). Unequal sizes or
weights use POT's plan (``ot_plan(..., "emd")``), and the entropic plan

    pi_eps = argmin_pi <pi, C> - eps H(pi)

(Sinkhorn's scalings; log domain when the kernel exp(-C / eps) underflows) gives the
Schrodinger-bridge coupling with eps = 2 sigma^2.

Plans that are not permutations are turned into pairs by drawing, for every data point x_1^j,
a source index i ~ pi_ij / b_j: each x_1 (and its label) is used exactly once, so the data
marginal of a batch is unchanged by the coupling.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from genlab._validate import check_positive, check_same_shape, check_tensor
from genlab.paths.couplings import CoupledBatch, Coupling, Source

OT_METHODS = ("exact", "emd", "sinkhorn")
#: Sinkhorn iteration cap and stopping tolerance (L1 error of the row marginal; the column
#: marginal is exact after each iteration)
SINKHORN_MAX_ITER = 10_000
SINKHORN_TOL = 1e-7


def squared_distances(x0: torch.Tensor, x1: torch.Tensor) -> np.ndarray:
    """C_ij = ||x0_i - x1_j||^2 in float64, (N, *D) x (M, *D) -> (N, M) numpy array."""
    a = x0.detach().flatten(1).to("cpu", torch.float64).numpy()
    b = x1.detach().flatten(1).to("cpu", torch.float64).numpy()
    cost = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(cost, 0.0)


def assignment(cost: np.ndarray | torch.Tensor, solver: str = "simplex") -> np.ndarray:
    """The optimal permutation of a square cost matrix: ``perm[j]`` is the row paired with
    column j, minimising sum_j cost[perm[j], j] (the exact OT plan of two uniform batches).

    ``simplex`` (default) runs POT's network simplex on the uniform transport problem and
    reads the permutation off its vertex solution (a basic solution of the assignment
    polytope is a permutation matrix / n); 2-9x faster than ``lsa`` (scipy's shortest
    augmenting path) on low-dimensional batches here (256 points in 2D: 3.6 vs 7.6 ms; 2048:
    0.43 vs 3.7 s), equal at 64 dimensions. A plan that is not a permutation (never seen)
    falls back to ``lsa``.
    """
    c = cost.detach().cpu().numpy() if isinstance(cost, torch.Tensor) else np.asarray(cost)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"assignment needs a square (n, n) cost matrix, got shape {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError("assignment: the cost matrix contains non-finite values")
    if solver not in ("simplex", "lsa"):
        raise ValueError(f"unknown assignment solver {solver!r}; valid: simplex, lsa")
    n = c.shape[0]
    if solver == "simplex":
        import ot

        uniform = np.full(n, 1.0 / n)
        plan, log = ot.emd(
            uniform, uniform, np.ascontiguousarray(c, dtype=np.float64), numItermax=10**7, log=True
        )
        perm = plan.argmax(0)
        if not log.get("warning") and np.allclose(plan[perm, np.arange(n)], 1.0 / n):
            return perm
    rows, cols = linear_sum_assignment(c)
    perm = np.empty_like(rows)
    perm[cols] = rows
    return perm


def ot_plan(
    cost: np.ndarray,
    method: str = "emd",
    reg: float = 0.05,
    a: np.ndarray | None = None,
    b: np.ndarray | None = None,
    max_iter: int = 1_000_000,
) -> np.ndarray:
    """The optimal transport plan (N, M) for ``cost`` between weights a (N,) and b (M,)
    (uniform by default): ``emd`` exact (network simplex), ``sinkhorn`` entropic with
    regularisation ``reg`` (in the cost's units; log-domain iterations)."""
    import ot  # POT: imported here, only the plan solvers need it

    n, m = cost.shape
    a = np.full(n, 1.0 / n) if a is None else np.asarray(a, dtype=np.float64)
    b = np.full(m, 1.0 / m) if b is None else np.asarray(b, dtype=np.float64)
    if a.shape != (n,) or b.shape != (m,):
        raise ValueError(f"weights must have shapes ({n},) and ({m},), got {a.shape} and {b.shape}")
    if abs(a.sum() - b.sum()) > 1e-8 * max(a.sum(), 1.0):
        raise ValueError(f"weights must have equal mass, got {a.sum():.6g} and {b.sum():.6g}")
    if method == "emd":
        plan, log = ot.emd(a, b, cost, numItermax=max_iter, log=True)
        if log.get("warning"):
            raise RuntimeError(f"ot_plan: the exact solver stopped early: {log['warning']}")
        return plan
    if method == "sinkhorn":
        check_positive(reg, "reg")
        iters = min(max_iter, SINKHORN_MAX_ITER)
        plan = sinkhorn(cost, reg, a, b, iters)
        if plan is None:  # the kernel underflowed: POT's (slower) log-domain iterations
            plan = ot.sinkhorn(a, b, cost, reg, method="sinkhorn_log", numItermax=iters, stopThr=SINKHORN_TOL)
        return plan
    raise ValueError(f"unknown OT method {method!r}; valid: emd, sinkhorn (exact: use assignment)")


def sinkhorn(
    cost: np.ndarray, reg: float, a: np.ndarray, b: np.ndarray, max_iter: int = SINKHORN_MAX_ITER
) -> np.ndarray | None:
    """The entropic plan diag(u) K diag(v), K = exp(-(C - min C) / reg), by Sinkhorn's
    alternating scalings u = a / (K v), v = b / (K^T u) until ||u * (K v) - a||_1 < SINKHORN_TOL.

    Matrix-vector products in float64, 20-40x faster than log-domain iterations; returns None
    when the kernel underflows (a row or column of K is all zero: reg too small for the
    cost's range), so the caller can fall back to the log domain.
    """
    kernel = np.exp(-(cost - cost.min()) / reg)
    if not (kernel.sum(1) > 0).all() or not (kernel.sum(0) > 0).all():
        return None
    v = np.ones(cost.shape[1])
    for it in range(max_iter):
        u = a / (kernel @ v)
        v = b / (kernel.T @ u)
        if it % 10 == 0 and np.abs(u * (kernel @ v) - a).sum() < SINKHORN_TOL:
            break
    if not (np.isfinite(u).all() and np.isfinite(v).all()):
        return None
    return u[:, None] * kernel * v[None, :]


def pairs_from_plan(plan: np.ndarray, generator: torch.Generator | None = None) -> np.ndarray:
    """For every column j draw a row i ~ plan[:, j] / sum_i plan[i, j]; returns (M,) indices.

    Inverse-CDF sampling of all columns at once (a batched binary search in the columns'
    cumulative sums): ~3x faster than ``torch.multinomial`` on a dense 2048 x 2048 plan.
    """
    p = torch.as_tensor(np.asarray(plan, dtype=np.float64)).clamp_min(0.0)
    cdf = torch.cumsum(p.T.contiguous(), dim=1)  # (M, N): column j's cumulative masses
    total = cdf[:, -1:]
    if bool((total <= 0).any()):
        raise ValueError("pairs_from_plan: a column of the plan has no mass")
    device = generator.device if generator is not None else None  # a CUDA generator draws on CUDA
    u = torch.rand(p.shape[1], 1, generator=generator, dtype=torch.float64, device=device).cpu() * total
    idx = torch.searchsorted(cdf, u, right=True).squeeze(1)  # first i with cdf_i > u
    # u rounding up to the column's total would select past the end: take its last row with mass
    last = p.shape[0] - 1 - torch.argmax((p.T.flip(1) > 0).to(torch.int8), dim=1)
    return torch.minimum(idx, last).numpy()


class OTCoupling(Coupling):
    """Minibatch optimal-transport coupling: fresh source samples re-paired with the data.

    Args:
        source: where x_0 comes from (default N(0, I)).
        method: ``exact`` (the optimal permutation, the default), ``emd`` (POT's plan with
            pairs drawn from its columns: the same plan, kept for comparison) or
            ``sinkhorn`` (entropic plan with ``reg``).
        reg: entropic regularisation for ``sinkhorn``, in units of the squared distance.
        label_aware: pair only within a class (needs labels y): for conditional models.
        block: solve the plan within consecutive blocks of this many points (the batch is
            already in random order), e.g. 256 inside a batch of 4096: the coupling of
            OT-CFM at batch ``block`` for a fraction of the cost (an exact assignment grows
            roughly cubically with the batch: 6 ms at 256, 2.6 s at 2048 on 2D data here).

    The data x_1 and labels y keep their order; only the source samples are permuted
    (exact) or drawn from the plan's columns (sinkhorn).

    >>> torch.manual_seed(0) and None
    >>> c = OTCoupling()
    >>> x1 = torch.randn(64, 2) + 3.0
    >>> ot_pairs = c(x1, torch.Generator().manual_seed(0))
    >>> ind = torch.randn(64, 2)
    >>> bool(((ot_pairs.x0 - x1) ** 2).sum(1).mean() < ((ind - x1) ** 2).sum(1).mean())
    True
    """

    def __init__(
        self,
        source: Source | None = None,
        method: str = "exact",
        reg: float = 0.05,
        label_aware: bool = False,
        block: int | None = None,
    ) -> None:
        super().__init__(source)
        if method not in OT_METHODS:
            raise ValueError(f"unknown OT method {method!r}; valid methods: {', '.join(OT_METHODS)}")
        if block is not None and (isinstance(block, bool) or not isinstance(block, int) or block < 2):
            raise ValueError(f"block must be an integer >= 2 (points per OT problem) or None, got {block!r}")
        self.method, self.reg, self.label_aware = method, check_positive(reg, "reg"), bool(label_aware)
        self.block = block

    def __repr__(self) -> str:
        name = type(self).__name__
        extra = f", block={self.block}" if self.block else ""
        return f"{name}(method={self.method!r}, reg={self.reg:.3g}, label_aware={self.label_aware}{extra})"

    def source_indices(
        self, x0: torch.Tensor, x1: torch.Tensor, generator: torch.Generator | None
    ) -> np.ndarray:
        """Index into x0 of the source paired with each x1 (exact: a permutation)."""
        cost = squared_distances(x0, x1)
        if self.method == "exact":
            return assignment(cost)
        if self.method == "emd":  # a permutation plan gives back its permutation
            return pairs_from_plan(ot_plan(cost, "emd"), generator)
        return pairs_from_plan(ot_plan(cost, "sinkhorn", self.reg), generator)

    def pair(
        self, x1: torch.Tensor, generator: torch.Generator | None, y: torch.Tensor | None
    ) -> CoupledBatch:
        x0 = self.source.sample(x1.shape, generator, x1.dtype, x1.device)
        n = x1.shape[0]
        if not self.label_aware and (self.block is None or self.block >= n):
            idx = self.source_indices(x0, x1, generator)
            return CoupledBatch(x0=x0[torch.as_tensor(idx, device=x0.device)], x1=x1, y=y)
        groups = np.arange(n) // self.block if self.block else np.zeros(n, dtype=np.int64)
        if self.label_aware:
            if y is None:
                raise ValueError("label_aware OT pairs within classes and needs labels y with the batch")
            labels = y.detach().cpu().numpy().astype(np.int64)
            groups = groups * (int(labels.max()) + 2) + labels + 1  # one group per (block, class)
        idx = np.empty(n, dtype=np.int64)
        for g in np.unique(groups):
            members = np.flatnonzero(groups == g)
            sel = torch.as_tensor(members, device=x0.device)
            idx[members] = members[self.source_indices(x0[sel], x1[sel], generator)]
        return CoupledBatch(x0=x0[torch.as_tensor(idx, device=x0.device)], x1=x1, y=y)


class SchrodingerBridgeCoupling(OTCoupling):
    """The entropic OT coupling of SB-CFM: Sinkhorn plan with eps = 2 sigma^2 (Tong et al.
    2023), used with :class:`~genlab.paths.bridge.BridgePath` of the same ``sigma``."""

    def __init__(self, sigma: float = 0.5, source: Source | None = None, label_aware: bool = False) -> None:
        self.sigma = check_positive(sigma, "sigma")
        super().__init__(source, "sinkhorn", 2.0 * self.sigma**2, label_aware)


def transport_cost(x0: torch.Tensor, x1: torch.Tensor) -> float:
    """Mean squared distance of paired rows, (1/B) sum_i ||x0_i - x1_i||^2."""
    check_tensor(x0, "x0")
    check_tensor(x1, "x1")
    check_same_shape(x0, x1, "x0", "x1")
    return float(((x0 - x1) ** 2).flatten(1).sum(1).mean())


__all__ = [
    "OT_METHODS",
    "OTCoupling",
    "SchrodingerBridgeCoupling",
    "assignment",
    "ot_plan",
    "pairs_from_plan",
    "squared_distances",
    "transport_cost",
]
