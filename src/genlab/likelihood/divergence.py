"""Divergence of a vector field, exactly or by Hutchinson's estimator.

For v = f(x, t) with x of shape (B, *D) and samples independent across the batch,

    div f(x) = sum_i d f_i / d x_i = tr J(x).

* :func:`divergence_exact` forms J with ``torch.func.jacrev`` of the batch-summed field
  (one forward, D vector-Jacobian products vectorised by vmap; memory O(B D^2)), or, for
  D <= LOOP_MAX_DIM or when B D^2 would exceed ``max_jacobian_elements``, loops over the D
  coordinates with one backward each (memory O(B D), no growth with D beyond activations).
* :func:`divergence_hutchinson` uses E[eps^T J eps] = tr J for probes with E[eps eps^T] = I
  (Rademacher or Gaussian); with K probes the estimate is their mean. With S = (J + J^T) / 2
  the variance of one probe is 2 sum_{i != j} S_ij^2 (Rademacher) and 2 ||S||_F^2 (Gaussian).

Both accept ``create_graph=True`` so that a loss through them can be back-propagated (CNF
training); otherwise the result is detached.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from genlab._validate import choose

Field = Callable[[torch.Tensor], torch.Tensor]

#: above this many Jacobian entries (B * D * D) the exact divergence loops over coordinates
MAX_JACOBIAN_ELEMENTS = 2**25
#: up to this dimension a plain loop of D backward passes beats vmap's batching overhead
LOOP_MAX_DIM = 8
#: the vmapped backward of the exact divergence processes at most this many sample-rows at
#: once (cotangents x batch), bounding its memory like a backward pass of that batch size
MAX_VMAP_ROWS = 4096


def divergence_exact(
    f: Field, x: torch.Tensor, create_graph: bool = False, max_jacobian_elements: int = MAX_JACOBIAN_ELEMENTS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact (f(x), div f(x)) for x (B, *D); returns shapes (B, *D) and (B,)."""
    shape = x.shape
    b, d = shape[0], x[0].numel()
    with torch.enable_grad():
        # when training through the divergence, keep x's graph (it depends on earlier steps)
        keep = create_graph and x.requires_grad
        xf = x.reshape(b, d) if keep else x.detach().reshape(b, d).requires_grad_(True)

        def g(z: torch.Tensor) -> torch.Tensor:
            return f(z.reshape(shape)).reshape(b, d)

        if LOOP_MAX_DIM < d and b * d * d <= max_jacobian_elements and not create_graph:

            def summed(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                out = g(z)
                return out.sum(0), out  # (D,) to differentiate, (B, D) returned as aux

            # one forward, D vector-Jacobian products batched by vmap
            # vmap runs at most MAX_VMAP_ROWS (cotangent x sample) rows of the backward at once
            chunk = max(1, MAX_VMAP_ROWS // b)
            jac, v = torch.func.jacrev(summed, has_aux=True, chunk_size=chunk)(xf)  # (D, B, D)
            div = jac.diagonal(dim1=0, dim2=2).sum(-1)  # (B,)
            return v.detach().reshape(shape), div.detach()
        v = g(xf)
        div = torch.zeros(b, dtype=x.dtype, device=x.device)
        for i in range(d):
            (gi,) = torch.autograd.grad(v[:, i].sum(), xf, create_graph=create_graph, retain_graph=True)
            div = div + gi[:, i]
    if create_graph:
        return v.reshape(shape), div
    return v.detach().reshape(shape), div.detach()


def make_probes(
    shape: tuple[int, ...] | torch.Size,
    n_probes: int,
    kind: str = "rademacher",
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """K probes with E[eps eps^T] = I: shape (K, B, *D), drawn on the generator's device and
    moved to ``device``."""
    if not isinstance(n_probes, int) or n_probes < 1:
        raise ValueError(f"n_probes must be a positive integer, got {n_probes!r}")
    draw = choose("probe", kind, PROBES)
    out = draw((n_probes, *shape), generator, dtype)
    return out if device is None else out.to(device)


def _rademacher(shape: tuple[int, ...], gen: torch.Generator | None, dtype: torch.dtype) -> torch.Tensor:
    device = gen.device if gen is not None else None
    return torch.randint(0, 2, shape, generator=gen, device=device).to(dtype) * 2 - 1


def _gaussian(shape: tuple[int, ...], gen: torch.Generator | None, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(shape, generator=gen, dtype=dtype, device=gen.device if gen is not None else None)


PROBES = {"rademacher": _rademacher, "gaussian": _gaussian}


def divergence_hutchinson(
    f: Field, x: torch.Tensor, probes: torch.Tensor, create_graph: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(f(x), mean_k eps_k^T J eps_k) with probes (K, B, *D); one vector-Jacobian product each."""
    if probes.shape[1:] != x.shape:
        raise ValueError(
            f"probes must have shape (K, {', '.join(map(str, x.shape))}), got {tuple(probes.shape)}"
        )
    with torch.enable_grad():
        xg = x if (create_graph and x.requires_grad) else x.detach().requires_grad_(True)
        v = f(xg)
        est = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for k in range(probes.shape[0]):
            (vjp,) = torch.autograd.grad(v, xg, probes[k], create_graph=create_graph, retain_graph=True)
            est = est + (vjp * probes[k]).flatten(1).sum(1)
        est = est / probes.shape[0]
    if create_graph:
        return v, est
    return v.detach(), est.detach()
