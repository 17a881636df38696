"""Couplings and guidance from the command line: tiny OT / two-data-set / SB / reflow runs on
2D data, class-conditional and data-coupling runs on digits, and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import error_of
from genlab.app.cli import main

TINY = [
    "train.steps=20",
    "train.batch_size=64",
    "train.log_every=10",
    "train.ckpt_every=10",
    "model.net.width=32",
    "model.net.depth=2",
    "sample.steps=4",
    "eval.n=200",
]
TINY_UNET = [
    "train.steps=6",
    "train.batch_size=16",
    "train.log_every=3",
    "train.ckpt_every=3",
    "model.net.base_channels=8",
    "model.net.time_dim=16",
    "sample.steps=2",
    "eval.n=40",
]


def _train(config: str, out: Path, *extra: str, tiny: list[str] = TINY) -> Path:
    assert main(["train", config, *tiny, *extra, "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def ot_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train("moons_ot", tmp_path_factory.mktemp("ot") / "run")


def test_ot_run_evaluates_straightness(ot_run: Path) -> None:
    assert main(["eval", str(ot_run), "--metrics", "w2,straightness", "--n", "100"]) == 0
    result = json.loads((ot_run / "eval.json").read_text())
    # the reported number is the straightness of the run's own ODE paths
    from genlab.app import runs
    from genlab.metrics import straightness

    run = runs.load_run(ot_run)
    sol = runs.generate(run, 100, runs.sample_settings(run.cfg, sampler="ode"), return_trajectory=True)
    expected = straightness(sol.trajectory, sol.times)
    assert result["metrics"]["straightness"]["value"] == pytest.approx(expected, rel=1e-6)


def test_two_data_sets_and_sb_runs_sample(tmp_path: Path) -> None:
    for config in ("8gaussians_to_moons", "moons_sb"):
        run = _train(config, tmp_path / config)
        out = tmp_path / f"{config}.npy"
        assert main(["sample", str(run), "--n", "30", "--out", str(out)]) == 0
        assert np.load(out).shape == (30, 2)


def test_reflow_trains_on_teacher_pairs(ot_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "reflow"
    args = ["reflow", str(ot_run), "train.steps=10", "--out", str(out), "--pairs", "300", "--steps", "4"]
    assert main([*args, "--no-progress"]) == 0
    pairs = np.load(out / "pairs.npz")
    assert pairs["x0"].shape == (300, 2) and pairs["x1"].shape == (300, 2)
    # x1 is the teacher's ODE map of x0 (EMA weights, RK4 with 4 steps)
    import torch

    from genlab.app import runs

    teacher = runs.load_run(ot_run).model
    x0 = torch.as_tensor(pairs["x0"])
    mapped = teacher.sample(300, "rk4", 4, x0=x0).x
    assert torch.allclose(mapped, torch.as_tensor(pairs["x1"]), atol=1e-5)
    assert main(["eval", str(out), "--metrics", "w2", "--solver", "euler", "--steps", "1", "--n", "100"]) == 0


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train("digits_cond", tmp_path_factory.mktemp("cond") / "run", tiny=TINY_UNET)


def test_class_conditional_sampling_with_guidance(cond_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "three.npy"
    args = ["sample", str(cond_run), "--n", "8", "--label", "3", "--guidance", "2.0", "--out", str(out)]
    assert main(args) == 0
    assert np.load(out).shape == (8, 1, 8, 8)
    assert main(["eval", str(cond_run), "--metrics", "acc,w2", "--guidance", "1.5", "--n", "40"]) == 0
    result = json.loads((cond_run / "eval.json").read_text())
    assert result["guidance"] == 1.5
    # acc is the classifier's agreement with the labels the samples were drawn for
    import torch

    from genlab.app import runs
    from genlab.metrics import get_digits_classifier

    run = runs.load_run(cond_run)
    x = runs.generate(run, 40, runs.sample_settings(run.cfg, guidance=1.5)).x
    classifier, _ = get_digits_classifier()
    with torch.no_grad():
        agree = (classifier(x).argmax(1) == torch.arange(40) % 10).double().mean()
    assert result["metrics"]["acc"]["value"] == pytest.approx(float(agree))
    assert main(["eval", str(cond_run), "--metrics", "w2", "--n", "40", "--figures"]) == 0
    assert (cond_run / "figures" / "samples_by_class.png").exists()


def test_data_coupling_run_shows_inputs_next_to_samples(tmp_path: Path) -> None:
    run = _train("digits_inpaint", tmp_path / "inpaint", tiny=TINY_UNET)
    png = tmp_path / "inpaint.png"
    assert main(["sample", str(run), "--n", "6", "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    npy = tmp_path / "inpaint.npy"
    assert main(["sample", str(run), "--n", "6", "--out", str(npy)]) == 0
    inputs, samples = np.load(tmp_path / "inpaint.inputs.npy"), np.load(npy)
    assert inputs.shape == samples.shape == (6, 1, 8, 8)
    assert main(["eval", str(run), "--metrics", "fd", "--n", "40", "--figures"]) == 0
    assert (run / "figures" / "inputs_samples_truth.png").exists()
    assert main(["eval", str(run), "--metrics", "nll"]) == 2  # no density from corrupted inputs


def test_conditional_data_coupling_uses_each_images_own_label(tmp_path: Path) -> None:
    """A class-conditional inpainting run completes every test image under its own class."""
    from genlab.app import runs
    from genlab.app.conditioning import run_conditioning
    from genlab.data import load_digits

    run_dir = _train("digits_inpaint", tmp_path / "ci", "model.net.class_conditional=true", tiny=TINY_UNET)
    cond = run_conditioning(runs.load_run(run_dir), 12)
    test = load_digits("test")
    assert cond.y is not None and cond.y.tolist() == test.labels[:12].tolist()
    assert cond.truth is not None and bool((cond.truth == test.images[:12]).all())


def test_coupling_and_guidance_errors(
    ot_run: Path, cond_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "x.npy")
    assert "class-conditional" in error_of(["sample", str(ot_run), "--label", "3", "--out", out], capsys)
    assert "[0, 9]" in error_of(["sample", str(cond_run), "--label", "12", "--out", out], capsys)
    assert "guidance" in error_of(["sample", str(cond_run), "--guidance", "-1", "--out", out], capsys)
    msg = error_of(["train", "moons_diffusion", "model.coupling=ot", "--out", str(tmp_path / "d")], capsys)
    assert "model.coupling=ot is a setting of model.family=flow_matching / meanflow, not of diffusion" in msg
    msg = error_of(["train", "moons_sb", "model.path=vp", "--out", str(tmp_path / "s")], capsys)
    assert "model.path=linear" in msg
    msg = error_of(
        ["train", "moons", "model.source=8gaussians", "model.path=vp", "--out", str(tmp_path / "v")], capsys
    )
    assert "non-Gaussian" in msg
    msg = error_of(["train", "moons", "model.coupling=inpaint", "--out", str(tmp_path / "i")], capsys)
    assert "corrupts images" in msg
    msg = error_of(
        ["train", "moons_ot", "model.coupling_args.regularisation=1", "--out", str(tmp_path / "o")], capsys
    )
    assert "valid: method, reg, label_aware, block" in msg
    msg = error_of(["train", "moons", "model.coupling=bridge", "--out", str(tmp_path / "b")], capsys)
    assert "model.coupling" in msg and "ot" in msg
    msg = error_of(["eval", str(ot_run), "--metrics", "acc"], capsys)
    assert "digits" in msg
    msg = error_of(["train", "moons", "sample.guidance=2", "--out", str(tmp_path / "g")], capsys)
    assert "sample.guidance" in msg and "class-conditional" in msg
    msg = error_of(
        ["reflow", str(ot_run), "model.net.width=8", "--out", str(tmp_path / "r"), "--pairs", "10"], capsys
    )
    assert "reflow overrides" in msg
