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
import time
from pathlib import Path
from typing import Any

import torch

from genlab import __version__, evaluation, runs
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


def write_markdown(result: dict[str, Any], path: Path) -> None:
    """The tables of a result JSON as markdown."""
    g = result["guidance"]
    lines = [
        f"# Classifier-free guidance on digits ({result['train_steps']} training steps)",
        "",
        f"Sampling: {result['sampling']}. Accuracy floor (the classifier's test accuracy) "
        f"{g[0]['acc_floor']:.3f}; FD floor {g[0]['fd_floor']:.2f}; n = {g[0]['n']} samples, "
        "classes in turn.",
        "",
        "| w | accuracy on the requested label | FD |",
        "|---|---|---|",
        *[f"| {r['w']:g} | {r['acc']:.3f} | {r['fd']:.2f} |" for r in g],
    ]
    if result["couplings"]:
        lines += [
            "",
            "# Data couplings on the digits test split",
            "",
            "| coupling | args | FD (floor) | MSE to the true digit | MSE of the input |",
            "|---|---|---|---|---|",
            *[
                f"| {r['coupling']} | {r['coupling_args']} | {r['fd']:.2f} ({r['fd_floor']:.2f}) | "
                f"{r['mse_to_truth']:.4f} | {r['mse_input_to_truth']:.4f} |"
                for r in result["couplings"]
            ],
        ]
    path.write_text("\n".join(lines) + "\n")


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
        write_markdown(json.loads(src.read_text()), src.with_suffix(".md"))
        return
    work = Path(args.work)
    train_steps = 300 if args.quick else 3000
    torch.set_num_threads(args.threads)
    over = [f"train.steps={train_steps}", "train.ckpt_every=1000000", f"train.threads={args.threads}"]
    t0 = time.perf_counter()
    run_dir = Path(args.run) if args.run else work / "digits_cond"
    if not args.run:
        train(runs.resolve_config("digits_cond", over), run_dir, overwrite=True)
    table = guidance_table(run_dir, args.steps)
    couplings = []
    if args.couplings:
        for name in ("digits_inpaint", "digits_superres"):
            train(runs.resolve_config(name, over), work / name, overwrite=True)
            couplings.append(coupling_row(work / name, args.steps))
            print(couplings[-1])
    result = {
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
        "guidance": table,
        "couplings": couplings,
        "seconds": time.perf_counter() - t0,
    }
    out = Path(__file__).parent / "results" / ("guidance_quick.json" if args.quick else "guidance.json")
    out.write_text(json.dumps(result, indent=2))
    write_markdown(result, out.with_suffix(".md"))
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
