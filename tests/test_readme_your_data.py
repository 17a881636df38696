"""The README's "Your data" commands, run as written on small files in each format (with a
tiny budget appended to each ``genlab train``)."""

from __future__ import annotations

import gzip
import pickle
import re
import shlex
import struct
from pathlib import Path

import numpy as np
import pytest

from genlab.app.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
TINY = ["train.steps=2", "train.batch_size=8", "train.ckpt_every=2", "eval.n=8", "sample.n=4"]


def _commands() -> list[list[str]]:
    section = README.read_text().split("## Your data", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None, "the README's Your data section has no bash block"
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    return [shlex.split(line) for line in lines if line]


def _make_files(root: Path) -> None:
    rng = np.random.default_rng(0)
    np.save(root / "my_images.npy", rng.integers(0, 256, (30, 16, 16, 1), dtype=np.uint8))
    from PIL import Image

    for i in range(20):
        folder = root / "my_pictures" / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    mnist = root / "data" / "mnist"
    mnist.mkdir(parents=True)
    for name, arr in (
        ("train-images-idx3-ubyte", rng.integers(0, 256, (20, 28, 28))),
        ("train-labels-idx1-ubyte", rng.integers(0, 10, 20)),
        ("t10k-images-idx3-ubyte", rng.integers(0, 256, (10, 28, 28))),
        ("t10k-labels-idx1-ubyte", rng.integers(0, 10, 10)),
    ):
        header = struct.pack(">I", 0x0800 | arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
        with gzip.open(mnist / f"{name}.gz", "wb") as f:
            f.write(header + arr.astype(np.uint8).tobytes())
    cifar = root / "data" / "cifar10"
    cifar.mkdir(parents=True)
    for name, n in (("data_batch_3", 20), ("test_batch", 10)):
        batch = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": [k % 10 for k in range(n)],
        }
        (cifar / name).write_bytes(pickle.dumps(batch, protocol=2))
    np.savetxt(root / "my_table.csv", 5 + 3 * rng.normal(size=(60, 5)), delimiter=",")


def test_the_your_data_commands_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commands = _commands()
    assert len(commands) >= 6 and all(c[0] == "genlab" for c in commands)
    _make_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    for argv in commands:
        args = argv[1:]
        if args[0] == "train":
            args = [*args, *TINY, "--no-progress"]
        assert main(args) == 0, " ".join(argv)
    assert (tmp_path / "runs" / "my_table" / "figures" / "samples_vs_data.png").is_file()
