"""Data couplings for images: the corruptions C and x_0 = C(x_1) + noise_std * eps.

Statistical checks use float64, fixed seeds and tolerances of 5 standard errors of the
estimate computed from the sample size.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from genlab.paths.corruptions import (
    CORRUPTIONS,
    AdditiveNoise,
    Corruption,
    DataCoupling,
    Inpaint,
    SuperResolution,
    make_corruption,
)
from genlab.viz.conditional import plot_conditional_samples

DT = torch.float64
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(b: int = 64, c: int = 1, h: int = 8, w: int = 8, seed: int = 1) -> torch.Tensor:
    """Uniform images in [-1, 1], (B, C, H, W) float64."""
    return torch.rand(b, c, h, w, generator=_gen(seed), dtype=DT) * 2 - 1


def _check_standard_normal(z: torch.Tensor, std: float = 1.0) -> None:
    """Mean ~ 0 and std ~ ``std`` within 5 standard errors (SE of the std: std / sqrt(2n))."""
    n = z.numel()
    assert abs(float(z.mean())) < 5 * std / math.sqrt(n)
    assert abs(float(z.std()) - std) < 5 * std / math.sqrt(2 * n)


# ---------------------------------------------------------------------------------------
# Inpainting
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["center", "random", "left"])
def test_inpaint_known_pixels_copied_and_missing_pixels_standard_normal(kind: str) -> None:
    x1 = _images(b=600, c=3)
    corrupt = Inpaint(mask=kind, size=0.5)
    missing = corrupt.mask(x1, _gen(3))
    x0 = corrupt(x1, _gen(3))  # same seed: the mask drawn inside is the same one
    assert x0.shape == x1.shape and x0.dtype == DT
    m = missing.expand_as(x1)
    assert torch.equal(x0[~m], x1[~m])  # known pixels: exact copies
    z = x0[m]
    assert z.numel() == 600 * 3 * (32 if kind == "left" else 16)  # 4 x 4 square or 4 of 8 columns
    _check_standard_normal(z)
    # independent of x1: empirical correlation with the clean pixel ~ 0 (SE 1 / sqrt(n))
    corr = torch.corrcoef(torch.stack([z, x1[m]]))[0, 1]
    assert abs(float(corr)) < 5 / math.sqrt(z.numel())


@pytest.mark.parametrize("kind", ["center", "random", "left"])
def test_inpaint_noise_does_not_depend_on_the_image(kind: str) -> None:
    corrupt = Inpaint(mask=kind, size=0.5)
    a, b = _images(b=32, seed=1), _images(b=32, seed=2)
    m = corrupt.mask(a, _gen(5)).expand_as(a)
    assert torch.equal(m, corrupt.mask(b, _gen(5)).expand_as(b))
    assert torch.equal(corrupt(a, _gen(5))[m], corrupt(b, _gen(5))[m])
    # fresh noise on every call
    g = _gen(5)
    assert not torch.equal(corrupt(a, g)[m], corrupt(a, g)[m])


@pytest.mark.parametrize("size", [0.1, 0.25, 0.3, 0.5, 0.75, 1.0])
@pytest.mark.parametrize("hw", [8, 7, 28])
def test_inpaint_square_area_and_centering(size: float, hw: int) -> None:
    x1 = _images(b=50, h=hw, w=hw)
    side = max(1, round(size * hw))
    for kind in ("center", "random"):
        mask = Inpaint(kind, size).mask(x1, _gen(0))
        assert mask.shape == (50, 1, hw, hw) and mask.dtype == torch.bool
        assert (mask.flatten(1).sum(1) == side**2).all()
        rows, cols = mask[:, 0].any(2), mask[:, 0].any(1)  # (B, H), (B, W)
        assert (rows.sum(1) == side).all() and (cols.sum(1) == side).all()  # a side x side square
    centre = Inpaint("center", size).mask(x1)[0, 0]
    idx = centre.any(1).nonzero().flatten()
    top, bottom = int(idx[0]), hw - 1 - int(idx[-1])
    assert abs(top - bottom) <= 1  # centred (to one pixel when hw - side is odd)
    left = Inpaint("left", size).mask(x1)
    assert (left[..., : max(1, round(size * hw))]).all() and not left[..., max(1, round(size * hw)) :].any()


def test_inpaint_random_positions_vary_and_cover_every_position() -> None:
    x1 = _images(b=2000)
    mask = Inpaint("random", 0.5).mask(x1, _gen(7))[:, 0]  # side 4 in 8: 5 x 5 positions
    tops = mask.any(2).int().argmax(1)
    lefts = mask.any(1).int().argmax(1)
    positions = set(zip(tops.tolist(), lefts.tolist(), strict=True))
    assert positions == {(i, j) for i in range(5) for j in range(5)}
    # roughly uniform: each of the 25 positions has probability 1/25
    counts = torch.bincount(tops * 5 + lefts, minlength=25).double()
    p = 1 / 25
    se = math.sqrt(2000 * p * (1 - p))
    assert ((counts - 2000 * p).abs() < 5 * se).all()
    # the same generator seed gives the same masks; another seed other masks
    assert torch.equal(mask, Inpaint("random", 0.5).mask(x1, _gen(7))[:, 0])
    assert not torch.equal(mask, Inpaint("random", 0.5).mask(x1, _gen(8))[:, 0])


# ---------------------------------------------------------------------------------------
# Super-resolution
# ---------------------------------------------------------------------------------------


def _blocks(x: torch.Tensor, f: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H/f, W/f, f * f): the pixels of each f x f block."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // f, f, w // f, f).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h // f, w // f, -1)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_superres_constant_blocks_with_the_block_means(factor: int) -> None:
    x1 = _images(b=16, c=3, h=16, w=8)
    x0 = SuperResolution(factor)(x1)
    assert x0.shape == x1.shape and x0.dtype == DT
    b0 = _blocks(x0, factor)
    assert torch.equal(b0.amax(-1), b0.amin(-1))  # constant on every block
    torch.testing.assert_close(b0[..., 0], _blocks(x1, factor).mean(-1), atol=1e-12, rtol=0)


@pytest.mark.parametrize("factor", [2, 4])
def test_superres_is_an_orthogonal_projection(factor: int) -> None:
    c = SuperResolution(factor)
    x, y = _images(b=8, h=16, w=16, seed=1), _images(b=8, h=16, w=16, seed=2)
    cx = c(x)
    torch.testing.assert_close(c(cx), cx, atol=1e-12, rtol=0)  # idempotent: C(C(x)) = C(x)
    # self-adjoint: <C x, y> = <x, C y>, hence the residual x - C x is orthogonal to C x
    torch.testing.assert_close((cx * y).sum(), (x * c(y)).sum(), atol=1e-10, rtol=0)
    assert abs(float(((x - cx) * cx).sum())) < 1e-10


@pytest.mark.parametrize("factor", [2, 4])
def test_superres_removes_the_highest_frequency(factor: int) -> None:
    i = torch.arange(16, dtype=DT)
    checker = 0.7 * (-1.0) ** (i[:, None] + i[None, :])  # (-1)^(i + j): Nyquist in both axes
    x = checker.expand(3, 2, 16, 16).clone()
    assert torch.equal(SuperResolution(factor)(x), torch.zeros_like(x))
    # a constant image (the lowest frequency) is untouched
    const = torch.full((1, 1, 8, 8), 0.3, dtype=DT)
    torch.testing.assert_close(SuperResolution(factor)(const), const, atol=1e-15, rtol=0)


# ---------------------------------------------------------------------------------------
# Additive noise
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("std", [0.1, 0.5, 2.0])
def test_denoise_residual_is_gaussian_with_the_given_std(std: float) -> None:
    x1 = _images(b=200, c=3)
    x0 = AdditiveNoise(std)(x1, _gen(4))
    _check_standard_normal(x0 - x1, std)
    # the residual does not depend on the image
    other = _images(b=200, c=3, seed=9)
    torch.testing.assert_close(AdditiveNoise(std)(other, _gen(4)) - other, x0 - x1, atol=1e-12, rtol=0)


# ---------------------------------------------------------------------------------------
# DataCoupling
# ---------------------------------------------------------------------------------------

ALL_CORRUPTIONS = [Inpaint("center"), Inpaint("random", 0.25), SuperResolution(2), AdditiveNoise(0.3)]


@pytest.mark.parametrize("corruption", ALL_CORRUPTIONS, ids=repr)
@pytest.mark.parametrize("noise_std", [0.0, 0.2])
def test_data_coupling_passes_x1_and_y_and_matches_inputs(corruption: Corruption, noise_std: float) -> None:
    x1 = _images(b=10)
    y = torch.arange(10)
    coupling = DataCoupling(corruption, noise_std=noise_std)
    batch = coupling(x1, _gen(11), y)
    assert batch.x1 is x1 and batch.y is y
    assert torch.equal(x1, _images(b=10))  # x1 not modified in place
    assert batch.x0.shape == x1.shape and batch.x0.dtype == DT
    assert torch.equal(batch.x0, coupling.inputs(x1, _gen(11)))  # same seed: identical tensor
    assert coupling(x1, _gen(11)).y is None
    if noise_std == 0.0:  # no extra draw: x0 is exactly the corruption
        assert torch.equal(batch.x0, corruption(x1, _gen(11)))
    assert coupling.gaussian_source is False


@pytest.mark.parametrize("noise_std", [0.1, 0.5])
def test_data_coupling_noise_std_adds_the_right_variance(noise_std: float) -> None:
    x1 = _images(b=400, c=3)
    # deterministic corruption: x0 - C(x1) = noise_std * eps exactly
    coupling = DataCoupling(SuperResolution(2), noise_std=noise_std)
    _check_standard_normal(coupling(x1, _gen(2)).x0 - SuperResolution(2)(x1), noise_std)
    # independent noises add their variances: std^2 + noise_std^2
    coupling = DataCoupling(AdditiveNoise(0.4), noise_std=noise_std)
    _check_standard_normal(coupling(x1, _gen(2)).x0 - x1, math.sqrt(0.4**2 + noise_std**2))


def test_data_coupling_inputs_has_the_distribution_of_pair_x0() -> None:
    x1 = _images(b=300, c=3)
    coupling = DataCoupling(Inpaint("random", 0.5), noise_std=0.1)
    g = _gen(6)
    a, b = coupling(x1, g).x0, coupling.inputs(x1, g)  # two independent draws
    assert not torch.equal(a, b)
    for z in (a - x1, b - x1):  # the same first two moments of the residual
        var = 0.25 * (1.0 + 0.1**2 + x1.pow(2).mean()) + 0.75 * 0.1**2  # area 1/4 is noise
        se = float(z.pow(2).std()) / math.sqrt(z.numel())
        assert abs(float(z.pow(2).mean()) - float(var)) < 5 * se
        assert abs(float(z.mean())) < 5 * float(z.std()) / math.sqrt(z.numel())


def test_make_corruption_builds_every_registered_corruption() -> None:
    assert set(CORRUPTIONS) == {"inpaint", "superres", "denoise"}
    for name, cls in CORRUPTIONS.items():
        c = make_corruption(name)
        assert isinstance(c, cls) and c.name == name
    c = make_corruption("inpaint", mask="left", size=0.25)
    assert isinstance(c, Inpaint) and c.mask_type == "left" and c.size == 0.25
    assert make_corruption("superres", factor=4).factor == 4
    assert make_corruption("denoise", std=0.2).std == 0.2


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------


def test_bad_input_names_the_argument() -> None:
    with pytest.raises(ValueError, match=r"inpaint needs images \(B, C, H, W\), got shape \(4, 2\)"):
        Inpaint()(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="superres needs a floating-point"):
        SuperResolution()(torch.zeros(1, 1, 4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="x1 must be a torch.Tensor"):
        AdditiveNoise()([[0.0]])
    with pytest.raises(ValueError, match="x1 contains 1 non-finite"):
        AdditiveNoise()(torch.tensor([[[[float("nan")]]]]))
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        AdditiveNoise()(torch.zeros(1, 1, 2, 2), 0)
    with pytest.raises(
        ValueError, match=r"factor 3 must divide .*\(8, 8\); factors that divide both: 2, 4, 8"
    ):
        SuperResolution(3)(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="factor 2 must divide .* none"):
        SuperResolution(2)(torch.zeros(1, 1, 9, 8))
    for factor in (1, 2.0, True):
        with pytest.raises(ValueError, match="factor must be an int >= 2"):
            SuperResolution(factor)  # type: ignore[arg-type]
    for size in (0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"size must be a number in \(0, 1\]"):
            Inpaint(size=size)
    with pytest.raises(ValueError, match="unknown mask 'middle'; valid masks are: center, left, random"):
        Inpaint(mask="middle")
    for std in (0.0, -1.0):
        with pytest.raises(ValueError, match="std must be a positive number"):
            AdditiveNoise(std)
    with pytest.raises(ValueError, match="valid corruptions are: denoise, inpaint, superres"):
        make_corruption("blur")
    with pytest.raises(
        ValueError, match="'sigma' for corruption 'denoise'; valid keyword arguments are: std"
    ):
        make_corruption("denoise", sigma=0.1)
    with pytest.raises(ValueError, match="valid keyword arguments are: mask, size"):
        make_corruption("inpaint", side=0.1)
    for noise_std in (-0.1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="noise_std must be a finite number >= 0"):
            DataCoupling(Inpaint(), noise_std=noise_std)
    with pytest.raises(ValueError, match="corruption must be a Corruption"):
        DataCoupling("inpaint")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"inpaint needs images \(B, C, H, W\)"):
        DataCoupling(Inpaint())(torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"y must have shape \(3,\)"):
        DataCoupling(Inpaint())(torch.zeros(3, 1, 4, 4), None, torch.zeros(2))


# ---------------------------------------------------------------------------------------
# Figure
# ---------------------------------------------------------------------------------------


def _is_png(path: str) -> bool:
    p = Path(path)
    return p.is_file() and p.stat().st_size > 0 and p.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("channels", [1, 3])
def test_plot_conditional_samples_writes_png(tmp_path: Path, channels: int) -> None:
    truth = _images(b=6, c=channels).float()
    inputs = DataCoupling(Inpaint("center")).inputs(truth, _gen(0))
    out = plot_conditional_samples(inputs, truth.clamp(-0.5, 0.5), truth, tmp_path / "one.png", title="x")
    assert isinstance(out, Path) and out == tmp_path / "one.png" and _is_png(out)
    samples = torch.stack([truth * 0.5, truth * 0.8, -truth])  # (K, N, C, H, W)
    out = plot_conditional_samples(inputs, samples, None, tmp_path / "sub" / "three.png")
    assert _is_png(out)
    out = plot_conditional_samples(inputs, samples, truth, str(tmp_path / "k.png"), labels=("x0", "x", "x1"))
    assert _is_png(out)


def test_plot_conditional_samples_rejects_bad_shapes(tmp_path: Path) -> None:
    x = torch.zeros(4, 1, 8, 8)
    with pytest.raises(ValueError, match="samples must have shape"):
        plot_conditional_samples(x, torch.zeros(4, 1, 8, 4), x, tmp_path / "a.png")
    with pytest.raises(ValueError, match="samples must have shape"):
        plot_conditional_samples(x, torch.zeros(2, 3, 1, 8, 8), x, tmp_path / "a.png")
    with pytest.raises(ValueError, match="truth must have the shape of inputs"):
        plot_conditional_samples(x, x, torch.zeros(3, 1, 8, 8), tmp_path / "a.png")
    with pytest.raises(ValueError, match="inputs must have shape"):
        plot_conditional_samples(torch.zeros(4, 8, 8), x, None, tmp_path / "a.png")
    with pytest.raises(ValueError, match="labels must be three strings"):
        plot_conditional_samples(x, x, x, tmp_path / "a.png", labels=("a", "b"))
    assert not (tmp_path / "a.png").exists()
