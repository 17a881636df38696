"""Markdown helpers shared by the benchmark scripts and ``results_md.py``.

Each benchmark script owns one ``render(name, data, path) -> list[str]``: the markdown of one of
its result JSONs (``name`` its file name, ``data`` its content, ``path`` where it lies). The script
writes that markdown beside the JSON (:func:`write`), and ``results_md.py`` puts the same lines
on ``benchmarks/RESULTS.md``. This module holds what those functions share: number formats,
tables, the run-facts table, the command that regenerates a run, and the generic section of a
result file without a renderer of its own. It imports nothing beyond the standard library.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NR = "not recorded"
ENV_KEYS = ("environment", "machine", "env", "hardware")  # where the scripts put the machine record

Json = dict[str, Any]
Renderer = Callable[[str, Json, Path], list[str]]


# --------------------------------------------------------------------------------------
# numbers and tables
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


# --------------------------------------------------------------------------------------
# a run's full tables
# --------------------------------------------------------------------------------------


def script_markdown(name: str, data: Json, path: Path) -> tuple[str, str] | None:
    """The tables a script wrote itself: the JSON's ``markdown`` key, else the sibling ``.md``."""
    if isinstance(data.get("markdown"), str) and data["markdown"].strip():
        return f'the "markdown" key of results/{name}', data["markdown"]
    md = path.with_suffix(".md")
    if md.exists():
        return f"results/{md.name}", md.read_text()
    return None


def full_tables(
    name: str, data: Json, path: Path, build: Callable[[Json], str] | None = None, finished: str = ""
) -> tuple[str, str] | None:
    """A run's full tables (every column its script measured) and where they are written.

    The JSON's ``markdown`` key when it has one; else ``build(data)`` for a run that names its
    benchmark (the ``"benchmark"`` key) and holds its ``finished`` key (the elapsed time, which
    its script records with the tables), or for an older run whose script left these tables
    beside it (``results/<name>.md``, which ``build`` redraws from the JSON); else None (a
    record without them, e.g. a hand-made one).
    """
    if isinstance(data.get("markdown"), str) and data["markdown"].strip():
        return f'the "markdown" key of results/{name}', data["markdown"]
    md = path.with_suffix(".md")
    if build is not None and (md.exists() or ("benchmark" in data and finished in data)):
        return f"results/{md.name}", build(data)
    return None


# --------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------


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


def facts(name: str, data: Json, **given: str | None) -> list[str]:
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
# generic: the run facts it can find, then the tables the script wrote
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


def generic(
    name: str,
    data: Json,
    path: Path,
    build: Callable[[Json], str] | None = None,
    finished: str = "total_seconds",
) -> list[str]:
    """Any result file: its run facts, found by their usual keys, then the script's tables.

    With ``build`` (a script's own tables from its JSON) those tables are the
    :func:`full_tables` of the run; without, the JSON's ``markdown`` key or the ``.md`` beside it.
    """
    argv = _lookup(data, ("argv",))
    cmd = command(argv) if isinstance(argv, list) and argv else _lookup(data, ("command",))
    if not cmd:
        script = HERE / (path.stem + ".py")
        cmd = command([f"benchmarks/{script.name}"]) if script.exists() else None
    out = facts(
        name,
        data,
        batch=_fact(_lookup(data, ("batch", "batch_size"))),
        training=_fact(_lookup(data, ("train_steps", "steps", "training_steps"))),
        seeds=_fact(_lookup(data, ("seeds", "x_T_seeds", "sample_seeds", "seed"))),
        nfe=_fact(_lookup(data, ("nfe", "nfes", "sampler_steps", "sampling"))),
        command=_fact(cmd),
    )
    md = full_tables(name, data, path, build, finished) if build else script_markdown(name, data, path)
    if md:
        out += ["", f"Tables as written by the script ({md[0]}):", "", demote(md[1], 4)]
    else:
        out += ["", f"No tables recorded; top-level keys: {', '.join(f'`{k}`' for k in data)}."]
    return out


# --------------------------------------------------------------------------------------
# the script's own markdown
# --------------------------------------------------------------------------------------


def write(render: Renderer, out: Path, data: Json) -> str:
    """Write ``render``'s markdown of the result ``data`` (saved at ``out``) to ``out``'s ``.md``.

    The links of the page point from ``benchmarks/``; beside the JSON they point from
    ``benchmarks/results/``. Returns the text written.
    """
    text = "\n".join(render(out.name, data, out)) + "\n"
    text = re.sub(r"\n{3,}", "\n\n", text).replace("](results/", "](")
    out.with_suffix(".md").write_text(text)
    return text
