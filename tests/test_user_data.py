"""Data in the formats users hold: image arrays and picture folders, held-out splits."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import error_of
from genlab.app.cli import main
from genlab.app.config import DataConfig
from genlab.app.datasets import build_dataset, reference_kind
from genlab.data.splits import holdout_split
from genlab.data.tabular import ArrayDataset
from genlab.data.user_images import load_image_file, load_image_folder


def _pixels(n: int = 12, h: int = 6, w: int = 5, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, c, h, w), dtype=np.uint8)


@pytest.mark.parametrize("layout", ["nchw", "nhwc", "nhw"])
@pytest.mark.parametrize("scale", ["uint8", "unit", "signed"])
def test_image_arrays_map_their_pixels_linearly_onto_minus_one_one(
    tmp_path: Path, layout: str, scale: str
) -> None:
    p = _pixels(c=1 if layout == "nhw" else 3)
    expected = torch.from_numpy(p.astype(np.float64) / 255 * 2 - 1)
    arr: np.ndarray = {"uint8": p, "unit": p / 255.0, "signed": p / 127.5 - 1}[scale]
    arr = {"nchw": arr, "nhwc": arr.transpose(0, 2, 3, 1), "nhw": arr[:, 0]}[layout]
    np.save(tmp_path / "x.npy", arr)
    ds = load_image_file(tmp_path / "x.npy")
    assert ds.images.shape == expected.shape and ds.num_classes == 1
    torch.testing.assert_close(ds.images.double(), expected, atol=1e-6, rtol=0)


def test_npz_and_pt_files_carry_labels(tmp_path: Path) -> None:
    p, y = _pixels(), np.arange(12) % 4
    np.savez(tmp_path / "x.npz", images=p, labels=y)
    torch.save({"x": torch.from_numpy(p), "y": torch.from_numpy(y)}, tmp_path / "x.pt")
    for name in ("x.npz", "x.pt"):
        ds = load_image_file(tmp_path / name)
        assert ds.num_classes == 4 and ds.labels.tolist() == y.tolist() and ds.shape == (3, 6, 5)
    np.savez(tmp_path / "bad.npz", pictures=p)
    with pytest.raises(ValueError, match="name the images array one of"):
        load_image_file(tmp_path / "bad.npz")
    np.save(tmp_path / "big.npy", np.full((3, 1, 4, 4), 300.0))
    with pytest.raises(ValueError, match=r"outside data.value_range=0-255"):
        load_image_file(tmp_path / "big.npy")


def test_a_picture_folder_with_one_subfolder_per_class(tmp_path: Path) -> None:
    from PIL import Image

    p = _pixels(n=6, h=7, w=9, c=1)
    for i in range(6):
        folder = tmp_path / ("cats" if i % 2 else "ants")
        folder.mkdir(exist_ok=True)
        Image.fromarray(p[i, 0]).save(folder / f"{i}.png")
    ds = load_image_folder(tmp_path)
    assert ds.shape == (1, 7, 9) and ds.num_classes == 2
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]  # ants (even i) then cats, sorted by name
    torch.testing.assert_close(
        ds.images[0, 0].double(), torch.from_numpy(p[0, 0] / 127.5 - 1), atol=1e-6, rtol=0
    )
    Image.fromarray(np.zeros((3, 3), dtype=np.uint8)).save(tmp_path / "cats" / "odd.png")
    with pytest.raises(ValueError, match="must share one size"):
        load_image_folder(tmp_path)


def test_the_holdout_is_disjoint_seeded_and_recorded(tmp_path: Path) -> None:
    data = ArrayDataset(torch.arange(40.0).reshape(20, 2))
    train, test = holdout_split(data, 0.25, seed=3)
    rows = {tuple(r) for r in torch.cat([train.data, test.data]).tolist()}
    assert len(test) == 5 and len(train) == 15 and len(rows) == 20  # disjoint, nothing lost
    again = holdout_split(data, 0.25, seed=3)[1]
    assert torch.equal(again.data, test.data)
    assert not torch.equal(holdout_split(data, 0.25, seed=4)[1].data, test.data)
    np.save(tmp_path / "t.npy", data.data.numpy())
    cfg = DataConfig(name="array", path=str(tmp_path / "t.npy"), holdout=0.25, holdout_seed=3)
    assert torch.equal(build_dataset(cfg, "test").data, test.data)
    assert len(build_dataset(cfg)) == 15
    assert reference_kind(cfg) == "5 rows held out of 20 (data.holdout=0.25, seed 3)"
    np.save(tmp_path / "u.npy", np.ones((4, 2)))
    cfg = DataConfig(name="array", path=str(tmp_path / "t.npy"), test_path=str(tmp_path / "u.npy"))
    assert len(build_dataset(cfg)) == 20 and len(build_dataset(cfg, "test")) == 4
    assert reference_kind(cfg).startswith("data.test_path")


@pytest.mark.parametrize("kind", ["npy", "folder"])
def test_your_images_train_sample_evaluate_and_draw(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An image .npy of (N, 1, 16, 16) and a PNG folder with class subfolders, through the CLI."""
    rng = np.random.default_rng(0)
    images = (rng.random((40, 1, 16, 16)) > 0.5).astype(np.uint8) * 255
    if kind == "npy":
        path = tmp_path / "imgs.npy"
        np.save(path, images)
        config, extra = "digits_vae", ["model.net.base_channels=4"]
    else:
        from PIL import Image

        path = tmp_path / "pics"
        for i, img in enumerate(images):
            (path / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(img[0]).save(path / f"class{i % 2}" / f"{i}.png")
        config, extra = "digits_cgan", ["model.net.base_channels=4", "train.eval_every=2", "train.eval_n=8"]
    run = tmp_path / "run"
    over = ["data.name=array", f"data.path={path}", "train.steps=4", "train.batch_size=8", "eval.n=8", *extra]
    assert main(["train", config, *over, "--out", str(run), "--no-progress"]) == 0
    assert main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--figures"]) == 0
    out = capsys.readouterr().out
    result = json.loads((run / "eval.json").read_text())
    assert result["reference"] == "4 rows held out of 40 (data.holdout=0.1, seed 0)"
    assert set(result["metrics"]) == ({"w2", "mmd"} if kind == "npy" else {"w2"})  # fd, acc skipped
    assert "fd" in result["skipped"] and "metric fd of the config skipped" in out
    assert (run / "figures").is_dir() and any((run / "figures").iterdir())
    missing = error_of(["train", config, "data.name=array", f"data.path={tmp_path / 'none.npz'}"], capsys)
    assert "none.npz" in missing and "does not exist" in missing


def test_a_table_of_any_dimension_is_standardised_and_sampled_in_its_units(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 10-D CSV far from the origin (mean 50, scale 100): the model trains on z-scores, the
    samples come back in the data's units, the log-density picks up -sum log std, the figure
    is a pair-plot, and the run records an absolute data.path."""
    from genlab.app import evaluation, runs

    rng = np.random.default_rng(0)
    x = 50 + 100 * rng.normal(size=(300, 10)) * np.linspace(0.5, 2.0, 10)
    np.savetxt(tmp_path / "t.csv", x, delimiter=",")
    monkeypatch.chdir(tmp_path)
    over = ["data.name=array", "data.path=t.csv", "train.steps=30", "model.net.width=32", "model.net.depth=2"]
    over += ["eval.n=100", "sample.steps=4", "eval.metrics=[w2, nll]"]
    assert main(["train", "moons", *over, "--out", "run", "--no-progress"]) == 0
    monkeypatch.chdir("/")
    run_dir = tmp_path / "run"
    run = runs.load_run(run_dir)
    assert run.cfg.data.path == str(tmp_path / "t.csv") and run.standardization is not None
    train_rows = run.dataset.data.double()
    np.testing.assert_allclose(run.standardization.mean, train_rows.mean(0), rtol=1e-9)
    np.testing.assert_allclose(run.standardization.std, train_rows.std(0, unbiased=False), rtol=1e-9)
    samples = runs.generate(run, 500).x.double()
    # within half a standard deviation per coordinate (in z-scores they would sit near 0)
    assert bool(((samples.mean(0) - train_rows.mean(0)).abs() < 0.5 * train_rows.std(0)).all())
    # change of variables: log p_x(x) = log p_z((x - m) / s) - sum log s
    pts = train_rows[:5].float()
    z = run.standardization.apply(pts)
    plain = dataclasses.replace(run, standardization=None)
    expected = evaluation._log_prob(plain, z, steps=4) - float(np.log(run.standardization.std).sum())
    torch.testing.assert_close(evaluation._log_prob(run, pts, steps=4), expected)
    assert main(["eval", str(run_dir), "--figures"]) == 0
    assert (run_dir / "figures" / "samples_vs_data.png").is_file()
    assert main(["sample", str(run_dir), "--n", "50", "--out", str(tmp_path / "s.png")]) == 0
