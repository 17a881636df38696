"""TensorBoard event files: CRC-32C, TFRecord framing and Event protobuf round trips."""

from __future__ import annotations

import re
import socket
import struct
import zlib
from pathlib import Path

import pytest
import torch

from genlab.training.tensorboard import (
    FILE_VERSION,
    EventWriter,
    crc32c,
    masked_crc32c,
    read_events,
    read_scalars,
)


def test_crc32c_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    # RFC 3720 (iSCSI) B.4 test vectors.
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    # Not the zlib CRC-32 by mistake.
    assert crc32c(b"123456789") != zlib.crc32(b"123456789")


def test_masked_crc_definition() -> None:
    data = b"genlab"
    crc = crc32c(data)
    assert masked_crc32c(data) == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) % 2**32


def test_file_name_pattern(tmp_path: Path) -> None:
    with EventWriter(tmp_path / "logs") as w:
        pass
    assert w.path.parent == tmp_path / "logs"
    match = re.fullmatch(r"events\.out\.tfevents\.(\d{10})\.(.+)", w.path.name)
    assert match is not None and match.group(2) == socket.gethostname()
    w2 = EventWriter(tmp_path / "logs", filename_suffix=".rank0")
    w2.close()
    assert w2.path != w.path and "tfevents" in w2.path.name


def test_scalars_round_trip(tmp_path: Path) -> None:
    values = [0.1, -2.5e-7, 3.0e10, float("inf"), 1 / 3]
    with EventWriter(tmp_path) as w:
        for step, v in enumerate(values):
            w.add_scalar("loss/train", v, step, wall_time=1000.0 + step)
        w.add_scalars({"lr": 1e-3, "grad_norm": torch.tensor(2.0)}, step=7)
        w.add_scalar("big_step", 1.0, 2**40)
    events = read_events(w.path)

    assert events[0]["file_version"] == FILE_VERSION and events[0]["summary"] == []
    scalar_events = events[1 : 1 + len(values)]
    for step, (event, v) in enumerate(zip(scalar_events, values, strict=True)):
        assert event["step"] == step and event["wall_time"] == 1000.0 + step
        (entry,) = event["summary"]
        assert entry["tag"] == "loss/train"
        assert entry["simple_value"] == struct.unpack("<f", struct.pack("<f", v))[0]
    multi = events[1 + len(values)]
    assert multi["step"] == 7
    assert [e["tag"] for e in multi["summary"]] == ["lr", "grad_norm"]
    assert multi["summary"][0]["simple_value"] == pytest.approx(1e-3, rel=1e-7)
    assert multi["summary"][1]["simple_value"] == 2.0

    scalars = read_scalars(w.path)
    assert set(scalars) == {"loss/train", "lr", "grad_norm", "big_step"}
    assert scalars["big_step"] == [(2**40, 1.0)]


def test_float32_overflow_becomes_inf_and_negative_step(tmp_path: Path) -> None:
    with EventWriter(tmp_path) as w:
        w.add_scalar("x", 1e300, -3)
    assert read_scalars(w.path) == {"x": [(-3, float("inf"))]}


def test_flush_makes_records_visible(tmp_path: Path) -> None:
    w = EventWriter(tmp_path, flush_secs=3600)
    w.add_scalar("a", 1.0, 1)
    w.flush()
    assert read_scalars(w.path) == {"a": [(1, 1.0)]}
    w.close()
    w.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        w.add_scalar("a", 2.0, 2)


@pytest.mark.parametrize("offset", [3, 9, 13, -2])
def test_crc_corruption_detected(tmp_path: Path, offset: int) -> None:
    """Flip one byte in the length, the length CRC, the data or the data CRC."""
    with EventWriter(tmp_path) as w:
        w.add_scalar("loss", 1.0, 1)
    data = bytearray(w.path.read_bytes())
    data[offset] ^= 0x01
    w.path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="CRC mismatch|truncated"):
        read_events(w.path)


def test_truncated_file_detected(tmp_path: Path) -> None:
    with EventWriter(tmp_path) as w:
        w.add_scalar("loss", 1.0, 1)
    data = w.path.read_bytes()
    w.path.write_bytes(data[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_events(w.path)


def test_bad_inputs(tmp_path: Path) -> None:
    with EventWriter(tmp_path) as w:
        with pytest.raises(ValueError, match="step"):
            w.add_scalar("a", 1.0, 1.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="tag"):
            w.add_scalar("", 1.0, 1)
        with pytest.raises(ValueError, match="real number"):
            w.add_scalar("a", "nope", 1)  # type: ignore[arg-type]


def test_cross_check_with_tensorboard(tmp_path: Path) -> None:
    """If the real tensorboard package is importable, it must read our file identically."""
    from tensorboard.backend.event_processing import event_accumulator  # the dev extra installs it

    with EventWriter(tmp_path) as w:
        for step in range(5):
            w.add_scalar("loss", 1.0 / (step + 1), step)
    acc = event_accumulator.EventAccumulator(str(w.path))
    acc.Reload()
    got = [(e.step, e.value) for e in acc.Scalars("loss")]
    assert got == read_scalars(w.path)["loss"]


def test_a_gan_runs_evaluation_is_logged_under_its_metric(tmp_path: Path) -> None:
    """``eval/w2``, not ``eval/score`` (issue 18, item 13), in TensorBoard and metrics.jsonl;
    the loss figure draws both players' losses."""
    import json

    from genlab.app.cli import main
    from genlab.viz.loss import _loss_series, _read_records

    out = tmp_path / "gan"
    args = [
        "train.steps=8",
        "train.log_every=2",
        "train.eval_every=4",
        "train.eval_n=64",
        "model.net.width=16",
    ]
    assert main(["train", "moons_gan", *args, "--out", str(out), "--no-progress"]) == 0
    (event_file,) = (out / "tb").glob("events.out.tfevents.*")
    scalars = read_scalars(event_file)
    assert (
        [s for s, _ in scalars["eval/w2"]] == [4, 8]
        and "eval/best_w2" in scalars
        and "eval/score" not in scalars
    )
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval" in r]
    assert [r["metric"] for r in evals] == ["w2", "w2"]
    assert [v for _, v in scalars["eval/w2"]] == pytest.approx([r["eval"] for r in evals], rel=1e-6)
    series = _loss_series(_read_records(out / "metrics.jsonl"))
    assert list(series) == ["discriminator loss", "generator loss"]
    steps, d_loss = series["discriminator loss"]
    assert list(steps) == [2, 4, 6, 8]
    assert list(d_loss) == [r["d_loss"] for r in records if "d_loss" in r]
