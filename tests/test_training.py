"""The trainer: learning-rate warm-up, EMA, logging, checkpoints, exact resume, Ctrl-C."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from genlab.app.builders import batch_sampler, build_model
from genlab.app.config import TrainConfig, build_config
from genlab.data import make_toy
from genlab.training import EMA
from genlab.training.optim import scheduled_lr, warmup_lr
from genlab.training.trainer import Trainer, TrainingError


def tiny(steps: int = 20, **train: object) -> tuple[torch.nn.Module, object, TrainConfig, dict]:
    over = [
        f"train.{k}={v}"
        for k, v in {
            "steps": steps,
            "batch_size": 32,
            "log_every": 5,
            "ckpt_every": 10,
            **train,
        }.items()
    ]
    cfg = build_config({}, [*over, "model.net.width=16", "model.net.depth=2"])
    model = build_model(cfg, (2,))
    return model, batch_sampler(make_toy("moons"), False), cfg.train, cfg.to_dict()


def test_warmup_is_linear_then_flat() -> None:
    cfg = TrainConfig(lr=1.0, warmup_steps=4)
    assert [warmup_lr(s, cfg) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_lr_decays_from_the_peak_after_warm_up_to_the_floor_at_the_last_step(schedule: str) -> None:
    """lr(s) = lr min(1, (s+1)/W) (m + (1 - m) d(p)), p = (s - W) / (T - 1 - W): the peak right
    after the warm-up, the half-way value at p = 1/2, m lr at the last step, never increasing."""
    cfg = TrainConfig(lr=2.0, warmup_steps=10, steps=111, lr_schedule=schedule, lr_min_factor=0.1)
    lr = [scheduled_lr(s, cfg) for s in range(111)]
    assert lr[:10] == pytest.approx([2.0 * (s + 1) / 10 for s in range(10)])
    assert lr[10] == pytest.approx(2.0) and lr[-1] == pytest.approx(0.2)
    assert lr[60] == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))  # p = 1/2: cos and linear agree there
    p = 0.25  # step 35
    d = 1 - p if schedule == "linear" else 0.5 * (1 + math.cos(math.pi * p))
    assert lr[35] == pytest.approx(2.0 * (0.1 + 0.9 * d))
    assert all(b <= a + 1e-12 for a, b in zip(lr[10:], lr[11:], strict=False))
    assert scheduled_lr(5, TrainConfig(lr=2.0, warmup_steps=10)) == warmup_lr(
        5, TrainConfig(lr=2.0, warmup_steps=10)
    )


def test_the_trainer_follows_the_schedule(tmp_path: Path) -> None:
    model, sampler, cfg, raw = tiny(12, warmup_steps=2, lr_schedule="cosine", lr_min_factor=0.0, log_every=1)
    trainer = Trainer(model, sampler, cfg, tmp_path / "run", raw, progress=False)
    trainer.fit()
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lrs = {r["step"]: r["lr"] for r in logged if "lr" in r}
    assert len(lrs) >= 10 and lrs[12] == pytest.approx(0.0)
    for step, value in lrs.items():
        assert value == pytest.approx(scheduled_lr(step - 1, cfg)), step


def test_ema_update_rule() -> None:
    lin = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    ema = EMA(lin, decay=0.9)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    # warm-up decays d_n = min(0.9, (1 + n) / (10 + n)): 2/11, 3/12, then 0.9 from n = 80
    assert ema.current_decay() == pytest.approx(2 / 11)
    ema.update()
    ema.update()
    expected = 1 - (2 / 11) * (3 / 12)  # shadow after two lerps towards 1 from 0
    assert float(ema.shadow["weight"]) == pytest.approx(expected)
    with ema.swapped() as m:
        assert float(m.weight.detach()) == pytest.approx(expected)
    for _ in range(200):
        ema.update()
    assert ema.current_decay() == 0.9
    assert float(lin.weight.detach()) == 1.0


def test_logs_and_checkpoints(tmp_path: Path) -> None:
    model, sampler, cfg, full = tiny(20)
    res = Trainer(model, sampler, cfg, tmp_path, full, progress=False).fit()
    assert res.step == 20
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [5, 10, 15, 20]
    assert set(records[0]) == {"step", "loss", "lr", "grad_norm", "steps_per_s", "skipped"}
    assert records[-1]["skipped"] == 0
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    from genlab.training import list_checkpoints

    assert list_checkpoints(tmp_path) == [10, 20]


def test_resume_is_bit_identical(tmp_path: Path) -> None:
    """20 steps in one go == 10 steps, stop, resume for 10 more: same weights, same EMA."""
    model_a, sampler, cfg, full = tiny(20)
    Trainer(model_a, sampler, cfg, tmp_path / "a", full, progress=False).fit()

    model_b, sampler, cfg10, full10 = tiny(10)
    Trainer(model_b, sampler, cfg10, tmp_path / "b", full, progress=False).fit()
    model_c, sampler, cfg, _ = tiny(20)
    trainer = Trainer(model_c, sampler, cfg, tmp_path / "b", full, progress=False)
    trainer.fit(resume=True)
    for (k, va), vc in zip(model_a.state_dict().items(), model_c.state_dict().values(), strict=True):
        assert torch.equal(va, vc), k
    from genlab.training import load_checkpoint

    ema_a, ema_c = (
        load_checkpoint(tmp_path / "a").tensors["ema"],
        load_checkpoint(tmp_path / "b").tensors["ema"],
    )
    assert all(torch.equal(ema_a[k], ema_c[k]) for k in ema_a)
    loss_a = json.loads((tmp_path / "a" / "metrics.jsonl").read_text().splitlines()[-1])["loss"]
    loss_c = json.loads((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()[-1])["loss"]
    assert loss_a == loss_c


def test_interrupt_saves_a_checkpoint(tmp_path: Path) -> None:
    model, sampler, cfg, full = tiny(50)
    calls = {"n": 0}

    def flaky(n: int, gen: torch.Generator) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 13:
            raise KeyboardInterrupt
        return sampler(n, gen)

    with pytest.raises(KeyboardInterrupt):
        Trainer(model, flaky, cfg, tmp_path, full, progress=False).fit()
    from genlab.training import list_checkpoints

    assert list_checkpoints(tmp_path)[-1] == 12  # the 12 completed steps are kept


def test_non_finite_loss_is_reported(tmp_path: Path) -> None:
    model, _, cfg, full = tiny(5)

    def nan_data(n: int, gen: torch.Generator) -> torch.Tensor:
        return torch.full((n, 2), 1e30)

    with pytest.raises(TrainingError, match="lower train.lr"):
        Trainer(model, nan_data, cfg, tmp_path, full, progress=False).fit()


def test_resume_refuses_another_model(tmp_path: Path) -> None:
    model, sampler, cfg, full = tiny(10)
    Trainer(model, sampler, cfg, tmp_path, full, progress=False).fit()
    over = ["train.steps=20", "model.net.width=32", "model.net.depth=2"]
    other_cfg = build_config({}, over)
    other = build_model(other_cfg, (2,))
    with pytest.raises(TrainingError, match="different model config"):
        Trainer(other, sampler, other_cfg.train, tmp_path, other_cfg.to_dict(), progress=False).fit(
            resume=True
        )


def test_sigterm_checkpoints_at_the_end_of_the_step_and_resumes_exactly(tmp_path: Path) -> None:
    """Pre-emption: SIGTERM during training writes a checkpoint of the finished step, the
    command exits with 143 and one line, and --resume ends where an uninterrupted run ends."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from genlab.training import list_checkpoints
    from genlab.training.checkpoint import load_checkpoint

    args = ["moons", "train.steps=4000", "train.ckpt_every=100000", "train.threads=1", "model.net.width=16"]
    args += ["train.batch_size=32", "train.log_every=1000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "genlab", "train", *args, "--out", str(run), "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (run / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.05)  # metrics.jsonl is opened after the signal handlers are installed
    time.sleep(0.5)  # inside the training loop
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("genlab: stopped by SIGTERM")
    (stopped,) = list_checkpoints(run)
    assert 0 < stopped < 4000
    from genlab.app.cli import main

    short = [a for a in args if not a.startswith("train.steps")]
    limit = [*short, f"train.steps={stopped + 5}"]
    assert main(["train", *limit, "--out", str(run), "--resume", "--no-progress"]) == 0
    assert main(["train", *limit, "--out", str(tmp_path / "ref"), "--no-progress"]) == 0
    a, b = load_checkpoint(run).tensors, load_checkpoint(tmp_path / "ref").tensors
    for group in ("model", "ema", "optim", "rng"):
        assert all(torch.equal(a[group][k], b[group][k]) for k in a[group]), group


def test_a_run_directory_without_room_is_refused_before_training(tmp_path: Path, monkeypatch, capsys) -> None:
    import shutil
    from collections import namedtuple

    from genlab.app.cli import main

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 1000, 1000))
    assert main(["train", "moons", "train.steps=2", "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MB free but the checkpoints need about" in err[0]
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_bf16_autocast_trains_close_to_fp32(tmp_path: Path) -> None:
    """train.precision=bf16 runs the losses under bfloat16 autocast: the first loss agrees
    with fp32 to bfloat16's precision (8 bits of mantissa), training goes on, weights stay fp32."""
    from genlab.app.runs import resolve_config
    from genlab.app.train import train
    from genlab.training.checkpoint import load_checkpoint

    over = ["train.steps=60", "train.batch_size=64", "train.log_every=1", "model.net.width=32"]
    over += ["train.warmup_steps=0"]
    losses = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        train(resolve_config("moons", [*over, f"train.precision={precision}"]), out, progress=False)
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        losses[precision] = [r["loss"] for r in records]
    assert abs(losses["bf16"][0] - losses["fp32"][0]) < 0.02 * abs(losses["fp32"][0])
    assert losses["bf16"][0] != losses["fp32"][0]  # autocast was on
    assert all(math.isfinite(v) for v in losses["bf16"])
    # the same training curve up to rounding: mean of the last 20 losses within 5%
    late = {k: sum(v[-20:]) / 20 for k, v in losses.items()}
    assert abs(late["bf16"] - late["fp32"]) < 0.05 * late["fp32"]
    weights = load_checkpoint(tmp_path / "bf16").tensors["model"]
    assert all(w.dtype == torch.float32 for w in weights.values() if w.is_floating_point())


@pytest.mark.parametrize(
    "settings",
    [{"precision": "fp16"}, {"precision": "bf16"}, {"compile": "true"}],
    ids=["fp16", "bf16", "compile"],
)
def test_resume_is_bit_identical_in_every_precision_and_compiled(tmp_path: Path, settings: dict) -> None:
    """fp16 (with its GradScaler), bf16 and torch.compile runs resume bit for bit: the
    scaler's state is in the checkpoint, the compiled network is the same module."""
    model_a, sampler, cfg, full = tiny(20, **settings)
    trainer_a = Trainer(model_a, sampler, cfg, tmp_path / "a", full, progress=False)
    trainer_a.fit()
    model_b, sampler, cfg10, _ = tiny(10, **settings)
    trainer_b = Trainer(model_b, sampler, cfg10, tmp_path / "b", full, progress=False)
    trainer_b.fit()
    model_c, sampler, cfg, _ = tiny(20, **settings)
    trainer_c = Trainer(model_c, sampler, cfg, tmp_path / "b", full, progress=False)
    trainer_c.restore()  # the scaler continues where it stopped (scale and growth counter)
    assert {k: s.state_dict() for k, s in trainer_b.scalers.items()} == {
        k: s.state_dict() for k, s in trainer_c.scalers.items()
    }
    trainer_c.fit(resume=True)
    for (k, va), vc in zip(model_a.state_dict().items(), model_c.state_dict().values(), strict=True):
        assert torch.equal(va, vc), k
    assert {k: s.state_dict() for k, s in trainer_a.scalers.items()} == {
        k: s.state_dict() for k, s in trainer_c.scalers.items()
    }
    assert bool(trainer_a.scalers) == (settings.get("precision") == "fp16")
    compiled = model_c.net._compiled_call_impl is not None  # type: ignore[union-attr]
    assert compiled == ("compile" in settings)


def test_fp16_trains_close_to_fp32(tmp_path: Path) -> None:
    """train.precision=fp16: float16 autocast with loss scaling; the first losses agree with
    fp32 to float16's precision, they are not the fp32 ones, the weights stay fp32."""
    losses = {}
    for precision in ("fp32", "fp16"):
        model, sampler, cfg, full = tiny(30, precision=precision, log_every=1, warmup_steps=0)
        Trainer(model, sampler, cfg, tmp_path / precision, full, progress=False).fit()
        records = (tmp_path / precision / "metrics.jsonl").read_text().splitlines()
        losses[precision] = [json.loads(line)["loss"] for line in records]
        assert all(p.dtype == torch.float32 for p in model.parameters())
    assert losses["fp16"][0] != losses["fp32"][0]  # autocast was on
    assert abs(losses["fp16"][0] - losses["fp32"][0]) < 1e-2 * abs(losses["fp32"][0])
    assert all(math.isfinite(v) for v in losses["fp16"])


def test_a_failing_compile_falls_back_to_eager(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A CNF trained with the Hutchinson divergence needs a double backward, which
    torch.compile refuses: one warning line, then the same steps as an eager run."""
    from genlab.app.runs import resolve_config
    from genlab.app.train import train

    over = [
        "train.steps=3",
        "train.log_every=1",
        "model.net.width=16",
        "model.net.depth=2",
        "model.cnf_steps=2",
    ]
    train(resolve_config("moons_cnf", [*over, "train.compile=true"]), tmp_path / "c", progress=False)
    err = capsys.readouterr().err
    assert err.count("warning: train.compile failed") == 1 and "training in eager mode" in err
    train(resolve_config("moons_cnf", over), tmp_path / "e", progress=False)

    def read(run: str) -> list[float]:
        return [json.loads(x)["loss"] for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    assert read("c") == read("e")


def test_compiled_training_evaluates_eagerly(tmp_path: Path) -> None:
    """With train.compile, the in-training evaluation samples with the networks in eager mode
    (a CUDA graph would overwrite outputs a multi-stage solver keeps) and the best weights
    are kept."""
    from torch._dynamo import eval_frame

    seen = []

    def evaluator(model: torch.nn.Module) -> float:
        seen.append(eval_frame._stance.stance)  # private, but the one place torch keeps it
        x = model.sample(16, "rk4", 3, torch.Generator().manual_seed(0)).x  # type: ignore[operator]
        return float((x**2).mean())

    model, sampler, cfg, full = tiny(10, compile="true", eval_every=5)
    Trainer(model, sampler, cfg, tmp_path / "r", full, progress=False, evaluator=evaluator).fit()
    assert seen == ["force_eager", "force_eager"]
    assert eval_frame._stance.stance == "default"  # training itself runs compiled
    assert (tmp_path / "r" / "best").is_dir()
