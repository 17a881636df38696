"""Training budgets: a number of steps, or of wall-clock seconds that a short pilot turns into
steps (``genlab compare`` and ``benchmarks/families.py`` give every model the same one)."""

from __future__ import annotations

import json
import math
import re
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genlab.app import runs
from genlab.app.config import Config, ConfigError
from genlab.app.train import train


@dataclass(frozen=True)
class Budget:
    """Training budget of every run: ``amount`` steps or wall-clock seconds."""

    amount: float
    unit: str  # "steps" or "seconds"

    def __str__(self) -> str:
        return f"{int(self.amount)} steps" if self.unit == "steps" else f"{self.amount:g} s"


_BUDGET = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(steps?|s|sec|secs|seconds?|m|min|mins|minutes?)?")


def parse_budget(text: str) -> Budget:
    """``"2000"`` or ``"2000steps"`` -> 2000 steps; ``"60s"`` or ``"1min"`` -> 60 seconds."""
    m = _BUDGET.fullmatch(str(text).strip().lower())
    if m is None:
        raise ConfigError(
            f"--budget must be a number of steps (e.g. 2000 or 2000steps) or of seconds "
            f"(e.g. 60s or 2min), got {text!r}"
        )
    value, unit = float(m.group(1)), m.group(2) or "steps"
    if unit.startswith("step"):
        if value != int(value) or value < 1:
            raise ConfigError(f"--budget in steps must be a whole number >= 1, got {text!r}")
        return Budget(int(value), "steps")
    seconds = value * (60.0 if unit.startswith("m") else 1.0)
    if seconds <= 0:
        raise ConfigError(f"--budget in seconds must be > 0, got {text!r}")
    return Budget(seconds, "seconds")


def budget_overrides(cfg: Config, steps: int) -> dict[str, int]:
    """The ``train.*`` settings that scale a config to ``steps`` steps: at most three
    checkpoints on the way (their writing counts as training time), warm-up at most a tenth of
    the run, and (if the config keeps a best checkpoint) an evaluation every sixth."""
    t = cfg.train
    over = {
        "steps": steps,
        "ckpt_every": max(t.ckpt_every, math.ceil(steps / 3)),
        "warmup_steps": min(t.warmup_steps, steps // 10),
    }
    if t.eval_every > 0:
        over["eval_every"] = max(1, round(steps / 6))
    return over


def pilot_rate(config: str, overrides: Sequence[str], steps: int = 30) -> dict[str, Any]:
    """Training steps/s of ``config`` over a ``steps``-step pilot in a temporary directory (no
    evaluation, no checkpoints): the median of the logging windows after the first, which
    holds the warm-up, or the whole pilot's rate if it has one window."""
    log_every = max(1, steps // 3)
    over = [
        *overrides,
        f"train.steps={steps}",
        "train.eval_every=0",
        f"train.log_every={log_every}",
        "train.ckpt_every=1000000000",
        "train.warmup_steps=0",
    ]
    with tempfile.TemporaryDirectory(prefix="genlab_pilot_") as tmp:
        t0 = time.perf_counter()
        res = train(runs.resolve_config(config, over), Path(tmp) / "run", progress=False)
        wall = time.perf_counter() - t0
        lines = (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()
    rates = [r["steps_per_s"] for r in map(json.loads, lines) if "steps_per_s" in r]
    rate = statistics.median(rates[1:]) if len(rates) > 1 else res.steps_per_s
    return {"steps": steps, "steps_per_s": rate, "window_rates": rates, "wall_s": wall}
