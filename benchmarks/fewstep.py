"""Few-step and one-step sampling (issue 19, goal 5): W2 at 1, 2 and 4 network evaluations,
genlab against TorchCFM's OT-CFM and Meta flow_matching's flow, on the same machine, in one run.

Each method trains ``--steps`` steps at batch 256 on each 2D data set, for each seed, then
samples 2,000 points from one fixed x_0 with 1, 2 and 4 network evaluations (NFE); W2 is taken
against fresh data and reported as the gap W2 - floor (the floor: W2 between two data draws).

- **torchcfm OT-CFM**: ``ExactOptimalTransportConditionalFlowMatcher(sigma=0)`` in its README's
  loop around the peers' plain MLP (t concatenated to x, 4 x 256 SiLU), Adam 1e-3, Euler steps.
  The issue names it the strongest peer at 4 NFE.
- **flow_matching**: Meta's ``AffineProbPath(CondOTScheduler())`` loop, the same network, Euler.
- **genlab MeanFlow**: ``genlab train moons_meanflow`` with ``data.name`` set, its ``mean``
  sampler (k steps of the learned average velocity, k network evaluations).
- **genlab OT-CFM**: ``genlab train moons_ot`` with ``data.name`` set, Euler steps.
- **genlab reflow** (``--methods ...,genlab_reflow``): ``moons`` (I-CFM) trained, 20,000 pairs
  drawn from it with RK4 (100 steps), and a second run trained on them for as many steps.

Jobs (data set x seed x method) run in ``--jobs`` processes of one torch thread each.

    python benchmarks/fewstep.py                 # the full run (4 data sets, 3 seeds, 20,000 steps)
    python benchmarks/fewstep.py --quick         # a smoke run (CI)

The goal: at 4 NFE, genlab's mean gap at most half the best peer's on every data set. The
script prints the table and writes ``results/fewstep.json`` and ``results/fewstep.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from _env import machine
from _render import generic, table, write
from torch import nn

HERE = Path(__file__).resolve().parent
DATASETS = ("8gaussians", "moons", "checkerboard", "2spirals")
METHODS = ("torchcfm_ot", "flow_matching", "genlab_meanflow", "genlab_ot")
LABELS = {
    "torchcfm_ot": "torchcfm OT-CFM",
    "flow_matching": "flow_matching (I-CFM)",
    "genlab_meanflow": "genlab MeanFlow",
    "genlab_ot": "genlab OT-CFM",
    "genlab_reflow": "genlab reflow",
}
PEERS = ("torchcfm_ot", "flow_matching")
NFES = (1, 2, 4)
QUICK = {"steps": 150, "seeds": 1, "n": 300, "data": "moons", "pairs": 500}
DEFAULTS = {"steps": 20000, "seeds": 3, "n": 2000, "data": ",".join(DATASETS), "pairs": 20000}
GOAL_RATIO = 0.5


def log(msg: str) -> None:
    print(f"[fewstep {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def euler(field: Any, x0: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` uniform Euler steps of dx/dt = field(x, t) from t = 0 to 1."""
    x, dt = x0, 1.0 / steps
    with torch.no_grad():
        for k in range(steps):
            x = x + dt * field(x, torch.full((x.shape[0],), k * dt))
    return x


def train_peer(method: str, data: str, steps: int, seed: int) -> nn.Module:
    """A peer's README loop around the plain MLP of ``ahead.py``."""
    from ahead import PlainMLP, peer_step

    from genlab.data import make_toy

    torch.manual_seed(seed)
    model = PlainMLP()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    if method == "torchcfm_ot":
        from torchcfm.conditional_flow_matching import ExactOptimalTransportConditionalFlowMatcher

        fm = ExactOptimalTransportConditionalFlowMatcher(sigma=0.0)

        def step(net: nn.Module, x1: torch.Tensor) -> torch.Tensor:
            t, xt, ut = fm.sample_location_and_conditional_flow(torch.randn_like(x1), x1)
            return ((net(xt, t) - ut) ** 2).mean()

    else:
        step = peer_step("flow_matching")
    ds, gen = make_toy(data), torch.Generator().manual_seed(seed)
    for _ in range(steps):
        loss = step(model, ds.sample(256, gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def genlab_run(config: str, data: str, steps: int, seed: int, work: Path, extra: list[str]) -> Any:
    from genlab.app.runs import load_run, resolve_config
    from genlab.app.train import train

    out = work / f"{config}_{data}_{seed}"
    overrides = [f"data.name={data}", f"train.steps={steps}", f"train.seed={seed}", "train.eval_every=0"]
    overrides += [f"train.ckpt_every={steps}", "train.log_every=100", *extra]
    train(resolve_config(config, overrides, shared=True), out, overwrite=True, progress=False)
    return load_run(out, device="cpu")


def reflow_run(data: str, steps: int, seed: int, pairs: int, work: Path) -> Any:
    """genlab's I-CFM on ``data``, its reflow pairs, and a run trained on them."""
    from genlab.paths import ReflowPairs
    from genlab.samplers.reflow import generate_pairs

    base = genlab_run("moons", data, steps, seed, work, [])
    x0, x1 = generate_pairs(
        base.model, pairs, steps=100, solver="rk4", generator=torch.Generator().manual_seed(seed)
    )
    path = ReflowPairs(x0, x1).save(work / f"pairs_{data}_{seed}.npz")
    return genlab_run(
        "moons", data, steps, seed, work, [f"model.reflow_pairs={path}", "train.warmup_steps=0"]
    )


def job(spec: dict[str, Any]) -> dict[str, Any]:
    """One (data set, seed, method): train, then W2 at each NFE."""
    torch.set_num_threads(1)
    sys.path.insert(0, str(HERE))
    from genlab.data import make_toy
    from genlab.metrics import mmd, wasserstein2

    data, seed, method, steps, n = spec["data"], spec["seed"], spec["method"], spec["steps"], spec["n"]
    ds = make_toy(data)
    ref = ds.sample(n, torch.Generator().manual_seed(8))
    x0 = torch.randn(n, 2, generator=torch.Generator().manual_seed(5))
    t0 = time.perf_counter()
    samples: dict[int, torch.Tensor] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if method in PEERS:
            model = train_peer(method, data, steps, seed)
            train_s = time.perf_counter() - t0
            samples = {k: euler(model, x0, k) for k in NFES}
        else:
            if method == "genlab_reflow":
                run = reflow_run(data, steps, seed, spec["pairs"], work)
            else:
                config = {"genlab_meanflow": "moons_meanflow", "genlab_ot": "moons_ot"}[method]
                run = genlab_run(config, data, steps, seed, work, [])
            train_s = time.perf_counter() - t0
            sampler = "mean" if method == "genlab_meanflow" else "ode"
            for k in NFES:
                sol = run.model.sample(n, solver="euler", grid=k, x0=x0, sampler=sampler)
                samples[k] = sol.x if run.standardization is None else run.standardization.undo(sol.x)
    w2 = {str(k): wasserstein2(x, ref) for k, x in samples.items()}
    mmd2 = {str(k): mmd(x, ref) for k, x in samples.items()}
    log(
        f"{data} seed {seed} {method}: {train_s:.0f} s, W2 "
        + ", ".join(f"{k}: {v:.4f}" for k, v in w2.items())
    )
    return {"data": data, "seed": seed, "method": method, "train_s": train_s, "w2": w2, "mmd": mmd2}


def summarise(rows: list[dict[str, Any]], floors: dict[str, float]) -> dict[str, Any]:
    """Mean gap W2 - floor per data set, method and NFE; the goal's ratio at 4 NFE."""
    means: dict[str, dict[str, dict[str, float]]] = {}
    mmds: dict[str, dict[str, dict[str, float]]] = {}
    for data in floors:
        means[data] = {}
        for method in LABELS:
            sel = [r for r in rows if r["data"] == data and r["method"] == method]
            if sel:
                means[data][method] = {
                    str(k): statistics.fmean(r["w2"][str(k)] for r in sel) - floors[data] for k in NFES
                }
                mmds.setdefault(data, {})[method] = {
                    str(k): statistics.fmean(r["mmd"][str(k)] for r in sel) for k in NFES
                }
    return {"mean_gap": means, "mean_mmd": mmds, "goal": judge(means, ("4",))}


def judge(means: dict[str, Any], nfes: tuple[str, ...]) -> dict[str, Any]:
    """Per data set: the best peer at 4 NFE and genlab's best at ``nfes``, each by the size of
    its gap |W2 - floor| (samples with too little spread fall below the floor, which is no
    better fit), and their ratio against the goal."""
    out: dict[str, Any] = {}
    for ds, by_method in means.items():
        peers = [(abs(g["4"]), m) for m, g in by_method.items() if m in PEERS]
        ours = [(abs(g[k]), m, k) for m, g in by_method.items() if m.startswith("genlab") for k in nfes]
        if peers and ours:
            (pg, pm), (og, om, ok) = min(peers), min(ours)
            out[ds] = {
                "best_peer": pm,
                "best_peer_gap": pg,
                "genlab_method": om,
                "genlab_nfe": int(ok),
                "genlab_gap": og,
                "ratio": og / pg if pg > 0 else float("inf"),
                "goal_ratio": GOAL_RATIO,
            }
    return out


def goal_tables(s: dict[str, Any]) -> list[str]:
    """The goal at 4 NFE, and within a budget of at most 4 NFE. A gap is judged by its size
    |W2 - floor|: samples with too little spread can fall below the floor, which is no better
    fit (their MMD^2, shown beside, says how far they are)."""
    mmd = s.get("mean_mmd", {})
    parts: list[str] = []
    for title, nfes in (
        ("at 4 NFE", ("4",)),
        ("within at most 4 NFE (the best step count)", ("1", "2", "4")),
    ):
        parts.append(
            f"\n### Goal: genlab's best |W2 - floor| {title} at most half the best peer's at 4 NFE\n"
        )
        rows = []
        for ds, g in judge(s["mean_gap"], nfes).items():
            pm, om, ok = g["best_peer"], g["genlab_method"], str(g["genlab_nfe"])
            peer_mmd = mmd.get(ds, {}).get(pm, {}).get("4", float("nan"))
            our_mmd = mmd.get(ds, {}).get(om, {}).get(ok, float("nan"))
            rows.append(
                [
                    ds,
                    f"{LABELS[pm]}: {g['best_peer_gap']:.4f} (MMD^2 {peer_mmd:.1e})",
                    f"{LABELS[om]}, {ok} NFE: {g['genlab_gap']:.4f} (MMD^2 {our_mmd:.1e})",
                    f"**{g['ratio']:.2f}**" + (" (met)" if g["ratio"] <= GOAL_RATIO else " (not met)"),
                ]
            )
        parts += table(["data", "best peer, 4 NFE", "genlab's best", "ratio (goal <= 0.5)"], rows)
    return parts


def tables(data: dict[str, Any]) -> str:
    s = data["summary"]
    parts = [f"### W2 - floor at 1, 2 and 4 NFE (mean over {data['settings']['seeds']} seeds)\n"]
    rows = []
    for ds, by_method in s["mean_gap"].items():
        for method, gaps in by_method.items():
            rows.append([ds, LABELS[method], *(f"{gaps[str(k)]:.4f}" for k in NFES)])
    parts += table(["data", "method", *(f"{k} NFE" for k in NFES)], rows)
    parts += goal_tables(s)
    parts.append(
        "\n### Unbiased MMD^2 at 1, 2 and 4 NFE (mean over seeds; fluctuates around 0 for a perfect model)\n"
        "\nW2 - floor can go below 0 for samples with too little spread; MMD^2 cannot, on average.\n"
    )
    rows = [
        [ds, LABELS[method], *(f"{v[str(k)]:.2e}" for k in NFES)]
        for ds, by_method in s.get("mean_mmd", {}).items()
        for method, v in by_method.items()
    ]
    parts += table(["data", "method", *(f"{k} NFE" for k in NFES)], rows)
    floors = ", ".join(f"{k} {v:.4f}" for k, v in data["floors"].items())
    parts.append(f"\nW2 floors (data vs data, n = {data['settings']['n']}): {floors}.\n")
    parts.append("\n### Per seed: W2 (not minus the floor) and training seconds\n")
    rows = [
        [
            r["data"],
            r["seed"],
            LABELS[r["method"]],
            *(f"{r['w2'][str(k)]:.4f}" for k in NFES),
            f"{r['train_s']:.0f}",
        ]
        for r in data["per_seed"]
    ]
    parts += table(["data", "seed", "method", *(f"W2 {k} NFE" for k in NFES), "train s"], rows)
    return "\n".join(parts) + "\n"


def render(name: str, data: dict[str, Any], path: Path) -> list[str]:
    """The markdown of a result JSON: the run facts, then the tables."""
    return generic(name, data, path, tables, "total_seconds")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="a smoke run (CI)")
    p.add_argument("--steps", type=int, default=None, help="training steps of every method (default 20000)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per data set and method (default 3)")
    p.add_argument("--n", type=int, default=None, help="samples scored per W2 (default 2000)")
    p.add_argument(
        "--data", default=None, help=f"comma-separated 2D data sets (default {','.join(DATASETS)})"
    )
    p.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(LABELS)}; or all"
    )
    p.add_argument("--pairs", type=int, default=None, help="reflow pairs (default 20000)")
    p.add_argument("--jobs", type=int, default=2, help="processes, one torch thread each (default 2)")
    p.add_argument("--out", type=Path, default=None, help="JSON (default results/fewstep[_quick].json)")
    args = p.parse_args(argv)
    preset = QUICK if args.quick else DEFAULTS
    for key, value in preset.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    methods = list(LABELS) if args.methods == "all" else args.methods.split(",")
    unknown = sorted(set(methods) - set(LABELS))
    if unknown:
        p.error(f"unknown method {unknown[0]!r}; choose from {', '.join(LABELS)}")
    datasets = args.data.split(",")
    args.out = args.out or HERE / "results" / ("fewstep_quick.json" if args.quick else "fewstep.json")
    from genlab.data import make_toy
    from genlab.metrics import wasserstein2

    floors = {
        d: wasserstein2(
            make_toy(d).sample(args.n, torch.Generator().manual_seed(9)),
            make_toy(d).sample(args.n, torch.Generator().manual_seed(8)),
        )
        for d in datasets
    }
    t0, load0 = time.time(), os.getloadavg()
    specs = [
        {"data": d, "seed": s, "method": m, "steps": args.steps, "n": args.n, "pairs": args.pairs}
        for s in range(args.seeds)
        for d in datasets
        for m in methods
    ]
    os.environ["OMP_NUM_THREADS"] = "1"
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            rows = list(pool.map(job, specs))
    else:
        rows = [job(spec) for spec in specs]
    data: dict[str, Any] = {
        "benchmark": "fewstep",
        "quick": args.quick,
        "argv": sys.argv[1:] if argv is None else argv,
        "settings": {
            "steps": args.steps,
            "seeds": args.seeds,
            "n": args.n,
            "batch": 256,
            "pairs": args.pairs,
        },
        "nfe": list(NFES),
        "threads": 1,
        "jobs": args.jobs,
        "machine": machine(1, ("torchcfm", "flow-matching", "POT")),
        "floors": floors,
        "per_seed": rows,
        "summary": summarise(rows, floors),
    }
    data["load_average"] = {"start": load0, "end": os.getloadavg()}
    data["total_seconds"] = time.time() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1))
    print(write(render, args.out, data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
