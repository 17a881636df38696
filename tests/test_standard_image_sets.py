"""The MNIST and CIFAR-10 configs of every family, on small files in the official formats
(MNIST IDX, gzipped; CIFAR-10 python batches, a subset, pickled with protocol 2): each
trains, samples and is scored against the official test split."""

from __future__ import annotations

import gzip
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from genlab.app.cli import main
from genlab.app.runs import packaged_configs

SMALL = ["train.steps=2", "train.batch_size=8", "train.log_every=1", "train.ckpt_every=2", "eval.n=16"]
SMALL += ["sample.n=4", "train.eval_n=8"]
#: per family, settings that keep a CI run tiny
TINY = {
    "flow_matching": ["model.net.base_channels=8", "model.net.num_res_blocks=1", "model.net.time_dim=16"],
    "vae": ["model.net.base_channels=4"],
    "gan": ["model.net.base_channels=4"],
}
TINY["diffusion"] = TINY["ddpm"] = TINY["flow_matching"]
TINY["pix2pix"] = TINY["cyclegan"] = TINY["vae"]
TINY["vqvae"] = [*TINY["vae"], "model.ae.prior_args={steps: 10, hidden: 8, layers: 2}"]
SAMPLING = {"flow_matching": ["sample.steps=2"], "diffusion": ["sample.steps=2"], "ddpm": ["sample.steps=2"]}


def _idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    mnist = tmp_path_factory.mktemp("mnist")
    _idx(mnist / "train-images-idx3-ubyte", rng.integers(0, 256, (40, 28, 28)))
    _idx(mnist / "train-labels-idx1-ubyte", rng.integers(0, 10, 40))
    _idx(mnist / "t10k-images-idx3-ubyte", rng.integers(0, 256, (20, 28, 28)))
    _idx(mnist / "t10k-labels-idx1-ubyte", rng.integers(0, 10, 20))
    cifar = tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py"
    cifar.mkdir()
    for name, n in (("data_batch_1", 24), ("data_batch_2", 16), ("test_batch", 20)):  # 2 of 5 batches
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(range(n))}
        batch[b"labels"] = [v % 10 for v in batch[b"labels"]]
        (cifar / name).write_bytes(pickle.dumps(batch, protocol=2))
    return {"mnist": mnist, "cifar10": cifar.parent}


CONFIGS = sorted(
    c for c in packaged_configs() if c.split("_")[0] in ("mnist", "cifar10") and c != "cifar10_recipe"
)


def test_there_is_a_config_for_every_image_family() -> None:
    families = {"", "diffusion", "ddpm", "vae", "vqvae", "gan", "stylegan", "pix2pix", "cyclegan"}
    for data in ("mnist", "cifar10"):
        assert {c.partition("_")[2] for c in CONFIGS if c.startswith(data)} == families


@pytest.mark.parametrize("config", CONFIGS)
def test_a_standard_image_config_trains_samples_and_scores_on_the_test_split(
    config: str, folders: dict[str, Path], tmp_path: Path
) -> None:
    import yaml

    data = config.split("_")[0]
    family = yaml.safe_load(Path(__file__).parents[1].joinpath("configs", f"{config}.yaml").read_text())
    family = family["model"]["family"]
    over = [f"data.path={folders[data]}", *SMALL, *TINY[family], *SAMPLING.get(family, [])]
    run = tmp_path / "run"
    assert main(["train", config, *over, "--out", str(run), "--no-progress"]) == 0
    assert main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["eval", str(run)]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["reference"] == f"the {data} test split" and result["n"] == 16
    shape = (1, 28, 28) if data == "mnist" else (3, 32, 32)
    assert main(["sample", str(run), "--n", "3", "--out", str(tmp_path / "x.npy")]) == 0
    x = np.load(tmp_path / "x.npy")
    assert x.shape == (3, *shape)
