"""Data-parallel training (DDP on gloo) against one process, the torchrun launch, and the
per-rank streams in checkpoints."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from genlab.app.builders import build_dataset, build_model, data_shape, training_sampler
from genlab.app.runs import resolve_config
from genlab.app.train import train
from genlab.training.checkpoint import load_checkpoint
from genlab.training.distributed import RANK_SEED_STRIDE, DistContext, shard
from genlab.training.optim import warmup_lr
from genlab.training.trainer import NOISE_SEED_OFFSET

TINY = [
    "train.steps=6",
    "train.batch_size=32",
    "train.log_every=2",
    "train.ckpt_every=3",
    "train.ema_decay=0",
    "train.warmup_steps=2",
    "train.threads=1",
    "model.net.width=16",
    "model.net.depth=2",
    "sample.n=20",
    "eval.n=20",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Job = tuple[str, list[str], str, bool]  # config, overrides, run directory, resume


def _worker(rank: int, world: int, port: int, jobs: list[Job]) -> None:
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": str(world)}
    os.environ.update(env)
    torch.set_num_threads(1)
    import torch.distributed as dist

    from genlab.app import runs

    for config, overrides, run_dir, resume in jobs:
        train(runs.resolve_config(config, overrides), run_dir, resume=resume, progress=False)
        # every rank holds the same weights after the last step
        model = runs.load_run(run_dir, use_ema=False, checkpoint="last").model
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        gathered = [torch.zeros_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        assert all(torch.equal(g, gathered[0]) for g in gathered), run_dir
    from genlab.training.distributed import exit_process_group

    exit_process_group(0)  # see its docstring: gloo's threads sometimes abort a normal exit


GAN = [*TINY, "train.eval_every=0", "model.gan.n_critic=2"]


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One two-process group (spawning costs seconds) trains: flow matching; a GAN straight
    through; the same GAN for half the steps, then resumed."""
    root = tmp_path_factory.mktemp("ddp")
    jobs: list[Job] = [
        ("moons", TINY, str(root / "fm"), False),
        ("moons_gan", GAN, str(root / "gan_full"), False),
        ("moons_gan", [*GAN, "train.steps=3"], str(root / "gan_part"), False),
        ("moons_gan", GAN, str(root / "gan_part"), True),
    ]
    mp.spawn(_worker, args=(2, _free_port(), jobs), nprocs=2, join=True)
    return root


def test_shard_takes_contiguous_equal_slices() -> None:
    x, y = torch.arange(12).reshape(6, 2), torch.arange(6)
    parts = [shard((x, y), DistContext(r, 3, "gloo")) for r in range(3)]
    assert torch.equal(torch.cat([p[0] for p in parts]), x) and torch.equal(
        torch.cat([p[1] for p in parts]), y
    )
    d = shard({"x": x, "x0": -x}, DistContext(1, 2, "gloo"))
    assert torch.equal(d["x"], x[3:]) and torch.equal(d["x0"], -x[3:])
    assert shard(x, DistContext()) is x


def test_two_process_ddp_equals_one_process_with_the_same_global_batch(ddp_runs: Path) -> None:
    """DDP's gradient average over two shards = one process descending the mean of the two
    shard losses, each shard with its rank's noise stream (parameters within 1e-6)."""
    ddp = load_checkpoint(ddp_runs / "fm").tensors["model"]

    cfg = resolve_config("moons", TINY)
    dataset = build_dataset(cfg.data)
    model = build_model(cfg, data_shape(dataset))
    sample = training_sampler(cfg, dataset)
    tc = cfg.train
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, betas=tuple(tc.betas))
    data_gen = torch.Generator().manual_seed(tc.seed)
    noise = [
        torch.Generator().manual_seed(tc.seed + NOISE_SEED_OFFSET + r * RANK_SEED_STRIDE) for r in range(2)
    ]
    for step in range(tc.steps):
        for group in opt.param_groups:
            group["lr"] = warmup_lr(step, tc)
        batch = sample(tc.batch_size, data_gen)
        losses = [model.loss(shard(batch, DistContext(r, 2, "gloo")), noise[r])["loss"] for r in range(2)]
        opt.zero_grad()
        (sum(losses) / 2).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip or math.inf)
        opt.step()
    one = model.state_dict()
    assert ddp.keys() == one.keys()
    worst = max(float((ddp[k] - one[k]).abs().max()) for k in one)
    assert worst < 1e-6, worst
    # the checkpoint keeps both ranks' noise streams and the world size
    ckpt = load_checkpoint(ddp_runs / "fm")
    assert {"data", "noise", "noise_1"} <= set(ckpt.tensors["rng"]) and ckpt.meta["world_size"] == 2
    steps = [
        json.loads(line)["step"] for line in (ddp_runs / "fm" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [2, 4, 6]  # one writer


def test_gan_trains_and_resumes_bit_exactly_under_ddp(ddp_runs: Path) -> None:
    a, b = load_checkpoint(ddp_runs / "gan_full").tensors, load_checkpoint(ddp_runs / "gan_part").tensors
    assert load_checkpoint(ddp_runs / "gan_part").step == 6
    for group in ("model", "optim_d", "optim_g"):
        assert all(torch.equal(a[group][k], b[group][k]) for k in a[group]), group


def test_resume_with_another_number_of_processes_is_refused(ddp_runs: Path, capsys) -> None:
    from genlab.app.cli import main

    assert main(["train", "moons", *TINY, "train.steps=8", "--out", str(ddp_runs / "fm"), "--resume"]) == 2
    assert "was written by 2 process(es); resume it with the same number (now 1)" in capsys.readouterr().err


def test_batch_must_split_evenly(tmp_path: Path) -> None:
    from genlab.training.trainer import Trainer

    cfg = resolve_config("moons", [*TINY, "train.batch_size=33"])
    with pytest.raises(ValueError, match="must be divisible by the number of processes"):
        Trainer(
            torch.nn.Linear(1, 1), lambda n, g: None, cfg.train, tmp_path, dist_ctx=DistContext(0, 2, "gloo")
        )


@pytest.mark.slow
def test_torchrun_launches_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "genlab",
        "train",
        "moons",
        *TINY,
        "--out",
        str(out),
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("training into") == 1 and "(2 processes)" in proc.stdout
    assert load_checkpoint(out).step == 6
