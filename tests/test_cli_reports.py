"""What the command line reports is what it did (issue 18, item 13): options that a sampler
does not read are refused, eval.json records the steps actually taken, a one-step path is not
scored for straightness, a negative unbiased MMD² is explained, and figures draw as many
points as the metrics they show were computed on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import error_of
from genlab.app.cli import main
from genlab.app.reporting import format_table

TINY = ["train.steps=4", "train.ckpt_every=4", "model.net.width=16", "model.net.depth=1", "eval.n=100"]


def _train(config: str, out: Path, *extra: str) -> Path:
    assert main(["train", config, *TINY, *extra, "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("reports")
    return {
        "ddpm": _train("moons_ddpm", root / "ddpm", "model.num_steps=50"),
        "vae": _train("moons_vae", root / "vae"),
        "fm": _train("moons", root / "fm"),
    }


@pytest.mark.parametrize(
    ("run", "argv", "message"),
    [
        ("ddpm", ["--sampler", "ddpm", "--steps", "10"], "takes every one of the model's T steps"),
        ("ddpm", ["--sampler", "ddpm", "--solver", "heun"], "--solver does not apply to sampler 'ddpm'"),
        ("vae", ["--steps", "10"], "--steps does not apply to sampler 'direct': the model draws in one pass"),
        ("fm", ["--metrics", "straightness", "--steps", "1"], "needs --steps 2 or more"),
    ],
)
def test_options_a_sampler_does_not_read_are_refused(
    run: str, argv: list[str], message: str, runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in error_of(["eval", str(runs[run]), *argv], capsys)


def test_eval_records_the_steps_taken(runs: dict[str, Path]) -> None:
    assert main(["eval", str(runs["ddpm"]), "--sampler", "ddpm", "--metrics", "w2"]) == 0
    result = json.loads((runs["ddpm"] / "eval.json").read_text())
    assert result["steps"] == result["nfe"] == 50  # all T = 50 steps, not the configured 20
    assert main(["eval", str(runs["ddpm"]), "--sampler", "ddim", "--steps", "7", "--metrics", "w2"]) == 0
    assert json.loads((runs["ddpm"] / "eval.json").read_text())["steps"] == 7
    assert main(["eval", str(runs["vae"]), "--metrics", "w2"]) == 0
    assert json.loads((runs["vae"] / "eval.json").read_text())["steps"] is None  # one pass


def test_a_negative_mmd_is_explained() -> None:
    def table(value: float, floor: float) -> str:
        return format_table({"metrics": {"mmd": {"value": value, "floor": floor}}})

    assert "unbiased MMD²" in table(0.002, -0.0003)
    assert "unbiased MMD²" in table(-0.001, 0.0004)
    assert "unbiased MMD²" not in table(0.002, 0.0003)


def test_figures_draw_as_many_points_as_eval_scored(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from genlab import viz
    from genlab.app import reporting

    drawn: list[int] = []

    def spy(x, data, out, metrics=None):  # noqa: ANN001, ANN202
        drawn.append(len(x))
        assert metrics is not None and set(metrics) == {"w2"}  # the metrics of these points
        return out

    monkeypatch.setattr(viz, "plot_samples_vs_data", spy)
    assert main(["eval", str(runs["fm"]), "--n", "150", "--metrics", "w2"]) == 0
    for name in ("plot_trajectories", "plot_vector_field", "animate_path", "plot_loss_curve"):
        monkeypatch.setattr(viz, name, lambda *a, **k: Path("x.png"))
    reporting.make_figures(runs["fm"])
    assert drawn == [150]
