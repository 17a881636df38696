"""Classifier-free guidance on digits: conditional accuracy and Frechet distance against the
guidance scale w, plus the data couplings (inpainting, super-resolution) on the same budget.

1. Trains ``digits_cond`` (class-conditional U-Net, label dropout 0.2) unless ``--run`` points
   to a trained run, then samples 359 digits (the size of the test split; classes in turn)
   with 25 RK4 steps for each w and reports the digits classifier's accuracy on the requested
   labels (floor: its test accuracy, 0.983) and the Frechet distance of its features to the
   test split (floor: train vs test split).
2. ``--couplings`` also trains ``digits_inpaint`` and ``digits_superres`` and reports, on the
   test split, the FD of the completed digits and the mean squared error to the true digit
   (next to the error of the corrupted input itself).

    python benchmarks/guidance.py [--quick] [--run RUN_DIR] [--couplings] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import time
from pathlib import Path
from typing import Any

import torch
from _render import NR, command, facts, num, table, write
from _render import environment as recorded_environment

from genlab import __version__
from genlab.app import evaluation, runs
from genlab.app.conditioning import run_conditioning
from genlab.app.train import train

SCALES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)


def guidance_table(run_dir: Path, steps: int) -> list[dict[str, Any]]:
    rows = []
    run = runs.load_run(run_dir)
    for w in SCALES:
        t0 = time.perf_counter()
        sample = runs.sample_settings(run.cfg, steps=steps, guidance=w)
        res = evaluation.evaluate(run, metrics=["acc", "fd"], sample=sample)
        rows.append(
            {
                "w": w,
                "acc": res["metrics"]["acc"]["value"],
                "acc_floor": res["metrics"]["acc"]["floor"],
                "fd": res["metrics"]["fd"]["value"],
                "fd_floor": res["metrics"]["fd"]["floor"],
                "n": res["n"],
                "nfe": res["nfe"],
                "seconds": time.perf_counter() - t0,
            }
        )
        print(f"w={w:<4} acc {rows[-1]['acc']:.3f}  fd {rows[-1]['fd']:.2f}  (nfe {res['nfe']})")
    return rows


def coupling_row(run_dir: Path, steps: int) -> dict[str, Any]:
    run = runs.load_run(run_dir)
    sample = runs.sample_settings(run.cfg, steps=steps)
    res = evaluation.evaluate(run, metrics=["fd"], sample=sample)
    cond = run_conditioning(run, res["n"])
    x = runs.generate(run, res["n"], sample, cond=cond).x
    assert cond.x0 is not None and cond.truth is not None
    mse = float(((x - cond.truth) ** 2).mean())
    mse_input = float(((cond.x0 - cond.truth) ** 2).mean())
    return {
        "coupling": run.cfg.model.coupling,
        "coupling_args": run.cfg.model.coupling_args,
        "fd": res["metrics"]["fd"]["value"],
        "fd_floor": res["metrics"]["fd"]["floor"],
        "mse_to_truth": mse,
        "mse_input_to_truth": mse_input,
        "n": res["n"],
        "nfe": res["nfe"],
    }


def render(name: str, data: dict[str, Any], path: Path) -> list[str]:
    """The markdown of a result JSON: run facts, the guidance sweep, the data couplings."""
    out: list[str] = []
    g = data.get("guidance", [])
    if g:
        best = min(g, key=lambda r: r.get("fd", float("inf")))
        out.append(
            f"Class-conditional digits U-Net: lowest FD {num(best.get('fd'))} at w = {num(best.get('w'))} "
            f"(accuracy {num(best.get('acc'))}; floors: FD {num(g[0].get('fd_floor'))}, "
            f"accuracy {num(g[0].get('acc_floor'))})."
        )
        out += [
            "",
            *table(
                ["w", "accuracy on the requested label", "FD", "n", "NFE"],
                [[num(r.get("w")), num(r.get("acc")), num(r.get("fd")), r.get("n"), r.get("nfe")] for r in g],
            ),
        ]
    c = data.get("couplings", [])
    if c:
        out += ["", "Data couplings on the digits test split:", ""]
        out += table(
            ["coupling", "args", "FD (floor)", "MSE to the true digit", "MSE of the input"],
            [
                [
                    r.get("coupling"),
                    json.dumps(r.get("coupling_args")),
                    f"{num(r.get('fd'))} ({num(r.get('fd_floor'))})",
                    num(r.get("mse_to_truth")),
                    num(r.get("mse_input_to_truth")),
                ]
                for r in c
            ],
        )
    args = ["benchmarks/guidance.py"] + (["--couplings"] if c else [])
    m = re.search(r"(\d+) steps", str(data.get("sampling", "")))
    if m and int(m.group(1)) != 25:
        args += ["--steps", m.group(1)]
    threads = recorded_environment(data).get("threads")
    args += ["--threads", str(threads)] if threads not in (None, 1) else []
    nfes = sorted({r.get("nfe") for r in g + c if r.get("nfe") is not None})
    nfe_text = data.get("sampling") or (f"NFE {', '.join(map(str, nfes))}" if nfes else NR)
    return [
        *facts(
            name,
            data,
            batch=num(data.get("batch_size")) if "batch_size" in data else NR,
            training=f"{data['train_steps']} per run" if "train_steps" in data else NR,
            seeds=f"training {data['seed']}" if "seed" in data else NR,
            nfe=nfe_text,
            command=command(args),
        ),
        "",
        *out,
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="300 training steps (smoke run)")
    ap.add_argument("--run", default=None, help="an existing digits_cond run directory")
    ap.add_argument("--couplings", action="store_true", help="also train the inpainting / superres runs")
    ap.add_argument("--work", default="runs/bench_guidance")
    ap.add_argument("--steps", type=int, default=25, help="RK4 sampling steps")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 leaves a core free)")
    ap.add_argument("--render", default=None, help="only write the markdown of an existing result JSON")
    args = ap.parse_args()
    if args.render:
        src = Path(args.render)
        write(render, src, json.loads(src.read_text()))
        return
    work = Path(args.work)
    train_steps = 300 if args.quick else 3000
    torch.set_num_threads(args.threads)
    over = [f"train.steps={train_steps}", "train.ckpt_every=1000000", f"train.threads={args.threads}"]
    t0 = time.perf_counter()
    run_dir = Path(args.run) if args.run else work / "digits_cond"
    if not args.run:
        train(runs.resolve_config("digits_cond", over), run_dir, overwrite=True)
    sweep = guidance_table(run_dir, args.steps)
    couplings = []
    if args.couplings:
        for name in ("digits_inpaint", "digits_superres"):
            train(runs.resolve_config(name, over), work / name, overwrite=True)
            couplings.append(coupling_row(work / name, args.steps))
            print(couplings[-1])
    result = {
        "benchmark": "guidance",
        "hardware": {
            "processor": platform.processor(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "genlab": __version__,
        "train_steps": train_steps,
        "batch_size": 128,
        "seed": 0,
        "sampling": f"RK4, {args.steps} steps (NFE {4 * args.steps}; w not in (0, 1): each a batch of 2n)",
        "guidance": sweep,
        "couplings": couplings,
        "seconds": time.perf_counter() - t0,
    }
    out = Path(__file__).parent / "results" / ("guidance_quick.json" if args.quick else "guidance.json")
    out.write_text(json.dumps(result, indent=2))
    write(render, out, result)
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
