"""One writer per run directory (issue 18, item 2): a second training into a run that another
process is writing is refused in one line naming the holder's PID; the lock dies with its
holder (SIGKILL included); a refused run leaves no directory behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from cli_helpers import error_of
from genlab.app.cli import main
from genlab.app.locking import LOCK_FILE, run_lock
from genlab.app.runs import resolve_config
from genlab.app.train import train

TINY = ["train.steps=4", "train.ckpt_every=2", "model.net.width=16", "model.net.depth=1", "--no-progress"]


def test_a_training_into_a_locked_run_is_refused_naming_the_holder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    with run_lock(out):
        err = error_of(["train", "moons", *TINY, "--out", str(out)], capsys)
        assert f"PID {os.getpid()}" in err and "another --out" in err
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing of the refused run
    assert main(["train", "moons", *TINY, "--out", str(out)]) == 0  # released on leaving the block


def _holder(out: Path) -> subprocess.Popen[str]:
    code = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from genlab.app.locking import run_lock
        with run_lock(Path({str(out)!r})):
            print("locked", flush=True)
            time.sleep(120)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_the_lock_of_a_killed_process_is_released(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    holder = _holder(out)
    try:
        err = error_of(["train", "moons", *TINY, "--out", str(out)], capsys)
        assert f"PID {holder.pid}" in err
    finally:
        holder.kill()  # SIGKILL: no clean-up runs in the holder
        holder.wait()
    assert main(["train", "moons", *TINY, "--out", str(out)]) == 0


def test_two_trainings_started_together_never_mix(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "genlab.app.cli", "train", "moons", "--out", str(out), "--no-progress"]
    widths = ["model.net.width=16", "model.net.width=24"]
    steps = ["train.steps=300", "train.ckpt_every=100", "model.net.depth=1"]
    procs = [subprocess.Popen([*cmd, *steps, w], stderr=subprocess.PIPE, text=True) for w in widths]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    winner = next(i for i, (code, _) in enumerate(results) if code == 0)
    loser_err = next(err for code, err in results if code == 2)
    assert "being written by another genlab process (PID" in loser_err or "already holds a run" in loser_err
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"]["net"]["width"] == [16, 24][winner]  # the record is the winner's


def test_overwrite_keeps_the_lock_file_and_a_refused_new_run_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["train", "moons", *TINY, "--out", str(out)]) == 0
    cfg = resolve_config("moons", [t for t in TINY if "=" in t])
    train(cfg, out, overwrite=True, progress=False)  # as genlab demo and compare replace their runs
    assert (out / LOCK_FILE).exists() and (out / "config.yaml").exists()
    missing = tmp_path / "none.npy"
    fresh = tmp_path / "fresh"
    err = error_of(
        ["train", "moons", "data.name=array", f"data.path={missing}", *TINY, "--out", str(fresh)], capsys
    )
    assert "does not exist" in err and not fresh.exists()
