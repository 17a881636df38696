"""Data-parallel scaling: training throughput of genlab's DDP trainer with 1 and 2 processes.

genlab trains data-parallel when launched by torchrun (``src/genlab/training/distributed.py``):
every process draws the same global batch of ``train.batch_size``, keeps its contiguous
1/N shard, and DDP averages the gradients (gloo all-reduce on CPU). This benchmark launches

    python -m torch.distributed.run --standalone --nproc-per-node N -m genlab train CONFIG \\
        train.threads=1 train.eval_every=0 ... --out DIR --no-progress

(and, for the 1-process reference, plain ``python -m genlab train CONFIG ...``) for a few
packaged configs and reads the throughput from the run's ``metrics.jsonl``: rank 0 writes
``steps_per_s`` for every logging window; the value reported is the median of the windows
after the first (the first holds compilation / allocator warm-up).

Two tables:

- **strong scaling**: the global batch is fixed (moons 256, digits 128) and split across the
  N processes; ideal = N x the steps/s of one process.
- **weak scaling**: the per-process batch is fixed (global = N x per-process); ideal = the
  same steps/s with N x the samples/s.

One thread per process (``train.threads=1``, ``OMP_NUM_THREADS=1``), so 2 processes use the
2 cores of the machine. The step count of every point comes from a short 1-process pilot:
``steps = budget x pilot steps/s`` (rounded to whole logging windows), the same for every
point of one config.

    python benchmarks/scaling.py [--quick] [--budget 25] [--configs moons digits moons_gan]

Markdown tables go to stdout, progress to stderr, everything (commands, every window rate,
wall times, load average, parameter counts, a gloo all-reduce timing) to
``benchmarks/results/scaling.json`` / ``.md`` (``scaling_quick.*`` with ``--quick``).
See benchmarks/README.md.
"""

from __future__ import annotations

import os

# one thread per library before they load (only when run: results_md.py imports render() from here)
if __name__ == "__main__":
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from _env import machine  # noqa: E402
from _render import NR, command, details, facts, full_tables, num, out_flag, table, write  # noqa: E402

from genlab import __version__  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PYTHON = sys.executable
THREADS = 1  # torch threads per process


@dataclass(frozen=True)
class Bench:
    config: str  # packaged config name
    label: str  # what the tables call it
    batch: int  # global batch of the strong-scaling table = per-process batch of the weak one
    log_every: int  # steps per metrics.jsonl window
    pilot_steps: int  # steps of the 1-process pilot that sets the step count


BENCHES = {
    "moons": Bench("moons", "flow matching, MLP 4x256 (moons)", 256, 50, 300),
    "digits": Bench("digits", "flow matching, U-Net (digits)", 128, 25, 75),
    "moons_gan": Bench("moons_gan", "GAN, MLP 3x128 (moons_gan)", 256, 50, 300),
}


@dataclass(frozen=True)
class Point:
    table: str  # "strong" or "weak"
    launcher: str  # "plain" (python -m genlab) or "torchrun"
    nproc: int
    global_batch: int

    @property
    def per_process_batch(self) -> int:
        return self.global_batch // self.nproc


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def train_command(bench: Bench, point: Point, steps: int, log_every: int, out: Path) -> list[str]:
    overrides = [
        f"train.steps={steps}",
        f"train.batch_size={point.global_batch}",
        f"train.threads={THREADS}",
        "train.eval_every=0",
        f"train.ckpt_every={10 * steps}",
        f"train.log_every={log_every}",
    ]
    if point.launcher == "plain":
        head = [PYTHON, "-m", "genlab"]
    else:
        head = [PYTHON, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={point.nproc}"]
        head += ["-m", "genlab"]
    return [*head, "train", bench.config, *overrides, "--out", str(out), "--no-progress"]


def run_point(bench: Bench, point: Point, steps: int, log_every: int, work: Path) -> dict[str, Any]:
    """Train one point in a fresh process group and read its window rates."""
    out = work / f"{bench.config}_{point.table}_{point.launcher}_{point.nproc}"
    if out.exists():
        shutil.rmtree(out)
    cmd = train_command(bench, point, steps, log_every, out)
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "PYTHONWARNINGS": "ignore"}
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]
    rates = [r["steps_per_s"] for r in records if "steps_per_s" in r]
    done = [line for line in proc.stdout.splitlines() if line.startswith("done:")]
    steady = rates[1:] if len(rates) > 1 else rates
    sps = statistics.median(steady)
    shutil.rmtree(out, ignore_errors=True)
    return {
        **asdict(point),
        "per_process_batch": point.per_process_batch,
        "threads_per_process": THREADS,
        "steps": steps,
        "log_every": log_every,
        "command": shlex.join(cmd).replace(PYTHON, "python"),
        "steps_per_s": sps,
        "samples_per_s": sps * point.global_batch,
        "window_rates": rates,
        "window_rate_iqr": _iqr(steady),
        "cli_done_line": done[-1] if done else None,
        "wall_s": wall,
        "loadavg_1min_start": load0,
        "loadavg_1min_end": os.getloadavg()[0],
        "final_loss": records[-1].get("loss") if records else None,
    }


def _iqr(xs: list[float]) -> list[float]:
    if len(xs) < 4:
        return [min(xs), max(xs)]
    q = statistics.quantiles(xs, n=4)
    return [q[0], q[2]]


def param_count(config: str) -> int:
    """Trainable parameters of the packaged config's model: the floats DDP all-reduces per backward."""
    from genlab.app import runs
    from genlab.app.builders import build_dataset, build_model, data_shape

    cfg = runs.resolve_config(config, [])
    dataset = build_dataset(cfg.data)
    model = build_model(cfg, data_shape(dataset), getattr(dataset, "num_classes", None))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _allreduce_worker(rank: int, world: int, port: int, numels: list[int], reps: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    result = {}
    for n in numels:
        t = torch.randn(n)
        for _ in range(10):
            dist.all_reduce(t)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            dist.all_reduce(t)
            times.append(time.perf_counter() - t0)
        result[n] = 1e3 * statistics.median(times)
    if rank == 0:
        Path(out).write_text(json.dumps(result))
    dist.destroy_process_group()


def allreduce_ms(numels: list[int], reps: int) -> dict[int, float]:
    """Median milliseconds of one gloo all-reduce (sum) of ``n`` float32 values between 2 processes."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    mp.spawn(_allreduce_worker, args=(2, port, numels, reps, out), nprocs=2, join=True)
    data = json.loads(Path(out).read_text())
    Path(out).unlink()
    return {int(k): v for k, v in data.items()}


def pilot(bench: Bench, work: Path) -> float:
    point = Point("pilot", "plain", 1, bench.batch)
    log_every = max(bench.pilot_steps // 5, 1)
    res = run_point(bench, point, bench.pilot_steps, log_every, work)
    return res["steps_per_s"]


def points(bench: Bench) -> list[Point]:
    b = bench.batch
    return [
        Point("strong", "plain", 1, b),
        Point("strong", "torchrun", 1, b),
        Point("strong", "torchrun", 2, b),
        Point("weak", "torchrun", 2, 2 * b),  # the weak N=1 row is the strong torchrun N=1 row
    ]


def fmt(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}"


def tables(result: dict[str, Any]) -> str:
    """Every table of a result (IQR, load, communication cost) as markdown."""
    m = result["machine"]
    lines = [
        "# Data-parallel scaling of `genlab train` (DDP, gloo on CPU)",
        "",
        f"{m['cpu_model'] or 'CPU'} ({m['cpu_count']} CPUs), torch {m['torch']}, "
        f"{THREADS} thread per process, genlab {result['genlab']} "
        f"(commit {str(m['genlab_git']['commit'])[:10]}"
        f"{', src modified' if m['genlab_git']['src_genlab_modified'] else ''}). "
        f"Budget ~{result['budget_s']:g} s of training per point. Total {result['total_min']:.1f} min.",
        "",
        "steps/s = median over the metrics.jsonl windows after the first (rank 0's clock); "
        "samples/s = steps/s x global batch. Speed-up = samples/s over the plain 1-process "
        "`genlab train` row of the same config (strong scaling: the same as the steps/s ratio). "
        "Efficiency = speed-up / processes. IQR = interquartile range of the window rates.",
    ]
    for kind, title in (
        ("strong", "Strong scaling: fixed global batch, split across the processes"),
        ("weak", "Weak scaling: fixed per-process batch (global = processes x per-process)"),
    ):
        lines += [
            "",
            f"## {title}",
            "",
            "| config | launcher | processes | threads/process | global batch | per-process batch | "
            "steps | steps/s (IQR) | samples/s | speed-up | efficiency | load 1 min |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for cfg in result["configs"]:
            rows = [r for r in cfg["rows"] if r["table"] == "strong"]
            if kind == "weak":
                rows = [r for r in rows if r["launcher"] == "torchrun" and r["nproc"] == 1]
                rows += [r for r in cfg["rows"] if r["table"] == "weak"]
            ref = next(r for r in cfg["rows"] if r["launcher"] == "plain")
            for r in rows:
                speed = r["samples_per_s"] / ref["samples_per_s"]
                lo, hi = r["window_rate_iqr"]
                lines.append(
                    f"| `{cfg['config']}` | {r['launcher']} | {r['nproc']} | {r['threads_per_process']} | "
                    f"{r['global_batch']} | {r['per_process_batch']} | {r['steps']} | "
                    f"{fmt(r['steps_per_s'])} ({fmt(lo)}-{fmt(hi)}) | {fmt(r['samples_per_s'], 0)} | "
                    f"{speed:.2f}x | {speed / r['nproc']:.0%} | "
                    f"{r['loadavg_1min_start']:.1f}-{r['loadavg_1min_end']:.1f} |"
                )
    ar = result.get("allreduce")
    if ar:
        lines += [
            "",
            "## What one step has to all-reduce",
            "",
            "Gradient floats per backward = trainable parameters (a GAN step has two backward passes, "
            "discriminator and generator, each all-reducing every parameter with "
            "`find_unused_parameters`); gloo all-reduce time = median of one `all_reduce` of that many "
            "float32 between 2 processes on this machine (1 thread each), measured apart from training. "
            f"A 1-float all-reduce (the latency floor; the trainer runs one per step to agree on "
            f"interrupts) takes {ar.get('1', float('nan')):.3f} ms.",
            "",
            "| config | parameters | backward passes / step | all-reduce ms (gloo, 2 proc) | "
            "1-process ms/step | 2-process ms/step (strong) |",
            "|---|---|---|---|---|---|",
        ]
        for cfg in result["configs"]:
            ref = next(r for r in cfg["rows"] if r["launcher"] == "plain")
            two = next(r for r in cfg["rows"] if r["table"] == "strong" and r["nproc"] == 2)
            passes = 2 if "gan" in cfg["config"] else 1
            lines.append(
                f"| `{cfg['config']}` | {cfg['parameters']:,} | {passes} | "
                f"{ar[str(cfg['parameters'])]:.2f} | {1e3 / ref['steps_per_s']:.2f} | "
                f"{1e3 / two['steps_per_s']:.2f} |"
            )
    lines += [
        "",
        "## Commands",
        "",
        "Every row's exact command is in the JSON (`configs[].rows[].command`). On N GPUs:",
        "",
        "```",
        "torchrun --nproc-per-node N -m genlab train CONFIG",
        "```",
        "",
        "No GPU on this machine: the numbers above are CPU processes. The backend is picked "
        "automatically (NCCL when CUDA is available, else gloo); "
        "genlab's trainer currently runs its model on the CPU.",
    ]
    return "\n".join(lines) + "\n"


def render(name: str, data: dict[str, Any], path: Path) -> list[str]:
    """The markdown of a result JSON: run facts, the speed-ups, the all-reduce times, the full tables."""
    configs = data.get("configs", [])
    out: list[str] = []
    rows = []
    summary = []
    for c in configs:
        base = next((r for r in c.get("rows", []) if r.get("launcher") == "plain"), None)
        for r in c.get("rows", []):
            speed = (r["samples_per_s"] / base["samples_per_s"]) if base and r.get("samples_per_s") else None
            rows.append(
                [
                    f"`{c.get('config')}`",
                    r.get("table"),
                    r.get("launcher"),
                    r.get("nproc"),
                    r.get("global_batch"),
                    r.get("per_process_batch"),
                    r.get("steps"),
                    num(r.get("steps_per_s")),
                    f"{r['samples_per_s']:,.0f}" if r.get("samples_per_s") else "-",
                    f"{speed:.2f}x" if speed else "-",
                ]
            )
            if r.get("table") == "strong" and r.get("nproc") == 2 and speed:
                summary.append(f"{c.get('config')} {speed:.2f}x")
    if summary:
        out.append(
            "Strong scaling, 2 processes over plain `genlab train` (samples/s): " + ", ".join(summary) + "."
        )
        out.append("")
    out += table(
        [
            "config",
            "table",
            "launcher",
            "processes",
            "global batch",
            "per-process batch",
            "steps",
            "steps/s",
            "samples/s",
            "speed-up",
        ],
        rows,
    )
    ar = data.get("allreduce") or {}
    if ar:
        out += ["", "gloo all-reduce between two processes (median ms):", ""]
        out += table(["floats", "ms"], [[k, num(v)] for k, v in ar.items()])
    md = full_tables(name, data, path, tables, "total_min")
    if md:
        out += ["", *details(f"Full tables ({md[0]}): IQR, load, communication cost", md[1])]
    args = ["benchmarks/scaling.py"]
    names = [c.get("config") for c in configs]
    if names and names != ["moons", "digits", "moons_gan"]:
        args += ["--configs", *names]
    if data.get("budget_s") not in (None, 25.0):
        args += ["--budget", str(data["budget_s"])]
    if configs and not ar:
        args.append("--no-allreduce")
    batches = "; ".join(
        f"{c.get('config')}: global "
        + "/".join(str(b) for b in dict.fromkeys(r.get("global_batch") for r in c["rows"]))
        for c in configs
    )
    return [
        *facts(
            name,
            data,
            batch=batches or NR,
            training="; ".join(
                f"{c.get('config')} {c['rows'][0].get('steps')}" for c in configs if c.get("rows")
            )
            or NR,
            nfe="not applicable (training throughput only)",
            command=command(args + out_flag(name, "scaling.json")),
        ),
        "",
        *out,
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=list(BENCHES), choices=list(BENCHES))
    p.add_argument("--budget", type=float, default=25.0, help="seconds of training per point")
    p.add_argument("--quick", action="store_true", help="smoke run: ~1.5 s per point (< 2 min)")
    p.add_argument("--no-allreduce", action="store_true", help="skip the gloo all-reduce timing")
    p.add_argument("--out", default=None, help="JSON path (default results/scaling[_quick].json)")
    args = p.parse_args()
    budget = 1.5 if args.quick else args.budget
    out = Path(args.out) if args.out else RESULTS / ("scaling_quick.json" if args.quick else "scaling.json")
    t_start = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "scaling",
        "genlab": __version__,
        "machine": machine(THREADS, ["torch", "numpy"]),
        "quick": args.quick,
        "budget_s": budget,
        "configs": [],
    }
    work = Path(tempfile.mkdtemp(prefix="genlab_scaling_"))
    try:
        for name in args.configs:
            bench = BENCHES[name]
            if args.quick:
                bench = Bench(
                    bench.config, bench.label, bench.batch, bench.log_every // 5, bench.pilot_steps // 5
                )
            rate = pilot(bench, work)
            windows = max(round(budget * rate / bench.log_every), 5)
            steps = windows * bench.log_every
            log(f"{name}: pilot {rate:.1f} steps/s -> {steps} steps per point")
            entry: dict[str, Any] = {
                "config": name,
                "label": bench.label,
                "pilot_steps_per_s": rate,
                "parameters": param_count(name),
                "rows": [],
            }
            for point in points(bench):
                row = run_point(bench, point, steps, bench.log_every, work)
                log(
                    f"  {point.table:6s} {point.launcher:8s} N={point.nproc} batch {point.global_batch}: "
                    f"{row['steps_per_s']:.1f} steps/s ({row['wall_s']:.1f} s wall, "
                    f"load {row['loadavg_1min_end']:.2f})"
                )
                entry["rows"].append(row)
            result["configs"].append(entry)
        if not args.no_allreduce:
            numels = sorted({1} | {c["parameters"] for c in result["configs"]})  # 1: a flag collective
            log(f"gloo all-reduce timing for {numels} floats")
            timings = allreduce_ms(numels, 50 if args.quick else 300)
            result["allreduce"] = {str(k): v for k, v in timings.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    result["total_min"] = (time.perf_counter() - t_start) / 60
    result["gpu_command"] = "torchrun --nproc-per-node N -m genlab train CONFIG"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(write(render, out, result), end="")
    log(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
