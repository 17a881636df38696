"""benchmarks/ahead.py --quick (issue 19): the comparison with the peers runs end to end and
writes every section; its numbers are measurements, never asserted as speeds here."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ahead_quick_writes_every_section(tmp_path: Path) -> None:
    for peer in ("torchcfm", "flow_matching"):
        if importlib.util.find_spec(peer) is None:
            pytest.skip(f"{peer} is not installed (make setup installs it)")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("ahead", ROOT / "benchmarks" / "ahead.py")
        assert spec is not None and spec.loader is not None
        ahead = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(ahead)
        out = tmp_path / "ahead.json"
        sections = "throughput,adaptive,logprob,memory"
        assert ahead.main(["--quick", "--sections", sections, "--out", str(out)]) == 0
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["benchmark"] == "ahead"
    assert set(data["throughput"]["mlp"]) == {"genlab", "torchcfm", "flow_matching"}
    assert {r["library"] for r in data["adaptive"]["per_seed"]} == {"genlab", "torchcfm", "flow_matching"}
    # one network, two log-prob implementations: the same density to solver accuracy
    assert data["logprob"]["nll_abs_diff"] < 1e-2
    assert all(math.isfinite(v) and v > 0 for v in data["memory"].values() if isinstance(v, float))
    assert (tmp_path / "ahead.md").read_text().count("###") >= 4
