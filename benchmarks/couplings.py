"""Couplings for flow matching: what minibatch OT costs per step, and what it buys in NFE.

Part 1 (``--part cost``): wall time of one training step with each coupling
---------------------------------------------------------------------------
Every library trains the *same module class*, a genlab ``TimeMLP`` (4 x 256, SiLU), built from
the same seed, with Adam (lr 1e-3) on moons. One step is the same work everywhere:

    x_1 = data batch (B, 2) -> x_0 ~ N(0, I) (B, 2) -> couple (x_0, x_1) -> t, x_t, target
        -> loss = mean ||net(x_t, t) - target||^2 -> zero_grad -> backward -> Adam.step

- genlab: ``FlowMatching(net, (2,), path, coupling).loss(x_1, generator)`` with
  ``IndependentCoupling`` (I-CFM), ``OTCoupling("exact")`` (``genlab.paths.ot.assignment``),
  ``OTCoupling("emd")`` (POT's network simplex, then one source drawn per data point),
  ``OTCoupling("exact", block=256)`` at batches above 256 (exact plans within blocks) and
  SB-CFM: ``BridgePath(0.5)`` + ``SchrodingerBridgeCoupling(0.5)`` (Sinkhorn, eps = 2 sigma^2 = 0.5);
- TorchCFM: ``x_0 = randn``, ``sample_location_and_conditional_flow(x_0, x_1)`` of
  ``ConditionalFlowMatcher(sigma=0)``, ``ExactOptimalTransportConditionalFlowMatcher(sigma=0)``
  and ``SchrodingerBridgeConditionalFlowMatcher(sigma=0.5)`` (its default ``ot_method="exact"``,
  and ``ot_method="sinkhorn"``, eps = 0.5, the like-for-like row for genlab's SB-CFM).

The step time is the median over up to ``--timed`` steps after up to ``--warmup`` warm-up
steps; a configuration whose steps are slow stops after ``--budget`` seconds (at least 5
timed steps, 2 warm-up steps): the counts are in the table. Separately, the plan solvers alone
(cost matrix + solve) are timed on fresh (x_0, x_1) batches, with the mean squared distance of
the pairs each coupling produces, and the fraction of distinct x_0 / x_1 rows in the coupled
batch (TorchCFM draws B pairs from the plan *with replacement*).

Part 2 (``--part nfe``): sample quality against the number of function evaluations
---------------------------------------------------------------------------------
N(0, I) -> moons with the same network, Adam 1e-3, batch 256 and the same number of steps for
I-CFM, OT-CFM (exact), SB-CFM (``BridgePath(sigma)`` + ``SchrodingerBridgeCoupling(sigma)``,
sigma = 0.2 by default, see below) and reflow (20000 pairs from the trained I-CFM with RK4, 100 steps,
then a copy of the I-CFM trained on them for the same number of steps). Each model is sampled
with Euler at NFE 1, 2, 4, 8, 16, 100 and RK4 (100 steps, NFE 400) from one fixed x_0; W2 is
against fresh data, the floor is W2 between two data draws. Straightness and normalised path
energy come from RK4 100-step trajectories.

SB-CFM's sigma: small, so that the bridge noise (std sigma sqrt(t (1 - t)) <= sigma / 2 = 0.1,
the moons' own noise level) and the entropic blur of the plan (eps = 2 sigma^2 = 0.08, against a
mean exact-OT pair cost of about 0.9) stay small and the marginal paths stay close to OT-CFM's
straight ones, while the coupling is still genuinely entropic. sigma = 0.1 would be smaller
still, but Sinkhorn's iteration count grows like 1 / eps: on this machine genlab's Sinkhorn at
eps = 0.02 averaged ~150 ms per 256-batch (heavy tail up to seconds) against ~15 ms at 0.08,
i.e. ~16 min instead of ~2 min for 6000 steps. The solver table of part 1 times both.

Every BLAS / OpenMP pool (torch, numpy, scipy, POT) runs on one thread for every library
(``torch.set_num_threads(1)``, ``OMP/OPENBLAS/MKL_NUM_THREADS=1`` set before numpy loads):
the machines are 2-core and shared, and one thread degrades gracefully under load.

Run ``python benchmarks/couplings.py --help``; see benchmarks/README.md.
"""

from __future__ import annotations

import os

# before numpy / scipy / torch load their thread pools: one thread for every library alike (only
# when run: results_md.py imports render() from here and keeps its own process's threads)
if __name__ == "__main__":
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _env import machine  # noqa: E402
from _render import (  # noqa: E402
    NR,
    command,
    details,
    facts,
    flags,
    full_tables,
    num,
    out_flag,
    pm,
    table,
    write,
)
from _render import environment as recorded_environment  # noqa: E402

from genlab.data import make_toy  # noqa: E402
from genlab.metrics import normalized_path_energy, straightness, wasserstein2  # noqa: E402
from genlab.models import FlowMatching  # noqa: E402
from genlab.networks import MLPConfig, TimeMLP  # noqa: E402
from genlab.paths import (  # noqa: E402
    BridgePath,
    IndependentCoupling,
    OTCoupling,
    ReflowPairs,
    SchrodingerBridgeCoupling,
)
from genlab.paths.ot import assignment, ot_plan, pairs_from_plan, squared_distances  # noqa: E402
from genlab.samplers import generate_pairs  # noqa: E402

NET_CONFIG = MLPConfig(dim=2, width=256, depth=4, activation="silu")
DATASET = "moons"
COST_BATCHES = (256, 2048)
COST_SB_SIGMA = 0.5  # part 1: SB-CFM sigma, Sinkhorn eps = 2 sigma^2 = 0.5
COST_BLOCK = 256  # part 1: OTCoupling(block=...) row at batches above it
EULER_NFES = (1, 2, 4, 8, 16, 100)
REFERENCE_STEPS = 100  # RK4 steps of the reference sampler (NFE 4 x steps)
TRAJ_STEPS = 100  # RK4 steps of the trajectories for straightness / NPE
MIN_WARMUP, MIN_TIMED, MIN_SOLVER_REPS = 2, 5, 3
AIMS = {256: 1.1, 2048: 1.3}  # issue aim: OT step / I-CFM step at these batch sizes
TORCHCFM_CLAIM = 1.9  # the figure for TorchCFM's exact OT-CFM at batch 256

DEFAULTS: dict[str, Any] = {
    "steps": 6000,
    "batch": 256,
    "lr": 1e-3,
    "n_eval": 2000,
    "n_traj": 1000,
    "reflow_pairs": 20000,
    "pair_steps": 100,
    "warmup": 20,
    "timed": 200,
    "budget": 25.0,
    "solver_reps": 20,
    "cost_batches": list(COST_BATCHES),
    "sb_sigma": 0.2,
}
QUICK: dict[str, Any] = {
    "steps": 150,
    "n_eval": 500,
    "n_traj": 300,
    "reflow_pairs": 2000,
    "pair_steps": 20,
    "warmup": 3,
    "timed": 15,
    "budget": 2.0,
    "solver_reps": 3,
    "cost_batches": [256],
}
#: assignment's solvers, if it has a ``solver`` argument (its default first), else ()
_ASSIGNMENT_PARAM = inspect.signature(assignment).parameters.get("solver")
ASSIGNMENT_DEFAULT = (
    _ASSIGNMENT_PARAM.default if _ASSIGNMENT_PARAM is not None else "scipy linear_sum_assignment"
)
ASSIGNMENT_SOLVERS = (ASSIGNMENT_DEFAULT, "lsa", "simplex") if _ASSIGNMENT_PARAM is not None else ()
ASSIGNMENT_SOLVERS = tuple(dict.fromkeys(ASSIGNMENT_SOLVERS))
VERSIONED = ("torch", "numpy", "scipy", "POT", "torchcfm", "torchdiffeq", "genlab")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build_net(seed: int) -> TimeMLP:
    """The network every library and coupling trains, initialised from ``seed``."""
    torch.manual_seed(seed)
    return TimeMLP(NET_CONFIG)


def environment(threads: int) -> dict[str, Any]:
    return machine(threads, VERSIONED)


def quantiles_ms(times: list[float]) -> dict[str, float]:
    a = np.asarray(times) * 1e3
    return {
        "median_ms": float(np.median(a)),
        "mean_ms": float(a.mean()),
        "p10_ms": float(np.percentile(a, 10)),
        "p90_ms": float(np.percentile(a, 90)),
    }


# --------------------------------------------------------------------------------------
# part 1: training-step cost
# --------------------------------------------------------------------------------------

StepFn = Callable[[], float]


def adam_step(net: torch.nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def genlab_step(kind: str, batch: int, seed: int, lr: float) -> StepFn:
    """One genlab training step with coupling ``kind``: independent | exact | emd | sb."""
    net = build_net(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    data, g_data, g_noise = make_toy(DATASET), generator(seed + 1), generator(seed + 2)
    if kind == "independent":
        model = FlowMatching(net, (2,), coupling=IndependentCoupling())
    elif kind in ("exact", "emd"):
        model = FlowMatching(net, (2,), coupling=OTCoupling(method=kind))
    elif kind == "exact-block":
        model = FlowMatching(net, (2,), coupling=OTCoupling(method="exact", block=COST_BLOCK))
    elif kind == "sb":
        model = FlowMatching(
            net, (2,), path=BridgePath(COST_SB_SIGMA), coupling=SchrodingerBridgeCoupling(COST_SB_SIGMA)
        )
    else:
        raise ValueError(kind)

    def step() -> float:
        x1 = data.sample(batch, g_data)  # (B, 2)
        return adam_step(net, opt, model.loss(x1, g_noise)["loss"])

    return step


def torchcfm_step(kind: str, batch: int, seed: int, lr: float) -> StepFn:
    """One TorchCFM step (its README loop): independent | exact | sb (ot_method exact) | sb-sinkhorn."""
    from torchcfm.conditional_flow_matching import (
        ConditionalFlowMatcher,
        ExactOptimalTransportConditionalFlowMatcher,
        SchrodingerBridgeConditionalFlowMatcher,
    )

    net = build_net(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    data, g_data, g_noise = make_toy(DATASET), generator(seed + 1), generator(seed + 2)
    matcher = {
        "independent": lambda: ConditionalFlowMatcher(sigma=0.0),
        "exact": lambda: ExactOptimalTransportConditionalFlowMatcher(sigma=0.0),
        "sb": lambda: SchrodingerBridgeConditionalFlowMatcher(sigma=COST_SB_SIGMA),
        "sb-sinkhorn": lambda: SchrodingerBridgeConditionalFlowMatcher(
            sigma=COST_SB_SIGMA, ot_method="sinkhorn"
        ),
    }[kind]()
    torch.manual_seed(seed + 2)  # t and the bridge noise come from the global RNGs
    np.random.seed(seed + 2)  # the pairs drawn from the plan (np.random.choice)

    def step() -> float:
        x1 = data.sample(batch, g_data)  # (B, 2)
        x0 = torch.randn(x1.shape, generator=g_noise)  # (B, 2)
        t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
        return adam_step(net, opt, torch.mean((net(xt, t) - ut) ** 2))

    return step


#: (library, coupling id, label, builder)
COST_CONFIGS: list[tuple[str, str, str, Callable[[str, int, int, float], StepFn]]] = [
    ("genlab", "independent", "I-CFM (IndependentCoupling)", genlab_step),
    ("genlab", "exact", "OT-CFM exact (OTCoupling exact: assignment)", genlab_step),
    ("genlab", "emd", "OT-CFM emd (OTCoupling emd: POT network simplex)", genlab_step),
    (
        "genlab",
        "exact-block",
        f"OT-CFM exact in blocks of {COST_BLOCK} (OTCoupling block={COST_BLOCK})",
        genlab_step,
    ),
    ("genlab", "sb", f"SB-CFM sigma={COST_SB_SIGMA} (Sinkhorn eps={2 * COST_SB_SIGMA**2:g})", genlab_step),
    ("torchcfm", "independent", "I-CFM (ConditionalFlowMatcher)", torchcfm_step),
    ("torchcfm", "exact", "OT-CFM exact (ExactOptimalTransportCFM: ot.emd)", torchcfm_step),
    ("torchcfm", "sb", f"SB-CFM sigma={COST_SB_SIGMA}, ot_method=exact (its default)", torchcfm_step),
    (
        "torchcfm",
        "sb-sinkhorn",
        f"SB-CFM sigma={COST_SB_SIGMA}, ot_method=sinkhorn (eps={2 * COST_SB_SIGMA**2:g})",
        torchcfm_step,
    ),
]


def time_loop(step: Callable[[], Any], warmup: int, timed: int, budget: float) -> dict[str, Any]:
    """Up to ``warmup`` untimed calls (stopping after budget / 4 s once MIN_WARMUP are done),
    then up to ``timed`` timed calls (stopping after ``budget`` s once MIN_TIMED are done)."""
    start, n_warm = time.perf_counter(), 0
    while n_warm < warmup and (n_warm < MIN_WARMUP or time.perf_counter() - start < budget / 4):
        step()
        n_warm += 1
    times: list[float] = []
    start = time.perf_counter()
    load0 = os.getloadavg()[0]
    while len(times) < timed and (len(times) < MIN_TIMED or time.perf_counter() - start < budget):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {
        "warmup_steps": n_warm,
        "timed_steps": len(times),
        **quantiles_ms(times),
        "loadavg_1min_start_end": [load0, os.getloadavg()[0]],
    }


def solver_suite(batch: int, reps: int, budget: float, seed: int, sb_sigmas: list[float]) -> dict[str, Any]:
    """Cost matrix + plan solve alone, on the same fresh (x_0, x_1) batches for every solver;
    then the pairs each coupling makes of them (untimed). ``sb_sigmas``: the Sinkhorn eps
    = 2 sigma^2 of genlab's SB coupling to time (besides the part-1 sigma)."""
    from torchcfm.optimal_transport import OTPlanSampler

    data, g = make_toy(DATASET), generator(seed + 7)
    batches = []
    for _ in range(reps):
        x1 = data.sample(batch, g)
        batches.append((torch.randn(x1.shape, generator=g), x1))
    eps = 2 * COST_SB_SIGMA**2
    tcfm_exact, tcfm_sink = OTPlanSampler("exact"), OTPlanSampler("sinkhorn", reg=eps)
    arange = np.arange(batch)
    g_pairs = generator(seed + 8)
    np.random.seed(seed + 8)

    # each solver returns ("perm", perm[j] = source of x1_j), ("plan", (N, M) plan) or None
    def exact(x0: torch.Tensor, x1: torch.Tensor) -> Any:
        return "perm", assignment(squared_distances(x0, x1))

    def exact_block(x0: torch.Tensor, x1: torch.Tensor) -> Any:
        perm = np.empty(batch, dtype=np.int64)
        for lo in range(0, batch, COST_BLOCK):
            sl = slice(lo, min(lo + COST_BLOCK, batch))
            perm[sl] = lo + assignment(squared_distances(x0[sl], x1[sl]))
        return "perm", perm

    def genlab_plan(method: str, reg: float) -> Callable[[torch.Tensor, torch.Tensor], Any]:
        return lambda x0, x1: ("plan", ot_plan(squared_distances(x0, x1), method, reg))

    def tcfm_plan(sampler: Any) -> Callable[[torch.Tensor, torch.Tensor], Any]:
        return lambda x0, x1: ("tcfm", (sampler, sampler.get_map(x0, x1)))

    solvers: dict[str, tuple[str, Callable[[torch.Tensor, torch.Tensor], Any]]] = {
        "independent": ("no solve: x_0 and x_1 as drawn", lambda x0, x1: None),
        "genlab-exact": (f"genlab exact: squared_distances + assignment ({ASSIGNMENT_DEFAULT})", exact),
    }
    if ASSIGNMENT_SOLVERS:  # the alternative solvers of assignment(cost, solver=...)
        for name in ASSIGNMENT_SOLVERS:
            if name != ASSIGNMENT_DEFAULT:
                solvers[f"genlab-exact-{name}"] = (
                    f"genlab exact: squared_distances + assignment(solver={name!r})",
                    lambda x0, x1, name=name: ("perm", assignment(squared_distances(x0, x1), solver=name)),
                )
    if batch > COST_BLOCK:
        solvers["genlab-exact-block"] = (
            f"genlab exact in blocks of {COST_BLOCK}: assignment per block (OTCoupling block={COST_BLOCK})",
            exact_block,
        )
    solvers["genlab-emd"] = (
        "genlab emd: squared_distances + ot_plan emd (POT ot.emd)",
        genlab_plan("emd", eps),
    )
    for sigma in sorted({COST_SB_SIGMA, *sb_sigmas}, reverse=True):
        reg = 2 * sigma**2
        solvers[f"genlab-sinkhorn-{sigma:g}"] = (
            f"genlab sinkhorn eps={reg:g} (SB sigma={sigma:g}): squared_distances + ot_plan sinkhorn",
            genlab_plan("sinkhorn", reg),
        )
    solvers["torchcfm-exact"] = (
        "TorchCFM exact: OTPlanSampler('exact').get_map (cdist^2 + ot.emd)",
        tcfm_plan(tcfm_exact),
    )
    solvers["torchcfm-sinkhorn"] = (
        f"TorchCFM sinkhorn eps={eps:g}: OTPlanSampler('sinkhorn').get_map (cdist^2 + ot.sinkhorn)",
        tcfm_plan(tcfm_sink),
    )

    raw: dict[str, dict[str, list[float]]] = {}
    for key, (_, solve) in solvers.items():
        r: dict[str, list[float]] = {k: [] for k in ("solve", "pairing", "plan", "pair", "x0", "x1")}
        start = time.perf_counter()
        for x0, x1 in batches:
            if len(r["solve"]) >= MIN_SOLVER_REPS and time.perf_counter() - start > budget:
                break
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # POT's sinkhorn may warn about its iteration cap
                t0 = time.perf_counter()
                solved = solve(x0, x1)
                t1 = time.perf_counter()
                if solved is None:  # independent
                    i, j = arange, arange
                elif solved[0] == "perm":
                    i, j = solved[1], arange
                elif solved[0] == "plan":  # genlab: one source drawn per column (pairs_from_plan)
                    i, j = pairs_from_plan(solved[1], g_pairs), arange
                else:  # TorchCFM: B cells drawn from the whole plan with replacement (sample_plan)
                    sampler, plan = solved[1]
                    i, j = (np.asarray(v) for v in sampler.sample_map(plan, batch))
                t2 = time.perf_counter()
            r["solve"].append(t1 - t0)
            r["pairing"].append(t2 - t1)
            cost = squared_distances(x0, x1)  # float64, the same for every solver
            if solved is None:
                r["plan"].append(float(np.diag(cost).mean()))
            elif solved[0] == "perm":
                r["plan"].append(float(cost[solved[1], arange].mean()))
            else:
                plan = solved[1] if solved[0] == "plan" else solved[1][1]
                r["plan"].append(float((plan * cost).sum() / plan.sum()))
            r["pair"].append(float(cost[i, j].mean()))
            r["x0"].append(len(np.unique(i)) / batch)
            r["x1"].append(len(np.unique(j)) / batch)
        raw[key] = r
        log(
            f"[couplings]   solver {key:22s} B={batch}: {1e3 * np.median(r['solve']):9.2f} ms "
            f"({len(r['solve'])} reps)"
        )
    # costs and distinct fractions over the batches every solver saw (slow solvers stop early)
    common = min(len(r["solve"]) for r in raw.values())
    out: dict[str, Any] = {"common_batches": common}
    for key, (label, _) in solvers.items():
        r = raw[key]
        out[key] = {
            "label": label,
            "batch": batch,
            "reps": len(r["solve"]),
            **quantiles_ms(r["solve"]),
            "pairing_median_ms": float(np.median(r["pairing"]) * 1e3),
            "plan_cost": float(np.mean(r["plan"][:common])),
            "pair_cost": float(np.mean(r["pair"][:common])),
            "distinct_x0_fraction": float(np.mean(r["x0"][:common])),
            "distinct_x1_fraction": float(np.mean(r["x1"][:common])),
            "plan_costs": r["plan"],
            "pair_costs": r["pair"],
        }
    ex, emd = out["genlab-exact"]["plan_costs"][:common], out["genlab-emd"]["plan_costs"][:common]
    out["exact_vs_emd_max_abs_diff"] = float(np.max(np.abs(np.asarray(ex) - np.asarray(emd))))
    return out


def run_cost(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"steps": [], "solvers": {}}
    for batch in args.cost_batches:
        for lib, kind, label, builder in COST_CONFIGS:
            if kind == "exact-block" and batch <= COST_BLOCK:
                continue  # one block: the same problem as "exact"
            log(f"[couplings] cost: {lib} {kind} B={batch} ...")
            step = builder(kind, batch, args.seed, args.lr)
            r = time_loop(step, args.warmup, args.timed, args.budget)
            result["steps"].append({"library": lib, "coupling": kind, "label": label, "batch": batch, **r})
            log(
                f"[couplings]   {r['median_ms']:.2f} ms/step ({r['warmup_steps']} + {r['timed_steps']} steps)"
            )
        log(f"[couplings] solvers alone B={batch} ...")
        sigmas = [args.sb_sigma, 0.1] if batch == args.batch else []
        result["solvers"][str(batch)] = solver_suite(batch, args.solver_reps, args.budget, args.seed, sigmas)
    base = {
        (r["library"], r["batch"]): r["median_ms"] for r in result["steps"] if r["coupling"] == "independent"
    }
    for r in result["steps"]:
        r["ratio_to_icfm"] = r["median_ms"] / base[(r["library"], r["batch"])]
    result["verdict"] = cost_verdict(result)
    return result


def cost_verdict(result: dict[str, Any]) -> list[str]:
    lines = []
    steps = {(r["library"], r["coupling"], r["batch"]): r for r in result["steps"]}
    for batch, aim in AIMS.items():
        if ("genlab", "exact", batch) not in steps:
            continue
        icfm, exact = steps[("genlab", "independent", batch)], steps[("genlab", "exact", batch)]
        emd = steps[("genlab", "emd", batch)]
        sol = result["solvers"][str(batch)]
        allowed = (aim - 1.0) * icfm["median_ms"]
        met = exact["ratio_to_icfm"] <= aim
        lines.append(
            f"B={batch}: genlab exact OT step {exact['median_ms']:.1f} ms = "
            f"{exact['ratio_to_icfm']:.2f}x its I-CFM step ({icfm['median_ms']:.1f} ms); "
            f"aim <= {aim}x: {'MET' if met else 'NOT MET'}. "
            f"The aim leaves {allowed:.1f} ms for the coupling; the exact solve alone (cost matrix + "
            f"assignment) takes {sol['genlab-exact']['median_ms']:.1f} ms, POT's ot.emd "
            f"{sol['genlab-emd']['median_ms']:.1f} ms (genlab emd step: {emd['ratio_to_icfm']:.2f}x)."
        )
        blk = steps.get(("genlab", "exact-block", batch))
        if blk is not None:
            bs = sol["genlab-exact-block"]
            lines.append(
                f"B={batch}: OTCoupling(block={COST_BLOCK}) step {blk['median_ms']:.1f} ms = "
                f"{blk['ratio_to_icfm']:.2f}x (aim {'met' if blk['ratio_to_icfm'] <= aim else 'not met'} "
                f"this way either); its solve alone {bs['median_ms']:.1f} ms, at a pair cost of "
                f"{bs['pair_cost']:.4f} vs {sol['genlab-exact']['pair_cost']:.4f} for the full exact plan "
                f"(independent: {sol['independent']['pair_cost']:.4f})."
            )
        tc = steps.get(("torchcfm", "exact", batch))
        if tc is not None:
            lines.append(
                f"B={batch}: TorchCFM exact OT-CFM step {tc['median_ms']:.1f} ms = "
                f"{tc['ratio_to_icfm']:.2f}x its I-CFM step"
                + (f" (the issue quotes about {TORCHCFM_CLAIM}x at 256)." if batch == 256 else ".")
            )
    for batch, sol in result["solvers"].items():
        tc = sol["torchcfm-exact"]
        lines.append(
            f"B={batch}: TorchCFM's exact OT-CFM draws B pairs from the plan with replacement and keeps "
            f"{tc['distinct_x1_fraction']:.3f} of the distinct x1 rows "
            f"({tc['distinct_x0_fraction']:.3f} of the x0 rows) per batch (mean over {sol['common_batches']} "
            "batches; "
            f"B uniform draws from the B cells of a permutation plan keep 1 - (1 - 1/B)^B = "
            f"{1 - (1 - 1 / int(batch)) ** int(batch):.3f} in expectation); "
            "genlab's exact coupling keeps "
            f"{sol['genlab-exact']['distinct_x1_fraction']:.3f} of x1 and "
            f"{sol['genlab-exact']['distinct_x0_fraction']:.3f} of x0 (a permutation). Exact plan cost "
            f"{sol['genlab-exact']['plan_cost']:.4f} vs emd {sol['genlab-emd']['plan_cost']:.4f} "
            f"(max abs diff per batch {sol['exact_vs_emd_max_abs_diff']:.1e}; costs over the "
            f"{sol['common_batches']} batches every solver saw)."
        )
    for batch in AIMS:
        st, sol = (
            {r["coupling"]: r for r in result["steps"] if r["library"] == "genlab" and r["batch"] == batch},
            (result["solvers"].get(str(batch))),
        )
        if sol is None or "emd" not in st:
            continue
        icfm, emd, ex = st["independent"]["median_ms"], sol["genlab-emd"], sol["genlab-exact"]
        lines.append(
            f"B={batch}: where the genlab OT step goes: exact = I-CFM {icfm:.1f} ms + assignment "
            f"{ex['median_ms']:.1f} ms (step {st['exact']['median_ms']:.1f} ms; the assignment time varies "
            f"a lot between batches, p90 {ex['p90_ms']:.1f} ms); emd = I-CFM + ot.emd "
            f"{emd['median_ms']:.1f} ms + drawing one source per column from the dense plan "
            f"(pairs_from_plan) {emd['pairing_median_ms']:.1f} ms (step {st['emd']['median_ms']:.1f} ms); "
            "the emd plan is a permutation, so that draw could be an argmax."
        )
    return lines


# --------------------------------------------------------------------------------------
# part 2: W2 against NFE
# --------------------------------------------------------------------------------------


def nfe_models(args: argparse.Namespace) -> dict[str, str]:
    return {
        "icfm": "I-CFM (linear, independent)",
        "otcfm": "OT-CFM (linear, OTCoupling exact)",
        "sbcfm": f"SB-CFM (BridgePath + SchrodingerBridgeCoupling, sigma={args.sb_sigma:g}, Sinkhorn)",
        "reflow": "reflow (I-CFM pairs, RK4; init from I-CFM)",
    }


def train(
    model: FlowMatching, batches: Callable[[], Any], steps: int, lr: float, g_noise: torch.Generator
) -> dict:
    opt = torch.optim.Adam(model.net.parameters(), lr=lr)
    losses, times = [], []
    start = time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter()
        losses.append(adam_step(model.net, opt, model.loss(batches(), g_noise)["loss"]))
        times.append(time.perf_counter() - t0)
    tail = max(1, steps // 10)
    return {
        "steps": steps,
        "train_seconds": time.perf_counter() - start,
        "median_ms_per_step": float(np.median(times) * 1e3),
        "loss_final": float(np.mean(losses[-tail:])),
    }


def evaluate(model: FlowMatching, x0: torch.Tensor, reference: torch.Tensor, n_traj: int) -> dict[str, Any]:
    quality = {}
    for nfe in EULER_NFES:
        sol = model.sample(x0.shape[0], solver="euler", grid=nfe, x0=x0)
        quality[f"euler-{nfe}"] = {
            "solver": "euler",
            "steps": nfe,
            "nfe": sol.nfe,
            "w2": wasserstein2(sol.x, reference),
        }
    sol = model.sample(x0.shape[0], solver="rk4", grid=REFERENCE_STEPS, x0=x0)
    quality[f"rk4-{REFERENCE_STEPS}"] = {
        "solver": "rk4",
        "steps": REFERENCE_STEPS,
        "nfe": sol.nfe,
        "w2": wasserstein2(sol.x, reference),
    }
    traj = model.sample(n_traj, solver="rk4", grid=TRAJ_STEPS, x0=x0[:n_traj], return_trajectory=True)
    ends = traj.trajectory
    paths = {
        "solver": "rk4",
        "steps": TRAJ_STEPS,
        "nfe": traj.nfe,
        "n": n_traj,
        "straightness": straightness(ends, traj.times),
        "npe": normalized_path_energy(ends, traj.times),
        "transport_cost": float(((ends[-1] - ends[0]) ** 2).sum(-1).mean()),
    }
    return {"quality": quality, "paths": paths}


def run_nfe_seed(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    base = 1000 * seed
    data = make_toy(DATASET)
    out: dict[str, Any] = {"seed": seed, "models": {}}

    def make(key: str, net: torch.nn.Module) -> FlowMatching:
        if key == "otcfm":
            return FlowMatching(net, (2,), coupling=OTCoupling(method="exact"))
        if key == "sbcfm":
            return FlowMatching(
                net, (2,), path=BridgePath(args.sb_sigma), coupling=SchrodingerBridgeCoupling(args.sb_sigma)
            )
        return FlowMatching(net, (2,))  # icfm, reflow

    x0_eval = torch.randn(args.n_eval, 2, generator=generator(base + 3))
    reference = data.sample(args.n_eval, generator(base + 4))
    g_floor = generator(base + 5)
    out["floor_w2"] = wasserstein2(data.sample(args.n_eval, g_floor), data.sample(args.n_eval, g_floor))
    trained: dict[str, FlowMatching] = {}
    for key in args.models:
        g_data, g_noise = generator(base + 1), generator(base + 2)  # same streams for every model
        entry: dict[str, Any] = {}
        if key == "reflow":
            teacher = trained["icfm"]
            t0 = time.perf_counter()
            x0p, x1p = generate_pairs(
                teacher, args.reflow_pairs, steps=args.pair_steps, solver="rk4", generator=generator(base + 6)
            )
            entry["pairs"] = {
                "n": args.reflow_pairs,
                "solver": "rk4",
                "steps": args.pair_steps,
                "nfe_per_pair": 4 * args.pair_steps,
                "seconds": time.perf_counter() - t0,
                "transport_cost": float(((x1p - x0p) ** 2).sum(-1).mean()),
            }
            pairs = ReflowPairs(x0p, x1p)
            model = make(key, copy.deepcopy(teacher.net))

            def batches(pairs: ReflowPairs = pairs, g: torch.Generator = g_data) -> Any:
                return pairs.sample(args.batch, g)

        else:
            model = make(key, build_net(base))

            def batches(g: torch.Generator = g_data) -> Any:
                return data.sample(args.batch, g)

        log(f"[couplings] nfe seed {seed}: training {key} for {args.steps} steps ...")
        entry["train"] = train(model, batches, args.steps, args.lr, g_noise)
        log(
            f"[couplings]   {entry['train']['train_seconds']:.0f} s, "
            f"{entry['train']['median_ms_per_step']:.1f} ms/step, loss {entry['train']['loss_final']:.4f}"
        )
        trained[key] = model
        entry.update(evaluate(model, x0_eval, reference, args.n_traj))
        q = entry["quality"]
        log(
            "[couplings]   W2 "
            + ", ".join(f"{k} {v['w2']:.3f}" for k, v in q.items())
            + f"; straightness {entry['paths']['straightness']:.4f}"
        )
        out["models"][key] = entry
    return out


def mean_std(values: list[float]) -> dict[str, float]:
    return {
        "mean": float(np.mean(values)),
        "std": float(statistics.stdev(values)) if len(values) > 1 else 0.0,
        "values": list(values),
    }


def run_nfe(args: argparse.Namespace) -> dict[str, Any]:
    runs = [run_nfe_seed(args, args.seed + k) for k in range(args.seeds)]
    labels = [f"euler-{n}" for n in EULER_NFES] + [f"rk4-{REFERENCE_STEPS}"]
    summary: dict[str, Any] = {"floor_w2": mean_std([r["floor_w2"] for r in runs]), "models": {}}
    for key in args.models:
        ms = [r["models"][key] for r in runs]
        summary["models"][key] = {
            "w2": {
                lab: {
                    "solver": ms[0]["quality"][lab]["solver"],
                    "nfe": ms[0]["quality"][lab]["nfe"],
                    **mean_std([m["quality"][lab]["w2"] for m in ms]),
                }
                for lab in labels
            },
            "paths": {
                "solver": "rk4",
                "steps": TRAJ_STEPS,
                "nfe": 4 * TRAJ_STEPS,
                "n": args.n_traj,
            }
            | {
                name: mean_std([m["paths"][name] for m in ms])
                for name in ("straightness", "npe", "transport_cost")
            },
            "train_seconds": mean_std([m["train"]["train_seconds"] for m in ms]),
        }
    summary["verdict"] = nfe_verdict(summary, runs, args)
    return {"runs": runs, "summary": summary}


def nfe_verdict(summary: dict[str, Any], runs: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """Compare OT-CFM / reflow at Euler NFE 2 and 4 with I-CFM at Euler NFE 100, seed by seed
    (the same seed gives both models the same evaluation x_0 and reference set)."""
    models = summary["models"]
    if "icfm" not in models:
        return []
    target = models["icfm"]["w2"]["euler-100"]
    floor = summary["floor_w2"]["mean"]
    lines = []
    any_met = False
    for key in ("otcfm", "reflow"):
        if key not in models:
            continue
        diffs = {
            n: [
                r["models"][key]["quality"][f"euler-{n}"]["w2"]
                - r["models"]["icfm"]["quality"]["euler-100"]["w2"]
                for r in runs
            ]
            for n in (2, 4)
        }
        best = min(diffs, key=lambda n: float(np.mean(diffs[n])))
        d = mean_std(diffs[best])
        met = d["mean"] <= 0.0
        any_met |= met
        spread = f" ± {d['std']:.4f} (std over seeds)" if len(runs) > 1 else ""
        lines.append(
            f"{key}: Euler W2 at NFE 2 = {models[key]['w2']['euler-2']['mean']:.4f}, NFE 4 = "
            f"{models[key]['w2']['euler-4']['mean']:.4f} vs I-CFM at Euler NFE 100 = {target['mean']:.4f} "
            f"(floor {floor:.4f}); best few-step minus I-CFM@100, paired by seed: {d['mean']:+.4f}{spread} "
            f"at NFE {best}: " + ("as good or better" if met else "worse")
        )
    seeds = f"{args.seeds} seed{'s' if args.seeds > 1 else ''}"
    lines.append(
        "Aim (OT-CFM or reflow at 2-4 NFE as good as I-CFM at 100 NFE): "
        f"{'MET' if any_met else 'NOT MET'} ({seeds}; strict comparison of the mean W2)."
    )
    return lines


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------


def fmt(ms: dict[str, float], digits: int = 4) -> str:
    if len(ms["values"]) > 1:
        return f"{ms['mean']:.{digits}f} ± {ms['std']:.{digits}f}"
    return f"{ms['mean']:.{digits}f}"


def tables(result: dict[str, Any]) -> str:
    """Every table of a result (plan solvers, straightness, per-seed values) as markdown."""
    cfg, env = result["config"], result["environment"]
    v = env["versions"]
    parts = [
        "## Couplings: OT cost per training step, and W2 against NFE"
        + (" (quick smoke run)" if cfg["quick"] else ""),
        "",
        f"{env['cpu_model'] or env['processor'] or 'unknown CPU'} ({env['cpu_count']} CPUs, shared), "
        f"torch {v['torch']} with torch.set_num_threads({env['torch_threads']}) and OMP/OpenBLAS/MKL threads "
        f"{env['thread_env']['OMP_NUM_THREADS']} for every library, POT {v['POT']}, scipy {v['scipy']}, "
        f"torchcfm {v['torchcfm']}, Python {env['python']}, genlab commit "
        f"{(env['genlab_git']['commit'] or 'unknown')[:10]}"
        f"{' (src/genlab modified)' if env['genlab_git']['src_genlab_modified'] else ''}. Network TimeMLP "
        f"{NET_CONFIG.depth}x{NET_CONFIG.width} SiLU for everything, Adam lr {cfg['lr']}, data {DATASET}. "
        f"Load average at start {env['loadavg_start'][0]:.2f}, at end {env['loadavg_end'][0]:.2f}; "
        f"total {result['total_seconds'] / 60:.1f} min.",
    ]
    if "cost" in result:
        c = result["cost"]
        rows = [
            [
                r["library"],
                r["label"],
                str(r["batch"]),
                f"{r['median_ms']:.2f}",
                f"{r['ratio_to_icfm']:.2f}x",
                f"{r['mean_ms']:.2f}",
                f"{r['p90_ms']:.2f}",
                f"{r['warmup_steps']} + {r['timed_steps']}",
            ]
            for r in c["steps"]
        ]
        parts += [
            "",
            "### Part 1: training step time by coupling (moons, one thread)",
            "",
            *table(
                [
                    "library",
                    "coupling",
                    "batch",
                    "ms/step (median)",
                    "ratio to same library's I-CFM",
                    "mean ms",
                    "p90 ms",
                    "warm-up + timed steps",
                ],
                rows,
            ),
            "",
            "Plan solvers alone (cost matrix + solve), on the same fresh batches; pairing = turning the plan "
            "into B index pairs (untimed in 'solve'). The pair cost is the mean ||x0_i - x1_j||^2 over the B "
            "pairs the coupling trains on; costs and distinct-row fractions are means over the batches every "
            "solver saw (slow solvers stop after the time budget).",
            "",
        ]
        rows = []
        for batch, sol in c["solvers"].items():
            for s in sol.values():
                if not isinstance(s, dict):
                    continue
                rows.append(
                    [
                        s["label"],
                        batch,
                        f"{s['median_ms']:.2f}",
                        f"{s['pairing_median_ms']:.2f}",
                        str(s["reps"]),
                        f"{s['plan_cost']:.4f}",
                        f"{s['pair_cost']:.4f}",
                        f"{s['distinct_x0_fraction']:.3f} / {s['distinct_x1_fraction']:.3f}",
                    ]
                )
        parts += [
            *table(
                [
                    "solver",
                    "batch",
                    "solve ms (median)",
                    "pairing ms (median)",
                    "reps",
                    "plan cost <pi, C>",
                    "pair cost (pairs trained on)",
                    "distinct x0 / x1 rows",
                ],
                rows,
            ),
            "",
        ]
        parts += [f"- {line}" for line in c["verdict"]]
    if "nfe" in result:
        s = result["nfe"]["summary"]
        names = result["config"]["model_labels"]
        labels = [f"euler-{n}" for n in EULER_NFES] + [f"rk4-{REFERENCE_STEPS}"]
        header = (
            ["model"]
            + [f"Euler NFE {n}" for n in EULER_NFES]
            + [f"RK4 {REFERENCE_STEPS} steps (NFE {4 * REFERENCE_STEPS})"]
        )
        rows = [[names[k]] + [fmt(m["w2"][lab]) for lab in labels] for k, m in s["models"].items()]
        rows.append(["floor (data vs data)"] + [fmt(s["floor_w2"])] * len(labels))
        seeds = cfg["seeds"]
        parts += [
            "",
            f"### Part 2: W2 against NFE (N(0, I) -> moons, {cfg['steps']} steps each, batch {cfg['batch']}, "
            f"n_eval {cfg['n_eval']}, {seeds} seed{'s' if seeds > 1 else ''}"
            + (", mean ± std" if seeds > 1 else "")
            + ")",
            "",
            *table(header, rows),
            "",
            f"Paths of RK4 {TRAJ_STEPS}-step trajectories ({cfg['n_traj']} samples): straightness "
            "(Liu et al.; 0 = straight at constant speed), normalised path energy |PE - W2^2| / W2^2 "
            "(Tong et al.; 0 = the OT map), and the transport cost E||x(1) - x(0)||^2.",
            "",
        ]
        rows = [
            [
                names[k],
                fmt(m["paths"]["straightness"]),
                fmt(m["paths"]["npe"]),
                fmt(m["paths"]["transport_cost"]),
                fmt(m["train_seconds"], 0),
            ]
            for k, m in s["models"].items()
        ]
        parts += [
            *table(["model", "straightness", "NPE", "transport cost", "train s"], rows),
            "",
        ]
        parts += [f"- {line}" for line in s["verdict"]]
    return "\n".join(parts) + "\n"


#: (flag, config key, default) of the options a run records: its command names those it changed
COUPLINGS_DEFAULTS = [
    ("--part", "part", "all"),
    ("--steps", "steps", 6000),
    ("--batch", "batch", 256),
    ("--lr", "lr", 1e-3),
    ("--seed", "seed", 0),
    ("--seeds", "seeds", 1),
    ("--n-eval", "n_eval", 2000),
    ("--n-traj", "n_traj", 1000),
    ("--reflow-pairs", "reflow_pairs", 20000),
    ("--pair-steps", "pair_steps", 100),
    ("--sb-sigma", "sb_sigma", 0.2),
    ("--models", "models", ["icfm", "otcfm", "sbcfm", "reflow"]),
    ("--cost-batches", "cost_batches", [256, 2048]),
    ("--warmup", "warmup", 20),
    ("--timed", "timed", 200),
    ("--budget", "budget_seconds", 25.0),
    ("--solver-reps", "solver_reps", 20),
]


def render(name: str, data: dict[str, Any], path: Path) -> list[str]:
    """The markdown of a result JSON (all parts or one): run facts, the aims, step time and W2
    against NFE, the full tables."""
    cfg = data.get("config", {})
    part = cfg.get("part", "all")
    cost = data.get("cost") or {}
    nfe = data.get("nfe") or {}
    out: list[str] = []
    # the aims only (the full verdict list is in the embedded .md)
    for line in cost.get("verdict", []) + nfe.get("summary", {}).get("verdict", []):
        if "aim" in line.lower():
            out.append(f"- {line}")
    if cost.get("steps"):
        out += ["", "Training step time by coupling (median ms/step, one thread):", ""]
        out += table(
            ["library", "coupling", "batch", "median ms/step", "ratio to the same library's I-CFM"],
            [
                [
                    r.get("library"),
                    r.get("label"),
                    r.get("batch"),
                    num(r.get("median_ms")),
                    f"{num(r.get('ratio_to_icfm'))}x",
                ]
                for r in cost["steps"]
            ],
        )
    models = nfe.get("summary", {}).get("models", {})
    labels = cfg.get("model_labels", {})
    if models:
        keys = list(dict.fromkeys(k for m in models.values() for k in m.get("w2", {})))
        nfes = {k: m["w2"][k].get("nfe") for m in models.values() for k in m.get("w2", {})}
        floor = nfe.get("summary", {}).get("floor_w2", {})
        out += ["", "W2 against NFE (mean ± std over the seeds):", ""]
        out += table(
            ["model", *(f"{k.split('-')[0]} NFE {nfes[k]}" for k in keys)],
            [[labels.get(m, m), *(pm(v.get("w2", {}).get(k)) for k in keys)] for m, v in models.items()]
            + [["floor (data vs data)", *(pm(floor) for _ in keys)]],
        )
    md = full_tables(name, data, path, tables, "total_seconds")
    if md:
        out += ["", *details(f"Full tables ({md[0]}): plan solvers, straightness, per-seed values", md[1])]
    seeds = NR
    if "seed" in cfg:
        n = cfg.get("seeds", 1) if part != "cost" else 1
        seeds = ", ".join(str(cfg["seed"] + i) for i in range(n)) + (
            " (part 1 uses the first)" if part == "all" else ""
        )
    batch = []
    if part in ("cost", "all") and "cost_batches" in cfg:
        batch.append(f"part 1: {', '.join(str(b) for b in cfg['cost_batches'])}")
    if part in ("nfe", "all") and "batch" in cfg:
        batch.append(f"part 2: {cfg['batch']}")
    steps = []
    if part in ("cost", "all") and "timed" in cfg:
        steps.append(f"part 1: {cfg.get('warmup', NR)} warm-up + up to {cfg['timed']} timed per row")
    if part in ("nfe", "all") and "steps" in cfg:
        steps.append(f"part 2: {cfg['steps']} per model")
    nfe_text = NR
    if part == "cost":
        nfe_text = "not applicable (part 1 times training steps only)"
    elif "euler_nfes" in cfg:
        ref = cfg.get("reference", {})
        nfe_text = f"Euler {', '.join(str(n) for n in cfg['euler_nfes'])}" + (
            f"; {ref.get('solver')} {ref.get('steps')} steps (NFE {ref.get('nfe')})" if ref else ""
        )
    default_out = "couplings" + ("" if part == "all" else f"_{part}") + ".json"
    threads = recorded_environment(data).get("threads_requested")
    args = ["benchmarks/couplings.py", *flags(cfg, COUPLINGS_DEFAULTS)]
    args += ["--threads", str(threads)] if threads not in (None, 1) else []
    return [
        *facts(
            name,
            data,
            batch="; ".join(batch) or NR,
            training="; ".join(steps) or NR,
            seeds=seeds,
            nfe=nfe_text,
            command=command([*args, *out_flag(name, default_out)]),
        ),
        "",
        *out,
    ]


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------

MODEL_KEYS = ("icfm", "otcfm", "sbcfm", "reflow")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--part", choices=("cost", "nfe", "all"), default="all", help="which part to run")
    p.add_argument(
        "--quick", action="store_true", help="smoke run (< 1 min): tiny step counts, batch 256 only"
    )
    p.add_argument(
        "--steps", type=int, default=None, help=f"part 2 training steps (default {DEFAULTS['steps']})"
    )
    p.add_argument("--batch", type=int, default=DEFAULTS["batch"], help="part 2 batch size")
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="Adam learning rate")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--seeds", type=int, default=1, help="part 2: number of seeds (mean ± std)")
    p.add_argument("--n-eval", type=int, default=None, help=f"W2 samples (default {DEFAULTS['n_eval']})")
    p.add_argument("--n-traj", type=int, default=None, help="trajectories for straightness / NPE")
    p.add_argument("--reflow-pairs", type=int, default=None, help="reflow pairs (default 20000)")
    p.add_argument(
        "--pair-steps", type=int, default=None, help="RK4 steps generating reflow pairs (default 100)"
    )
    p.add_argument(
        "--sb-sigma",
        type=float,
        default=DEFAULTS["sb_sigma"],
        help="part 2 SB-CFM sigma (BridgePath and SchrodingerBridgeCoupling, Sinkhorn eps = 2 sigma^2); "
        "0.1 costs ~7x more Sinkhorn time per step (see the solver table)",
    )
    p.add_argument("--models", nargs="+", choices=MODEL_KEYS, default=list(MODEL_KEYS), help="part 2 models")
    p.add_argument("--cost-batches", type=int, nargs="+", default=None, help="part 1 batch sizes (256 2048)")
    p.add_argument("--warmup", type=int, default=None, help="part 1 warm-up steps (default 20)")
    p.add_argument("--timed", type=int, default=None, help="part 1 timed steps (default 200)")
    p.add_argument("--budget", type=float, default=None, help="part 1 seconds per configuration (default 25)")
    p.add_argument(
        "--solver-reps", type=int, default=None, help="part 1 batches per plan solver (default 20)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (1 for every library)")
    p.add_argument("--out", type=Path, default=None, help="JSON output; the markdown goes next to it (.md)")
    args = p.parse_args(argv)
    preset = QUICK if args.quick else {}
    for name in ("steps", "n_eval", "n_traj", "reflow_pairs", "pair_steps", "warmup", "timed", "budget"):
        if getattr(args, name) is None:
            setattr(args, name, preset.get(name, DEFAULTS[name]))
    if args.solver_reps is None:
        args.solver_reps = preset.get("solver_reps", DEFAULTS["solver_reps"])
    if args.cost_batches is None:
        args.cost_batches = preset.get("cost_batches", DEFAULTS["cost_batches"])
    if "reflow" in args.models and "icfm" not in args.models:
        args.models = ["icfm", *args.models]
    args.models = [k for k in MODEL_KEYS if k in args.models]
    for name in ("steps", "batch", "seeds", "n_eval", "n_traj", "reflow_pairs", "pair_steps", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if not args.sb_sigma > 0:
        p.error("--sb-sigma must be positive")
    if args.n_traj > args.n_eval:
        p.error("--n-traj must not exceed --n-eval")
    if args.out is None:
        stem = (
            "couplings" + ("" if args.part == "all" else f"_{args.part}") + ("_quick" if args.quick else "")
        )
        args.out = Path(__file__).resolve().parent / "results" / f"{stem}.json"
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    env = environment(args.threads)
    result: dict[str, Any] = {
        "benchmark": "couplings",
        "config": {
            "part": args.part,
            "quick": args.quick,
            "dataset": DATASET,
            "network": asdict(NET_CONFIG),
            "lr": args.lr,
            "seed": args.seed,
            "seeds": args.seeds,
            "cost_batches": args.cost_batches,
            "cost_sb_sigma": COST_SB_SIGMA,
            "warmup": args.warmup,
            "timed": args.timed,
            "budget_seconds": args.budget,
            "solver_reps": args.solver_reps,
            "steps": args.steps,
            "batch": args.batch,
            "n_eval": args.n_eval,
            "n_traj": args.n_traj,
            "reflow_pairs": args.reflow_pairs,
            "pair_steps": args.pair_steps,
            "sb_sigma": args.sb_sigma,
            "models": args.models,
            "model_labels": nfe_models(args),
            "euler_nfes": list(EULER_NFES),
            "reference": {"solver": "rk4", "steps": REFERENCE_STEPS, "nfe": 4 * REFERENCE_STEPS},
            "trajectories": {"solver": "rk4", "steps": TRAJ_STEPS, "nfe": 4 * TRAJ_STEPS},
        },
        "environment": env,
    }
    if args.part in ("cost", "all"):
        result["cost"] = run_cost(args)
    if args.part in ("nfe", "all"):
        result["nfe"] = run_nfe(args)
    env["loadavg_end"] = list(os.getloadavg())
    result["total_seconds"] = time.perf_counter() - t_start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    sys.stdout.write(write(render, args.out, result))
    log(
        f"[couplings] wrote {args.out} and {args.out.with_suffix('.md')} "
        f"in {result['total_seconds'] / 60:.1f} min"
    )
    return result


if __name__ == "__main__":
    main()
