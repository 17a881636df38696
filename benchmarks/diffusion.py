"""Diffusion samplers: quality against the number of network evaluations (NFE).

Trains a score model (VP SDE, epsilon-prediction) on 2D sets (and optionally 8x8 digits),
then samples it with every sampler at several NFE: reverse-SDE Euler-Maruyama (em),
predictor-corrector (pc), the probability-flow ODE with Euler / Heun / dopri5, DDIM (eta = 0)
and DPM-Solver++(2M) (dpm). The reference is em with 1000 steps. It also trains a
flow-matching model (velocity) on the same VP path and samples it by its ODE and by the SDE
extension trick with sigma_t = g(1 - t), i.e. as a reverse diffusion SDE.

    python benchmarks/diffusion.py                 # 2D sets, ~15 min on 2 cores
    python benchmarks/diffusion.py --digits        # + digits (Frechet distance), ~+10 min
    python benchmarks/diffusion.py --quick         # smoke run

Prints markdown tables and writes JSON (default benchmarks/results/diffusion.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
from _render import NR, command, details, facts, flags, full_tables, num, table

from genlab import __version__
from genlab.app import runs
from genlab.app.train import train
from genlab.metrics import compute_metrics

# (sampler, solver, NFE list); steps are derived from the NFE per step of each sampler
PLAN: list[tuple[str, str | None, list[int]]] = [
    ("em", None, [10, 20, 50, 100, 1000]),
    ("pc", None, [20, 50, 100, 200]),  # 1 corrector + 1 predictor evaluation per step
    ("ode", "euler", [10, 20, 50, 100]),
    ("ode", "heun", [10, 20, 50, 100]),
    ("ode", "dopri5", [0]),  # adaptive: NFE reported
    ("ddim", None, [10, 20, 50, 100]),
    ("dpm", None, [5, 10, 20, 50]),
]
EVALS_PER_STEP = {"em": 1, "pc": 2, "ddim": 1, "dpm": 1, "euler": 1, "heun": 2}


def train_run(config: str, overrides: list[str], out: Path) -> tuple[runs.Run, float]:
    cfg = runs.resolve_config(config, overrides)
    t0 = time.perf_counter()
    train(cfg, out, overwrite=True, progress=False)
    return runs.load_run(out), time.perf_counter() - t0


def quality(run: runs.Run, x: torch.Tensor, ref: torch.Tensor, names: list[str]) -> dict[str, float]:
    if "fd" in names:
        from genlab.metrics import frechet_digits_distance

        return {"fd": frechet_digits_distance(x, ref)}
    return compute_metrics(x.flatten(1), ref.flatten(1), names)


def sweep(run: runs.Run, n: int, ref: torch.Tensor, names: list[str], quick: bool) -> list[dict[str, Any]]:
    rows = []
    for sampler, solver, nfes in PLAN:
        for nfe in nfes[:2] if quick else nfes:
            per = EVALS_PER_STEP.get(solver if sampler == "ode" else sampler, 1)
            steps = max(1, nfe // per) if nfe else 2
            opts: dict[str, Any] = {"atol": 1e-4, "rtol": 1e-4} if solver == "dopri5" else {}
            gen = torch.Generator().manual_seed(0)
            t0 = time.perf_counter()
            sol = run.model.sample(n, solver or "rk4", steps, gen, sampler=sampler, **opts)
            dt = time.perf_counter() - t0
            row = {
                "sampler": sampler if sampler != "ode" else f"ode-{solver}",
                "steps": steps,
                "nfe": sol.nfe,
                "seconds": dt,
                **quality(run, sol.x, ref, names),
            }
            rows.append(row)
            print(
                f"  {row['sampler']:<11} steps {steps:>5}  NFE {sol.nfe:>5}  "
                + "  ".join(f"{k} {row[k]:.4f}" for k in names),
                flush=True,
            )
    return rows


def equivalence(run_fm: runs.Run, n: int, ref: torch.Tensor, names: list[str]) -> list[dict[str, Any]]:
    """A flow-matching model on the VP path, sampled by its ODE and as a reverse SDE."""
    schedule = run_fm.model.path.schedule  # VPSchedule: beta(t) is the VP SDE's beta at tau = 1 - t

    def g(t: torch.Tensor) -> torch.Tensor:  # the VP SDE's diffusion g = sqrt(beta), in time t
        return torch.sqrt(schedule.beta(t))  # type: ignore[attr-defined]

    rows = []
    for label, kw in [
        ("fm ode (rk4, 50)", {"sampler": "ode"}),
        ("fm extension sigma=g (500)", {"sampler": "extension", "noise": g}),
        ("fm dpm (10)", {"sampler": "dpm"}),
    ]:
        steps = 500 if kw["sampler"] == "extension" else (10 if kw["sampler"] == "dpm" else 50)
        sol = run_fm.model.sample(n, "rk4", steps, torch.Generator().manual_seed(0), **kw)
        row = {"sampler": label, "nfe": sol.nfe, **quality(run_fm, sol.x, ref, names)}
        rows.append(row)
        print(f"  {label:<28} NFE {sol.nfe:>4}  " + "  ".join(f"{k} {row[k]:.4f}" for k in names), flush=True)
    return rows


def sampler_table(rows: list[dict[str, Any]], names: list[str], floor: dict[str, float]) -> str:
    head = "| sampler | NFE | " + " | ".join(names) + " | s |"
    lines = [head, "|" + "---|" * (len(names) + 3)]
    for r in rows:
        vals = " | ".join(f"{r[k]:.4f}" for k in names)
        lines.append(f"| {r['sampler']} | {r['nfe']} | {vals} | {r.get('seconds', 0):.2f} |")
    lines.append("| *floor (data vs data)* | | " + " | ".join(f"{floor[k]:.4f}" for k in names) + " | |")
    return "\n".join(lines)


def render(name: str, data: dict[str, Any], path: Path) -> list[str]:
    """The markdown of a result JSON: run facts, key numbers, quality against NFE, the full tables
    (the ``markdown`` key the script stores)."""
    settings = data.get("settings", {})
    sets: dict[str, Any] = data.get("datasets", {})
    args = ["benchmarks/diffusion.py"]
    two_d = [d for d in sets if d != "digits"]
    if two_d and two_d != ["moons", "8gaussians"]:
        args += ["--datasets", ",".join(two_d)]
    args += flags(settings, [("--steps", "train_steps", 6000), ("--n-eval", "n_eval", 2000)])
    if "digits" in sets:
        args.append("--digits")
    samplers: list[str] = []
    nfe_of: dict[str, Any] = {}
    for ds in sets.values():
        for r in ds.get("rows", []):
            samplers += [r["sampler"]] if r.get("sampler") not in samplers else []
            nfe_of.setdefault(r.get("sampler"), [])
            if r.get("nfe") not in nfe_of[r.get("sampler")]:
                nfe_of[r.get("sampler")].append(r.get("nfe"))
    out: list[str] = []
    for d, ds in sets.items():
        goal = ds.get("goal") or {}
        if goal:
            out.append(
                f"- **{d}**: DPM-Solver++ at NFE 10 W2 {num(goal.get('dpm10_w2'))} "
                f"vs {goal.get('reference')} W2 {num(goal.get('reference_w2'))} "
                f"(ratio {num(goal.get('ratio'))}; "
                f"floor {num(ds.get('floor', {}).get('w2'))})."
            )
    metric = {d: ("fd" if "fd" in ds.get("floor", {}) else "w2") for d, ds in sets.items()}
    out += ["", "Quality against NFE (cells: one value per NFE, in the order of the NFE column):", ""]
    rows = []
    for s in samplers:
        per = {
            d: [(r.get("nfe"), r.get(metric[d])) for r in ds.get("rows", []) if r.get("sampler") == s]
            for d, ds in sets.items()
        }
        same = len({tuple(n for n, _ in v) for v in per.values()}) == 1
        row = [s, "/".join(str(n) for n, _ in next(iter(per.values()))) if same else "per data set"]
        for v in per.values():
            row.append("/".join(num(x) if same else f"{num(x)} (NFE {n})" for n, x in v) or "-")
        rows.append(row)
    rows.append(
        ["floor (data vs data)", "-", *(num(ds.get("floor", {}).get(metric[d])) for d, ds in sets.items())]
    )
    out += table(["sampler", "NFE", *(f"{d} {metric[d].upper()}" for d in sets)], rows)
    md = full_tables(name, data, path)
    if md:
        out += ["", *details(f"Full tables ({md[0]}): MMD², seconds, flow matching on the VP path", md[1])]
    steps = f"2D: {settings['train_steps']} per model" if "train_steps" in settings else f"2D: {NR}"
    if "digits" in sets:
        steps += f"; digits: {NR}"
    return [
        *facts(
            name,
            data,
            training=steps,
            nfe="; ".join(f"{s} {'/'.join(str(n) for n in nfe_of[s])}" for s in samplers) or NR,
            command=command(args),
        ),
        "",
        *out,
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="moons,8gaussians")
    ap.add_argument("--steps", type=int, default=6000, help="training steps per 2D model")
    ap.add_argument("--n-eval", type=int, default=2000)
    ap.add_argument("--digits", action="store_true", help="also train digits_diffusion and report FD")
    ap.add_argument("--digits-steps", type=int, default=3000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/diffusion.json")
    ap.add_argument("--work", default="runs/bench-diffusion")
    args = ap.parse_args()
    steps = 300 if args.quick else args.steps
    n = 300 if args.quick else args.n_eval
    work = Path(args.work)
    result: dict[str, Any] = {
        "benchmark": "diffusion",
        "env": {
            "genlab": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
        },
        "settings": {"train_steps": steps, "n_eval": n, "quick": args.quick},
        "datasets": {},
    }
    names = ["w2", "mmd"]
    md = []
    for name in args.datasets.split(","):
        print(
            f"== {name}: training diffusion (VP, eps) and flow matching (VP path), {steps} steps", flush=True
        )
        common = [f"data.name={name}", f"train.steps={steps}", "train.ckpt_every=100000"]
        run, t_diff = train_run("moons_diffusion", common, work / f"{name}-diffusion")
        run_fm, t_fm = train_run("moons", [*common, "model.path=vp"], work / f"{name}-fm-vp")
        ref = run.dataset.sample(n, torch.Generator().manual_seed(123))
        other = run.dataset.sample(n, torch.Generator().manual_seed(456))
        floor = compute_metrics(other, ref, names)
        rows = sweep(run, n, ref, names, args.quick)
        eq = equivalence(run_fm, n, ref, names)
        reference = next(
            r
            for r in rows
            if r["sampler"] == "em" and r["nfe"] == max(x["nfe"] for x in rows if x["sampler"] == "em")
        )
        fast = [r for r in rows if r["sampler"] == "dpm" and r["nfe"] == 10]
        verdict = {}
        if fast:
            verdict = {
                "dpm10_w2": fast[0]["w2"],
                "reference_w2": reference["w2"],
                "ratio": fast[0]["w2"] / reference["w2"],
                "reference": f"em {reference['nfe']}",
            }
        result["datasets"][name] = {
            "rows": rows,
            "equivalence": eq,
            "floor": floor,
            "train_seconds": {"diffusion": t_diff, "fm_vp": t_fm},
            "goal": verdict,
        }
        md.append(f"### {name} (W2 / MMD^2 vs {n} fresh data points)\n\n" + sampler_table(rows, names, floor))
        md.append("Flow matching on the same VP path:\n\n" + sampler_table(eq, names, floor))
        if verdict:
            md.append(
                f"Goal: DPM-Solver++ at NFE 10 W2 = {verdict['dpm10_w2']:.4f} vs {verdict['reference']} "
                f"W2 = {verdict['reference_w2']:.4f} (ratio {verdict['ratio']:.3f}; goal <= 1.10)"
            )
    if args.digits:
        dsteps = 200 if args.quick else args.digits_steps
        print(f"== digits: training digits_diffusion, {dsteps} steps", flush=True)
        run, t_dig = train_run(
            "digits_diffusion",
            [f"train.steps={dsteps}", "train.ckpt_every=100000"],
            work / "digits-diffusion",
        )
        test = runs.build_dataset(run.cfg.data, split="test").images
        from genlab.metrics import digits_fd_floor

        floor = {"fd": digits_fd_floor()}
        rows = sweep(run, len(test), test, ["fd"], args.quick)
        result["datasets"]["digits"] = {"rows": rows, "floor": floor, "train_seconds": t_dig}
        md.append(
            f"### digits (Frechet distance, {len(test)} samples vs the test split)\n\n"
            + sampler_table(rows, ["fd"], floor)
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result["markdown"] = "\n\n".join(md)
    out.write_text(json.dumps(result, indent=2))
    print("\n" + "\n".join(render(out.name, result, out)))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
