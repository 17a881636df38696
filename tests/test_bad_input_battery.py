"""The battery of issue 18: bad inputs and misuse, as a user would type them, against a run
that exists. Each must exit 2 with one line and no traceback, create no run directory, and
leave the existing run byte for byte as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import error_of
from genlab.app.cli import main

TINY = ["train.steps=4", "train.ckpt_every=2", "model.net.width=16", "model.net.depth=1"]


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` and the SHA-256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("battery")
    run, vae = root / "run", root / "vae"
    assert main(["train", "moons", *TINY, "--out", str(run), "--no-progress"]) == 0
    assert main(["train", "moons_vae", *TINY, "--out", str(vae), "--no-progress"]) == 0
    (root / "empty.yaml").write_text("")
    (root / "scalar_section.yaml").write_text("train: 5\n")
    (root / "empty.npy").write_bytes(b"")
    np.save(root / "rows0.npy", np.zeros((0, 2)))
    np.save(root / "wide.npy", np.zeros((3, 5)))
    (root / "noise.npy").write_bytes(np.random.default_rng(0).bytes(200))
    return {"root": root, "run": run, "vae": vae}


def _cases(w: dict[str, Path]) -> list[tuple[list[str], str]]:
    run, vae, root, new = str(w["run"]), str(w["vae"]), w["root"], str(w["root"] / "new")
    return [
        # training: nothing of a refused run is written, an existing run is never touched
        (["train", "moons", *TINY, "--out", run], "already holds a run"),
        (["train", "moons", *TINY, "model.net.width=48", "--out", run, "--resume"], "model"),
        (["train", "moons_vae", *TINY, "--out", run, "--resume"], "vae"),
        (["train", "moons", "train.lr=.inf", "--out", new], "train.lr"),
        (["train", "moons", "train.steps=-3", "--out", new], "train.steps"),
        (["train", "moons", "model.coupling=ot", "model.family=diffusion", "--out", new], "model.coupling"),
        (["train", str(root / "empty.yaml"), "--out", new], "is empty"),
        (
            ["train", str(root / "scalar_section.yaml"), "train.steps=20", "--out", new],
            "train must be a mapping",
        ),
        (
            ["train", "moons", "data.name=array", f"data.path={root / 'none.npy'}", "--out", new],
            "does not exist",
        ),
        (["train", "moons", "train.device=cuda", "--out", new], "cuda"),
        (["train", "no_such_config", "--out", new], "no_such_config"),
        (["train", "moons", "--out", new, "--bogus"], "unrecognized arguments"),
        # sampling and scoring
        (["sample", run, "--n", "abc", "--out", "x.npy"], "invalid int value"),
        (["sample", run, "--n", "0", "--out", str(root / "x.npy")], "--n"),
        (["sample", run, "--noise", "nan", "--sampler", "extension", "--out", str(root / "x.npy")], "noise"),
        (["sample", run, "--out", str(root / "x.txt")], "--out must end in .npy or .png"),
        (["sample", run, "--sampler", "pc", "--out", str(root / "x.npy")], "not available"),
        (["sample", vae, "--steps", "5", "--out", str(root / "x.npy")], "does not apply to sampler 'direct'"),
        (["sample", str(root / "nowhere"), "--out", str(root / "x.npy")], "nowhere"),
        (["eval", run, "--metrics", "kid"], "unknown metric 'kid'"),
        (["eval", run, "--metrics", "fd"], "digits"),
        (["eval", run, "--metrics", "straightness", "--steps", "1"], "--steps 2 or more"),
        (["eval", run, "--threads", "0"], "--threads"),
        (["eval", run, "--device", "tpu"], "device"),
        # log-densities of a file
        (["log-prob", run, "--data", str(root / "empty.npy"), "--out", str(root / "lp.npy")], "empty.npy"),
        (["log-prob", run, "--data", str(root / "rows0.npy"), "--out", str(root / "lp.npy")], "rows0.npy"),
        (["log-prob", run, "--data", str(root / "wide.npy"), "--out", str(root / "lp.npy")], "expects (2,)"),
        (["log-prob", run, "--data", str(root / "noise.npy"), "--out", str(root / "lp.npy")], "noise.npy"),
        (["log-prob", vae, "--data", str(root / "wide.npy"), "--out", str(root / "lp.npy")], "expects (2,)"),
    ]


def test_every_bad_input_is_one_line_and_changes_nothing(
    world: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(world["root"] / "torch"))  # no FID weights
    before = _snapshot(world["root"])
    failures = []
    for argv, expected in _cases(world):
        err = error_of(argv, capsys)  # exit 2, exactly one line, no traceback
        if expected.lower() not in err.lower():
            failures.append((argv, expected, err))
        after = _snapshot(world["root"])
        if after != before:
            changed = sorted(set(after.items()) ^ set(before.items()))
            failures.append((argv, "nothing written", changed[:4]))
            before = after
    assert not failures, failures
    assert not (world["root"] / "new").exists()
