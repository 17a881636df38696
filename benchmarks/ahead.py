"""Ahead of the peers (issue 19): genlab as a user runs it against TorchCFM's and Meta
flow_matching's training loops, on the same machine, in one run, reported as ratios.

Sections
--------
- **throughput**: training steps/s on 2D moons, batch 256, a 4 x 256 SiLU MLP. genlab: its
  trainer through ``genlab.app.train.train`` and a packaged config (EMA, clipping, logging,
  checkpoints), its rate read from ``metrics.jsonl``. Peers: the loops of their READMEs around a
  plain MLP with t concatenated to x (TorchCFM's ``ConditionalFlowMatcher``, Meta's
  ``AffineProbPath(CondOTScheduler())``), default Adam. Also genlab's trainer on the digits
  U-Net against a plain PyTorch loop around the same model and loss. Repeats are interleaved
  (genlab, peer, peer, genlab, ...) so the machine's load falls on every library alike; the
  median of the timing windows is reported.
- **adaptive**: each library trains on 8 Gaussians (its own network and loop, ``--steps``);
  then dopri5 at atol = rtol = 1e-5 samples 2,000 points (NFE, W2 against fresh data) and
  evaluates the log-density of 2,000 test points (NFE, NLL, its gap to the mixture's true
  NLL). genlab uses its own samplers and ``log_prob``; the peers' networks use
  ``flow_matching.solver.ODESolver`` (``sample`` and ``compute_likelihood`` with the exact
  divergence). Per seed and the mean over seeds.
- **logprob**: on one network (genlab's, trained above), log-densities of 5,000 points at the
  same tolerance: genlab's ``log_prob`` against Meta's ``compute_likelihood(exact_divergence=True)``
  (time and NLL difference).
- **embedding**: the measurement behind ``model.net.time_scale``'s default: genlab on 8
  Gaussians with the MLP's sinusoidal time features of 1000 t, 30 t and 10 t (NFE, W2, NLL).
- **memory**: peak resident memory (VmHWM) of a ``genlab train`` process (``--steps`` steps)
  and of ``genlab eval --metrics w2 --n 5000``.

    python benchmarks/ahead.py                 # the full run (about 20 min on 2 cores)
    python benchmarks/ahead.py --quick         # a smoke run (CI), < 2 min

Speed is never asserted in a test; this script prints the table and writes
``results/ahead.json`` and ``results/ahead.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _env import machine
from _render import generic, table, write
from torch import nn

from genlab.app.runs import load_run, resolve_config
from genlab.app.train import train
from genlab.data import make_toy
from genlab.metrics import wasserstein2

HERE = Path(__file__).resolve().parent
QUICK = {
    "throughput_steps": 100,
    "repeats": 1,
    "unet_steps": 10,
    "steps": 200,
    "seeds": 1,
    "n": 300,
    "n_lp": 300,
    "n_mem": 1000,
}
DEFAULTS = {
    "throughput_steps": 1500,
    "repeats": 3,
    "unet_steps": 150,
    "steps": 5000,
    "seeds": 3,
    "n": 2000,
    "n_lp": 5000,
    "n_mem": 5000,
}
TOL = 1e-5


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class PlainMLP(nn.Module):
    """The peers' 2D network: t concatenated to x, then 4 x 256 SiLU layers."""

    def __init__(self, dim: int = 2, width: int = 256, depth: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(dim + 1, width), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.SiLU()]
        self.net = nn.Sequential(*layers, nn.Linear(width, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype).reshape(-1, 1).expand(x.shape[0], 1)
        return self.net(torch.cat([x, t], dim=-1))


def peer_step(lib: str) -> Any:
    """One training step of a peer's README loop: (model, x1) -> loss."""
    if lib == "torchcfm":
        from torchcfm.conditional_flow_matching import ConditionalFlowMatcher

        fm = ConditionalFlowMatcher(sigma=0.0)

        def cfm(model: nn.Module, x1: torch.Tensor) -> torch.Tensor:
            t, xt, ut = fm.sample_location_and_conditional_flow(torch.randn_like(x1), x1)
            return ((model(xt, t) - ut) ** 2).mean()

        return cfm
    from flow_matching.path import AffineProbPath
    from flow_matching.path.scheduler import CondOTScheduler

    path = AffineProbPath(scheduler=CondOTScheduler())

    def meta(model: nn.Module, x1: torch.Tensor) -> torch.Tensor:
        s = path.sample(t=torch.rand(x1.shape[0]), x_0=torch.randn_like(x1), x_1=x1)
        return ((model(s.x_t, s.t) - s.dx_t) ** 2).mean()

    return meta


def train_peer(
    lib: str, data: str, steps: int, seed: int, window: int = 100
) -> tuple[nn.Module, list[float]]:
    """A peer's loop: its network trained ``steps`` steps; the ms/step of each window."""
    torch.manual_seed(seed)
    model = PlainMLP()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    step = peer_step(lib)
    ds, gen = make_toy(data), torch.Generator().manual_seed(seed)
    windows, t0 = [], time.perf_counter()
    for i in range(steps):
        loss = step(model, ds.sample(256, gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (i + 1) % window == 0:
            now = time.perf_counter()
            windows.append(1000 * (now - t0) / window)
            t0 = now
    return model.eval(), windows


def train_genlab(
    config: str, steps: int, seed: int, work: Path, extra: list[str] = ()
) -> tuple[Path, list[float]]:
    """genlab's trainer on a packaged config; the ms/step of each logging window."""
    out = work / f"{config}_{seed}_{steps}"
    overrides = [f"train.steps={steps}", f"train.seed={seed}", "train.log_every=50", *extra]
    overrides += [f"train.ckpt_every={steps}", "train.eval_every=0", "train.threads=0"]
    train(resolve_config(config, overrides, shared=True), out, overwrite=True, progress=False)
    rates = [json.loads(line).get("steps_per_s") for line in (out / "metrics.jsonl").read_text().splitlines()]
    return out, [1000.0 / r for r in rates if r]


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


# --------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------


def throughput(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    ms: dict[str, list[float]] = {"genlab": [], "torchcfm": [], "flow_matching": []}
    for r in range(args.repeats):
        order = ["genlab", "torchcfm", "flow_matching"]
        for lib in order[r % 3 :] + order[: r % 3]:
            log(f"throughput: {lib}, repeat {r + 1}")
            if lib == "genlab":
                ms[lib] += train_genlab("moons", args.throughput_steps, r, work, ["train.batch_size=256"])[1]
            else:
                ms[lib] += train_peer(lib, "moons", args.throughput_steps, r)[1]
    rows = {lib: {"median_ms_per_step": median(v), "windows": v} for lib, v in ms.items()}
    fastest = min(rows["torchcfm"]["median_ms_per_step"], rows["flow_matching"]["median_ms_per_step"])
    ratio = fastest / rows["genlab"]["median_ms_per_step"]
    unet = unet_throughput(args, work)
    return {"mlp": rows, "genlab_speedup_vs_fastest_peer": ratio, "goal": 1.25, "unet": unet}


def unet_throughput(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """genlab's trainer on the digits U-Net against a plain loop around the same model and loss."""
    from genlab.app.builders import build_dataset, build_model, data_shape, training_sampler

    log("throughput: digits U-Net")
    _, genlab_ms = train_genlab("digits", args.unet_steps, 0, work, ["train.log_every=10"])
    cfg = resolve_config("digits")
    ds = build_dataset(cfg.data)
    torch.manual_seed(0)
    model = build_model(cfg, data_shape(ds), getattr(ds, "num_classes", None))
    sample = training_sampler(cfg, ds)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    gen, noise = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    plain, t0 = [], time.perf_counter()
    for i in range(args.unet_steps):
        loss = model.loss(sample(cfg.train.batch_size, gen), noise)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (i + 1) % 10 == 0:
            now = time.perf_counter()
            plain.append(100 * (now - t0))
            t0 = now
    g, p = median(genlab_ms), median(plain)
    return {"genlab_ms": g, "plain_ms": p, "genlab_speedup_vs_plain": p / g, "batch": cfg.train.batch_size}


def meta_solver(model: nn.Module, clamp: bool = False) -> Any:
    """Meta's ODESolver around a network; ``clamp``: times limited to [0, 1] (genlab's network
    refuses others, and dopri5 evaluates stages past the end of the interval)."""
    from flow_matching.solver import ODESolver
    from flow_matching.utils import ModelWrapper

    class Wrapped(ModelWrapper):
        def forward(self, x: torch.Tensor, t: torch.Tensor, **extras: Any) -> torch.Tensor:
            t = t.expand(x.shape[0]) if t.dim() == 0 else t
            return self.model(x, t.clamp(0.0, 1.0) if clamp else t)

    return ODESolver(velocity_model=Wrapped(model))


def meta_log_prob(solver: Any, x: torch.Tensor) -> torch.Tensor:
    """log p(x) by Meta's ``compute_likelihood`` with the exact divergence, dopri5 at TOL, from
    a standard normal source."""
    gauss = torch.distributions.Independent(torch.distributions.Normal(torch.zeros(2), torch.ones(2)), 1)
    _, lp = solver.compute_likelihood(
        x_1=x,
        log_p0=gauss.log_prob,
        method="dopri5",
        step_size=None,
        atol=TOL,
        rtol=TOL,
        time_grid=torch.tensor([1.0, 0.0]),
        exact_divergence=True,
    )
    return lp


def peer_eval(model: nn.Module, n: int, test: torch.Tensor, ref: torch.Tensor) -> dict[str, Any]:
    solver, nfe = meta_solver(model), [0]
    inner = solver.velocity_model.forward

    def counted(*a: Any, **k: Any) -> torch.Tensor:
        nfe[0] += 1
        return inner(*a, **k)

    solver.velocity_model.forward = counted  # type: ignore[method-assign]
    x0 = torch.randn(n, 2, generator=torch.Generator().manual_seed(5))
    grid = torch.tensor([0.0, 1.0])
    with torch.no_grad():
        x = solver.sample(x_init=x0, method="dopri5", step_size=None, atol=TOL, rtol=TOL, time_grid=grid)
    sample_nfe, nfe[0] = nfe[0], 0
    lp = meta_log_prob(solver, test)
    return {"nfe": sample_nfe, "w2": wasserstein2(x, ref), "nll": float(-lp.mean()), "lp_nfe": nfe[0]}


def genlab_eval(run_dir: Path, n: int, test: torch.Tensor, ref: torch.Tensor) -> tuple[dict[str, Any], Any]:
    run = load_run(run_dir, device="cpu")
    with torch.no_grad():
        sol = run.model.sample(n, "dopri5", 1, torch.Generator().manual_seed(5), atol=TOL, rtol=TOL)
    lp = run.model.log_prob(test, solver="dopri5", steps=1, atol=TOL, rtol=TOL)
    return {
        "nfe": sol.nfe,
        "w2": wasserstein2(sol.x, ref),
        "nll": float(-lp.log_prob.mean()),
        "lp_nfe": lp.nfe,
    }, run


def adaptive(args: argparse.Namespace, work: Path) -> tuple[dict[str, Any], Any]:
    ds = make_toy(args.data)
    test = ds.sample(args.n, torch.Generator().manual_seed(7))
    ref = ds.sample(args.n, torch.Generator().manual_seed(8))
    true_nll = float(-ds.log_prob(test).mean())
    floor = wasserstein2(ds.sample(args.n, torch.Generator().manual_seed(9)), ref)
    per_seed: list[dict[str, Any]] = []
    last_run = None
    for seed in range(args.seeds):
        log(f"adaptive: seed {seed}, genlab")
        run_dir, _ = train_genlab(args.data, args.steps, seed, work, args.genlab_override)
        row, last_run = genlab_eval(run_dir, args.n, test, ref)
        per_seed.append({"library": "genlab", "seed": seed, **row})
        for lib in ("torchcfm", "flow_matching"):
            log(f"adaptive: seed {seed}, {lib}")
            model, _ = train_peer(lib, args.data, args.steps, seed)
            per_seed.append({"library": lib, "seed": seed, **peer_eval(model, args.n, test, ref)})
    means = {}
    for lib in ("genlab", "torchcfm", "flow_matching"):
        rows = [r for r in per_seed if r["library"] == lib]
        means[lib] = {k: statistics.fmean(r[k] for r in rows) for k in ("nfe", "w2", "nll", "lp_nfe")}
        means[lib]["nll_gap"] = means[lib]["nll"] - true_nll
    peer_nfe = min(means["torchcfm"]["nfe"], means["flow_matching"]["nfe"])
    result = {
        "per_seed": per_seed,
        "mean": means,
        "true_nll": true_nll,
        "w2_floor": floor,
        "genlab_nfe_over_peers": means["genlab"]["nfe"] / peer_nfe,
        "goal_nfe_ratio": 1.2,
        "data": args.data,
    }
    return result, last_run


def embedding(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The choice of ``model.net.time_scale``: genlab on 8 Gaussians with the sinusoidal time
    features of 1000 t (the transformer convention, genlab before), 30 t (the default) and 10 t."""
    ds = make_toy("8gaussians")
    test = ds.sample(args.n, torch.Generator().manual_seed(7))
    ref = ds.sample(args.n, torch.Generator().manual_seed(8))
    true_nll = float(-ds.log_prob(test).mean())
    rows = []
    for scale in (1000, 30, 10):
        for seed in range(args.seeds):
            log(f"embedding: time_scale {scale}, seed {seed}")
            run_dir, _ = train_genlab("8gaussians", args.steps, seed, work, [f"model.net.time_scale={scale}"])
            row, _ = genlab_eval(run_dir, args.n, test, ref)
            rows.append({"time_scale": scale, "seed": seed, **row, "nll_gap": row["nll"] - true_nll})
    return {"per_seed": rows, "true_nll": true_nll}


def logprob_speed(args: argparse.Namespace, run: Any) -> dict[str, Any]:
    pts = make_toy("8gaussians").sample(args.n_lp, torch.Generator().manual_seed(11))
    t0 = time.perf_counter()
    ours = run.model.log_prob(pts, solver="dopri5", steps=1, atol=TOL, rtol=TOL)
    genlab_s = time.perf_counter() - t0
    solver = meta_solver(run.model.net if hasattr(run.model, "net") else run.model, clamp=True)
    t0 = time.perf_counter()
    theirs = meta_log_prob(solver, pts)
    meta_s = time.perf_counter() - t0
    return {
        "n": args.n_lp,
        "genlab_s": genlab_s,
        "meta_s": meta_s,
        "speedup": meta_s / genlab_s,
        "goal": 3.0,
        "nll_genlab": float(-ours.log_prob.mean()),
        "nll_meta": float(-theirs.mean()),
        "nll_abs_diff": abs(float(ours.log_prob.mean() - theirs.mean())),
    }


def peak_rss_mib(cmd: list[str]) -> float:
    """VmHWM of a child process, in MiB (ru_maxrss of the one child run by a fresh interpreter)."""
    code = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True); "
        "assert r.returncode == 0, r.stderr[-500:]; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024


def memory(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    genlab = [sys.executable, "-m", "genlab.app.cli"]
    run = work / "memory_run"
    log("memory: train")
    train_mib = peak_rss_mib(
        [*genlab, "train", "moons", f"train.steps={args.steps}", "--out", str(run), "--no-progress"]
    )
    log("memory: eval")
    eval_mib = peak_rss_mib([*genlab, "eval", str(run), "--metrics", "w2", "--n", str(args.n_mem)])
    return {
        "train_steps": args.steps,
        "train_peak_mib": train_mib,
        "eval_n": args.n_mem,
        "eval_w2_peak_mib": eval_mib,
        "goal_train_mib": 1024,
        "goal_eval_mib": 1536,
    }


# --------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------


def f(x: Any, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) else "-"


def tables(data: dict[str, Any]) -> str:
    parts: list[str] = []
    tp = data.get("throughput")
    if tp:
        parts.append("### Training throughput (2D moons, batch 256, 4 x 256 SiLU MLP)\n")
        rows = [
            [lib, f(r["median_ms_per_step"], 2), f(1000 / r["median_ms_per_step"], 0)]
            for lib, r in tp["mlp"].items()
        ]
        parts += table(["library", "median ms/step", "steps/s"], rows)
        u = tp["unet"]
        ratio, plain = tp["genlab_speedup_vs_fastest_peer"], u["genlab_speedup_vs_plain"]
        parts.append(
            f"\ngenlab / fastest peer, steps/s: **{ratio:.2f}x** (goal {tp['goal']}x). "
            f"Digits U-Net (batch {u['batch']}): genlab's trainer {f(u['genlab_ms'], 1)} ms/step, "
            f"a plain loop {f(u['plain_ms'], 1)} ms/step: **{plain:.2f}x** (goal 1.0x).\n"
        )
    ad = data.get("adaptive")
    if ad:
        where = {"8gaussians": "8 Gaussians"}.get(ad.get("data", "8gaussians"), ad.get("data"))
        parts.append(f"### Adaptive ODE cost and likelihood ({where}, dopri5 at {TOL:g}, mean over seeds)\n")
        rows = [
            [lib, f(m["nfe"], 0), f(m["w2"], 4), f(m["lp_nfe"], 0), f(m["nll"], 4), f(m["nll_gap"], 4)]
            for lib, m in ad["mean"].items()
        ]
        parts += table(["library", "sample NFE", "W2", "log-prob NFE", "NLL", "NLL - true"], rows)
        nfe_ratio = ad["genlab_nfe_over_peers"]
        parts.append(
            f"\nTrue NLL {ad['true_nll']:.4f}; W2 floor (data vs data) {ad['w2_floor']:.4f}. "
            f"genlab's sample NFE over the peers' best: **{nfe_ratio:.2f}x** "
            f"(goal at most {ad['goal_nfe_ratio']}x).\n"
        )
        rows = [
            [r["library"], r["seed"], r["nfe"], f(r["w2"], 4), r["lp_nfe"], f(r["nll"], 4)]
            for r in ad["per_seed"]
        ]
        parts += table(["library", "seed", "sample NFE", "W2", "log-prob NFE", "NLL"], rows)
    lp = data.get("logprob")
    if lp:
        parts.append(f"\n### Exact log-prob of {lp['n']} points on one network (dopri5 at {TOL:g})\n")
        parts += table(
            ["genlab s", "Meta compute_likelihood s", "speed-up", "NLL genlab", "NLL Meta", "abs diff"],
            [
                [
                    f(lp["genlab_s"], 2),
                    f(lp["meta_s"], 2),
                    f"{lp['speedup']:.2f}x (goal {lp['goal']}x)",
                    f(lp["nll_genlab"], 5),
                    f(lp["nll_meta"], 5),
                    f"{lp['nll_abs_diff']:.1e}",
                ]
            ],
        )
    emb = data.get("embedding")
    if emb:
        parts.append(
            "\n### The time features: `model.net.time_scale` (genlab on 8 Gaussians, mean over seeds)\n"
        )
        rows = []
        for scale in sorted({r["time_scale"] for r in emb["per_seed"]}, reverse=True):
            sel = [r for r in emb["per_seed"] if r["time_scale"] == scale]
            mean = {k: statistics.fmean(r[k] for r in sel) for k in ("nfe", "w2", "lp_nfe", "nll_gap")}
            rows.append(
                [
                    scale,
                    len(sel),
                    f(mean["nfe"], 0),
                    f(mean["w2"], 4),
                    f(mean["lp_nfe"], 0),
                    f(mean["nll_gap"], 4),
                ]
            )
        parts += table(["time_scale", "seeds", "sample NFE", "W2", "log-prob NFE", "NLL - true"], rows)
    mem = data.get("memory")
    if mem:
        parts.append("\n### Peak resident memory\n")
        parts += table(
            ["process", "peak MiB", "goal MiB"],
            [
                [
                    f"genlab train moons, {mem['train_steps']} steps",
                    f(mem["train_peak_mib"], 0),
                    mem["goal_train_mib"],
                ],
                [
                    f"genlab eval --metrics w2 --n {mem['eval_n']}",
                    f(mem["eval_w2_peak_mib"], 0),
                    mem["goal_eval_mib"],
                ],
            ],
        )
    return "\n".join(parts) + "\n"


def render(name: str, data: dict[str, Any], path: Path) -> list[str]:
    """The markdown of a result JSON: the run facts, then the tables."""
    return generic(name, data, path, tables, "total_seconds")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="a smoke run (CI)")
    p.add_argument(
        "--steps", type=int, default=None, help="training steps of the adaptive section (default 5000)"
    )
    p.add_argument("--seeds", type=int, default=None, help="seeds of the adaptive section (default 3)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of every library (default 1)")
    p.add_argument(
        "--data", default="8gaussians", choices=["8gaussians", "checkerboard"], help="adaptive section's data"
    )
    p.add_argument(
        "--genlab-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override of genlab's runs in the adaptive section (repeatable)",
    )
    p.add_argument(
        "--sections", default="throughput,adaptive,logprob,embedding,memory", help="comma-separated"
    )
    p.add_argument("--out", type=Path, default=None, help="JSON (default results/ahead[_quick].json)")
    args = p.parse_args(argv)
    preset = QUICK if args.quick else DEFAULTS
    for key, value in preset.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.out = args.out or HERE / "results" / ("ahead_quick.json" if args.quick else "ahead.json")
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    sections = set(args.sections.split(","))
    t0, load0 = time.time(), os.getloadavg()
    data: dict[str, Any] = {
        "benchmark": "ahead",
        "quick": args.quick,
        "argv": sys.argv[1:] if argv is None else argv,
        "settings": {k: getattr(args, k) for k in preset},
        "threads": args.threads,
        "machine": machine(args.threads, ("torchcfm", "flow-matching", "torchdiffeq", "POT")),
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "throughput" in sections:
            data["throughput"] = throughput(args, work)
        run = None
        if "adaptive" in sections or "logprob" in sections:
            data["adaptive"], run = adaptive(args, work)
        if "logprob" in sections and run is not None:
            data["logprob"] = logprob_speed(args, run)
        if "embedding" in sections:
            data["embedding"] = embedding(args, work)
        if "memory" in sections:
            data["memory"] = memory(args, work)
    data["load_average"] = {"start": load0, "end": os.getloadavg()}
    data["total_seconds"] = time.time() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1))
    print(write(render, args.out, data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
