"""benchmarks/fewstep.py --quick (issue 19, goal 5): every method trains, samples at 1, 2 and 4
NFE and lands in the table; the numbers are measurements, never asserted as goals here."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench_helpers import run_benchmark


def test_fewstep_quick_runs_every_method(tmp_path: Path) -> None:
    out = tmp_path / "fewstep.json"
    argv = ["--quick", "--jobs", "1", "--steps", "40", "--methods", "all", "--out", str(out)]
    fewstep = run_benchmark("fewstep", argv)
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["benchmark"] == "fewstep"
    assert {r["method"] for r in data["per_seed"]} == set(fewstep.LABELS)
    for row in data["per_seed"]:
        assert set(row["w2"]) == {"1", "2", "4"} and all(
            math.isfinite(v) and v > 0 for v in row["w2"].values()
        )
    goal = data["summary"]["goal"]["moons"]
    gaps = data["summary"]["mean_gap"]["moons"]
    assert goal["best_peer_gap"] == min(abs(gaps[m]["4"]) for m in fewstep.PEERS)  # judged by size
    assert goal["genlab_gap"] == min(abs(g["4"]) for m, g in gaps.items() if m.startswith("genlab"))
    assert (tmp_path / "fewstep.md").read_text().count("###") >= 3
