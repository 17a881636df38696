"""benchmarks/ahead.py --quick (issue 19): the comparison with the peers runs end to end and
writes every section; its numbers are measurements, never asserted as speeds here."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench_helpers import run_benchmark


def test_ahead_quick_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "ahead.json"
    sections = "throughput,adaptive,logprob,memory"
    run_benchmark("ahead", ["--quick", "--sections", sections, "--out", str(out)])
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["benchmark"] == "ahead"
    assert set(data["throughput"]["mlp"]) == {"genlab", "torchcfm", "flow_matching"}
    assert {r["library"] for r in data["adaptive"]["per_seed"]} == {"genlab", "torchcfm", "flow_matching"}
    # one network, two log-prob implementations: the same density to solver accuracy
    assert data["logprob"]["nll_abs_diff"] < 1e-2
    assert all(math.isfinite(v) and v > 0 for v in data["memory"].values() if isinstance(v, float))
    assert (tmp_path / "ahead.md").read_text().count("###") >= 4
