"""The layers of genlab: imports point downwards only and form no cycle.

The graph is read from the source (every ``import`` and ``from ... import``, inside
functions and ``TYPE_CHECKING`` blocks too), so a lazy import cannot hide an upward edge.
A module may import its own package (without a cycle) and the layers below it:

    app                       the genlab command and its parts (config, runs, evaluation, ...)
    training                  trainer, checkpoints, EMA, DDP, compile
    models                    one module per family
    samplers, likelihood      a model seen as a field -> a solver; log-densities
    paths, metrics            schedules, Gaussian paths, SDEs, couplings; distances
    networks, solvers, data, viz
    _validate, _atomic, _version, devices      utilities every layer may use
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "genlab"

#: rank of each top-level part of genlab: an import must point to a lower rank (or stay
#: inside its own part)
RANKS = {
    "_validate": 0,
    "_atomic": 0,
    "_version": 0,
    "devices": 0,
    "networks": 1,
    "solvers": 1,
    "data": 1,
    "viz": 1,
    "paths": 2,
    "metrics": 2,
    "samplers": 3,
    "likelihood": 3,
    "models": 4,
    "training": 5,
    "app": 6,
    "__main__": 7,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _targets(module: str, node: ast.AST, is_package: bool, known: set[str]) -> list[str]:
    """The genlab modules an import statement loads (the most specific known module)."""
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            origin = ".".join([*base, *([node.module] if node.module else [])])
        else:
            origin = node.module or ""
        submodules = [f"{origin}.{a.name}" for a in node.names if f"{origin}.{a.name}" in known]
        names = submodules or [origin]  # `from genlab import viz` loads genlab.viz, not a name of genlab
    out = []
    for name in names:
        if not name.startswith("genlab"):
            continue
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in known and name != module:
            out.append(name)
    return out


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for target in _targets(module, node, path.name == "__init__.py", known):
                graph[module].add(target)
        graph.setdefault(module, set())
    return graph


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_part_of_genlab_has_a_layer() -> None:
    parts = {_part(m) for m in import_graph()} - {""}
    assert parts <= set(RANKS), f"add {sorted(parts - set(RANKS))} to RANKS with its layer"


def test_imports_point_downwards() -> None:
    upward = []
    for module, targets in import_graph().items():
        for target in targets:
            if target == "genlab":  # the package root re-exports; nothing inside may import it
                upward.append(f"{module} -> genlab (import genlab._version or the module itself)")
                continue
            a, b = _part(module), _part(target)
            if module == "genlab" or a == b:
                continue
            if RANKS[b] >= RANKS[a]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that do not point downwards: " + "; ".join(sorted(upward))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    graph = import_graph()
    # a package's __init__ gathering its modules is not a cycle with them
    pruned = {
        m: {t for t in ts if not (t == m.rsplit(".", 1)[0] and t != "genlab")} for m, ts in graph.items()
    }
    assert _cycles(pruned) == []


def test_the_checker_sees_cycles_and_upward_edges() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_importing_the_solvers_loads_nothing_above_them() -> None:
    """`import genlab.solvers` loads no training, app, model or metrics module."""
    code = "import sys, genlab.solvers; print(' '.join(m for m in sys.modules if m.startswith('genlab')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = out.split()
    assert "genlab.solvers" in loaded
    above = [m for m in loaded if _part(m) in ("training", "app", "models", "metrics", "paths", "samplers")]
    assert not above, above


def test_one_registration_per_family_with_its_config_in_its_module() -> None:
    """Every family is registered once, by its own module, next to its config dataclass (which
    builds the model); nothing else lists families."""
    from genlab.models import FAMILIES

    registrations = [
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Family"
    ]
    assert len(registrations) == len(FAMILIES)
    assert all(r.startswith("models/") for r in registrations), registrations
    for family in FAMILIES.values():
        assert family.samplers and set(family.predictions) <= {"velocity", "noise", "data", "score"}
        assert family.config.__module__ == family.model.__module__, family.name
        assert family.config().family == family.name
