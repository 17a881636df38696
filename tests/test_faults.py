"""Fault injection: kill -9 and exact resume through the CLI, crashes inside a checkpoint
write, damaged or foreign checkpoint files refused with one-line errors, non-finite losses.

Everything runs on CPU with one thread (``train.threads=1``), so runs are deterministic bit
for bit and the resumed run can be compared with ``torch.equal`` to an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cli_helpers import error_of
from genlab.app.cli import main
from genlab.training import checkpoint as ckpt_mod
from genlab.training.checkpoint import list_checkpoints, load_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
GENLAB = [sys.executable, "-m", "genlab"]
SMALL = [
    "train.batch_size=64",
    "train.log_every=5",
    "train.ckpt_every=5",
    "train.threads=1",
    "model.net.width=32",
    "model.net.depth=2",
    "sample.steps=4",
    "eval.n=200",
]
# ~0.5 s of training at ~500 steps/s (a checkpoint every 5 steps): long enough to kill it
FM_STEPS = 300
FM = [f"train.steps={FM_STEPS}", *SMALL]
GAN = ["train.steps=200", "train.eval_every=0", *SMALL]


# --------------------------------------------------------------------------- helpers


def train_in_process(config: str, over: list[str], out: Path, *flags: str) -> None:
    assert main(["train", config, *over, "--out", str(out), "--no-progress", *flags]) == 0


def assert_same_checkpoint(a: Path, b: Path) -> None:
    """The latest checkpoints of two runs hold identical tensors (bit for bit) and meta."""
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert ca.step == cb.step
    assert sorted(ca.tensors) == sorted(cb.tensors)
    for group in ca.tensors:
        assert sorted(ca.tensors[group]) == sorted(cb.tensors[group]), group
        for name, t in ca.tensors[group].items():
            assert torch.equal(t, cb.tensors[group][name]), f"{group}/{name} differs"
    assert ca.meta == cb.meta


def metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]


def assert_same_losses(run: Path, ref: Path) -> None:
    steps = [r["step"] for r in metrics(run)]
    assert len(steps) == len(set(steps)), "duplicated steps in metrics.jsonl"
    assert steps == sorted(steps)
    assert [(r["step"], r["loss"]) for r in metrics(run)] == [(r["step"], r["loss"]) for r in metrics(ref)]


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def latest_files(run: Path) -> tuple[Path, Path]:
    st = load_checkpoint(run).path
    return st, st.with_suffix(".json")


# --------------------------------------------------------------------------- references


@pytest.fixture(scope="module")
def fm_ref(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted flow-matching run (in process: same single thread as the CLI)."""
    out = tmp_path_factory.mktemp("ref") / "fm"
    train_in_process("moons", FM, out)
    return out


@pytest.fixture(scope="module")
def gan_ref(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "gan"
    train_in_process("moons_gan", GAN, out)
    return out


# --------------------------------------------------------------------------- 1. kill -9


def kill_midway(config: str, over: list[str], run: Path, seed: int) -> int:
    """Start ``genlab train`` in a subprocess and SIGKILL it a seeded random time after its
    first checkpoint; returns the latest complete checkpoint left behind."""
    total = int(next(o for o in over if o.startswith("train.steps=")).split("=")[1])
    delay = random.Random(seed).uniform(0.0, 0.25)
    proc = subprocess.Popen(
        [*GENLAB, "train", config, *over, "--out", str(run), "--no-progress"],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not any(s > 0 for s in list_checkpoints(run)):
            if proc.poll() is not None:
                pytest.fail(f"training ended before its first checkpoint: {proc.stderr.read().decode()}")
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.002)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the run finished before the kill; raise train.steps"
    left = list_checkpoints(run)
    assert left and 0 < left[-1] < total
    return left[-1]


@pytest.mark.parametrize(
    ("config", "over", "ref", "seed"),
    [("moons", FM, "fm_ref", 0), ("moons_gan", GAN, "gan_ref", 1)],
    ids=["flow_matching", "gan"],
)
def test_kill9_then_resume_is_bit_identical(
    config: str, over: list[str], ref: str, seed: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    ref_dir: Path = request.getfixturevalue(ref)
    run = tmp_path / "run"
    killed_at = kill_midway(config, over, run, seed)
    # whatever the kill left (a temporary file, a tensor file without sidecar, a stale
    # latest.json), the library loads a complete checkpoint at or before the last one listed
    assert load_checkpoint(run).step <= killed_at
    train_in_process(config, over, run, "--resume")  # in process: saves a second start-up
    assert_same_checkpoint(run, ref_dir)
    assert_same_losses(run, ref_dir)
    if config == "moons_gan":  # two optimisers, both restored
        assert {"optim_d", "optim_g"} <= set(load_checkpoint(run).tensors)


# --------------------------------------------------------------------------- 2. crash in a save

CRASH_STEP = 20  # the 4th periodic save (ckpt_every=5)


@pytest.mark.parametrize("stage", ["tensors", "sidecar", "latest"])
def test_crash_inside_a_checkpoint_write(
    stage: str,
    tmp_path: Path,
    fm_ref: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A write that fails half way through the save of step 20 (the tensor file half
    written, the sidecar or latest.json not written) leaves step 15 loadable, and resuming
    from it ends exactly where an uninterrupted run ends."""
    real_save_file = ckpt_mod.save_file
    real_write_json = ckpt_mod.atomic_write_json

    def save_file(flat: dict[str, torch.Tensor], filename: str, metadata: dict[str, str]) -> None:
        real_save_file(flat, filename, metadata=metadata)
        if stage == "tensors" and metadata["genlab_step"] == str(CRASH_STEP):
            with open(filename, "r+b") as fh:  # half of the bytes reached the disk
                fh.truncate(os.path.getsize(filename) // 2)
            raise OSError(28, "No space left on device (simulated)")

    def atomic_write_json(path: Path, obj: Any) -> None:
        name = Path(path).name
        if (stage == "sidecar" and name == f"step_{CRASH_STEP:08d}.json") or (
            stage == "latest" and name == "latest.json" and obj["step"] == CRASH_STEP
        ):
            raise OSError(28, "No space left on device (simulated)")
        real_write_json(path, obj)

    monkeypatch.setattr(ckpt_mod, "save_file", save_file)
    monkeypatch.setattr(ckpt_mod, "atomic_write_json", atomic_write_json)
    run = tmp_path / "run"
    err = error_of(["train", "moons", *FM, "--out", str(run), "--no-progress"], capsys)
    assert "No space left on device" in err
    monkeypatch.undo()

    assert not list(run.glob("checkpoints/.*.tmp")), "a temporary file was left behind"
    previous = CRASH_STEP - 5
    assert load_checkpoint(run).step == previous
    assert list_checkpoints(run)[-1] == (CRASH_STEP if stage == "latest" else previous)
    train_in_process("moons", FM, run, "--resume")
    assert_same_checkpoint(run, fm_ref)
    assert_same_losses(run, fm_ref)


_CRASHER = """
import os, sys
from genlab.training import checkpoint as ck
real = ck.save_file
def save_file(flat, filename, metadata=None):
    real(flat, filename, metadata=metadata)
    if metadata["genlab_step"] == sys.argv[1]:
        with open(filename, "r+b") as fh:
            fh.truncate(os.path.getsize(filename) // 2)
        os._exit(137)  # the process dies here: no cleanup, no exception handler
ck.save_file = save_file
from genlab.app.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_hard_crash_inside_the_tensor_write_then_resume(tmp_path: Path, fm_ref: Path) -> None:
    """A process that dies while writing step 20's tensor file leaves a half-written
    temporary file; it is ignored, step 15 loads and ``--resume`` finishes the run exactly."""
    run = tmp_path / "run"
    argv = [str(CRASH_STEP), "train", "moons", *FM, "--out", str(run), "--no-progress"]
    done = subprocess.run(
        [sys.executable, "-c", _CRASHER, *argv], env=ENV, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 137, done.stderr
    assert list(run.glob("checkpoints/.step_00000020.safetensors.*.tmp")), "expected a stray temporary file"
    assert list_checkpoints(run) == [5, 10, 15]
    assert load_checkpoint(run).step == 15
    train_in_process("moons", FM, run, "--resume")
    assert_same_checkpoint(run, fm_ref)
    assert_same_losses(run, fm_ref)


# --------------------------------------------------------------------------- 3. refused files


def refused_everywhere(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """``sample``, ``eval`` and ``train --resume`` on ``run`` all fail with one line."""
    return [
        error_of(["sample", str(run), "--n", "10", "--out", str(tmp_path / "x.npy")], capsys),
        error_of(["eval", str(run), "--n", "50", "--metrics", "w2"], capsys),
        error_of(["train", "moons", *FM, "--out", str(run), "--resume", "--no-progress"], capsys),
    ]


def test_truncated_checkpoint_is_refused(
    tmp_path: Path, fm_ref: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(fm_ref, tmp_path / "run")
    st, _ = latest_files(run)
    st.write_bytes(st.read_bytes()[: st.stat().st_size * 2 // 3])
    for err in refused_everywhere(run, tmp_path, capsys):
        assert "truncated or corrupt" in err and st.name in err


def test_truncated_checkpoint_without_size_in_sidecar_is_refused(
    tmp_path: Path, fm_ref: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the sidecar's file_bytes, safetensors itself must notice the missing data."""
    run = copy_run(fm_ref, tmp_path / "run")
    st, side = latest_files(run)
    sidecar = json.loads(side.read_text())
    del sidecar["file_bytes"], sidecar["sha256"]  # safetensors' own checks are the last line
    side.write_text(json.dumps(sidecar))
    st.write_bytes(st.read_bytes()[:-100])
    for err in refused_everywhere(run, tmp_path, capsys):
        assert "corrupt or truncated" in err and st.name in err


def test_sidecar_records_the_size_and_sha256(fm_ref: Path) -> None:
    st, side = latest_files(fm_ref)
    sidecar = json.loads(side.read_text())
    assert sidecar["file_bytes"] == st.stat().st_size
    assert sidecar["sha256"] == hashlib.sha256(st.read_bytes()).hexdigest()


def test_tampered_tensor_data_is_refused(
    tmp_path: Path, fm_ref: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(fm_ref, tmp_path / "run")
    st, _ = latest_files(run)
    data = bytearray(st.read_bytes())
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    # the biggest weight matrix of the EMA weights, which `genlab sample` uses
    key = max((k for k in header if k.startswith("ema/")), key=lambda k: np.prod(header[k]["shape"]))
    begin, end = header[key]["data_offsets"]
    middle = 8 + size + (begin + end) // 2
    data[middle : middle + 64] = b"\xff" * 64  # 16 float32 NaNs; the file keeps its size
    st.write_bytes(bytes(data))
    for err in refused_everywhere(run, tmp_path, capsys):
        assert "does not match the SHA-256 its sidecar recorded" in err and st.name in err


def test_foreign_pickle_is_refused_and_never_executed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A torch.save pickle under a checkpoint name, with a plausible hand-written sidecar:
    refused, and the code it carries (touching a marker file) never runs."""
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[Path]]:
            return (pathlib.Path.touch, (marker,))

    run = tmp_path / "run"
    ckpt_dir = run / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    st = ckpt_dir / "step_00000010.safetensors"
    torch.save({"model": {"w": torch.ones(3)}, "evil": Payload()}, st)
    sidecar = {
        "config": {},
        "step": 10,
        "format_version": ckpt_mod.FORMAT_VERSION,
        "groups": ["model"],
        "file_bytes": st.stat().st_size,
        "pinned": False,
    }
    (ckpt_dir / "step_00000010.json").write_text(json.dumps(sidecar))
    assert list_checkpoints(run) == [10]
    for err in refused_everywhere(run, tmp_path, capsys):
        assert "corrupt or truncated" in err and st.name in err
    assert not marker.exists(), "loading a checkpoint executed pickled code"


def test_checkpoint_of_another_family_is_refused(
    tmp_path: Path, fm_ref: Path, gan_ref: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A GAN checkpoint copied into a flow-matching run (as its newest step)."""
    run = copy_run(fm_ref, tmp_path / "run")
    gan_st, gan_side = latest_files(gan_ref)
    ckpt_dir = run / "checkpoints"
    shutil.copy(gan_st, ckpt_dir / "step_00000500.safetensors")
    sidecar = json.loads(gan_side.read_text())
    sidecar["step"] = 500
    (ckpt_dir / "step_00000500.json").write_text(json.dumps(sidecar))
    (ckpt_dir / "latest.json").unlink()  # the newest complete checkpoint is the GAN's
    assert load_checkpoint(run).step == 500
    err = error_of(["train", "moons", *FM, "--out", str(run), "--resume", "--no-progress"], capsys)
    assert "holds a gan run, not the flow_matching of moons" in err
    # only the sidecar of the GAN: its config does not describe the tensors beside it
    (ckpt_dir / "step_00000500.safetensors").unlink()
    shutil.copy(latest_files(fm_ref)[0], ckpt_dir / "step_00000500.safetensors")
    fm_tensors = (ckpt_dir / "step_00000500.safetensors").read_bytes()
    sidecar["file_bytes"] = len(fm_tensors)
    sidecar["sha256"] = hashlib.sha256(fm_tensors).hexdigest()  # a consistent, mislabelled pair
    (ckpt_dir / "step_00000500.json").write_text(json.dumps(sidecar))
    argv = ["sample", str(run), "--n", "10", "--checkpoint", "last", "--out", str(tmp_path / "x.npy")]
    assert "model.family=gan, not flow_matching as the run's config.yaml says" in error_of(argv, capsys)
    (run / "config.yaml").unlink()  # no record to compare with: the tensors still give it away
    assert "does not match its config's model" in error_of(argv, capsys)


def test_sidecar_with_invalid_json_is_refused(
    tmp_path: Path, fm_ref: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(fm_ref, tmp_path / "run")
    _, side = latest_files(run)
    side.write_text('{"step": 400, "format_version": 1,')  # cut short
    for err in refused_everywhere(run, tmp_path, capsys):
        assert "unreadable" in err and side.name in err
    side.write_text('["not", "a", "sidecar"]')
    for err in refused_everywhere(run, tmp_path, capsys):
        assert "not a genlab checkpoint sidecar" in err


def test_latest_json_with_invalid_json_is_refused(
    tmp_path: Path, fm_ref: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(fm_ref, tmp_path / "run")
    (run / "checkpoints" / "latest.json").write_text("{")
    for err in refused_everywhere(run, tmp_path, capsys):
        assert "latest.json is unreadable" in err


def test_run_dir_that_is_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "run"
    file.write_text("not a directory\n")
    assert "not a checkpoint file" in error_of(
        ["sample", str(file), "--out", str(tmp_path / "x.npy")], capsys
    )
    assert "not a checkpoint file" in error_of(["eval", str(file)], capsys)
    assert str(file) in error_of(["train", "moons", *FM, "--out", str(file), "--no-progress"], capsys)
    assert str(file) in error_of(
        ["train", "moons", *FM, "--out", str(file), "--resume", "--no-progress"], capsys
    )
    assert file.read_text() == "not a directory\n"  # never clobbered


# --------------------------------------------------------------------------- 4. non-finite loss

_AT_STEP = re.compile(r"at step (\d+)")


def assert_stopped_and_last_checkpoint_samples(
    run: Path, err: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> int:
    """The one-line error names the step; the last checkpoint before it is finite, loads and
    samples; returns the failing step."""
    match = _AT_STEP.search(err)
    assert match, err
    bad = int(match.group(1))
    ckpt = load_checkpoint(run)
    assert ckpt.step == 5 * ((bad - 1) // 5) > 0  # the last periodic save before the bad step
    for group in ("model", "ema"):
        assert all(bool(torch.isfinite(t).all()) for t in ckpt.tensors[group].values()), group
    out = tmp_path / "x.npy"
    capsys.readouterr()
    assert main(["sample", str(run), "--n", "50", "--out", str(out)]) == 0
    x = np.load(out)
    assert x.shape == (50, 2) and np.isfinite(x).all()
    return bad


def test_outlier_in_the_data_stops_with_the_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(4000, 2)).astype(np.float32)
    data[123] = [1e30, -1e30]  # finite in float32, but its square is not (first drawn at step 44)
    path = tmp_path / "outlier.npy"
    np.save(path, data)
    run = tmp_path / "run"
    # raw data (standardised, the outlier would only shrink every other row towards 0)
    over = ["data.name=array", f"data.path={path}", "data.standardize=false"]
    argv = ["train", "moons", *FM, *over, "--out", str(run), "--no-progress"]
    err = error_of(argv, capsys)
    assert "loss is" in err and "extreme values" in err
    bad = assert_stopped_and_last_checkpoint_samples(run, err, tmp_path, capsys)
    assert 5 < bad < FM_STEPS
    # metrics.jsonl holds only the steps that were completed
    assert all(r["step"] < bad and np.isfinite(r["loss"]) for r in metrics(run))
    # train.nonfinite=skip: the batches holding the outlier are skipped, the run finishes
    skip = tmp_path / "skip"
    train_in_process("moons", [*argv[2:-3], "train.steps=100", "train.nonfinite=skip"], skip)
    assert sum(r.get("skipped", 0) for r in metrics(skip)) > 0
    final = load_checkpoint(skip)
    assert final.step == 100
    assert all(bool(torch.isfinite(t).all()) for t in final.tensors["model"].values())


def test_nan_loss_at_step_k_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from genlab.models.flow_matching import FlowMatching

    real_loss = FlowMatching.loss
    calls = {"n": 0}

    def loss(self: FlowMatching, batch: Any, generator: torch.Generator | None = None) -> Any:
        calls["n"] += 1
        out = real_loss(self, batch, generator)
        if calls["n"] == 13:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(FlowMatching, "loss", loss)
    run = tmp_path / "run"
    err = error_of(["train", "moons", *FM, "--out", str(run), "--no-progress"], capsys)
    monkeypatch.undo()
    assert "loss is nan at step 13" in err and "the checkpoint of step 10 is kept" in err
    assert assert_stopped_and_last_checkpoint_samples(run, err, tmp_path, capsys) == 13
    # before the first checkpoint, the message does not promise one
    calls["n"] = 10
    monkeypatch.setattr(FlowMatching, "loss", loss)
    err = error_of(["train", "moons", *FM, "--out", str(tmp_path / "early"), "--no-progress"], capsys)
    monkeypatch.undo()
    assert "loss is nan at step 3" in err and "no checkpoint was written yet" in err


def test_nan_gradient_with_finite_loss_never_reaches_a_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from genlab.models.flow_matching import FlowMatching

    real_loss = FlowMatching.loss
    calls = {"n": 0}

    def loss(self: FlowMatching, batch: Any, generator: torch.Generator | None = None) -> Any:
        calls["n"] += 1
        out = real_loss(self, batch, generator)
        if calls["n"] == 10:  # a checkpoint step: forward finite, backward NaN (sqrt of < 0)
            bad = torch.sqrt(-1.0 - sum(p.abs().sum() for p in self.parameters()))
            out["loss"] = torch.where(torch.tensor(True), out["loss"], bad)
        return out

    monkeypatch.setattr(FlowMatching, "loss", loss)
    run = tmp_path / "run"
    err = error_of(["train", "moons", *FM, "--out", str(run), "--no-progress"], capsys)
    monkeypatch.undo()
    assert "the gradient norm of loss is nan at step 10" in err
    assert_stopped_and_last_checkpoint_samples(run, err, tmp_path, capsys)


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (["moons_ddpm"], "is of model.family=ddpm, not flow_matching as the run's config.yaml says"),
        (["moons", "model.net.width=24"], "is of another model than the run's config.yaml describes"),
    ],
)
def test_a_checkpoint_of_another_run_is_refused(
    other: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = ["train.steps=4", "train.ckpt_every=2", "model.net.depth=1", "--no-progress"]
    run, stranger = tmp_path / "run", tmp_path / "stranger"
    assert main(["train", "moons", "model.net.width=16", *tiny, "--out", str(run)]) == 0
    assert main(["train", other[0], "model.net.width=16", *other[1:], *tiny, "--out", str(stranger)]) == 0
    assert main(["sample", str(run), "--n", "5", "--out", str(tmp_path / "ok.npy")]) == 0
    for f in (stranger / "checkpoints").glob("step_00000004.*"):  # the pair, so the hashes agree
        shutil.copy(f, run / "checkpoints" / f.name)
    err = error_of(["sample", str(run), "--n", "5", "--out", str(tmp_path / "x.npy")], capsys)
    assert message in err and "belongs to another run" in err
    assert not (tmp_path / "x.npy").exists()
