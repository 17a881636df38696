"""Progress output (issue 18, item 12): a bar on a terminal; plain lines every few seconds
when the output is a pipe or a file, never one line of carriage returns; nothing when off."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

from genlab.training.records import LineProgress, _NoBar, progress_bar


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_come_every_interval_with_step_share_and_eta() -> None:
    stream, clock = io.StringIO(), _Clock()
    bar = LineProgress(total=100, initial=20, stream=stream, interval=10.0, clock=clock)
    bar.set_postfix(loss="0.5000", it_s="4")
    for _ in range(40):  # 40 steps, 1 s each: a line at 10, 20, 30 and 40 s
        clock.now += 1.0
        bar.update(1)
    bar.close()  # the last line was printed at step 60 already: no repeat
    lines = stream.getvalue().splitlines()
    assert lines[0] == "train: step 30/100 (30%), loss 0.5000, steps/s 4, eta 70 s"
    assert [re.match(r"train: step (\d+)/", line).group(1) for line in lines] == ["30", "40", "50", "60"]
    assert lines[-1].endswith("eta 40 s")  # 40 steps left at the measured 1 s per step
    assert "\r" not in stream.getvalue()


def test_close_prints_the_final_step() -> None:
    stream, clock = io.StringIO(), _Clock()
    bar = LineProgress(total=5, initial=0, stream=stream, interval=10.0, clock=clock)
    for _ in range(5):
        bar.update(1)
    bar.close()
    assert stream.getvalue() == "train: step 5/5 (100%)\n"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_on_a_terminal_lines_elsewhere_nothing_when_off() -> None:
    assert isinstance(progress_bar(10, 0, True, io.StringIO()), LineProgress)
    assert isinstance(progress_bar(10, 0, False, io.StringIO()), _NoBar)
    bar = progress_bar(10, 0, True, _Terminal())
    assert not isinstance(bar, (LineProgress, _NoBar))  # tqdm
    bar.close()


def test_piped_training_prints_plain_lines(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "genlab.app.cli", "train", "moons", "train.steps=30", "model.net.width=16"]
    cmd += ["model.net.depth=1", "train.ckpt_every=30", "train.log_every=10", "--out", str(tmp_path / "r")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    final = r"^train: step 30/30 \(100%\), loss \d+\.\d{4}, steps/s \d+$"
    assert re.search(final, done.stderr, re.M), done.stderr
