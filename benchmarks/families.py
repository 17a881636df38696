"""Model families at a fixed CPU training budget: W2 / MMD on 2D toys, Frechet distance on digits.

Every family is trained from its packaged config for the **same wall-clock training seconds**
(``--budget-2d``, default 40 s; ``--budget-digits``, default 90 s) on ``--threads`` CPU threads
(default 1), then scored by ``genlab.app.evaluation.evaluate`` -- the code behind ``genlab eval`` -- next
to the data-vs-data floor it returns:

- 2D (moons, 8gaussians): flow matching (``moons``), VAE (``moons_vae``), non-saturating GAN
  (``moons_gan``), WGAN with clipping + RMSProp (``moons_wgan``), WGAN-GP (``moons_wgan_gp``).
  Metrics W2 and MMD^2 (2000 samples against 2000 held-out points); NLL in nats/point for flow
  matching (exact ODE likelihood, RK4 100 steps) and the VAE (IWAE bound, K = 64: an upper
  bound). The NLL floor of 8gaussians is its true NLL (closed-form density).
- digits (8x8, 359 test images): flow matching U-Net (``digits``), VAE, VQ-VAE, DCGAN,
  conditional DCGAN (also ``acc``: the digits classifier's accuracy on the requested labels),
  style-based GAN. Metrics: FD (Frechet distance of the digits classifier's features to the
  test split; floor train vs test) and W2 on flattened pixels; bits/dim for the VAE.

The budget becomes a step count per (config, data set): a pilot of ``--pilot-steps`` steps
(``train.eval_every=0``, into a temporary directory, seed 0) measures steps/s, and every seed
then trains ``train.steps = round(budget * steps/s)`` steps, with ``train.eval_every`` scaled to
steps / 6 for the configs that keep a best-by-evaluation checkpoint (GANs), ``train.ckpt_every``
to at least steps / 3 and ``train.warmup_steps`` to min(its value, steps / 10). Everything else
is the packaged config. The evaluations a GAN runs during training (to pick its best
checkpoint) are timed separately and are *not* part of the budget.

GAN configs sample from their best checkpoint (``sample.checkpoint: best``); they are also
evaluated at the last checkpoint (``checkpoint="last"``), since GANs often degrade late.

    python benchmarks/families.py [--quick] [--threads 1] [--budget-2d 40] [--budget-digits 90]

Markdown tables go to stdout, progress to stderr, everything to
``benchmarks/results/families.json`` / ``.md`` (``families_quick.*`` with ``--quick``).
See benchmarks/README.md.
"""

from __future__ import annotations

import os

# before numpy / scipy / torch load their thread pools (POT's W2 runs in numpy); only when run, so
# that results_md.py, which imports render() from here, leaves its own process's threads alone
if __name__ == "__main__":
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from _env import machine  # noqa: E402
from _render import NR, command, details, facts, full_tables, num, pm, table, write  # noqa: E402
from _render import environment as recorded_environment  # noqa: E402

from genlab import __version__  # noqa: E402
from genlab.app import evaluation, runs  # noqa: E402
from genlab.app.budget import budget_overrides, pilot_rate  # noqa: E402
from genlab.app.compare import mean_std  # noqa: E402
from genlab.app.train import train  # noqa: E402


@dataclass(frozen=True)
class Family:
    label: str  # what the table calls it
    config: str  # packaged config name
    metrics: tuple[str, ...]  # passed to evaluation.evaluate


FAMILIES_2D = (
    Family("flow matching", "moons", ("w2", "mmd", "nll")),
    Family("VAE", "moons_vae", ("w2", "mmd", "nll")),
    Family("GAN (non-saturating)", "moons_gan", ("w2", "mmd")),
    Family("WGAN (clip, RMSProp)", "moons_wgan", ("w2", "mmd")),
    Family("WGAN-GP", "moons_wgan_gp", ("w2", "mmd")),
)
FAMILIES_DIGITS = (
    Family("flow matching (U-Net)", "digits", ("fd", "w2")),
    Family("VAE", "digits_vae", ("fd", "w2", "nll")),
    Family("VQ-VAE", "digits_vqvae", ("fd", "w2")),
    Family("DCGAN", "digits_gan", ("fd", "w2")),
    Family("conditional DCGAN", "digits_cgan", ("fd", "acc", "w2")),
    Family("style-based GAN", "digits_stylegan", ("fd", "w2")),
)
METRIC_NAMES = {"w2": "W2", "mmd": "MMD²", "nll": "NLL", "fd": "FD", "acc": "acc"}
HIGHER_IS_BETTER = {"acc"}
METRIC_LABELS = {**METRIC_NAMES, "acc": "accuracy"}


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# environment


def environment(threads: int) -> dict[str, Any]:
    return {**machine(threads, ("numpy", "scipy", "POT", "torchdiffeq")), "genlab": __version__}


# ---------------------------------------------------------------------------------------------
# one (family, data set)


def eval_record(res: dict[str, Any], seconds: float) -> dict[str, Any]:
    keep = ("step", "n", "sampler", "solver", "steps", "nfe", "ema", "checkpoint", "metrics")
    out = {k: res[k] for k in keep}
    out.update({k: v for k, v in res.items() if k.startswith(("nll_", "fd_"))})
    out["seconds"] = seconds
    return out


def run_family(
    family: Family, dataset: str, base: list[str], budget: float, seeds: int, args: argparse.Namespace
) -> dict[str, Any]:
    say(f"[{dataset}] {family.config}: pilot ({args.pilot_steps} steps) ...")
    pilot = pilot_rate(
        family.config, [*base, "train.seed=0", f"train.threads={args.threads}"], args.pilot_steps
    )
    steps = max(1, round(budget * pilot["steps_per_s"]))
    cfg0 = runs.resolve_config(family.config, base, shared=True)
    scaled = budget_overrides(cfg0, steps)
    say(f"[{dataset}] {family.config}: {pilot['steps_per_s']:.1f} steps/s -> {steps} steps {scaled}")
    is_gan = cfg0.train.eval_every > 0
    per_seed = []
    for seed in range(seeds):
        over = [
            *base,
            *(f"train.{k}={v}" for k, v in scaled.items()),
            f"train.seed={seed}",
            f"train.threads={args.threads}",
        ]
        cfg = runs.resolve_config(family.config, over, shared=True)
        run_dir = Path(args.work) / dataset / family.config / f"seed{seed}"
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        res = train(cfg, run_dir, overwrite=True, progress=False)
        wall = time.perf_counter() - t0
        in_train_eval = res.eval_seconds
        rec: dict[str, Any] = {
            "seed": seed,
            "run_dir": str(run_dir),
            "train_wall_s": wall,
            "train_eval_s": in_train_eval,
            "train_s": wall - in_train_eval,  # what the budget holds fixed
            "steps": res.step,
            "steps_per_s": res.steps_per_s,
            "final_loss": res.final_loss,
            "loadavg_1min_start_end": [load0, os.getloadavg()[0]],
        }
        t0 = time.perf_counter()
        out = evaluation.evaluate(run_dir, metrics=list(family.metrics))
        rec["eval"] = eval_record(out, time.perf_counter() - t0)
        if is_gan:
            t0 = time.perf_counter()
            out = evaluation.evaluate(run_dir, metrics=list(family.metrics), checkpoint="last")
            rec["eval_last"] = eval_record(out, time.perf_counter() - t0)
        per_seed.append(rec)
        vals = "  ".join(f"{k} {v['value']:.4g}" for k, v in rec["eval"]["metrics"].items())
        last = ""
        if is_gan:
            last = "  | last: " + "  ".join(
                f"{k} {v['value']:.4g}" for k, v in rec["eval_last"]["metrics"].items()
            )
            last += f"  (best at step {rec['eval']['step']})"
        say(
            f"[{dataset}] {family.config} seed {seed}: {rec['steps']} steps, train {rec['train_s']:.1f} s"
            f" (+ {in_train_eval:.1f} s in-training evals)  {vals}{last}"
        )
    return {
        "family": family.label,
        "config": family.config,
        "data": dataset,
        "budget_s": budget,
        "pilot": pilot,
        "overrides": [*base, *(f"train.{k}={v}" for k, v in scaled.items())],
        "steps": steps,
        "adversarial_best_checkpoint": is_gan,
        "sample_checkpoint": cfg0.sample.checkpoint,
        "metrics": list(family.metrics),
        "seeds": per_seed,
        "summary": summarize(per_seed, is_gan),
    }


def summarize(per_seed: list[dict[str, Any]], is_gan: bool) -> dict[str, Any]:
    first = per_seed[0]["eval"]
    out: dict[str, Any] = {
        "train_s": mean_std([r["train_s"] for r in per_seed]),
        "train_eval_s": mean_std([r["train_eval_s"] for r in per_seed]),
        "nfe": first["nfe"],
        "metrics": {},
        "floors": {k: v["floor"] for k, v in first["metrics"].items()},
    }
    for key in ("eval", "eval_last") if is_gan else ("eval",):
        out["metrics"][key] = {
            m: mean_std([r[key]["metrics"][m]["value"] for r in per_seed]) for m in first["metrics"]
        }
    if is_gan:
        out["best_steps"] = [r["eval"]["step"] for r in per_seed]
    units = {k: v for k, v in first.items() if k.startswith("nll_")}
    out.update(units)
    return out


# ---------------------------------------------------------------------------------------------
# markdown


def fmt(x: float | None, metric: str) -> str:
    if x is None:
        return "-"
    if metric == "mmd":
        return f"{x:.4f}"
    if metric == "acc":
        return f"{x:.3f}"
    if metric in ("fd", "nll"):
        return f"{x:.2f}"
    return f"{x:.3f}"


def cell(s: dict[str, float] | None, metric: str) -> str:
    if s is None:
        return "-"
    if s["n"] > 1:
        return f"{fmt(s['mean'], metric)} ± {fmt(s['std'], metric)}"
    return fmt(s["mean"], metric)


def family_table(rows: list[dict[str, Any]], title: str) -> list[str]:
    metrics: list[str] = []
    for r in rows:
        metrics += [m for m in r["metrics"] if m not in metrics]
    floors: dict[str, Any] = {}
    for m in metrics:
        vals = [r["summary"]["floors"].get(m) for r in rows if m in r["summary"]["floors"]]
        vals = [v for v in vals if v is not None]
        floors[m] = vals[0] if vals else None
    nll_unit = next((r["summary"]["nll_unit"] for r in rows if "nll_unit" in r["summary"]), "")

    def head(m: str) -> str:
        name = METRIC_NAMES[m] + (f" ({nll_unit})" if m == "nll" and nll_unit else "")
        arrow = "↑" if m in HIGHER_IS_BETTER else "↓"
        return f"{name} {arrow} (floor {fmt(floors[m], m)})"

    gan_metrics = [
        m for m in metrics if any(r["adversarial_best_checkpoint"] and m in r["metrics"] for r in rows)
    ]
    cols = ["family", "config", "steps", "train s", "NFE", *[head(m) for m in metrics]]
    cols += [f"last ckpt {METRIC_NAMES[m]}" for m in gan_metrics] + ["best ckpt at step"]
    seeds = sorted({len(r["seeds"]) for r in rows})
    lines = [
        f"### {title}",
        "",
        f"Budget {rows[0]['budget_s']:g} s of training per run; mean ± std (sample std) over "
        f"{'/'.join(map(str, seeds))} seed(s); metric columns at the checkpoint the config samples "
        "from (GANs: best-by-evaluation).",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for r in rows:
        s = r["summary"]
        ev = s["metrics"]["eval"]
        last = s["metrics"].get("eval_last", {})
        cells = [
            r["family"],
            f"`{r['config']}`",
            str(r["steps"]),
            f"{s['train_s']['mean']:.1f}"
            + (f" (+{s['train_eval_s']['mean']:.1f} eval)" if r["adversarial_best_checkpoint"] else ""),
            str(s["nfe"]),
            *[cell(ev.get(m), m) for m in metrics],
            *[cell(last.get(m), m) if last else "-" for m in gan_metrics],
            ", ".join(map(str, s["best_steps"])) if "best_steps" in s else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def tables(result: dict[str, Any]) -> str:
    """Every column of every table (train s, last vs best checkpoint), as markdown."""
    env = result["environment"]
    lines = [
        "# Model families at a fixed CPU training budget",
        "",
        f"{env['cpu_model'] or 'unknown CPU'} ({env['cpu_count']} CPUs, shared), torch {env['torch']} "
        f"on {env['torch_threads']} thread(s), genlab {env['genlab']} "
        f"(commit {(env['genlab_git']['commit'] or 'unknown')[:10]}"
        f"{', src modified' if env['genlab_git']['src_genlab_modified'] else ''}). "
        f"Total {result['seconds'] / 60:.1f} min{'; QUICK smoke run' if result['quick'] else ''}.",
        "",
        "steps = round(budget x pilot steps/s) per config and data set (same steps for every seed); "
        "train s = measured wall time of `runs.train` minus the in-training evaluations of the GANs "
        "(shown as +eval). NFE = network evaluations per sample batch (GAN / VAE: 1 decoder pass). "
        "W2 / MMD² against held-out data (2D: 2000 points; digits: the 359 test images, flattened). "
        "Floors: the same metric between two independent draws of the data (digits: train vs test).",
        "",
    ]
    for data, rows in result["tables"].items():
        if rows:
            lines += family_table(rows, data)
    return "\n".join(lines) + "\n"


def render(name: str, data: dict[str, Any], path: Path) -> list[str]:
    """The markdown of a result JSON: run facts, key numbers, metric tables, the full tables."""
    results: dict[str, Any] = data.get("tables", {})
    out: list[str] = []
    summary = []
    for title, rows in results.items():
        metrics: list[str] = []
        for r in rows:
            metrics += [m for m in r.get("metrics", []) if m not in metrics]
        floors: dict[str, Any] = {}
        for r in rows:
            floors.update(r.get("summary", {}).get("floors", {}))
        out += [
            "",
            f"**{title}** (budget {num(rows[0].get('budget_s')) if rows else '-'} s of training per run)",
            "",
        ]
        out += table(
            [
                "family",
                "config",
                "steps",
                "NFE",
                *(f"{METRIC_LABELS.get(m, m)} (floor {num(floors.get(m))})" for m in metrics),
            ],
            [
                [
                    r.get("family", "-"),
                    f"`{r.get('config', '-')}`",
                    r.get("steps", "-"),
                    r.get("summary", {}).get("nfe", "-"),
                    *(pm(r.get("summary", {}).get("metrics", {}).get("eval", {}).get(m)) for m in metrics),
                ]
                for r in rows
            ],
        )
        if metrics:
            m = metrics[0]
            scored = [
                (r["summary"]["metrics"]["eval"][m]["mean"], r.get("family", "-"))
                for r in rows
                if r.get("summary", {}).get("metrics", {}).get("eval", {}).get(m, {}).get("mean") is not None
            ]
            if scored:
                best = (max if m in HIGHER_IS_BETTER else min)(scored)
                summary.append(
                    f"{title.split(' (')[0]}: best {METRIC_LABELS.get(m, m)} {best[1]} {num(best[0])}"
                )
    steps = "; ".join(
        f"{t.split(' (')[0]}: " + ", ".join(f"{r.get('config')} {r.get('steps')}" for r in rows)
        for t, rows in results.items()
    )
    nfe = "; ".join(
        f"{t.split(' (')[0]}: "
        + ", ".join(f"{r.get('config')} {r.get('summary', {}).get('nfe')}" for r in rows)
        for t, rows in results.items()
    )
    budget = data.get("budget_s", {})
    seeds = data.get("seeds", {})
    seed_text = "; ".join(f"training {k}: {v}" for k, v in seeds.items()) if seeds else NR
    if data.get("sampling_seed"):
        seed_text += f"; sampling: {data['sampling_seed']}"
    argv = data.get("argv")
    env = recorded_environment(data).get("thread_env", {})
    prefix = "OMP_NUM_THREADS=1 " if env.get("OMP_NUM_THREADS") == "1" else ""
    head = [
        "Same wall-clock training budget per run ("
        + ", ".join(f"{k} {num(v)} s" for k, v in budget.items())
        + "), steps = budget x the pilot's steps/s; metric cells are mean ± sample std over the seeds. "
        + ("Key numbers: " + "; ".join(summary) + "." if summary else "")
    ]
    md = full_tables(name, data, path, tables, "seconds")
    tail = ["", *details(f"Full tables ({md[0]}): train s, last vs best checkpoint", md[1])] if md else []
    return [
        *facts(
            name,
            data,
            training=("budget " + ", ".join(f"{k} {num(v)} s" for k, v in budget.items()) + " -> " + steps)
            if budget
            else steps or NR,
            seeds=seed_text,
            nfe=nfe or NR,
            command=command(argv, prefix) if argv else None,
        ),
        "",
        *head,
        *out,
        *tail,
    ]


# ---------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 s budgets, 1 seed, moons + 2 digits families")
    ap.add_argument("--budget-2d", type=float, default=None, help="training seconds per 2D run (40)")
    ap.add_argument("--budget-digits", type=float, default=None, help="training seconds per digits run (90)")
    ap.add_argument("--seeds-2d", type=int, default=None, help="seeds per 2D family (3)")
    ap.add_argument("--seeds-digits", type=int, default=None, help="seeds per digits family (2)")
    ap.add_argument("--datasets", nargs="*", default=None, help="2D data sets (moons 8gaussians)")
    ap.add_argument("--configs-2d", nargs="*", default=None, help="subset of the 2D configs")
    ap.add_argument("--configs-digits", nargs="*", default=None, help="subset of the digits configs")
    ap.add_argument("--pilot-steps", type=int, default=30, help="steps of the rate-measuring pilot")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 leaves a core free)")
    ap.add_argument("--work", default="runs/bench_families", help="run directories go here")
    ap.add_argument("--out", default=None, help="result JSON (default results/families[_quick].json)")
    ap.add_argument("--render", default=None, help="only write the markdown of an existing result JSON")
    args = ap.parse_args()
    if args.render:
        src = Path(args.render)
        print(write(render, src, json.loads(src.read_text())), end="")
        return
    q = args.quick
    budget_2d = args.budget_2d if args.budget_2d is not None else (3.0 if q else 40.0)
    budget_digits = args.budget_digits if args.budget_digits is not None else (3.0 if q else 90.0)
    seeds_2d = args.seeds_2d or (1 if q else 3)
    seeds_digits = args.seeds_digits or (1 if q else 2)
    datasets = args.datasets if args.datasets is not None else (["moons"] if q else ["moons", "8gaussians"])
    fam_2d = [f for f in FAMILIES_2D if args.configs_2d is None or f.config in args.configs_2d]
    default_digits = ["digits_vae", "digits_gan"] if q else [f.config for f in FAMILIES_DIGITS]
    wanted_digits = args.configs_digits if args.configs_digits is not None else default_digits
    fam_digits = [f for f in FAMILIES_DIGITS if f.config in wanted_digits]
    available = set(runs.packaged_configs())
    for f in (*fam_2d, *fam_digits):
        if f.config not in available:
            raise SystemExit(f"packaged config {f.config!r} not found")

    torch.set_num_threads(args.threads)
    out = (
        Path(args.out)
        if args.out
        else Path(__file__).parent / "results" / ("families_quick.json" if q else "families.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "benchmark": "families",
        "environment": environment(args.threads),
        "quick": q,
        "budget_s": {"2d": budget_2d, "digits": budget_digits},
        "seeds": {"2d": list(range(seeds_2d)), "digits": list(range(seeds_digits))},
        "pilot_steps": args.pilot_steps,
        "sampling_seed": "each config's sample.seed (1234); reference data seed 2000003 (evaluate)",
        "argv": sys.argv,
        "tables": {},
        "seconds": 0.0,
    }
    t_start = time.perf_counter()

    def save() -> None:  # after every family: a partial run still leaves its results
        result["seconds"] = time.perf_counter() - t_start
        result["environment"]["loadavg_end"] = list(os.getloadavg())
        out.write_text(json.dumps(result, indent=2))
        write(render, out, result)

    jobs = [
        (
            f"2D: {d} (the packaged configs with `data.name={d}`)",
            d,
            f,
            [f"data.name={d}"],
            budget_2d,
            seeds_2d,
        )
        for d in datasets
        for f in fam_2d
    ]
    jobs += [("digits (8x8)", "digits", f, [], budget_digits, seeds_digits) for f in fam_digits]
    for title, data, family, base, budget, seeds in jobs:
        rows = result["tables"].setdefault(title, [])
        rows.append(run_family(family, data, base, budget, seeds, args))
        save()
        say(f"  ... {(time.perf_counter() - t_start) / 60:.1f} min elapsed")
    save()
    print(write(render, out, result), end="")
    say(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
