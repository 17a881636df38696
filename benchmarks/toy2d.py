"""Flow matching on 2D toys: genlab against TorchCFM and Meta's flow_matching.

What is compared, and what is held fixed
----------------------------------------
All three libraries train *the same network* -- one genlab ``TimeMLP`` (4 x 256, SiLU)
built from the same initialisation seed -- on the same linear path

    x_t = t x_1 + (1 - t) x_0,   target u_t = x_1 - x_0,   t = 0 noise, t = 1 data,

with the same Adam learning rate, batch size, number of steps and the *same stream of data
batches* (one ``torch.Generator`` per data set, reseeded for every library). The libraries
only supply the path / target computation and their own training-step semantics:

- genlab: ``FlowMatching(net, (2,)).loss(x1, generator)`` (x_0 and t drawn from an explicit
  generator, t ~ U[0, 1 - 1e-5));
- TorchCFM: ``ConditionalFlowMatcher(sigma=0.0).sample_location_and_conditional_flow`` as in
  its README (x_0 = randn_like(x_1), t ~ U[0, 1) drawn inside from the global RNG, loss
  ``mean((v - u)^2)``);
- flow_matching: ``AffineProbPath(CondOTScheduler()).sample(t, x_0, x_1)`` as in its 2D
  example (x_0 = randn_like(x_1), t = rand(B) from the global RNG, loss ``mean((v - dx_t)^2)``).

With ``--noise shared`` the peers are instead fed genlab's own (x_0, t) draws, so that the
three runs differ by floating-point arithmetic only.

Every trained network is then sampled with *genlab's* solvers from the same x_0, so that only
the training differs; a cross-check samples the flow_matching-trained network with
``flow_matching.solver.ODESolver`` and the TorchCFM-trained one with ``torchdiffeq.odeint``.

Each training run happens in a fresh process (``toy2d_worker.py``, one at a time), which
makes its timing and its peak resident memory (VmHWM, reset just before the loop)
independent of the runs before it.

Run ``python benchmarks/toy2d.py --help``; see benchmarks/README.md for the columns.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _render import NR, command, details, facts, flags, full_tables, num, out_flag, table, write
from toy2d_worker import (
    LOSS_BUILDERS,
    LOSS_TAIL,
    NET_CONFIG,
    Seeds,
    TimeMLP,
    TrainJob,
    build_net,
    generator,
    load_net,
)

from genlab.data import make_toy
from genlab.metrics import DEFAULT_BANDWIDTH_FACTORS, metric_floor, mmd, wasserstein2
from genlab.samplers import sample_ode

WORKER = Path(__file__).resolve().parent / "toy2d_worker.py"
LIBRARIES = ("genlab", "torchcfm", "flow_matching")
#: Module each library needs, and the distribution name whose version is reported.
LIBRARY_MODULES = {
    "genlab": ("genlab.models", "genlab"),
    "torchcfm": ("torchcfm.conditional_flow_matching", "torchcfm"),
    "flow_matching": ("flow_matching.path", "flow-matching"),
}
EULER_NFES = (1, 2, 4, 8, 16, 100)  # Euler: NFE = steps
HEUN_NFES = (2, 4, 8, 16, 100)  # Heun: NFE = 2 * steps, so odd NFE are skipped
SAMPLING_TIME_NFE = 100  # sampling time is reported for Euler at this NFE
CROSS_CHECK_STEPS = 16  # peer-solver cross-check: Euler with this many steps
DEFAULTS = {"steps": 10000, "batch": 256, "lr": 1e-3, "n_eval": 2000}
QUICK = {"steps": 30, "n_eval": 256, "datasets": ["moons"]}
DEFAULT_DATASETS = ["moons", "8gaussians", "checkerboard"]
VERSIONED = ("torch", "numpy", "scipy", "POT", "torchdiffeq")  # besides the libraries


# --------------------------------------------------------------------------------------
# environment
# --------------------------------------------------------------------------------------


def library_status() -> dict[str, str]:
    """'ok' or the reason a library cannot be used (not installed / import error)."""
    status = {}
    for lib, (module, _) in LIBRARY_MODULES.items():
        try:
            importlib.import_module(module)
        except ImportError as err:
            status[lib] = f"not installed ({err})"
        except Exception as err:  # a broken install must not stop the benchmark
            status[lib] = f"import failed ({type(err).__name__}: {err})"
        else:
            status[lib] = "ok"
    return status


def environment() -> dict[str, Any]:
    versions = {}
    for dist in (*VERSIONED, *(d for _, d in LIBRARY_MODULES.values())):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "versions": versions,
        "loadavg_start": list(os.getloadavg()),
    }


# --------------------------------------------------------------------------------------
# training: each run in a fresh process (benchmarks/toy2d_worker.py)
# --------------------------------------------------------------------------------------


def run_isolated(job: TrainJob) -> tuple[dict[str, Any], TimeMLP]:
    """Train in a fresh ``python toy2d_worker.py`` process; return its result and the net."""
    with tempfile.TemporaryDirectory(prefix="toy2d_") as tmp:
        job_path = Path(tmp) / "job.json"
        job_path.write_text(json.dumps(asdict(job)))
        subprocess.run([sys.executable, str(WORKER), str(job_path), tmp], check=True)
        result = json.loads((Path(tmp) / "result.json").read_text())
        with np.load(Path(tmp) / "weights.npz") as weights:
            net = load_net(dict(weights))
    return result, net


# --------------------------------------------------------------------------------------
# objective check: the three losses on one shared (x_1, x_0, t)
# --------------------------------------------------------------------------------------


def objective_check(dataset: str, seeds: Seeds, batch: int, libs: list[str]) -> dict[str, float]:
    """|loss_peer - loss_genlab| at initialisation with genlab's own (x_0, t) draws."""
    net = build_net(seeds.init)
    x1 = make_toy(dataset).sample(batch, generator(seeds.data))
    with torch.no_grad():
        values = {lib: float(LOSS_BUILDERS[lib](net, generator(seeds.noise), True)(x1)) for lib in libs}
    ref = values["genlab"]
    return {
        "loss_genlab": ref,
        **{f"abs_diff_{lib}": abs(v - ref) for lib, v in values.items() if lib != "genlab"},
    }


# --------------------------------------------------------------------------------------
# evaluation (always with genlab's solvers unless stated)
# --------------------------------------------------------------------------------------


class TimedVelocity(torch.nn.Module):
    """net(x, t) with t broadcast to (B,); counts and times every call.

    Usable by every solver API (genlab's ``model(x, t)``, flow_matching's ``model(x=, t=)``).
    The median call time is a contention-robust cost per NFE (see the README).
    """

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.call_seconds: list[float] = []

    @property
    def nfe(self) -> int:
        return len(self.call_seconds)

    def median_call_seconds(self) -> float:
        return float(np.median(self.call_seconds)) if self.call_seconds else float("nan")

    def forward(self, x: torch.Tensor, t: torch.Tensor, **extras: Any) -> torch.Tensor:
        start = time.perf_counter()
        tb = torch.as_tensor(t, dtype=x.dtype).expand(x.shape[0])  # (B,)
        out = self.net(x, tb)  # (B, 2)
        self.call_seconds.append(time.perf_counter() - start)
        return out


def fixed_bandwidths(reference: torch.Tensor) -> tuple[float, ...]:
    """RBF bandwidths from the reference set only (median pairwise distance x factors).

    Fixed per data set, so MMD^2 of different models and the floor use the same kernel.
    """
    med = float(torch.pdist(reference.double()).median())
    return tuple(med * f for f in DEFAULT_BANDWIDTH_FACTORS)


def scores(x: torch.Tensor, reference: torch.Tensor, bw: tuple[float, ...]) -> dict[str, float]:
    return {"w2": wasserstein2(x, reference), "mmd2": mmd(x, reference, bandwidths=bw)}


def solver_configs(dopri_tol: float) -> list[tuple[str, str, int, dict[str, float]]]:
    """(label, solver, grid steps, options) for the quality sweep."""
    configs = [(f"euler-{n}", "euler", n, {}) for n in EULER_NFES]
    configs += [(f"heun-{n}", "heun", n // 2, {}) for n in HEUN_NFES if n % 2 == 0]
    configs.append(("dopri5", "dopri5", 1, {"atol": dopri_tol, "rtol": dopri_tol}))
    return configs


def evaluate(
    net: torch.nn.Module,
    x0: torch.Tensor,
    reference: torch.Tensor,
    bw: tuple[float, ...],
    dopri_tol: float,
) -> dict[str, dict[str, float]]:
    out = {}
    for label, solver, steps, opts in solver_configs(dopri_tol):
        timed = TimedVelocity(net)
        start = time.perf_counter()
        sol = sample_ode(timed, x0, solver, steps, **opts)
        seconds = time.perf_counter() - start
        out[label] = {
            "solver": solver,
            "nfe": sol.nfe,
            "seconds": seconds,
            "median_ms_per_nfe": 1e3 * timed.median_call_seconds(),
        }
        out[label].update(scores(sol.x, reference, bw))
    return out


def cross_check(
    lib: str,
    net: torch.nn.Module,
    x0: torch.Tensor,
    reference: torch.Tensor,
    bw: tuple[float, ...],
) -> dict[str, Any]:
    """Sample with the peer's own solver stack and with genlab's; compare."""
    steps = CROSS_CHECK_STEPS
    wrapped = TimedVelocity(net)
    start = time.perf_counter()
    with torch.no_grad():
        if lib == "flow_matching":
            from flow_matching.solver import ODESolver

            peer = ODESolver(velocity_model=wrapped).sample(x_init=x0, step_size=1.0 / steps, method="euler")
            how = f"flow_matching.solver.ODESolver euler step_size=1/{steps}"
        else:
            from torchdiffeq import odeint

            grid = torch.linspace(0.0, 1.0, steps + 1)
            peer = odeint(lambda t, x: wrapped(x, t), x0, grid, method="euler")[-1]
            how = f"torchdiffeq.odeint euler on linspace(0, 1, {steps + 1})"
    peer_seconds = time.perf_counter() - start
    start = time.perf_counter()
    ours = sample_ode(net, x0, "euler", steps)
    ours_seconds = time.perf_counter() - start
    return {
        "library": lib,
        "peer_solver": how,
        "peer_nfe": wrapped.nfe,
        "genlab_nfe": ours.nfe,
        "max_abs_diff": float((peer - ours.x).abs().max()),
        "peer_seconds": peer_seconds,
        "genlab_seconds": ours_seconds,
        "peer": scores(peer, reference, bw),
        "genlab": scores(ours.x, reference, bw),
    }


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------


def fmt_w2(v: float) -> str:
    return f"{v:.4f}"


def fmt_mmd(v: float) -> str:
    return f"{v:.2e}"


def tables(result: dict[str, Any]) -> str:
    """Every table of a result (speed, memory, W2 and MMD², the two checks) as markdown."""
    cfg, env = result["config"], result["environment"]
    libs = cfg["libraries"]
    status = result["library_status"]
    v = env["versions"]
    parts = [
        "## Toy 2D flow matching: genlab vs TorchCFM vs flow_matching",
        "",
        f"steps={cfg['steps']}, batch={cfg['batch']}, Adam lr={cfg['lr']}, "
        f"n_eval={cfg['n_eval']}, seed={cfg['seed']}, noise={cfg['noise']}, "
        f"dopri5 atol=rtol={cfg['dopri_tol']}, network TimeMLP 4x256 SiLU "
        f"({result['n_params']} params). "
        f"torch {v['torch']} ({env['torch_threads']} threads, {env['cpu_count']} CPUs), "
        f"genlab {v['genlab']}, torchcfm {v['torchcfm']}, flow-matching {v['flow-matching']}, "
        f"torchdiffeq {v['torchdiffeq']}, POT {v['POT']}, Python {env['python']}. "
        f"Load average at start {env['loadavg_start'][0]:.2f}, "
        f"at end {env['loadavg_end'][0]:.2f}; total {result['total_seconds'] / 60:.1f} min.",
    ]
    missing = [f"{lib}: {s}" for lib, s in status.items() if s != "ok"]
    if missing:
        parts += ["", "Skipped: " + "; ".join(missing)]

    # training
    rows = []
    for ds in cfg["datasets"]:
        for lib in LIBRARIES:
            r = result["datasets"][ds]["train"].get(lib)
            if r is None:
                if status.get(lib, "ok") != "ok":
                    rows.append([ds, lib, status[lib].split(" (")[0]] + ["-"] * 8)
                continue
            rows.append(
                [
                    ds,
                    lib,
                    f"{r['median_ms_per_step']:.2f}",
                    f"{1e3 / r['median_ms_per_step']:.0f}",
                    f"{r['steps_per_s']:.0f}",
                    f"{r['train_seconds']:.1f}",
                    f"{r['rss_loop_start_mib']:.0f}",
                    f"{r['rss_peak_delta_mib']:.1f}",
                    f"{r['loss_final']:.4f}",
                    "{:.2f} / {:.2f}".format(*result["datasets"][ds]["sampling_seconds"][lib]),
                    "{:.1f} / {:.1f}".format(*r["loadavg_1min_start_end"]),
                ]
            )
    parts += [
        "",
        "### Training speed, memory and sampling time",
        "",
        *table(
            [
                "dataset",
                "library",
                "median ms/step",
                "steps/s (1 / median)",
                "steps/s (wall)",
                "train s (wall)",
                "RSS at loop start MiB",
                "peak RSS delta MiB",
                f"final loss (last {int(LOSS_TAIL * 100)}%)",
                f"sample s, Euler NFE {SAMPLING_TIME_NFE}: wall / NFE x median",
                "load avg start / end",
            ],
            rows,
        ),
    ]

    # quality
    for ds in cfg["datasets"]:
        d = result["datasets"][ds]
        present = [lib for lib in libs if lib in d["quality"]]
        header = ["solver", "NFE"]
        for lib in present:
            header += [f"{lib} W2", f"{lib} MMD²"]
        rows = []
        for label in d["quality"][present[0]]:
            nfes = [str(d["quality"][lib][label]["nfe"]) for lib in present]
            nfe = nfes[0] if len(set(nfes)) == 1 else " / ".join(nfes)
            row = [label.split("-")[0], nfe]
            for lib in present:
                q = d["quality"][lib][label]
                row += [fmt_w2(q["w2"]), fmt_mmd(q["mmd2"])]
            rows.append(row)
        floor = d["floor"]
        rows.append(
            ["floor (data vs data)", "-"] + [fmt_w2(floor["w2"]), fmt_mmd(floor["mmd2"])] * len(present)
        )
        parts += [
            "",
            f"### Sample quality: {ds} (n_eval={cfg['n_eval']}, genlab solvers for every net)",
            "",
            *table(header, rows),
        ]

    # objective and solver cross-checks
    rows = []
    for ds in cfg["datasets"]:
        d = result["datasets"][ds]
        oc = d["objective_check"]
        for key, val in oc.items():
            if key.startswith("abs_diff_"):
                rows.append([ds, key.removeprefix("abs_diff_"), f"{oc['loss_genlab']:.6f}", f"{val:.1e}"])
    if rows:
        parts += [
            "",
            "### Objective check: same (x_1, x_0, t), initial network",
            "",
            *table(["dataset", "peer", "genlab loss", "abs diff of peer loss"], rows),
        ]
    rows = []
    for ds in cfg["datasets"]:
        for cc in result["datasets"][ds]["cross_check"].values():
            rows.append(
                [
                    ds,
                    cc["library"],
                    cc["peer_solver"],
                    f"{cc['peer_nfe']} / {cc['genlab_nfe']}",
                    f"{cc['max_abs_diff']:.1e}",
                    f"{fmt_w2(cc['peer']['w2'])} / {fmt_w2(cc['genlab']['w2'])}",
                    f"{fmt_mmd(cc['peer']['mmd2'])} / {fmt_mmd(cc['genlab']['mmd2'])}",
                    f"{cc['peer_seconds']:.2f} / {cc['genlab_seconds']:.2f}",
                ]
            )
    if rows:
        parts += [
            "",
            f"### Solver cross-check: peer solver vs genlab Euler, {CROSS_CHECK_STEPS} steps, same x0",
            "",
            *table(
                [
                    "dataset",
                    "trained by",
                    "peer solver",
                    "NFE peer / genlab",
                    "max abs diff of samples",
                    "W2 peer / genlab",
                    "MMD² peer / genlab",
                    "seconds peer / genlab",
                ],
                rows,
            ),
        ]
    return "\n".join(parts) + "\n"


#: (flag, config key, default) of the options a run records: its command names those it changed
TOY2D_DEFAULTS = [
    ("--steps", "steps", 10000),
    ("--batch", "batch", 256),
    ("--lr", "lr", 1e-3),
    ("--datasets", "datasets", ["moons", "8gaussians", "checkerboard"]),
    ("--libraries", "libraries", ["genlab", "torchcfm", "flow_matching"]),
    ("--n-eval", "n_eval", 2000),
    ("--seed", "seed", 0),
    ("--noise", "noise", "native"),
    ("--dopri-tol", "dopri_tol", 1e-5),
    ("--threads", "threads", None),
]


def render(name: str, data: dict[str, Any], path: Path) -> list[str]:
    """The markdown of a result JSON: run facts, key numbers, speed and W2 tables, the full tables."""
    cfg = data.get("config", {})
    sets: dict[str, Any] = data.get("datasets", {})
    status = data.get("library_status", {})
    libs = [lib for lib in cfg.get("libraries", status) if status.get(lib, "ok") == "ok"]
    quality_keys: list[str] = []
    for ds in sets.values():
        for lib in libs:
            for key in ds.get("quality", {}).get(lib, {}):
                if key not in quality_keys:
                    quality_keys.append(key)
    nfes = ", ".join(
        f"{solver} {'/'.join(k.split('-')[1] for k in quality_keys if k.startswith(solver + '-'))}"
        for solver in dict.fromkeys(k.split("-")[0] for k in quality_keys if "-" in k)
    )
    if any("-" not in k for k in quality_keys):
        nfes += "; " + ", ".join(f"{k} (adaptive, NFE in the table)" for k in quality_keys if "-" not in k)
    seeds = "; ".join(
        f"{d}: " + ", ".join(f"{k} {v}" for k, v in ds.get("seeds", {}).items()) for d, ds in sets.items()
    )
    out: list[str] = []
    # summary: W2 at the highest Euler NFE and median ms/step, per data set and library
    top = max((k for k in quality_keys if k.startswith("euler-")), key=lambda k: int(k[6:]), default=None)
    for d, ds in sets.items():
        parts = []
        if top:
            w2 = ", ".join(
                f"{lib} {num(ds.get('quality', {}).get(lib, {}).get(top, {}).get('w2'))}" for lib in libs
            )
            parts.append(f"W2 at Euler NFE {top[6:]}: {w2} (floor {num(ds.get('floor', {}).get('w2'))})")
        ms = ", ".join(
            f"{lib} {num(ds.get('train', {}).get(lib, {}).get('median_ms_per_step'))}" for lib in libs
        )
        parts.append(f"median ms/step: {ms}")
        out.append(f"- **{d}**: " + "; ".join(parts) + ".")
    missing = [f"{lib} ({why})" for lib, why in status.items() if why != "ok"]
    if missing:
        out.append(f"- Not run: {', '.join(missing)}.")
    diffs = [
        v
        for ds in sets.values()
        for k, v in ds.get("objective_check", {}).items()
        if k.startswith("abs_diff")
    ]
    if diffs:
        out.append(
            "- Objective check (peer loss minus genlab loss on one shared batch): "
            f"max |diff| {max(diffs):.3g}."
        )
    out.append("")
    out.append(
        "Training speed (one fresh worker process per row; compare the medians, see the load average):"
    )
    out.append("")
    out += table(
        ["data set", "library", "median ms/step", "steps/s (wall)", "final loss", "load avg start / end"],
        [
            [
                d,
                lib,
                num(r.get("median_ms_per_step")),
                num(r.get("steps_per_s")),
                num(r.get("loss_final")),
                " / ".join(num(x) for x in r.get("loadavg_1min_start_end", [])) or "-",
            ]
            for d, ds in sets.items()
            for lib, r in ds.get("train", {}).items()
        ],
    )
    out.append("")
    out.append(
        f"Sample quality, W2 ({' / '.join(libs)}), every net sampled by genlab's solvers from the same x_0:"
    )
    out.append("")
    rows = []
    for key in quality_keys:
        solver, _, n = key.partition("-")
        row = [solver, n or "adaptive"]
        for ds in sets.values():
            q = ds.get("quality", {})
            cell = " / ".join(num(q.get(lib, {}).get(key, {}).get("w2")) for lib in libs)
            if not n:
                cell += (
                    " (NFE "
                    + "/".join(str(q.get(lib, {}).get(key, {}).get("nfe", "-")) for lib in libs)
                    + ")"
                )
            row.append(cell)
        rows.append(row)
    rows.append(["floor (data vs data)", "-", *(num(ds.get("floor", {}).get("w2")) for ds in sets.values())])
    out += table(["solver", "NFE", *(f"{d} W2" for d in sets)], rows)
    md = full_tables(name, data, path, tables, "total_seconds")
    if md:
        out += ["", *details(f"Full tables ({md[0]}): speed, memory, W2 and MMD², solver cross-check", md[1])]
    cmd = command(["benchmarks/toy2d.py", *flags(cfg, TOY2D_DEFAULTS), *out_flag(name, "toy2d.json")])
    return [
        *facts(
            name,
            data,
            batch=num(cfg.get("batch")),
            training=f"{cfg['steps']} per library and data set" if "steps" in cfg else NR,
            seeds=(f"master {cfg['seed']}; " if "seed" in cfg else "") + (seeds or NR),
            nfe=nfes or NR,
            command=cmd,
        ),
        "",
        *out,
    ]


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--steps", type=int, default=None, help=f"training steps (default {DEFAULTS['steps']})")
    p.add_argument("--batch", type=int, default=DEFAULTS["batch"], help="batch size")
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="Adam learning rate")
    p.add_argument(
        "--datasets",
        nargs="+",
        default=None,
        help=f"toy data sets (default {' '.join(DEFAULT_DATASETS)})",
    )
    p.add_argument(
        "--libraries",
        nargs="+",
        default=list(LIBRARIES),
        choices=LIBRARIES,
        help="libraries to run",
    )
    p.add_argument(
        "--n-eval",
        type=int,
        default=None,
        help=f"evaluation samples (default {DEFAULTS['n_eval']})",
    )
    p.add_argument("--seed", type=int, default=0, help="master seed")
    p.add_argument(
        "--noise",
        choices=("native", "shared"),
        default="native",
        help="native: peers draw x_0 and t as in their own examples (global RNG); "
        "shared: peers get genlab's exact (x_0, t) draws",
    )
    p.add_argument("--dopri-tol", type=float, default=1e-5, help="dopri5 atol = rtol")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads for training and sampling (default: torch's default); "
        "1 is far more robust on a shared, oversubscribed machine",
    )
    p.add_argument("--quick", action="store_true", help="tiny smoke run (moons, 30 steps, 256 samples)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON output (default benchmarks/results/toy2d[_quick].json); the markdown goes next to it",
    )
    args = p.parse_args(argv)
    preset = QUICK if args.quick else {}
    if args.steps is None:
        args.steps = preset.get("steps", DEFAULTS["steps"])
    if args.n_eval is None:
        args.n_eval = preset.get("n_eval", DEFAULTS["n_eval"])
    if args.datasets is None:
        args.datasets = preset.get("datasets", DEFAULT_DATASETS)
    if args.out is None:
        here = Path(__file__).resolve().parent
        args.out = here / "results" / ("toy2d_quick.json" if args.quick else "toy2d.json")
    if "genlab" not in args.libraries:
        p.error("genlab is the reference and must be among --libraries")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be positive")
    for name in ("steps", "batch", "n_eval"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be positive")
    return args


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    t_start = time.perf_counter()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    env = environment()
    status = library_status()
    libs = [lib for lib in args.libraries if status[lib] == "ok"]
    for lib in args.libraries:
        if status[lib] != "ok":
            log(f"[toy2d] {lib}: {status[lib]} -- skipped")
    result: dict[str, Any] = {
        "benchmark": "toy2d",
        "config": {
            "steps": args.steps,
            "batch": args.batch,
            "lr": args.lr,
            "datasets": list(args.datasets),
            "libraries": libs,
            "n_eval": args.n_eval,
            "seed": args.seed,
            "noise": args.noise,
            "dopri_tol": args.dopri_tol,
            "quick": args.quick,
            "threads": args.threads,
            "network": asdict(NET_CONFIG),
            "memory_measure": "VmHWM of /proc/self/status (the RSS high-water mark), reset "
            "to the current RSS through /proc/self/clear_refs just before the loop, in a fresh "
            "worker process per run: peak during the loop minus RSS at loop start",
        },
        "environment": env,
        "library_status": status,
        "n_params": sum(p.numel() for p in build_net(args.seed).parameters()),
        "datasets": {},
    }

    for i, ds in enumerate(args.datasets):
        seeds = Seeds.derive(args.seed, i)
        entry: dict[str, Any] = {"seeds": asdict(seeds), "train": {}, "quality": {}}
        entry["objective_check"] = objective_check(ds, seeds, args.batch, libs)
        nets = {}
        for lib in libs:
            log(f"[toy2d] {ds}: training {lib} for {args.steps} steps ...")
            job = TrainJob(
                lib,
                ds,
                args.steps,
                args.batch,
                args.lr,
                seeds,
                args.noise == "shared",
                args.threads,
            )
            r, nets[lib] = run_isolated(job)
            entry["train"][lib] = r
            log(f"[toy2d]   {r['steps_per_s']:.1f} steps/s, final loss {r['loss_final']:.4f}")
        digests = {r["init_digest"] for r in entry["train"].values()}
        if len(digests) != 1:
            raise RuntimeError(f"initial networks differ between libraries: {digests}")

        data = make_toy(ds)
        reference = data.sample(args.n_eval, generator(seeds.reference))  # (n_eval, 2)
        x0 = torch.randn(args.n_eval, 2, generator=generator(seeds.source))  # (n_eval, 2)
        bw = fixed_bandwidths(reference)
        g_floor = generator(seeds.floor)
        first, second = data.sample(args.n_eval, g_floor), data.sample(args.n_eval, g_floor)
        entry["floor"] = {
            "w2": wasserstein2(first, second),
            "mmd2": mmd(first, second, bandwidths=bw),
            # genlab's helper on the same two draws (its MMD uses the median heuristic)
            "metric_floor": metric_floor(data.sample, args.n_eval, ["w2", "mmd"], generator(seeds.floor)),
        }
        entry["mmd_bandwidths"] = list(bw)
        for lib in libs:
            log(f"[toy2d] {ds}: sampling {lib} ...")
            entry["quality"][lib] = evaluate(nets[lib], x0, reference, bw, args.dopri_tol)
        entry["sampling_seconds"] = {}  # Euler NFE 100: (wall, NFE x median call)
        for lib in libs:
            q = entry["quality"][lib][f"euler-{SAMPLING_TIME_NFE}"]
            entry["sampling_seconds"][lib] = (q["seconds"], q["nfe"] * q["median_ms_per_nfe"] / 1e3)
        entry["cross_check"] = {
            lib: cross_check(lib, nets[lib], x0, reference, bw) for lib in libs if lib != "genlab"
        }
        result["datasets"][ds] = entry

    env["loadavg_end"] = list(os.getloadavg())
    result["total_seconds"] = time.perf_counter() - t_start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    sys.stdout.write(write(render, args.out, result))
    minutes = result["total_seconds"] / 60
    log(f"[toy2d] wrote {args.out} and {args.out.with_suffix('.md')} in {minutes:.1f} min")
    return result


if __name__ == "__main__":
    main()
