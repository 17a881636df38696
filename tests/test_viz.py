"""genlab.viz: every figure is written as a real file, bad shapes fail loudly, no state leaks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from genlab.data import make_toy
from genlab.paths import EmpiricalMarginal, GaussianPath
from genlab.samplers import sample_ode
from genlab.solvers import ODESolution
from genlab.viz import (
    animate_path,
    plot_image_grid,
    plot_loss_curve,
    plot_samples_vs_data,
    plot_samples_vs_data_images,
    plot_trajectories,
    plot_vector_field,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GIF_MAGIC = b"GIF89a"


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0 and path.read_bytes()[:8] == PNG_MAGIC


@pytest.fixture(autouse=True)
def no_leaked_state() -> Iterator[None]:
    """After every test: no pyplot figure open, rcParams unchanged."""
    import matplotlib.pyplot as plt

    before = dict(matplotlib.rcParams)
    yield
    assert plt.get_fignums() == []
    assert dict(matplotlib.rcParams) == before


@pytest.fixture(scope="module")
def moons() -> torch.Tensor:
    return make_toy("moons").sample(600, torch.Generator().manual_seed(0))  # (600, 2)


@pytest.fixture(scope="module")
def field(moons: torch.Tensor) -> EmpiricalMarginal:
    return EmpiricalMarginal(GaussianPath("linear"), moons[:200])


@pytest.fixture(scope="module")
def solution(field: EmpiricalMarginal) -> ODESolution:
    x0 = torch.randn(300, 2, generator=torch.Generator().manual_seed(1))
    return sample_ode(field, x0, "euler", 20, return_trajectory=True)


@pytest.fixture(scope="module")
def trajectory(solution: ODESolution) -> torch.Tensor:
    assert solution.trajectory is not None
    return solution.trajectory  # (21, 300, 2)


def test_viz_import_does_not_import_pyplot() -> None:
    import subprocess
    import sys

    code = "import sys, genlab.viz; print('matplotlib.pyplot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------
# Files of the right type
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", [False, True])
def test_samples_vs_data_png(tmp_path: Path, moons: torch.Tensor, overlay: bool) -> None:
    samples = moons[:300] + 0.1
    out = plot_samples_vs_data(
        samples,
        moons,
        tmp_path / "new_dir" / "s.png",
        title="moons",
        metrics={"W2": 0.12, "MMD": 3e-4},
        overlay=overlay,
    )
    assert out == tmp_path / "new_dir" / "s.png"  # the parent directory was created
    assert _is_png(out)


def test_image_grid_png(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    grey = torch.rand(10, 1, 8, 8, generator=g) * 2 - 1
    rgb = torch.rand(5, 3, 16, 16, generator=g) * 3 - 1.5  # out of range: clipped
    assert _is_png(plot_image_grid(grey, tmp_path / "grey.png"))
    assert _is_png(plot_image_grid(rgb, tmp_path / "rgb.png", nrow=2, title="rgb"))
    pair = plot_samples_vs_data_images(grey, grey.flip(0), tmp_path / "pair.png", n_show=9)
    assert _is_png(pair)


def test_image_grid_pixels_are_exact(tmp_path: Path) -> None:
    """A white image shows as white pixels, a black one as black: no colour-map surprises."""
    from PIL import Image

    images = torch.stack([torch.full((1, 8, 8), 1.0), torch.full((1, 8, 8), -1.0)])
    out = plot_image_grid(images, tmp_path / "bw.png", nrow=2)
    pixels = np.asarray(Image.open(out).convert("L"))
    assert pixels.min() == 0 and pixels.max() == 255


def test_image_grid_row_labels_are_drawn_left_of_their_rows(tmp_path: Path) -> None:
    """Class rows carry their labels (issue 18, item 13): text in a margin left of the grid,
    level with each row; a wrong number of labels is refused."""
    from PIL import Image

    white = torch.ones(6, 1, 8, 8)  # white images on the white page: any dark pixel is text
    plain = np.asarray(Image.open(plot_image_grid(white, tmp_path / "a.png", nrow=3)).convert("L"))
    out = plot_image_grid(white, tmp_path / "b.png", nrow=3, row_labels=["y=0", "y=1"])
    labelled = np.asarray(Image.open(out).convert("L"))
    assert labelled.shape[0] == plain.shape[0] and labelled.shape[1] > plain.shape[1]
    margin = labelled[:, : labelled.shape[1] - plain.shape[1]]
    dark_rows = np.flatnonzero((margin < 128).any(axis=1))
    assert len(dark_rows) > 0 and plain.min() > 128
    top, bottom = dark_rows[dark_rows < labelled.shape[0] / 2], dark_rows[dark_rows >= labelled.shape[0] / 2]
    assert len(top) > 0 and len(bottom) > 0  # one label level with each of the two rows
    with pytest.raises(ValueError, match="one text per row"):
        plot_image_grid(white, tmp_path / "c.png", nrow=3, row_labels=["y=0"])


def test_trajectories_png(tmp_path: Path, trajectory: torch.Tensor, moons: torch.Tensor) -> None:
    out = plot_trajectories(trajectory, tmp_path / "traj.png", n_show=50, data=moons)
    assert _is_png(out)
    assert _is_png(plot_trajectories(trajectory, tmp_path / "t2.png"))


def test_vector_field_with_exact_field_including_t1(
    tmp_path: Path,
    field: EmpiricalMarginal,
    trajectory: torch.Tensor,
) -> None:
    calls: list[torch.Tensor] = []

    def spy(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert x.dtype == torch.float32 and t.shape == (x.shape[0],)
        assert not torch.is_grad_enabled()
        calls.append(t)
        return field(x, t)

    times = (0.0, 0.5, 1.0)
    clouds = [trajectory[i] for i in (0, 10, 20)]
    out = plot_vector_field(spy, tmp_path / "field.png", times=times, grid_size=8, samples_at_t=clouds)
    assert _is_png(out)
    assert [float(t[0]) for t in calls] == list(times)  # t passed exactly, t = 1 included
    assert all(bool((t == t[0]).all()) for t in calls)
    bounds = (-2.0, 2.0, -1.0, 1.0)
    assert _is_png(plot_vector_field(field, tmp_path / "f2.png", bounds=bounds, grid_size=6))


def test_animation_gif_has_frames(
    tmp_path: Path, solution: ODESolution, trajectory: torch.Tensor, moons: torch.Tensor
) -> None:
    from PIL import Image

    out = animate_path(
        trajectory,
        solution.times,
        tmp_path / "flow.gif",
        fps=10,
        n_show=100,
        data=moons,
        max_frames=8,
    )
    assert out.read_bytes()[:6] == GIF_MAGIC
    with Image.open(out) as gif:
        assert 1 < gif.n_frames <= 8


def test_loss_curve_from_file_and_records(tmp_path: Path) -> None:
    records = [{"step": s, "loss": 1.0 / (1 + s)} for s in range(0, 200, 5)]
    records.insert(3, {"step": 10, "w2": 0.5})  # evaluation lines are skipped
    jsonl = tmp_path / "metrics.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert _is_png(plot_loss_curve(jsonl, tmp_path / "loss.png"))
    signed = [{"step": s, "loss": float(s) - 50.0} for s in range(100)]  # linear axis
    assert _is_png(plot_loss_curve(signed, tmp_path / "loss2.png", smoothing=0.5))


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------


def test_bad_shapes_raise(tmp_path: Path, field: EmpiricalMarginal) -> None:
    out = tmp_path / "x.png"
    with pytest.raises(ValueError, match=r"trajectory.*\(T, N, 2\)"):
        plot_trajectories(torch.zeros(10, 2), out)
    with pytest.raises(ValueError, match=r"trajectory.*\(T, N, 2\)"):
        plot_trajectories(torch.zeros(5, 10, 3), out)
    with pytest.raises(ValueError, match=r"trajectory.*\(T, N, 2\)"):
        animate_path(torch.zeros(5, 10, 3), torch.linspace(0, 1, 5), tmp_path / "a.gif")
    with pytest.raises(ValueError, match=r"times.*\(T,\)"):
        animate_path(torch.zeros(5, 10, 2), torch.linspace(0, 1, 4), tmp_path / "a.gif")
    with pytest.raises(ValueError, match=r"\.gif"):
        animate_path(torch.zeros(5, 10, 2), torch.linspace(0, 1, 5), tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"samples.*\(N, 2\)"):
        plot_samples_vs_data(torch.zeros(10, 3), torch.zeros(10, 2), out)
    with pytest.raises(ValueError, match=r"data.*\(N, 2\)"):
        plot_samples_vs_data(torch.zeros(10, 2), torch.zeros(10), out)
    with pytest.raises(ValueError, match=r"images.*\(N, C, H, W\)"):
        plot_image_grid(torch.zeros(4, 8, 8), out)
    with pytest.raises(ValueError, match=r"images.*\(N, C, H, W\)"):
        plot_image_grid(torch.zeros(4, 2, 8, 8), out)
    with pytest.raises(ValueError, match=r"same \(C, H, W\)"):
        plot_samples_vs_data_images(torch.zeros(4, 1, 8, 8), torch.zeros(4, 1, 6, 6), out)
    with pytest.raises(ValueError, match="samples_at_t"):
        plot_vector_field(field, out, times=(0.0, 1.0), samples_at_t=[torch.zeros(5, 2)])
    with pytest.raises(ValueError, match="times"):
        plot_vector_field(field, out, times=(0.0, 1.5))
    with pytest.raises(ValueError, match="field"):
        plot_vector_field(lambda x, t: x[:, :1], out, times=(0.5,))
    with pytest.raises(ValueError, match="non-finite"):
        plot_samples_vs_data(torch.full((3, 2), float("nan")), torch.zeros(3, 2), out)
    with pytest.raises(ValueError, match="step"):
        plot_loss_curve([{"epoch": 1}], out)
    assert not out.exists()
