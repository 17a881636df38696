"""``genlab compare``: several model families on one data set, one budget, one evaluation.

Every CONFIG (a packaged name or a YAML file) is trained for the same budget on every seed:
a number of training steps, or a number of wall-clock seconds that a short pilot turns into
steps (each config's steps/s, measured without evaluation or checkpoints). Each run is then
scored by :func:`genlab.app.evaluation.evaluate` -- the code behind ``genlab eval`` -- on the same
held-out data with the same metrics, and the table reports mean ± std over seeds next to the
data-vs-data floor, with NFE, training and sampling time.

Into ``OUT``: ``compare.json`` (plan, every run's record, summary), ``compare.md`` (the table),
``compare.png`` (the data, then one panel of samples per config, seed 0) and
``runs/<name>/seed<k>/`` (the runs). Interrupted? Run the same command again: the plan
(``plan.json``: steps per config) is read back instead of re-measured, finished runs are
reused and an unfinished training resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from genlab._atomic import atomic_write_json, atomic_write_text
from genlab.app import evaluation, runs
from genlab.app.budget import Budget, budget_overrides, parse_budget, pilot_rate
from genlab.app.builders import IMAGE_SETS
from genlab.app.config import Config, ConfigError
from genlab.app.datasets import digits_classifier_applies, reference_kind
from genlab.app.reporting import compare_figure, compare_table
from genlab.app.train import train
from genlab.training.checkpoint import list_checkpoints

#: metrics ``compare`` can put in its table (each only where it is defined for a config)
COMPARE_METRICS = ("w2", "mmd", "fd", "fid", "nll", "acc")
#: families whose runs have a likelihood (the VAE's is the IWAE bound)
PLAN_FILE, RESULT_FILE, TABLE_FILE, FIGURE_FILE = "plan.json", "compare.json", "compare.md", "compare.png"
RECORD_FILE = "compare_record.json"  # in each run directory, once it is scored


# ---------------------------------------------------------------------------------------------
# the plan


@dataclass
class Entry:
    """One config of the comparison, scaled to the budget."""

    name: str  # its row in the table and its folder under runs/
    config: str  # as given on the command line
    family: str
    overrides: list[str]  # everything passed to resolve_config, budget settings included
    steps: int
    metrics: list[str]  # the metrics defined for it
    pilot: dict[str, Any] | None  # the steps/s measurement of a seconds budget
    batch_size: int
    resolved: dict[str, Any]  # the config before the budget: a later edit of it is detected


def metrics_for(cfg: Config, requested: Sequence[str] | None) -> list[str]:
    """The metrics of one config: ``requested`` where defined, else the default for its data
    (2D: W2, MMD²; digits: FD, W2; other images: W2) plus the NLL where the family has one."""
    digits = digits_classifier_applies(cfg.data)
    images = cfg.data.name in IMAGE_SETS
    m = cfg.model
    has_nll = m.has_log_prob()
    conditional = m.class_conditional
    defined = {
        "w2": True,
        "mmd": not images,
        "fd": digits,
        "fid": images,
        "nll": has_nll,
        "acc": digits and conditional and cfg.sample.label is not None and cfg.sample.label >= 0,
    }
    if requested is None:
        base = ["fd", "w2"] if digits else (["w2"] if images else ["w2", "mmd"])
        return [*base, "nll"] if has_nll else base
    return [name for name in requested if defined[name]]


def _names(configs: Sequence[str]) -> list[str]:
    names = [Path(c).stem if c.endswith((".yaml", ".yml")) else c for c in configs]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(f"each config may appear once in a comparison; repeated: {', '.join(dup)}")
    return names


def resolve_all(
    configs: Sequence[str], base: Sequence[str], metrics: Sequence[str] | None
) -> list[tuple[str, Config]]:
    """Every config resolved and checked (one data set, known metrics) before anything runs."""
    if not configs:
        raise ConfigError("genlab compare needs at least one config, e.g. genlab compare moons moons_gan")
    if metrics is not None:
        bad = [m for m in metrics if m not in COMPARE_METRICS]
        if bad or not metrics:
            raise ConfigError(
                f"unknown metric {(bad or [''])[0]!r} for compare; choose from: {', '.join(COMPARE_METRICS)}"
            )
    budgeted = [o for o in base if o.split("=", 1)[0] == "train.steps"]
    if budgeted:
        raise ConfigError(f"{budgeted[0]}: --budget sets the training steps of a comparison; drop it")
    names = _names(configs)
    cfgs = [runs.resolve_config(c, list(base), shared=True) for c in configs]
    data: dict[str, list[str]] = {}
    for name, cfg in zip(names, cfgs, strict=True):
        data.setdefault(json.dumps(asdict(cfg.data), sort_keys=True, default=str), []).append(name)
    if len(data) > 1:
        groups = "; ".join(f"{json.loads(k)['name']}: {', '.join(v)}" for k, v in data.items())
        raise ConfigError(
            f"genlab compare trains every config on one data set, but these differ ({groups}); "
            f"put them on one with an override, e.g. data.name={cfgs[0].data.name}"
        )
    for name, cfg in zip(names, cfgs, strict=True):
        if not metrics_for(cfg, metrics):
            raise ConfigError(f"none of the metrics {', '.join(metrics or [])} is defined for {name}")
    if metrics is not None and "fid" in metrics:  # the weights and the package, before any training
        from genlab.metrics.inception import check_fid_available

        check_fid_available()
    return list(zip(names, cfgs, strict=True))


def make_plan(
    configs: Sequence[str],
    resolved: Sequence[tuple[str, Config]],
    base: Sequence[str],
    budget: Budget,
    metrics: Sequence[str] | None,
    pilot_steps: int,
    say: Callable[[str], None],
) -> list[Entry]:
    """Turn the budget into steps per config (a pilot each for a budget in seconds)."""
    given = {o.split("=", 1)[0].removeprefix("train.") for o in base if o.startswith("train.")}
    plan = []
    for config, (name, cfg) in zip(configs, resolved, strict=True):
        pilot = None
        if budget.unit == "steps":
            steps = int(budget.amount)
        else:
            say(f"{name}: measuring steps/s ({pilot_steps}-step pilot) ...")
            pilot = pilot_rate(config, base, pilot_steps)
            steps = max(1, round(budget.amount * pilot["steps_per_s"]))
            say(f"{name}: {pilot['steps_per_s']:.1f} steps/s -> {steps} steps in {budget}")
        scaled = {k: v for k, v in budget_overrides(cfg, steps).items() if k == "steps" or k not in given}
        over = [*base, *(f"train.{k}={v}" for k, v in scaled.items())]
        metrics_here = metrics_for(cfg, metrics)
        plan.append(
            Entry(
                name,
                config,
                cfg.model.family,
                over,
                steps,
                metrics_here,
                pilot,
                cfg.train.batch_size,
                cfg.to_dict(),
            )
        )
    return plan


# ---------------------------------------------------------------------------------------------
# running


def _settings(
    configs: Sequence[str],
    overrides: Sequence[str],
    budget: Budget,
    seeds: int,
    metrics: Any,
    threads: int,
    n: int,
) -> dict[str, Any]:
    return {
        "configs": list(configs),
        "overrides": list(overrides),
        "budget": asdict(budget),
        "seeds": seeds,
        "metrics": list(metrics) if metrics else None,
        "threads": threads,
        "n": n,
    }


def _saved_plan(out: Path) -> dict[str, Any] | None:
    """plan.json of ``out``, or None; a folder that is not a comparison is refused."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the comparison")
    path = out / PLAN_FILE
    if not path.exists():
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"--out {out} exists and is not a genlab compare folder; choose another --out")
        return None
    try:
        saved = json.loads(path.read_text())
        [Entry(**e) for e in saved["entries"]]  # noqa: B018  (does it fit this version?)
        saved["settings"]["configs"]  # noqa: B018
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(
            f"{path} is damaged or from another genlab version ({type(err).__name__}); pass --overwrite "
            "to start the comparison again"
        ) from None
    return saved


def _reuse(
    saved: dict[str, Any], settings: dict[str, Any], resolved: Sequence[tuple[str, Config]], out: Path
) -> list[Entry]:
    """The saved plan, if it is this comparison with the same configs as they read now."""
    if saved["settings"] != settings:
        raise ConfigError(
            f"{out} holds a comparison with other settings; choose another --out or pass --overwrite"
        )
    entries = [Entry(**e) for e in saved["entries"]]
    for entry, (name, cfg) in zip(entries, resolved, strict=True):
        if entry.resolved != cfg.to_dict():
            raise ConfigError(
                f"config {name} has changed since the comparison in {out} was planned; "
                "pass --overwrite to run it again with the new one"
            )
    return entries


def _clear(out: Path) -> None:
    """Remove what ``compare`` wrote into ``out``, and nothing else."""
    shutil.rmtree(out / "runs", ignore_errors=True)
    for name in (PLAN_FILE, RESULT_FILE, TABLE_FILE, FIGURE_FILE):
        (out / name).unlink(missing_ok=True)


def _logged_train_seconds(run_dir: Path) -> float | None:
    """Training time summed over the logging windows of metrics.jsonl (every invocation of a
    resumed run; the windows hold any in-training evaluation)."""
    total, last = 0.0, 0
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return None
    for rec in map(json.loads, lines):
        if "steps_per_s" in rec and rec["steps_per_s"] > 0 and rec["step"] > last:
            total += (rec["step"] - last) / rec["steps_per_s"]
            last = rec["step"]
    return total or None


def run_one(entry: Entry, seed: int, run_dir: Path, n: int, progress: bool) -> dict[str, Any]:
    """Train (or resume, or reuse) one seed of one config and score it."""
    record_path = run_dir / RECORD_FILE
    if record_path.exists():
        record = json.loads(record_path.read_text())
        if record.get("steps") == entry.steps:
            return {**record, "reused": True}
    cfg = runs.resolve_config(entry.config, [*entry.overrides, f"train.seed={seed}"], shared=True)
    resume = bool(list_checkpoints(run_dir))
    try:
        res = train(cfg, run_dir, resume=resume, overwrite=not resume, progress=progress)
        if res.step < entry.steps:
            raise ConfigError(f"training stopped at step {res.step} of {entry.steps}")
        t0 = time.perf_counter()
        ev = evaluation.evaluate(run_dir, n=n, metrics=entry.metrics, device=cfg.train.device)
    except (ConfigError, ValueError, RuntimeError) as err:  # e.g. a diverged run: keep the others
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return {"seed": seed, "failed": message}  # not saved: a rerun tries again
    fit_s = (res.step / res.steps_per_s if res.steps_per_s > 0 else 0.0) if not resume else None
    record = {
        "seed": seed,
        "steps": res.step,
        # what a seconds budget holds fixed: the training loop, less in-training evaluations
        "train_s": fit_s - res.eval_seconds if fit_s is not None else _logged_train_seconds(run_dir),
        "train_eval_s": res.eval_seconds,  # scoring for the best checkpoint (train.eval_every)
        "resumed": resume,
        "final_loss": res.final_loss if math.isfinite(res.final_loss) else None,
        "eval_s": time.perf_counter() - t0,
        "sample_s": ev["sample_s"],
        "nfe": ev["nfe"],
        "sampler": ev["sampler"],
        "n": ev["n"],
        "checkpoint": ev["checkpoint"],
        "eval_step": ev["step"],
        "metrics": {k: v["value"] for k, v in ev["metrics"].items()},
        "floors": {k: v["floor"] for k, v in ev["metrics"].items()},
        "nll_unit": ev.get("nll_unit"),
        "nll_estimate": ev.get("nll_estimate"),
        "commit": _commit(),
    }
    atomic_write_json(record_path, record)
    return record


def _commit() -> str | None:
    from genlab.app.machine import git_state

    return git_state()["commit"]


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value) and count."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over the seeds of one config that finished (failed seeds are counted)."""
    ok = [r for r in records if "failed" not in r]
    failed = len(records) - len(ok)
    if not ok:
        return {"metrics": {}, "floors": {}, "failed": failed, "nfe": None, "nll_unit": None}
    times = [r["train_s"] for r in ok if r["train_s"] is not None]
    return {
        "metrics": {m: mean_std([r["metrics"][m] for r in ok]) for m in ok[0]["metrics"]},
        "floors": ok[0]["floors"],
        "train_s": mean_std(times) if times else None,
        "sample_s": mean_std([r["sample_s"] for r in ok]),
        "nfe": ok[0]["nfe"],
        "nll_unit": ok[0]["nll_unit"],
        "nll_estimate": ok[0].get("nll_estimate"),
        "checkpoint": sorted({r["checkpoint"] for r in ok}),
        "eval_steps": [r["eval_step"] for r in ok],
        "resumed": sum(bool(r.get("resumed")) for r in ok),
        "failed": failed,
    }


def compare(
    configs: Sequence[str],
    out: str | Path,
    budget: Budget | str = "30s",
    seeds: int = 3,
    overrides: Sequence[str] = (),
    metrics: Sequence[str] | None = None,
    threads: int | None = None,
    pilot_steps: int = 30,
    overwrite: bool = False,
    progress: bool = True,
    figure: bool = True,
    say: Callable[[str], None] | None = None,
    n: int | None = None,
) -> dict[str, Any]:
    """Train every config for ``budget`` on ``seeds`` seeds, score them alike (``n`` samples
    each, default the first config's ``eval.n``), and write the table, the figure and the JSON
    into ``out``; returns the JSON's content."""
    say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
    budget = budget if isinstance(budget, Budget) else parse_budget(budget)
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    out = Path(out)
    # one thread count for every run, so a config that sets its own does not slow the others
    threads = threads or torch.get_num_threads()
    base = [*overrides, f"train.threads={threads}"]
    resolved = resolve_all(configs, base, metrics)  # all checked before anything is touched
    n = n or resolved[0][1].eval.n
    settings = _settings(configs, overrides, budget, seeds, metrics, threads, n)
    saved = _saved_plan(out)
    plan = None
    if saved is not None and overwrite:
        _clear(out)
    elif saved is not None:
        plan = _reuse(saved, settings, resolved, out)
        say(f"continuing the comparison in {out} (plan.json: {', '.join(e.name for e in plan)})")
    env = environment(threads)  # before the runs: the load they started under
    if plan is None:
        plan = make_plan(configs, resolved, base, budget, metrics, pilot_steps, say)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / PLAN_FILE, {"settings": settings, "entries": [asdict(e) for e in plan]})
    t_start = time.perf_counter()
    rows = []
    total = len(plan) * seeds
    for i, entry in enumerate(plan):
        records = []
        for seed in range(seeds):
            k = i * seeds + seed + 1
            say(f"[{k}/{total}] {entry.name} seed {seed}: {entry.steps} steps ...")
            rec = run_one(entry, seed, out / "runs" / entry.name / f"seed{seed}", n, progress)
            if "failed" in rec:
                say(f"[{k}/{total}] {entry.name} seed {seed}: FAILED: {rec['failed']}")
            else:
                values = "  ".join(f"{m} {v:.4g}" for m, v in rec["metrics"].items())
                how = "reused" if rec.get("reused") else f"train {rec['train_s']:.1f} s"
                say(f"[{k}/{total}] {entry.name} seed {seed}: {how}, NFE {rec['nfe']}  {values}")
            records.append(rec)
        rows.append({**asdict(entry), "seeds": records, "summary": summarize(records)})
    result = {
        "command": command_line(settings, out),
        "settings": settings,
        "data": resolved[0][1].data.name,
        "reference": reference_kind(resolved[0][1].data),  # what every run is scored against
        "budget": str(budget),
        "rows": rows,
        "seconds": time.perf_counter() - t_start,  # of this invocation (reused runs cost ~0)
        "environment": env,
    }
    atomic_write_json(out / RESULT_FILE, result)
    atomic_write_text(out / TABLE_FILE, compare_table(result) + "\n")
    if figure and any(r["summary"]["metrics"] for r in rows):
        result["figure"] = str(compare_figure(result, out, device=resolved[0][1].train.device))
    return result


def _number(x: float) -> str:
    """A number as the command line reads it back (no exponent)."""
    return f"{x:.6f}".rstrip("0").rstrip(".")


def command_line(settings: dict[str, Any], out: Path) -> str:
    """The ``genlab compare`` command that regenerates a comparison."""
    b = Budget(**settings["budget"])
    budget = f"{int(b.amount)}steps" if b.unit == "steps" else f"{_number(b.amount)}s"
    parts = ["genlab compare", *settings["configs"], *settings["overrides"], f"--budget {budget}"]
    parts.append(f"--seeds {settings['seeds']}")
    if settings["metrics"]:
        parts.append(f"--metrics {','.join(settings['metrics'])}")
    parts += [f"--threads {settings['threads']}", f"--n {settings['n']}"]
    return " ".join([*parts, f"--out {out}"])


def environment(threads: int | None) -> dict[str, Any]:
    """What the numbers were measured on (:func:`genlab.app.machine.machine`)."""
    from genlab.app.machine import machine

    return machine(threads, ())
