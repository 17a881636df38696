"""What the tests of the benchmark scripts share: loading a script of ``benchmarks/`` as a module
(its sibling imports resolved) and running its ``main`` on a smoke setting."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_benchmark(
    name: str, argv: list[str], peers: tuple[str, ...] = ("torchcfm", "flow_matching")
) -> ModuleType:
    """Run ``benchmarks/<name>.py``'s ``main(argv)``, expect exit status 0 and return the module;
    skip when a peer the script needs is not installed."""
    for peer in peers:
        if importlib.util.find_spec(peer) is None:
            pytest.skip(f"{peer} is not installed (make setup installs it)")
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.main(argv) == 0
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module
