"""The adjoint method's memory (issue 21, item 8): peak resident memory of one CNF training step
(loss and backward) by backpropagation through the solver and by the adjoint ODE, at several
solver step counts.

Each measurement runs in a fresh process: it builds the CNF (a 4 x 256 SiLU TimeMLP on 2D
points, RK4, Hutchinson divergence), draws a batch, reads VmRSS, runs the step, and reads
VmHWM (the high-water mark); the step's memory is the difference. The gradients of the two
methods agree (tests/test_likelihood.py::test_adjoint_gradients_equal_direct_backpropagation).

    python benchmarks/adjoint.py            # steps 8, 32, 128; batch 1024 (direct at 128: ~20 GB)
    python benchmarks/adjoint.py --quick    # a smoke run

Writes ``results/adjoint.json`` and ``results/adjoint.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _env import machine
from _render import generic, table, write

HERE = Path(__file__).resolve().parent

CHILD = """
import sys, time, torch
from genlab.models import CNF
from genlab.networks import MLPConfig, TimeMLP

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024  # MiB
torch.set_num_threads(1)
adjoint, steps, batch = sys.argv[1] == "adjoint", int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
model = CNF(TimeMLP(MLPConfig(dim=2, width=256, depth=4)), (2,), steps=steps, adjoint=adjoint)
x = torch.randn(batch, 2)
before = status("VmRSS")
t0 = time.perf_counter()
model.loss(x, torch.Generator().manual_seed(0))["loss"].backward()
print(status("VmHWM") - before, time.perf_counter() - t0)
"""


def measure(mode: str, steps: int, batch: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(steps), str(batch)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    ).stdout.split()
    return {"mode": mode, "steps": steps, "batch": batch, "step_mib": float(out[0]), "seconds": float(out[1])}


def tables(data: dict[str, Any]) -> str:
    rows = []
    for steps in sorted({r["steps"] for r in data["rows"]}):
        by = {r["mode"]: r for r in data["rows"] if r["steps"] == steps}
        d, a = by["direct"], by["adjoint"]
        rows.append(
            [
                steps,
                f"{d['step_mib']:.0f}",
                f"{a['step_mib']:.0f}",
                f"{d['step_mib'] / max(a['step_mib'], 1e-9):.1f}x",
                f"{d['seconds']:.2f}",
                f"{a['seconds']:.2f}",
            ]
        )
    head = ["RK4 steps", "direct MiB", "adjoint MiB", "memory saved", "direct s", "adjoint s"]
    return (
        f"### One CNF training step, batch {data['batch']} (peak resident memory above the start)\n\n"
        + "\n".join(table(head, rows))
        + "\n"
    )


def render(name: str, data: dict[str, Any], path: Path) -> list[str]:
    """The markdown of a result JSON: the run facts, then the table."""
    return generic(name, data, path, tables, "total_seconds")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="a smoke run (CI)")
    p.add_argument("--batch", type=int, default=None, help="points per step (default 1024)")
    p.add_argument("--out", type=Path, default=None, help="JSON (default results/adjoint[_quick].json)")
    args = p.parse_args(argv)
    steps = [2, 4] if args.quick else [8, 32, 128]
    batch = args.batch or (64 if args.quick else 1024)
    out = args.out or HERE / "results" / ("adjoint_quick.json" if args.quick else "adjoint.json")
    t0, load0 = time.time(), os.getloadavg()
    rows = [measure(mode, s, batch) for s in steps for mode in ("direct", "adjoint")]
    data = {
        "benchmark": "adjoint",
        "quick": args.quick,
        "argv": sys.argv[1:] if argv is None else argv,
        "batch": batch,
        "settings": {"batch_size": batch, "steps": steps},
        "machine": machine(1, ("torchdiffeq",)),
        "rows": rows,
        "load_average": {"start": load0, "end": os.getloadavg()},
        "total_seconds": time.time() - t0,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1))
    print(write(render, out, data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
