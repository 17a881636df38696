"""``genlab compare``: one budget, one data set, one evaluation for several families."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from cli_helpers import error_of
from genlab.app import compare
from genlab.app.budget import Budget, budget_overrides, parse_budget
from genlab.app.cli import main
from genlab.app.config import ConfigError
from genlab.app.runs import resolve_config

#: small and quick: every run of these tests trains for a few steps on a few points
SMALL = ["train.batch_size=64", "eval.n=200", "sample.steps=10"]


@pytest.mark.parametrize(
    ("text", "amount", "unit"),
    [
        ("2000", 2000, "steps"),
        ("2000steps", 2000, "steps"),
        ("1 step", 1, "steps"),
        ("60s", 60.0, "seconds"),
        ("2.5 sec", 2.5, "seconds"),
        ("2min", 120.0, "seconds"),
        ("0.5m", 30.0, "seconds"),
    ],
)
def test_budget_is_steps_or_seconds(text: str, amount: float, unit: str) -> None:
    assert parse_budget(text) == Budget(amount, unit)


@pytest.mark.parametrize("text", ["abc", "10 hours", "-5s", "0", "2.5steps", "0s", ""])
def test_bad_budgets_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="--budget"):
        parse_budget(text)


def test_budget_scales_checkpoints_warmup_and_evaluation() -> None:
    gan = resolve_config("moons_gan")  # eval_every 500, ckpt_every 1000, no warm-up
    assert budget_overrides(gan, 600) == {
        "steps": 600,
        "ckpt_every": 1000,
        "warmup_steps": 0,
        "eval_every": 100,
    }
    fm = resolve_config("moons")  # warm-up 200, ckpt_every 2000, no evaluation
    assert budget_overrides(fm, 30000) == {"steps": 30000, "ckpt_every": 10000, "warmup_steps": 200}
    assert budget_overrides(fm, 30)["warmup_steps"] == 3


def test_default_metrics_follow_the_data_and_the_family() -> None:
    assert compare.metrics_for(resolve_config("moons"), None) == ["w2", "mmd", "nll"]
    assert compare.metrics_for(resolve_config("moons_gan"), None) == ["w2", "mmd"]
    assert compare.metrics_for(resolve_config("digits_vae"), None) == ["fd", "w2", "nll"]
    assert compare.metrics_for(resolve_config("digits_gan"), None) == ["fd", "w2"]
    # requested metrics are kept where they are defined: a GAN has no likelihood
    assert compare.metrics_for(resolve_config("moons_gan"), ["nll", "w2"]) == ["w2"]
    # flow matching from another data set or a corrupted image has no density to follow back
    assert compare.metrics_for(resolve_config("8gaussians_to_moons"), None) == ["w2", "mmd"]
    assert compare.metrics_for(resolve_config("digits_inpaint"), None) == ["fd", "w2"]


def test_compare_two_families_writes_the_table_json_and_figure(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cmp"
    argv = ["compare", "moons", "moons_gan", *SMALL, "--budget", "20steps", "--seeds", "2"]
    assert main([*argv, "--out", str(out), "--threads", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "compare.json").read_text())
    assert [r["name"] for r in result["rows"]] == ["moons", "moons_gan"]
    assert result["reference"] == "fresh samples of the toy distribution"
    assert "against fresh samples of the toy distribution" in printed
    for row in result["rows"]:
        assert row["steps"] == 20 and len(row["seeds"]) == 2
        assert [r["steps"] for r in row["seeds"]] == [20, 20]
        # the summary is the mean and sample std of the per-seed scores
        w2 = [r["metrics"]["w2"] for r in row["seeds"]]
        assert row["summary"]["metrics"]["w2"]["mean"] == pytest.approx(statistics.fmean(w2))
        assert row["summary"]["metrics"]["w2"]["std"] == pytest.approx(statistics.stdev(w2))
        assert w2[0] != w2[1]  # two seeds, two trainings
    fm, gan = result["rows"]
    assert fm["summary"]["nfe"] == 40 and gan["summary"]["nfe"] == 1  # RK4, 10 steps vs one pass
    assert "nll" in fm["summary"]["metrics"] and "nll" not in gan["summary"]["metrics"]
    table = (out / "compare.md").read_text()
    assert table.strip() in printed
    mean, std = fm["summary"]["metrics"]["w2"]["mean"], fm["summary"]["metrics"]["w2"]["std"]
    fm_line = next(line for line in table.splitlines() if line.startswith("| moons |"))
    assert f"{mean:.3f} ± {std:.3f}" in fm_line
    gan_line = next(line for line in table.splitlines() if line.startswith("| moons_gan |"))
    assert gan_line.rstrip(" |").endswith("-")  # no NLL for the GAN
    assert (out / "compare.png").stat().st_size > 0
    assert (out / "runs" / "moons_gan" / "seed1" / "checkpoints").is_dir()


def test_a_seconds_budget_becomes_steps_by_a_pilot(tmp_path: Path) -> None:
    result = compare.compare(
        ["moons_realnvp"],
        tmp_path / "cmp",
        "1.5s",
        1,
        SMALL,
        threads=1,
        pilot_steps=12,
        progress=False,
        figure=False,
        say=lambda _: None,
    )
    row = result["rows"][0]
    rate = row["pilot"]["steps_per_s"]
    assert rate > 0 and row["steps"] == max(1, round(1.5 * rate))
    assert row["seeds"][0]["steps"] == row["steps"]


def test_an_interrupted_comparison_continues_where_it_stopped(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    args = (["moons_cnf", "moons_gan"], out, "15steps", 2, [*SMALL, "train.ckpt_every=5"])
    kw = {"threads": 1, "progress": False, "figure": False}
    first = compare.compare(*args, **kw, say=lambda _: None)
    # as if stopped at step 10 of the last run: its later checkpoint and its record are gone
    run_dir = out / "runs" / "moons_gan" / "seed1"
    (run_dir / compare.RECORD_FILE).unlink()
    ckpts = sorted((run_dir / "checkpoints").iterdir())
    assert any("15" in p.name for p in ckpts) and any("10" in p.name for p in ckpts)
    for path in ckpts:
        if "15" in path.name or path.name == "latest.json":
            path.unlink()
    (run_dir / "kept.txt").write_text("a fresh start would delete this")
    said: list[str] = []
    again = compare.compare(*args, **kw, say=said.append)
    reused = [r.get("reused", False) for row in again["rows"] for r in row["seeds"]]
    assert reused == [True, True, True, False]
    assert any("continuing the comparison" in s for s in said)
    assert (run_dir / "kept.txt").exists()  # resumed in place, not retrained from scratch
    rec = again["rows"][1]["seeds"][1]
    assert rec["resumed"] is True and rec["steps"] == 15
    # resuming is bit-exact, so the score is the uninterrupted run's
    assert rec["metrics"]["w2"] == pytest.approx(first["rows"][1]["seeds"][1]["metrics"]["w2"])
    assert "resumed after an interruption" in (out / "compare.md").read_text()


def test_a_diverged_seed_is_reported_and_the_others_are_kept(tmp_path: Path) -> None:
    over = [*SMALL, "train.lr=1e30", "train.d_lr=1e30"]
    result = compare.compare(
        ["moons_gan", "moons_realnvp"],
        tmp_path / "cmp",
        "5steps",
        1,
        over,
        threads=1,
        progress=False,
        say=lambda _: None,
    )
    gan, flow = result["rows"]
    assert "nan" in gan["seeds"][0]["failed"] and gan["summary"]["metrics"] == {}
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "moons_gan: every seed failed" in table
    assert "| moons_gan | gan | - |" in table
    assert len(result["rows"]) == 2 and flow["name"] == "moons_realnvp"  # the comparison went on


def test_overwrite_checks_the_new_comparison_before_deleting_the_old(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cmp"
    base = ["compare", *SMALL, "--seeds", "1", "--budget", "3steps", "--out", str(out), "--no-progress"]
    assert main(["compare", "moons_realnvp", *base[1:]]) == 0
    (out / "notes.txt").write_text("mine")
    err = error_of(["compare", "moons_realnvp", "no_such_config", *base[1:], "--overwrite"], capsys)
    assert "no_such_config" in err
    assert (out / "compare.json").exists()  # the old comparison is still there
    assert main(["compare", "moons_realnvp", *base[1:], "--budget", "4steps", "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine"  # overwrite removes only what compare wrote


def test_an_edited_config_is_not_silently_reused(tmp_path: Path, capsys) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text("data: {name: moons}\nmodel: {family: realnvp, flow_layers: 2, flow_hidden: 8}\n")
    argv = [
        "compare",
        str(config),
        *SMALL,
        "--seeds",
        "1",
        "--budget",
        "3steps",
        "--out",
        str(tmp_path / "c"),
    ]
    assert main([*argv, "--no-progress"]) == 0
    config.write_text("data: {name: moons}\nmodel: {family: realnvp, flow_layers: 3, flow_hidden: 8}\n")
    err = error_of([*argv, "--no-progress"], capsys)
    assert "config mine has changed" in err and "--overwrite" in err


def test_a_damaged_plan_gives_a_one_line_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "plan.json").write_text("{")
    err = error_of(["compare", "moons", "--out", str(tmp_path)], capsys)
    assert "plan.json is damaged" in err


def test_other_settings_in_the_same_folder_need_overwrite(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cmp"
    base = ["compare", "moons_realnvp", *SMALL, "--seeds", "1", "--out", str(out), "--no-progress"]
    assert main([*base, "--budget", "5steps"]) == 0
    msg = error_of([*base, "--budget", "6steps"], capsys)
    assert "holds a comparison with other settings" in msg and "--overwrite" in msg
    assert main([*base, "--budget", "6steps", "--overwrite"]) == 0
    assert json.loads((out / "compare.json").read_text())["rows"][0]["steps"] == 6


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["moons", "digits"], "trains every config on one data set"),
        (["moons", "moons"], "may appear once"),
        (["moons", "--budget", "fast"], "--budget must be a number of steps"),
        (["moons", "--seeds", "0"], "--seeds must be a positive integer"),
        (["moons", "--metrics", "kid"], "unknown metric 'kid' for compare"),
        (["moons_gan", "--metrics", "nll"], "none of the metrics nll is defined for moons_gan"),
        (["moons", "model.net.width=-3"], "model.net.width"),
        (["moons", "train.steps=500"], "--budget sets the training steps"),
        (["moons", "--metrics", ","], "unknown metric"),
        (["no_such_config"], "no_such_config"),
    ],
)
def test_bad_comparisons_give_one_line_errors(argv, message, tmp_path: Path, capsys) -> None:
    err = error_of(["compare", *argv, "--out", str(tmp_path / "cmp")], capsys)
    assert message in err


def test_compare_refuses_a_folder_it_did_not_write(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    err = error_of(["compare", "moons", "--out", str(tmp_path)], capsys)
    assert "not a genlab compare folder" in err
    assert (tmp_path / "notes.txt").read_text() == "keep me"
