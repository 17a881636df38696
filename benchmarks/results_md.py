"""Write ``benchmarks/RESULTS.md`` from the result JSONs in ``benchmarks/results/``.

RESULTS.md is generated, never edited by hand: every number and every run fact on it (hardware,
torch version, genlab commit, batch size, training steps, seeds, NFE, the regenerating command)
is read from a JSON that a benchmark script wrote. A fact a JSON does not hold is written
"not recorded"; a JSON that does not exist yields one line "not run yet: <command>". Quick
(smoke) runs are skipped: ``*_quick.json`` and any file whose ``quick`` flag is true.

    python benchmarks/results_md.py            # (re)write benchmarks/RESULTS.md
    python benchmarks/results_md.py --check    # exit 1 if the file on disk is stale

Result files without a dedicated renderer below (e.g. ``schedulers.json``, ``flows.json``,
``compare.json``, whose schemas are still open) get the generic one: the run facts it can find,
then the markdown the script wrote, from the JSON's ``"markdown"`` key or the sibling ``.md``.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
OUT = HERE / "RESULTS.md"
NR = "not recorded"
REGENERATE = "python benchmarks/results_md.py"
ENV_KEYS = ("environment", "machine", "env", "hardware")  # where the scripts put the machine record

Json = dict[str, Any]
Renderer = Callable[[str, Json, Path], list[str]]


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------


def num(x: Any) -> str:
    """A metric value with a precision that fits its magnitude; "-" for missing."""
    if x is None:
        return "-"
    if isinstance(x, bool) or not isinstance(x, int | float):
        return str(x)
    a = abs(x)
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    if x.is_integer() and a < 1e6:
        return str(int(x))
    if a >= 100:
        return f"{x:.1f}"
    if a >= 10:
        return f"{x:.2f}"
    if a >= 0.01 or a == 0:
        return f"{x:.3f}"
    return f"{x:.2e}"


def pm(stat: Any) -> str:
    """``mean ± std`` of a ``{"mean", "std", "n"}`` record."""
    if not isinstance(stat, dict) or stat.get("mean") is None:
        return "-"
    if stat.get("std") is None or stat.get("n", 2) < 2:
        return num(stat["mean"])
    return f"{num(stat['mean'])} ± {num(stat['std'])}"


def table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def is_quick(data: Json) -> bool:
    """True for a smoke run: a true ``quick`` flag at the top or one level down."""
    if data.get("quick") is True:
        return True
    return any(isinstance(v, dict) and v.get("quick") is True for v in data.values())


def demote(markdown: str, top: int) -> str:
    """Shift the headings of ``markdown`` so that its highest one is at level ``top`` (max 6)."""
    lines = markdown.strip("\n").splitlines()
    fence = False
    levels = []
    for line in lines:
        fence ^= line.lstrip().startswith("```")
        m = re.match(r"(#{1,6}) ", line)
        if m and not fence:
            levels.append(len(m.group(1)))
    if not levels:
        return "\n".join(lines)
    shift = top - min(levels)
    out, fence = [], False
    for line in lines:
        fence ^= line.lstrip().startswith("```")
        m = re.match(r"(#{1,6}) ", line)
        if m and not fence:
            line = "#" * min(6, len(m.group(1)) + shift) + line[len(m.group(1)) :]
        out.append(line)
    return "\n".join(out)


def details(summary: str, markdown: str, top: int = 4) -> list[str]:
    return ["<details>", f"<summary>{summary}</summary>", "", demote(markdown, top), "", "</details>"]


def script_markdown(name: str, data: Json, path: Path) -> tuple[str, str] | None:
    """The tables a script wrote itself: the JSON's ``markdown`` key, else the sibling ``.md``."""
    if isinstance(data.get("markdown"), str) and data["markdown"].strip():
        return f'the "markdown" key of results/{name}', data["markdown"]
    md = path.with_suffix(".md")
    if md.exists():
        return f"results/{md.name}", md.read_text()
    return None


def command(args: Iterable[Any], prefix: str = "") -> str:
    """A shell command line; ``python`` goes in front of a script path or ``-m``."""
    args = [str(a) for a in args]
    python = "python " if args and (args[0].endswith(".py") or args[0] == "-m") else ""
    return prefix + python + shlex.join(args)


def flags(config: Json, spec: Iterable[tuple[str, str, Any]]) -> list[str]:
    """``--flag value`` for every recorded ``config[key]`` that differs from the script's default."""
    out: list[str] = []
    for flag, key, default in spec:
        if key not in config or config[key] is None or config[key] == default:
            continue
        value = config[key]
        if value is True:
            out.append(flag)
        elif isinstance(value, list):
            out += [flag, *(str(v) for v in value)]
        else:
            out += [flag, str(value)]
    return out


def out_flag(name: str, default: str) -> list[str]:
    return [] if name == default else ["--out", f"benchmarks/results/{name}"]


# --------------------------------------------------------------------------------------
# run facts
# --------------------------------------------------------------------------------------


def environment(data: Json) -> Json:
    for key in ENV_KEYS:
        if isinstance(data.get(key), dict):
            return data[key]
    return {}


def hardware(data: Json) -> str:
    env = environment(data)
    cpu = env.get("cpu_model") or env.get("processor") or None
    cores = env.get("cpu_count")
    threads = env.get("torch_threads", env.get("threads"))
    if cpu is None and cores is None and threads is None:
        return NR
    return ", ".join(
        [
            cpu if cpu else f"CPU model {NR}",
            f"{cores} cores" if cores is not None else f"core count {NR}",
            f"{threads} torch thread(s)" if threads is not None else f"torch threads {NR}",
        ]
    )


def torch_version(data: Json) -> str:
    env = environment(data)
    versions = env.get("versions") if isinstance(env.get("versions"), dict) else {}
    return env.get("torch") or versions.get("torch") or data.get("torch") or NR


def commit(data: Json) -> str:
    env = environment(data)
    git = env.get("genlab_git") or data.get("genlab_git") or {}
    version = env.get("genlab") or data.get("genlab") or (env.get("versions") or {}).get("genlab")
    if not isinstance(git, dict) or not git.get("commit"):
        return NR + (f" (genlab {version})" if version else "")
    text = f"`{git['commit'][:10]}`"
    if git.get("src_genlab_modified"):
        text += " (src/genlab modified, not committed)"
    return text


def facts(name: str, data: Json, **given: str) -> list[str]:
    """The run-facts table of one result file; missing facts read "not recorded"."""
    rows = [
        ("source", f"[results/{name}](results/{name})"),
        ("hardware", hardware(data)),
        ("torch", torch_version(data)),
        ("genlab commit", commit(data)),
    ]
    for label in ("batch size", "training steps", "seeds", "NFE / sampler steps"):
        rows.append((label, given.get(label.split()[0].lower(), NR) or NR))
    rows.append(("command", f"`{given['command']}`" if given.get("command") else NR))
    return table(["run fact", "value"], rows)


# --------------------------------------------------------------------------------------
# toy2d.py: genlab vs TorchCFM vs flow_matching
# --------------------------------------------------------------------------------------

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


def render_toy2d(name: str, data: Json, path: Path) -> list[str]:
    cfg = data.get("config", {})
    sets: Json = data.get("datasets", {})
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
    md = script_markdown(name, data, path)
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
# families.py: every family at a fixed training budget
# --------------------------------------------------------------------------------------

METRIC_LABELS = {"w2": "W2", "mmd": "MMD²", "nll": "NLL", "fd": "FD", "acc": "accuracy"}
LOWER_IS_BETTER = {"w2": True, "mmd": True, "nll": True, "fd": True, "bpd": True, "acc": False}


def render_families(name: str, data: Json, path: Path) -> list[str]:
    tables: Json = data.get("tables", {})
    out: list[str] = []
    summary = []
    for title, rows in tables.items():
        metrics: list[str] = []
        for r in rows:
            metrics += [m for m in r.get("metrics", []) if m not in metrics]
        floors: Json = {}
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
                best = (min if LOWER_IS_BETTER.get(m, True) else max)(scored)
                summary.append(
                    f"{title.split(' (')[0]}: best {METRIC_LABELS.get(m, m)} {best[1]} {num(best[0])}"
                )
    steps = "; ".join(
        f"{t.split(' (')[0]}: " + ", ".join(f"{r.get('config')} {r.get('steps')}" for r in rows)
        for t, rows in tables.items()
    )
    nfe = "; ".join(
        f"{t.split(' (')[0]}: "
        + ", ".join(f"{r.get('config')} {r.get('summary', {}).get('nfe')}" for r in rows)
        for t, rows in tables.items()
    )
    budget = data.get("budget_s", {})
    seeds = data.get("seeds", {})
    seed_text = "; ".join(f"training {k}: {v}" for k, v in seeds.items()) if seeds else NR
    if data.get("sampling_seed"):
        seed_text += f"; sampling: {data['sampling_seed']}"
    argv = data.get("argv")
    env = environment(data).get("thread_env", {})
    prefix = "OMP_NUM_THREADS=1 " if env.get("OMP_NUM_THREADS") == "1" else ""
    head = [
        "Same wall-clock training budget per run ("
        + ", ".join(f"{k} {num(v)} s" for k, v in budget.items())
        + "), steps = budget x the pilot's steps/s; metric cells are mean ± sample std over the seeds. "
        + ("Key numbers: " + "; ".join(summary) + "." if summary else "")
    ]
    md = script_markdown(name, data, path)
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


# --------------------------------------------------------------------------------------
# likelihood.py
# --------------------------------------------------------------------------------------


def render_likelihood(name: str, data: Json, path: Path) -> list[str]:
    nll = data.get("nll", {})
    rows = nll.get("rows", [])
    out: list[str] = []
    args = ["benchmarks/likelihood.py"]
    plain = {r.get("train_steps") for r in rows if not str(r.get("model", "")).startswith("CNF")}
    cnf = {r.get("train_steps") for r in rows if str(r.get("model", "")).startswith("CNF")}
    if len(plain) == 1 and plain != {6000}:
        args += ["--steps", str(plain.pop())]
    if len(cnf) == 1 and cnf != {1500}:
        args += ["--cnf-steps", str(cnf.pop())]
    if nll.get("n") not in (None, 2000):
        args += ["--n", str(nll["n"])]
    digits = data.get("digits", [])
    if digits:
        args.append("--digits")
        dsteps = {r.get("train_steps") for r in digits}
        if len(dsteps) == 1 and dsteps != {3000}:
            args += ["--digits-steps", str(dsteps.pop())]
    if rows:
        best = min(rows, key=lambda r: r.get("nll", float("inf")))
        out.append(
            f"Held-out NLL on 8gaussians ({nll.get('n', NR)} points; true NLL {num(nll.get('true_nll'))} "
            f"nats/point): closest {best.get('model')} {num(best.get('nll'))} (gap {num(best.get('gap'))})."
        )
        out.append("")
        out += table(
            ["model", "training steps", "NLL (nats/point)", "gap to true NLL", "train s", "eval s"],
            [
                [
                    r.get("model"),
                    r.get("train_steps"),
                    num(r.get("nll")),
                    num(r.get("gap")),
                    num(r.get("train_s")),
                    num(r.get("eval_s")),
                ]
                for r in rows
            ],
        )
    thr = data.get("throughput", [])
    if thr:
        dims = sorted({r.get("dim") for r in thr})
        methods = list(dict.fromkeys(r.get("method") for r in thr))
        by = {(r.get("method"), r.get("dim")): r.get("points_per_s") for r in thr}
        out += ["", "log-prob throughput (points/s, same network and solver for every method):", ""]
        out += table(
            ["method", *(f"D = {d}" for d in dims)],
            [[m, *(num(by.get((m, d))) for d in dims)] for m in methods],
        )
    if digits:
        out += ["", "bits/dim on the digits test split:", ""]
        out += table(
            ["model", "training steps", "bits/dim"],
            [[r.get("model"), r.get("train_steps"), num(r.get("bits_per_dim"))] for r in digits],
        )
    steps = (
        "; ".join(
            f"{part}: " + ", ".join(f"{r.get('model')} {r.get('train_steps')}" for r in rs)
            for part, rs in (("NLL", rows), ("digits bits/dim", digits))
            if rs
        )
        or NR
    )
    return [*facts(name, data, training=steps, command=command(args)), "", *out]


# --------------------------------------------------------------------------------------
# diffusion.py
# --------------------------------------------------------------------------------------


def render_diffusion(name: str, data: Json, path: Path) -> list[str]:
    settings = data.get("settings", {})
    sets: Json = data.get("datasets", {})
    args = ["benchmarks/diffusion.py"]
    two_d = [d for d in sets if d != "digits"]
    if two_d and two_d != ["moons", "8gaussians"]:
        args += ["--datasets", ",".join(two_d)]
    args += flags(settings, [("--steps", "train_steps", 6000), ("--n-eval", "n_eval", 2000)])
    if "digits" in sets:
        args.append("--digits")
    samplers: list[str] = []
    nfe_of: Json = {}
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
    md = script_markdown(name, data, path)
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


# --------------------------------------------------------------------------------------
# couplings.py (all parts, or one part)
# --------------------------------------------------------------------------------------

COUPLINGS_DEFAULTS = [
    ("--part", "part", "all"),
    ("--steps", "steps", 6000),
    ("--batch", "batch", 256),
    ("--lr", "lr", 1e-3),
    ("--seed", "seed", 0),
    ("--seeds", "seeds", 1),
    ("--n-eval", "n_eval", 2000),
    ("--n-traj", "n_traj", 1000),
    ("--reflow-pairs", "reflow_pairs", 20000),
    ("--pair-steps", "pair_steps", 100),
    ("--sb-sigma", "sb_sigma", 0.2),
    ("--models", "models", ["icfm", "otcfm", "sbcfm", "reflow"]),
    ("--cost-batches", "cost_batches", [256, 2048]),
    ("--warmup", "warmup", 20),
    ("--timed", "timed", 200),
    ("--budget", "budget_seconds", 25.0),
    ("--solver-reps", "solver_reps", 20),
]


def render_couplings(name: str, data: Json, path: Path) -> list[str]:
    cfg = data.get("config", {})
    part = cfg.get("part", "all")
    cost = data.get("cost") or {}
    nfe = data.get("nfe") or {}
    out: list[str] = []
    # the aims only (the full verdict list is in the embedded .md)
    for line in cost.get("verdict", []) + nfe.get("summary", {}).get("verdict", []):
        if "aim" in line.lower():
            out.append(f"- {line}")
    if cost.get("steps"):
        out += ["", "Training step time by coupling (median ms/step, one thread):", ""]
        out += table(
            ["library", "coupling", "batch", "median ms/step", "ratio to the same library's I-CFM"],
            [
                [
                    r.get("library"),
                    r.get("label"),
                    r.get("batch"),
                    num(r.get("median_ms")),
                    f"{num(r.get('ratio_to_icfm'))}x",
                ]
                for r in cost["steps"]
            ],
        )
    models = nfe.get("summary", {}).get("models", {})
    labels = cfg.get("model_labels", {})
    if models:
        keys = list(dict.fromkeys(k for m in models.values() for k in m.get("w2", {})))
        nfes = {k: m["w2"][k].get("nfe") for m in models.values() for k in m.get("w2", {})}
        floor = nfe.get("summary", {}).get("floor_w2", {})
        out += ["", "W2 against NFE (mean ± std over the seeds):", ""]
        out += table(
            ["model", *(f"{k.split('-')[0]} NFE {nfes[k]}" for k in keys)],
            [[labels.get(m, m), *(pm(v.get("w2", {}).get(k)) for k in keys)] for m, v in models.items()]
            + [["floor (data vs data)", *(pm(floor) for _ in keys)]],
        )
    md = script_markdown(name, data, path)
    if md:
        out += ["", *details(f"Full tables ({md[0]}): plan solvers, straightness, per-seed values", md[1])]
    seeds = NR
    if "seed" in cfg:
        n = cfg.get("seeds", 1) if part != "cost" else 1
        seeds = ", ".join(str(cfg["seed"] + i) for i in range(n)) + (
            " (part 1 uses the first)" if part == "all" else ""
        )
    batch = []
    if part in ("cost", "all") and "cost_batches" in cfg:
        batch.append(f"part 1: {', '.join(str(b) for b in cfg['cost_batches'])}")
    if part in ("nfe", "all") and "batch" in cfg:
        batch.append(f"part 2: {cfg['batch']}")
    steps = []
    if part in ("cost", "all") and "timed" in cfg:
        steps.append(f"part 1: {cfg.get('warmup', NR)} warm-up + up to {cfg['timed']} timed per row")
    if part in ("nfe", "all") and "steps" in cfg:
        steps.append(f"part 2: {cfg['steps']} per model")
    nfe_text = NR
    if part == "cost":
        nfe_text = "not applicable (part 1 times training steps only)"
    elif "euler_nfes" in cfg:
        ref = cfg.get("reference", {})
        nfe_text = f"Euler {', '.join(str(n) for n in cfg['euler_nfes'])}" + (
            f"; {ref.get('solver')} {ref.get('steps')} steps (NFE {ref.get('nfe')})" if ref else ""
        )
    default_out = "couplings" + ("" if part == "all" else f"_{part}") + ".json"
    threads = environment(data).get("threads_requested")
    args = ["benchmarks/couplings.py", *flags(cfg, COUPLINGS_DEFAULTS)]
    args += ["--threads", str(threads)] if threads not in (None, 1) else []
    return [
        *facts(
            name,
            data,
            batch="; ".join(batch) or NR,
            training="; ".join(steps) or NR,
            seeds=seeds,
            nfe=nfe_text,
            command=command([*args, *out_flag(name, default_out)]),
        ),
        "",
        *out,
    ]


# --------------------------------------------------------------------------------------
# guidance.py
# --------------------------------------------------------------------------------------


def render_guidance(name: str, data: Json, path: Path) -> list[str]:
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
    threads = environment(data).get("threads")
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


# --------------------------------------------------------------------------------------
# scaling.py
# --------------------------------------------------------------------------------------


def render_scaling(name: str, data: Json, path: Path) -> list[str]:
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
    md = script_markdown(name, data, path)
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


# --------------------------------------------------------------------------------------
# genlab compare (compare.json copied from its --out folder, with its compare.md)
# --------------------------------------------------------------------------------------


def render_compare(name: str, data: Json, path: Path) -> list[str]:
    rows = data.get("rows", [])
    batches = sorted({str(r.get("batch_size")) for r in rows if r.get("batch_size") is not None})
    nfes = ", ".join(f"{r['name']} {r['summary']['nfe']}" for r in rows)
    steps = ", ".join(f"{r['name']} {r['steps']}" for r in rows)
    out = facts(
        name,
        data,
        batch="/".join(batches) if batches else None,
        training=f"{data.get('budget', '?')} per run, i.e. {steps}" if rows else None,
        seeds=str(data.get("settings", {}).get("seeds")) if data.get("settings") else None,
        nfe=nfes or None,
        command=data.get("command"),
    )
    md = path.with_suffix(".md")
    if md.exists():
        out += ["", md.read_text().strip()]
    png = path.with_suffix(".png")
    if png.exists():
        out += ["", f"![samples of every model, seed 0](results/{png.name})"]
    return out


# --------------------------------------------------------------------------------------
# gpu.py: every family on a device, and the trainer's throughput (gpu.json, compile_cpu.json)
# --------------------------------------------------------------------------------------


def render_gpu(name: str, data: Json, path: Path) -> list[str]:
    fam = data.get("families") or {}
    batches = sorted({str(p.get("batch")) for p in data.get("throughput", []) if p.get("batch")})
    out = facts(
        name,
        data,
        batch="/".join(batches) if batches else None,
        training=f"{fam['steps']} per family run" if fam.get("steps") else None,
        command=data.get("command"),
    )
    md = path.with_suffix(".md")
    if md.exists():
        out += ["", md.read_text().strip()]
    return out


# --------------------------------------------------------------------------------------
# generic: any other result file (schedulers.json, flows.json, compare.json, ...)
# --------------------------------------------------------------------------------------


def _lookup(data: Json, keys: Iterable[str]) -> Any:
    for scope in [
        data,
        *(
            v
            for k, v in data.items()
            if k in ("config", "settings", "args", "training", "quality") and isinstance(v, dict)
        ),
    ]:
        for k in keys:
            if scope.get(k) is not None:
                return scope[k]
    return None


def _fact(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def render_generic(name: str, data: Json, path: Path, default_command: str | None = None) -> list[str]:
    argv = _lookup(data, ("argv",))
    cmd = command(argv) if isinstance(argv, list) and argv else _lookup(data, ("command",))
    if not cmd:
        script = HERE / (path.stem + ".py")
        cmd = default_command or (command([f"benchmarks/{script.name}"]) if script.exists() else None)
    out = facts(
        name,
        data,
        batch=_fact(_lookup(data, ("batch", "batch_size"))),
        training=_fact(_lookup(data, ("train_steps", "steps", "training_steps"))),
        seeds=_fact(_lookup(data, ("seeds", "x_T_seeds", "sample_seeds", "seed"))),
        nfe=_fact(_lookup(data, ("nfe", "nfes", "sampler_steps", "sampling"))),
        command=_fact(cmd),
    )
    md = script_markdown(name, data, path)
    if md:
        out += ["", f"Tables as written by the script ({md[0]}):", "", demote(md[1], 4)]
    else:
        out += ["", f"No tables recorded; top-level keys: {', '.join(f'`{k}`' for k in data)}."]
    return out


# --------------------------------------------------------------------------------------
# the page
# --------------------------------------------------------------------------------------

# (file, subsection title, renderer or None for the generic one, command for "not run yet")
Entry = tuple[str, str, Renderer | None, str]
SECTIONS: list[tuple[str, str, list[Entry]]] = [
    (
        "Peers",
        "genlab against other libraries on the same task, network, budget and metrics.",
        [
            (
                "toy2d.json",
                "Flow matching on 2D toys: genlab vs TorchCFM vs Meta flow_matching",
                render_toy2d,
                "python benchmarks/toy2d.py",
            ),
            (
                "schedulers.json",
                "Diffusion schedulers: genlab DDPM/DDIM vs diffusers",
                None,
                "python benchmarks/schedulers.py",
            ),
            ("flows.json", "Coupling flows: genlab RealNVP vs zuko", None, "python benchmarks/flows.py"),
        ],
    ),
    (
        "Families at equal budget",
        "genlab's model families against each other, trained through the public API.",
        [
            (
                "families.json",
                "Every family at a fixed CPU training budget",
                render_families,
                "OMP_NUM_THREADS=1 python benchmarks/families.py --threads 1",
            ),
            (
                "compare_moons.json",
                "`genlab compare` on moons: every 2D family, 30 s of training each",
                render_compare,
                "genlab compare moons moons_ot moons_diffusion moons_ddpm moons_cnf moons_realnvp "
                "moons_vae moons_gan moons_wgan_gp --budget 30s --seeds 3 --threads 1",
            ),
            (
                "compare_digits.json",
                "`genlab compare` on digits, 45 s of training each",
                render_compare,
                "genlab compare digits digits_diffusion digits_vae digits_vqvae digits_gan "
                "--budget 45s --seeds 2 --threads 1 --metrics fd,w2",
            ),
        ],
    ),
    (
        "Likelihoods",
        "",
        [
            (
                "likelihood.json",
                "NLL, log-prob throughput, bits/dim",
                render_likelihood,
                "python benchmarks/likelihood.py --digits",
            )
        ],
    ),
    (
        "Diffusion samplers",
        "",
        [
            (
                "diffusion.json",
                "Quality against NFE",
                render_diffusion,
                "python benchmarks/diffusion.py --digits",
            )
        ],
    ),
    (
        "Couplings",
        "",
        [
            (
                "couplings.json",
                "OT cost per step and W2 against NFE",
                render_couplings,
                "python benchmarks/couplings.py --seeds 3",
            ),
            (
                "couplings_cost.json",
                "Cost per training step (part 1 alone)",
                render_couplings,
                "python benchmarks/couplings.py --part cost",
            ),
        ],
    ),
    (
        "Guidance",
        "",
        [
            (
                "guidance.json",
                "Classifier-free guidance and data couplings on digits",
                render_guidance,
                "python benchmarks/guidance.py --couplings",
            )
        ],
    ),
    (
        "Scaling",
        "",
        [
            (
                "scaling.json",
                "Data-parallel training throughput (DDP)",
                render_scaling,
                "python benchmarks/scaling.py",
            )
        ],
    ),
    (
        "Devices",
        "Every family on a GPU, mixed precision and torch.compile.",
        [
            (
                "gpu.json",
                "Every family on one GPU, and the trainer's throughput",
                render_gpu,
                "python benchmarks/gpu.py",
            ),
            (
                "compile_cpu.json",
                "torch.compile and bf16 on the CPU",
                render_gpu,
                "python benchmarks/gpu.py --device cpu --sections throughput --nets digits,mlp "
                "--modes fp32,fp32+compile,bf16,bf16+compile --out benchmarks/results/compile_cpu.json",
            ),
        ],
    ),
]


def detect(data: Json) -> Renderer | None:
    """The renderer of a result file whose name is not in SECTIONS (e.g. a run with ``--out``)."""
    if "library_status" in data and "datasets" in data:
        return render_toy2d
    if "tables" in data and "budget_s" in data:
        return render_families
    if isinstance(data.get("config"), dict) and ("cost" in data or "nfe" in data):
        return render_couplings
    if "rows" in data and "budget" in data and "settings" in data:
        return render_compare
    if data.get("benchmark") == "scaling":
        return render_scaling
    if "throughput" in data and "device_name" in data:
        return render_gpu
    return None


def load(path: Path) -> Json | None:
    """The JSON of a full (non-quick) run, else None."""
    if not path.exists() or path.stem.endswith("_quick"):
        return None
    data = json.loads(path.read_text())
    return None if not isinstance(data, dict) or is_quick(data) else data


def render(results_dir: Path) -> str:
    lines = [
        "# genlab benchmark results",
        "",
        "How genlab compares with its peers and how its model families compare with each other. "
        "This page is generated: every number and every run fact below (hardware, torch, commit, batch, "
        f'steps, seeds, NFE, command) is read from the named JSON in `results/`; "{NR}" means the JSON '
        "does not hold that fact. Quick (smoke) runs are not shown. Do not edit this file; "
        "regenerate it with",
        "",
        "```bash",
        REGENERATE,
        "```",
        "",
        "and check it is in sync with `"
        + REGENERATE
        + " --check`. What each benchmark holds fixed and how to "
        "read its columns is in [README.md](README.md).",
    ]
    claimed = set()
    for title, intro, entries in SECTIONS:
        lines += ["", f"## {title}", ""]
        if intro:
            lines += [intro, ""]
        for file, subtitle, renderer, missing in entries:
            claimed.add(file)
            path = results_dir / file
            data = load(path)
            lines += [f"### {subtitle}", ""]
            if data is None:
                lines += [f"not run yet: `{missing}`", ""]
                continue
            lines += [*(renderer or render_generic)(file, data, path), ""]
    others = []
    for path in sorted(results_dir.glob("*.json")):
        data = load(path)
        if path.name in claimed or data is None:
            continue
        others += [f"### {path.name}", "", *(detect(data) or render_generic)(path.name, data, path), ""]
    if others:
        lines += [
            "",
            "## Other recorded runs",
            "",
            "Full runs written under other names (e.g. with `--out`).",
            "",
        ]
        lines += others
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the result JSONs are")
    p.add_argument("--out", type=Path, default=OUT, help="the page to write (default benchmarks/RESULTS.md)")
    p.add_argument("--check", action="store_true", help="exit 1 if --out differs from what would be written")
    args = p.parse_args(argv)
    text = render(args.results_dir)
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            print(f"{args.out} is out of date: run `{REGENERATE}`", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
