"""VAE, VQ-VAE and the GAN family from the command line: tiny runs of every packaged config,
their figures, the best checkpoint, and the one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import error_of
from genlab.app.cli import main
from genlab.app.runs import packaged_configs

TINY = [
    "train.steps=12",
    "train.batch_size=32",
    "train.log_every=4",
    "train.ckpt_every=6",
    "sample.n=40",
    "eval.n=40",
    "train.eval_n=40",
]
#: the configs of this issue's families and the overrides that make them tiny
FAMILY_CONFIGS = {
    "moons_vae": ["model.net.width=16"],
    "moons_gan": ["model.net.width=16", "train.eval_every=6"],
    "moons_wgan": ["model.net.width=16", "train.eval_every=6", "model.gan.n_critic=2"],
    "moons_wgan_gp": ["model.net.width=16", "train.eval_every=6", "model.gan.n_critic=2"],
    "circles_to_moons_cyclegan": ["model.net.width=16", "train.eval_every=6"],
    "digits_vae": ["model.net.base_channels=8"],
    "digits_vqvae": ["model.net.base_channels=8", "model.ae.prior_args={steps: 10, hidden: 8, layers: 2}"],
    "digits_gan": ["model.net.base_channels=8", "train.eval_every=6"],
    "digits_cgan": ["model.net.base_channels=8", "train.eval_every=6"],
    "digits_stylegan": ["model.net.base_channels=8", "train.eval_every=6"],
    "digits_pix2pix": ["model.net.base_channels=8"],
    "digits_cyclegan": ["model.net.base_channels=4"],
}


def _train(config: str, out: Path, *extra: str) -> Path:
    assert (
        main(["train", config, *TINY, *FAMILY_CONFIGS[config], *extra, "--out", str(out), "--no-progress"])
        == 0
    )
    return out


def test_every_family_config_is_packaged() -> None:
    assert set(FAMILY_CONFIGS) <= set(packaged_configs())


@pytest.mark.parametrize("config", sorted(FAMILY_CONFIGS))
def test_family_trains_samples_and_evaluates(config: str, tmp_path: Path) -> None:
    run = _train(config, tmp_path / "run")
    assert main(["sample", str(run), "--n", "10", "--out", str(tmp_path / "x.npy")]) == 0
    x = np.load(tmp_path / "x.npy")
    shape = (2,) if config.startswith(("moons", "circles")) else (1, 8, 8)
    assert x.shape == (10, *shape) and np.isfinite(x).all()
    assert main(["eval", str(run), "--n", "40", "--metrics", "w2"]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["sampler"] == "direct" and result["nfe"] == 1
    assert np.isfinite(result["metrics"]["w2"]["value"])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in records)
    if "train.eval_every=6" in FAMILY_CONFIGS[config]:
        assert result["checkpoint"] == "best" and (run / "best").is_dir()
        assert any("eval" in r for r in records)


def test_gan_records_both_players_and_logs_the_critic(tmp_path: Path) -> None:
    run = _train("moons_wgan", tmp_path / "run")
    last = [
        json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if "d_loss" in line
    ][-1]
    assert {"d_loss", "g_loss", "w1_estimate", "d_real", "d_fake"} <= set(last)


def test_vae_reports_the_iwae_nll_and_draws_its_figures(tmp_path: Path, capsys) -> None:
    run = _train("digits_vae", tmp_path / "run")
    assert main(["eval", str(run), "--n", "20", "--metrics", "nll", "--figures"]) == 0
    out = capsys.readouterr().out
    assert "IWAE bound with K = 64" in out
    result = json.loads((run / "eval.json").read_text())
    assert result["nll_unit"] == "bits/dim" and np.isfinite(result["metrics"]["nll"]["value"])
    figures = {p.name for p in (run / "figures").iterdir()}
    assert {"samples.png", "reconstructions.png", "latent_interpolation.png", "loss.png"} <= figures


def test_vqvae_fits_its_prior_after_training(tmp_path: Path) -> None:
    from genlab.app.runs import load_run

    run = load_run(_train("digits_vqvae", tmp_path / "run"))
    assert bool(run.model.prior_fitted)
    assert main(["eval", str(run.run_dir), "--n", "20", "--metrics", "w2", "--figures"]) == 0
    assert (run.run_dir / "figures" / "reconstructions.png").is_file()


def test_conditional_gan_samples_the_requested_class(tmp_path: Path, capsys) -> None:
    run = _train("digits_cgan", tmp_path / "run")
    assert main(["sample", str(run), "--n", "8", "--label", "3", "--out", str(tmp_path / "x.png")]) == 0
    assert main(["eval", str(run), "--n", "20", "--metrics", "acc", "--label", "3", "--figures"]) == 0
    assert (run / "figures" / "samples_by_class.png").is_file()
    msg = error_of(
        ["sample", str(run), "--n", "8", "--label", "3", "--guidance", "2", "--out", "x.npy"], capsys
    )
    assert "guidance applies to flow matching and diffusion" in msg


def test_translation_runs_show_inputs_outputs_and_truth(tmp_path: Path) -> None:
    for config in ("digits_pix2pix", "digits_cyclegan"):
        run = _train(config, tmp_path / config)
        assert main(["sample", str(run), "--n", "6", "--out", str(tmp_path / f"{config}.png")]) == 0
        assert main(["sample", str(run), "--n", "6", "--out", str(tmp_path / f"{config}.npy")]) == 0
        assert np.load(tmp_path / f"{config}.inputs.npy").shape == (6, 1, 8, 8)
        assert main(["eval", str(run), "--n", "20", "--metrics", "w2", "--figures"]) == 0
        assert (run / "figures" / "inputs_samples_truth.png").is_file()


def test_best_and_last_checkpoints(tmp_path: Path, capsys) -> None:
    run = _train("moons_gan", tmp_path / "run", "train.eval_every=4")
    evals = [
        json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in line
    ]
    assert [e["step"] for e in evals] == [4, 8, 12]
    best_step = min(evals, key=lambda e: e["eval"])["step"]
    assert main(["eval", str(run), "--n", "40", "--metrics", "w2", "--checkpoint", "best"]) == 0
    assert json.loads((run / "eval.json").read_text())["step"] == best_step
    assert main(["eval", str(run), "--n", "40", "--metrics", "w2", "--checkpoint", "last"]) == 0
    assert json.loads((run / "eval.json").read_text())["step"] == 12
    plain = _train("moons_vae", tmp_path / "vae")
    msg = error_of(["eval", str(plain), "--checkpoint", "best"], capsys)
    assert "has no best checkpoint; train with train.eval_every > 0" in msg


@pytest.mark.parametrize(
    "config, overrides, message",
    [
        ("moons_gan", ["model.gan.loss=hinge"], "model.gan.loss='hinge' is not valid; choose one of:"),
        ("moons_gan", ["model.gan.n_critic=0"], "model.gan.n_critic must be >= 1, got 0"),
        ("moons_gan", ["train.lr=0"], "train.lr must be > 0.0, got 0.0"),
        ("moons_gan", ["train.d_lr=-0.001"], "train.d_lr must be > 0"),
        ("moons_gan", ["model.net.kind=conv"], "uses MLPs; set model.net.kind=mlp"),
        ("digits_gan", ["model.net.kind=mlp"], "needs model.net.kind=conv or style (got mlp)"),
        (
            "digits_gan",
            ["model.net.kind=style", "model.net.class_conditional=true"],
            "kind=style has no label",
        ),
        ("digits_vae", ["model.net.kind=unet"], "needs model.net.kind=conv (got unet)"),
        ("moons_vae", ["model.family=vqvae"], "model.ae.prior='gmm' is not valid; choose one of"),
        ("moons_vae", ["model.family=vqvae", "model.ae.prior=pixelcnn"], "vqvae quantises image feature"),
        ("moons_gan", ["model.family=pix2pix"], "pix2pix translates images"),
        ("digits_cyclegan", ["model.gan.domain=circles"], "does not fit data of shape (1, 8, 8)"),
        ("circles_to_moons_cyclegan", ["model.gan.domain=inverted"], "give a 2D toy data set"),
        ("digits_pix2pix", ["model.gan.corruption_args={factor: 3}"], "model.gan.corruption_args"),
        ("moons_gan", ["train.eval_metric=fd"], "train.eval_metric=fd (from the digits classifier) needs"),
        ("moons_wgan", ["model.gan.clip=0"], "model.gan.clip must be > 0"),
        ("moons_gan", ["model.net.class_conditional=true"], "needs a labelled data set"),
        ("moons_vae", ["model.net.class_conditional=true"], "model.family=vae is not class-conditional"),
        ("digits_pix2pix", ["model.net.class_conditional=true"], "pix2pix is not class-conditional"),
        ("moons", ["model.net.kind=conv"], "model.net.kind=conv is a GAN / autoencoder network"),
        ("moons_gan", ["train.d_lr=.nan"], "train.d_lr must be a number"),
        ("digits_pix2pix", ["model.gan.corruption_args={noise_std: abc}"], "noise_std must be a number >= 0"),
        ("digits_pix2pix", ["model.net.channel_mults=[1, 2, 2, 2]"], "halves the image 4 times"),
    ],
)
def test_bad_family_settings_give_one_line_errors(config, overrides, message, tmp_path, capsys) -> None:
    argv = ["train", config, *TINY, *overrides, "--out", str(tmp_path / "r"), "--no-progress"]
    assert message in error_of(argv, capsys)


@pytest.mark.parametrize("family", ["vae", "gan"])
def test_demo_runs_the_vae_and_gan_families(family: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / family
    args = [
        "demo",
        "--family",
        family,
        "train.steps=12",
        "train.eval_every=6",
        "eval.n=100",
        "model.net.width=16",
    ]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "the direct sampler" in text and "(NFE 1)" in text
    assert (out / "figures" / "samples_vs_data.png").is_file()


def test_vqvae_can_keep_its_best_checkpoint(tmp_path: Path) -> None:
    """The evaluator fits the code prior of the weights it scores, so best/ can sample."""
    run = _train("digits_vqvae", tmp_path / "run", "train.eval_every=6", "train.eval_metric=w2")
    assert (
        main(["sample", str(run), "--n", "5", "--checkpoint", "best", "--out", str(tmp_path / "x.npy")]) == 0
    )
    assert np.isfinite(np.load(tmp_path / "x.npy")).all()


def test_bernoulli_vae_refuses_an_image_nll(tmp_path: Path, capsys) -> None:
    run = _train("digits_vae", tmp_path / "run", "model.ae.likelihood=bernoulli")
    assert "not a density of dequantised images" in error_of(["eval", str(run), "--metrics", "nll"], capsys)
