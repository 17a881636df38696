"""The genlab command: a tiny end-to-end run, and one-line errors with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import error_of
from genlab.app.cli import main

TINY = [
    "train.steps=30",
    "train.batch_size=64",
    "train.log_every=10",
    "train.ckpt_every=10",
    "model.net.width=32",
    "model.net.depth=2",
    "sample.steps=4",
    "eval.n=200",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "moons"
    assert main(["train", "moons", *TINY, "--out", str(out), "--no-progress"]) == 0
    return out


def test_train_writes_a_run(run_dir: Path) -> None:
    assert (run_dir / "config.yaml").exists()
    assert (run_dir / "metrics.jsonl").exists()
    assert (run_dir / "checkpoints" / "latest.json").exists()


def test_sample_npy_and_png(run_dir: Path, tmp_path: Path) -> None:
    args = ["sample", str(run_dir), "--n", "50", "--solver", "heun", "--steps", "3", "--seed", "1"]
    out, again = tmp_path / "s.npy", tmp_path / "t.npy"
    assert main([*args, "--out", str(out)]) == 0
    x = np.load(out)
    assert x.shape == (50, 2) and np.isfinite(x).all()
    assert main([*args, "--out", str(again)]) == 0
    assert np.array_equal(np.load(again), x)  # same seed, same samples
    png = tmp_path / "s.png"
    assert main(["sample", str(run_dir), "--n", "50", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_options_of_a_command_may_come_before_it(run_dir: Path, tmp_path: Path) -> None:
    """``genlab --device cpu sample RUN`` is ``genlab sample RUN --device cpu`` (issue 18, item 14)."""
    args = ["--n", "20", "--seed", "3"]
    before, after = tmp_path / "before.npy", tmp_path / "after.npy"
    first = ["--device", "cpu", "--threads", "1", "sample"]
    assert main([*first, str(run_dir), *args, "--out", str(before)]) == 0
    assert main(["sample", str(run_dir), "--device", "cpu", *args, "--out", str(after)]) == 0
    assert np.array_equal(np.load(before), np.load(after))


def test_eval_writes_json(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(run_dir), "--n", "200", "--metrics", "w2,mmd"]) == 0
    result = json.loads((run_dir / "eval.json").read_text())
    assert set(result["metrics"]) == {"w2", "mmd"}
    assert result["metrics"]["w2"]["floor"] > 0
    assert "floor" in capsys.readouterr().out


def test_resume_continues(run_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    over = [o if not o.startswith("train.steps") else "train.steps=40" for o in TINY]
    assert main(["train", "moons", *over, "--out", str(copy), "--resume", "--no-progress"]) == 0
    steps = [json.loads(line)["step"] for line in (copy / "metrics.jsonl").read_text().splitlines()]
    assert steps == [10, 20, 30, 40]


def test_errors_are_one_line(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "not found" in error_of(["train", str(tmp_path / "nope.yaml")], capsys)
    corrupt = tmp_path / "bad.yaml"
    corrupt.write_text("data: [\n")
    assert "not valid YAML" in error_of(["train", str(corrupt)], capsys)
    assert "unknown key 'train.stepz'" in error_of(["train", "moons", "train.stepz=3"], capsys)
    assert "train.steps must be int" in error_of(["train", "moons", "train.steps=abc"], capsys)
    # wrong data shape and NaN in a user file
    cube = tmp_path / "cube.npy"  # a 5-D array is neither a table nor images
    np.save(cube, np.zeros((10, 2, 2, 2, 2)))
    assert "cube.npy" in error_of(
        ["train", "moons", "data.name=array", f"data.path={cube}", "--out", str(tmp_path / "r1")],
        capsys,
    )
    nan = tmp_path / "nan.npy"
    arr = np.zeros((10, 2))
    arr[3, 1] = np.nan
    np.save(nan, arr)
    assert "non-finite" in error_of(
        ["train", "moons", "data.name=array", f"data.path={nan}", "--out", str(tmp_path / "r2")],
        capsys,
    )
    # a run directory without a checkpoint
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "train first" in error_of(["sample", str(empty), "--out", str(tmp_path / "x.npy")], capsys)
    assert "train first" in error_of(["eval", str(empty)], capsys)
    # a checkpoint from another model: resume with a different network
    assert "a resumed run keeps its model" in error_of(
        [
            "train",
            "moons",
            *TINY,
            "model.net.width=64",
            "--out",
            str(run_dir),
            "--resume",
            "--no-progress",
        ],
        capsys,
    )
    # an existing run is never overwritten silently
    assert "already holds a run" in error_of(["train", "moons", *TINY, "--out", str(run_dir)], capsys)
    assert "unknown metric 'kid'" in error_of(["eval", str(run_dir), "--metrics", "kid"], capsys)
    assert "--out must end in .npy or .png" in error_of(["sample", str(run_dir), "--out", "x.txt"], capsys)


def test_debug_shows_traceback(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        main(["--debug", "train", str(tmp_path / "nope.yaml")])


DIFF = [
    "train.steps=20",
    "train.batch_size=64",
    "train.log_every=10",
    "train.ckpt_every=10",
    "model.net.width=16",
    "model.net.depth=1",
    "eval.n=100",
]


@pytest.fixture(scope="module")
def diffusion_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("diff")
    runs = {
        "vp": ["moons_diffusion"],
        "ve": ["moons_diffusion", "model.sde=ve", "model.sde_args.sigma_max=5.0"],
        "ddpm": ["moons_ddpm"],
    }
    out = {}
    for name, (config, *extra) in runs.items():
        out[name] = root / name
        assert main(["train", config, *DIFF, *extra, "--out", str(out[name]), "--no-progress"]) == 0
    return out


@pytest.mark.parametrize(
    ("run", "sampler", "extra"),
    [
        ("vp", "em", []),
        ("vp", "pc", ["--snr", "0.1"]),
        ("vp", "ode", ["--solver", "heun"]),
        ("vp", "ddim", ["--eta", "0.5"]),
        ("vp", "dpm", []),
        ("vp", "extension", ["--noise", "0.5"]),
        ("ve", "ald", []),
        ("ve", "em", []),
        ("ddpm", "ddpm", []),
        ("ddpm", "ddim", []),
        ("ddpm", "dpm", []),
    ],
)
def test_sample_every_sampler(
    diffusion_runs: dict[str, Path], tmp_path: Path, run: str, sampler: str, extra: list[str]
) -> None:
    out = tmp_path / "x.npy"
    steps = [] if sampler == "ddpm" else ["--steps", "4"]
    assert (
        main(
            [
                "sample",
                str(diffusion_runs[run]),
                "--n",
                "20",
                "--sampler",
                sampler,
                *steps,
                *extra,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert np.load(out).shape == (20, 2)


def test_diffusion_errors(
    diffusion_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "x.npy")
    assert "needs a variance-preserving path" in error_of(
        ["sample", str(diffusion_runs["ve"]), "--sampler", "ddim", "--steps", "3", "--out", out], capsys
    )
    assert "not available for model.family=diffusion" in error_of(
        ["sample", str(diffusion_runs["vp"]), "--sampler", "ddpm", "--out", out], capsys
    )
    assert "needs a VE SDE" in error_of(
        ["sample", str(diffusion_runs["vp"]), "--sampler", "ald", "--steps", "3", "--out", out], capsys
    )
    assert "--eta does not apply to sampler 'em'" in error_of(
        ["sample", str(diffusion_runs["vp"]), "--sampler", "em", "--eta", "0.3", "--out", out], capsys
    )
    assert "--steps must be a positive integer" in error_of(
        ["sample", str(diffusion_runs["vp"]), "--steps", "0", "--out", out], capsys
    )
    assert "model.sde_args" in error_of(["train", "moons_diffusion", "model.sde_args.beta_max=-1"], capsys)
    assert "sample.sampler='em' is not available for model.family=flow_matching" in error_of(
        ["train", "moons", "sample.sampler=em"], capsys
    )


@pytest.mark.parametrize(
    ("config", "extra"),
    [
        ("moons", ["data.name=8gaussians"]),
        (
            "moons",
            ["data.name=8gaussians", "model.family=realnvp", "model.flow_layers=4", "model.flow_hidden=16"],
        ),
        ("moons", ["data.name=8gaussians", "model.family=cnf", "model.cnf_steps=2"]),
        ("moons_diffusion", ["data.name=8gaussians"]),
    ],
)
def test_nll_and_log_prob(
    tmp_path: Path, config: str, extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    small = [o for o in DIFF if "model.family=realnvp" not in extra or not o.startswith("model.net")]
    assert main(["train", config, *small, *extra, "--out", str(out), "--no-progress"]) == 0
    steps = [] if "model.family=realnvp" in extra else ["--steps", "4"]  # RealNVP samples in one pass
    assert main(["eval", str(out), "--n", "50", "--metrics", "nll,w2", *steps]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert np.isfinite(result["metrics"]["nll"]["value"])
    assert result["metrics"]["nll"]["floor"] is not None  # 8gaussians has a closed-form density
    data = tmp_path / "pts.npy"
    np.save(data, np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32))
    assert (
        main(["log-prob", str(out), "--data", str(data), "--out", str(tmp_path / "lp.npy"), "--steps", "4"])
        == 0
    )
    assert np.load(tmp_path / "lp.npy").shape == (7,)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 5)))
    assert "the model expects (2,)" in error_of(
        ["log-prob", str(out), "--data", str(bad), "--out", str(tmp_path / "x.npy")], capsys
    )
    # an empty file, an array with no rows, bytes that are no .npy, and an --out numpy would rename
    (tmp_path / "empty.npy").write_bytes(b"")
    np.save(tmp_path / "none.npy", np.zeros((0, 2)))
    (tmp_path / "noise.npy").write_bytes(np.random.default_rng(1).bytes(300))
    for name, words in [
        ("empty.npy", "empty.npy is not a readable .npy array"),
        ("none.npy", "must hold N >= 1 rows of shape (2,)"),
        ("noise.npy", "noise.npy is not a readable .npy array"),
    ]:
        argv = ["log-prob", str(out), "--data", str(tmp_path / name), "--out", str(tmp_path / "x.npy")]
        assert words in error_of(argv, capsys)
    argv = ["log-prob", str(out), "--data", str(data), "--out", str(tmp_path / "lp.txt")]
    assert "--out must end in .npy" in error_of(argv, capsys)
    assert not (tmp_path / "lp.txt.npy").exists()


def test_demo_command_trains_evaluates_and_draws(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`genlab demo` (the README's first command) with a tiny budget: a run, eval.json and figures."""
    out = tmp_path / "demo"
    args = [
        "demo",
        "train.steps=30",
        "train.batch_size=64",
        "eval.n=200",
        "sample.steps=4",
        "model.net.width=32",
    ]
    assert main([*args, "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    assert json.loads((out / "eval.json").read_text())["device"] == "cpu"
    assert (out / "figures" / "samples_vs_data.png").exists() and (out / "figures" / "path.gif").exists()
    printed = capsys.readouterr().out
    assert "total time" in printed and "trained on cpu" in printed


def test_overrides_may_follow_the_flags(tmp_path: Path) -> None:
    """`genlab train CFG --out X key=value` works like `genlab train CFG key=value --out X`;
    anything else unknown is still an argparse error (exit 2)."""
    out = tmp_path / "late"
    assert main(["train", "moons", "--out", str(out), "--no-progress", *TINY]) == 0
    cfg = (out / "config.yaml").read_text()
    assert "steps: 30" in cfg and "width: 32" in cfg
    assert main(["train", "moons", "--out", str(out), "--bogus"]) == 2


def test_usage_errors_are_one_line_and_help_shows_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """argparse's own errors (a bad int, an unknown command) read like genlab's: one line, exit 2;
    ``--help`` ends each option that has a default with it."""
    assert "argument --n: invalid int value: 'abc'" in error_of(
        ["sample", "r", "--n", "abc", "--out", "x.npy"], capsys
    )
    assert "invalid choice: 'bogus'" in error_of(["bogus"], capsys)
    assert main(["log-prob", "--help"]) == 0
    out = capsys.readouterr().out
    assert "(default: 100)" in out and "(default: exact)" in out
    # every argument of every command says what it is
    import argparse

    from genlab.app.arguments import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    silent = [
        f"{name} {action.dest}"
        for name, sub in commands.items()
        for action in sub._actions
        if not action.help and not isinstance(action, argparse._HelpAction)
    ]
    assert silent == []


def test_sample_draws_the_runs_sample_n_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    over = ["train.steps=2", "model.net.width=8", "model.net.depth=1", "sample.n=37", "sample.steps=2"]
    assert main(["train", "moons", *over, "--out", str(run), "--no-progress"]) == 0
    assert main(["sample", str(run), "--out", str(tmp_path / "x.npy")]) == 0
    assert np.load(tmp_path / "x.npy").shape == (37, 2) and "wrote 37 samples" in capsys.readouterr().out
    # --threads applies to sampling, scoring and log-densities too (issue 18: only train had it)
    import torch

    before = torch.get_num_threads()
    try:
        assert main(["sample", str(run), "--threads", "1", "--out", str(tmp_path / "y.npy")]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    for command in (["sample", str(run), "--out", str(tmp_path / "z.npy")], ["eval", str(run)]):
        assert "--threads must be a positive integer" in error_of([*command, "--threads", "0"], capsys)


def test_resume_continues_the_runs_own_config_and_refuses_another_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--resume reads the run's saved config (not the packaged one of the same name) and applies
    the overrides given; one that changes the model is refused before anything is rewritten."""
    run = tmp_path / "r"
    small = ["model.net.width=16", "model.net.depth=1", "train.ckpt_every=20"]
    assert main(["train", "moons", "train.steps=20", *small, "--out", str(run), "--no-progress"]) == 0
    before = (run / "config.yaml").read_text()
    err = error_of(["train", "moons", "model.net.width=48", "--out", str(run), "--resume"], capsys)
    assert "model.net.width is 48 but" in err and "trained with 16" in err
    assert (run / "config.yaml").read_text() == before  # the refused resume changed nothing
    # no override: the saved 20 steps are done (the packaged moons config would train 6000)
    assert main(["train", "moons", "--out", str(run), "--resume", "--no-progress"]) == 0
    assert "step 20" in capsys.readouterr().out
    assert main(["train", "moons", "train.steps=30", "--out", str(run), "--resume", "--no-progress"]) == 0
    assert "step 30" in capsys.readouterr().out
    assert "width: 16" in (run / "config.yaml").read_text()


def test_demo_replaces_only_its_own_runs_and_inf_lr_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "mine"
    small = ["train.steps=4", "model.net.width=8", "model.net.depth=1", "eval.n=50", "sample.steps=2"]
    assert main(["train", "moons", *small, "--out", str(run), "--no-progress"]) == 0
    err = error_of(["demo", *small, "--out", str(run), "--no-progress"], capsys)
    assert "holds a run that genlab demo did not make" in err
    assert (run / "checkpoints").is_dir()  # untouched
    demo = tmp_path / "demo"
    assert main(["demo", *small, "--out", str(demo), "--no-progress"]) == 0
    assert main(["demo", *small, "--out", str(demo), "--no-progress"]) == 0  # its own run: replaced
    assert "train.lr must be a finite number" in error_of(["train", "moons", "train.lr=.inf"], capsys)
