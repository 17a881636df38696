"""End to end through the run workflow: train on moons, evaluate against the metric floor.

Marked slow (about 30 s on 2 cores); `make test` runs it, `make test-fast` skips it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from genlab.app import evaluation, runs
from genlab.app.train import train


@pytest.mark.slow
def test_moons_run_approaches_the_floor(tmp_path: Path) -> None:
    """3000 steps of the demo recipe bring W2 within 1.6x of the data-vs-data floor (the
    6000-step demo measures 0.21 vs 0.19); an untrained network is ~10x the floor."""
    cfg = runs.resolve_config("moons", ["train.steps=3000", "train.ckpt_every=1000"])
    train(cfg, tmp_path / "run", progress=False)
    result = evaluation.evaluate(tmp_path / "run", n=1000, metrics=["w2", "mmd"])
    w2 = result["metrics"]["w2"]
    assert w2["value"] < 1.6 * w2["floor"], w2
    assert result["metrics"]["mmd"]["value"] < 0.01  # untrained: ~0.5
