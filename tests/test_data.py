"""Tests for genlab.data: toys, the exact Gaussian mixture, image loaders and tables."""

from __future__ import annotations

import gzip
import math
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from genlab.data import (
    TOY_DATASETS,
    ArrayDataset,
    Checkerboard,
    Circles,
    Dataset,
    EightGaussians,
    GaussianMixture,
    ImageDataset,
    Moons,
    Pinwheel,
    Rings,
    SwissRoll,
    TwoSpirals,
    load_array,
    load_cifar10,
    load_digits,
    load_mnist,
    make_toy,
)

TOY_NAMES = [name for name in TOY_DATASETS if name != "gmm"]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def small_gmm(dtype_d: int = 3) -> GaussianMixture:
    means = torch.tensor([[0.0, 1.0, -1.0], [2.0, -1.0, 0.5], [-1.5, 0.0, 1.0]])[:, :dtype_d]
    stds = torch.tensor([[0.5, 0.8, 1.0], [1.2, 0.4, 0.7], [0.6, 0.6, 0.6]])[:, :dtype_d]
    return GaussianMixture(means, stds, weights=torch.tensor([0.2, 0.5, 0.3]))


# --------------------------------------------------------------------------------------
# 2-D toys
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TOY_NAMES)
def test_toy_shapes_dtypes_and_protocol(name: str) -> None:
    ds = make_toy(name)
    assert isinstance(ds, Dataset)
    assert ds.name == name and ds.dim == 2
    x = ds.sample(17, generator=gen(0))
    assert x.shape == (17, 2) and x.dtype == torch.float32
    x64 = ds.sample(17, generator=gen(0), dtype=torch.float64)
    assert x64.dtype == torch.float64
    # one seed, one set of points: float32 samples are the float64 ones rounded
    assert torch.equal(x64.to(torch.float32), x)


@pytest.mark.parametrize("name", TOY_NAMES + ["gmm"])
def test_toy_determinism(name: str) -> None:
    ds = small_gmm() if name == "gmm" else make_toy(name)
    a = ds.sample(256, generator=gen(123))
    b = ds.sample(256, generator=gen(123))
    c = ds.sample(256, generator=gen(124))
    assert torch.equal(a, b)  # bit for bit
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", TOY_NAMES)
def test_toy_scale_is_standardised(name: str) -> None:
    x = make_toy(name).sample(20_000, generator=gen(1), dtype=torch.float64)
    assert torch.isfinite(x).all()
    # "points within about [-4, 4]": no point beyond 4.5 (Gaussian tails of the noise)
    assert float(x.abs().max()) < 4.5
    # and not degenerate: per-coordinate spread of order one, mean near the origin
    std = x.std(0)
    assert bool(((std > 0.5) & (std < 2.5)).all()), std
    assert float(x.mean(0).abs().max()) < 0.6


def test_toy_specific_geometry() -> None:
    # circles: every point at radius ~ 3 or ~ 1.5 when the noise is zero
    r = Circles(noise=0.0).sample(1000, generator=gen(0), dtype=torch.float64).norm(dim=1)
    assert float(torch.minimum((r - 3.0).abs(), (r - 1.5).abs()).max()) < 1e-12
    # rings: radii exactly 0.75, 1.5, 2.25, 3, all four used
    r = Rings(noise=0.0).sample(1000, generator=gen(0), dtype=torch.float64).norm(dim=1)
    assert set(torch.round(r / 0.75).to(torch.int64).tolist()) == {1, 2, 3, 4}
    # checkerboard: only cells with i + j even
    x = Checkerboard().sample(2000, generator=gen(0), dtype=torch.float64)
    cell = torch.floor((x + 3.0) / 1.5).to(torch.int64)
    assert bool(((cell[:, 0] + cell[:, 1]) % 2 == 0).all())
    assert len({tuple(c) for c in cell.tolist()}) == 8
    # two spirals are point-symmetric: the noiseless set is closed under x -> -x in law
    x = TwoSpirals(noise=0.0).sample(4000, generator=gen(0), dtype=torch.float64)
    assert float(x.mean(0).abs().max()) < 0.1
    # noiseless moons lie on the two unit-radius arcs (scaled by 2)
    x = Moons(noise=0.0).sample(1000, generator=gen(0), dtype=torch.float64) / 2.0
    x = x + torch.tensor([0.5, 0.25], dtype=torch.float64)
    d_upper = (x.norm(dim=1) - 1.0).abs()
    d_lower = ((x - torch.tensor([1.0, 0.5], dtype=torch.float64)).norm(dim=1) - 1.0).abs()
    assert float(torch.minimum(d_upper, d_lower).max()) < 1e-12
    # swiss roll without noise: radius / angle relation |x| = scale * t
    x = SwissRoll(noise=0.0).sample(500, generator=gen(0), dtype=torch.float64)
    t = x.norm(dim=1) / 0.2
    assert float(t.min()) >= 1.5 * math.pi - 1e-9 and float(t.max()) <= 4.5 * math.pi + 1e-9
    assert torch.allclose(x / 0.2, torch.stack([t * torch.cos(t), t * torch.sin(t)], 1), atol=1e-9)
    # pinwheel: all arms populated
    x = Pinwheel().sample(5000, generator=gen(0), dtype=torch.float64)
    angle = torch.atan2(x[:, 1], x[:, 0])
    assert torch.histc(angle, bins=5, min=-math.pi, max=math.pi).min() > 500


def test_eight_gaussians_matches_its_mixture() -> None:
    ds = EightGaussians()
    mix = ds.as_mixture()
    x = ds.sample(100_000, generator=gen(5), dtype=torch.float64)
    # mean 0 and covariance (r^2 / 2 + std^2) I in closed form
    assert torch.allclose(mix.mean(torch.float64), torch.zeros(2, dtype=torch.float64), atol=1e-12)
    expected_var = ds.radius**2 / 2 + ds.std**2
    assert torch.allclose(
        mix.covariance(torch.float64), expected_var * torch.eye(2, dtype=torch.float64), atol=1e-12
    )
    # sample variance within 5 CLT standard errors of the exact one
    var = x.var(0)
    se = (x.pow(2).var(0) / x.shape[0]).sqrt()
    assert bool(((var - expected_var).abs() < 5 * se).all())
    # nearest-mode distance of a sample is std-sized
    assert float(ds.log_prob(x[:10]).min()) > -20


# --------------------------------------------------------------------------------------
# Gaussian mixture: closed forms
# --------------------------------------------------------------------------------------


def test_gmm_log_prob_matches_scipy() -> None:
    gmm = small_gmm()
    x = gmm.sample(64, generator=gen(0), dtype=torch.float64) * 1.5  # include the tails
    ours = gmm.log_prob(x).numpy()
    comps = [
        np.log(w) + multivariate_normal(mean=m, cov=np.diag(s**2)).logpdf(x.numpy())
        for w, m, s in zip(gmm.weights.numpy(), gmm.means.numpy(), gmm.stds.numpy(), strict=True)
    ]
    ref = logsumexp(np.stack(comps), axis=0)
    # both are float64 evaluations of the same formula in a different order of operations;
    # their difference is a few ulps of |log p| <= ~30, hence rtol = atol = 1e-10.
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10)
    # float32 input gives a float32 result close to the reference
    ours32 = gmm.log_prob(x.float())
    assert ours32.dtype == torch.float32
    np.testing.assert_allclose(ours32.double().numpy(), ref, rtol=1e-4, atol=1e-4)


def test_gmm_density_integrates_to_one() -> None:
    gmm = small_gmm(dtype_d=2)
    h = 0.02
    grid = torch.arange(-8.0, 8.0 + h / 2, h, dtype=torch.float64)  # 801 points
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    total = float(gmm.log_prob(pts).exp().sum()) * h * h
    # the Riemann sum of a smooth, rapidly decaying density converges exponentially fast in
    # 1/h and the mass outside [-8, 8]^2 is < 1e-9 (nearest mean 5.5 std away from the edge),
    # so the only error left is float64 round-off: 1e-6 is a loose bound.
    assert abs(total - 1.0) < 1e-6
    # the same for the eight Gaussians (std 0.2, h = 0.02 = std / 10)
    total8 = float(EightGaussians().log_prob(pts.clone()).exp().sum()) * h * h
    assert abs(total8 - 1.0) < 1e-6


def test_gmm_moments_closed_form_and_clt() -> None:
    gmm = small_gmm()
    m, cov = gmm.mean(torch.float64), gmm.covariance(torch.float64)
    assert m.shape == (3,) and cov.shape == (3, 3) and gmm.mean().dtype == torch.float32
    # direct evaluation of E[x] and E[x x^T] - m m^T
    w, mu, s = gmm.weights, gmm.means, gmm.stds
    m_ref = torch.stack([w[k] * mu[k] for k in range(3)]).sum(0)
    second = torch.stack([w[k] * (torch.diag(s[k] ** 2) + torch.outer(mu[k], mu[k])) for k in range(3)]).sum(
        0
    )
    assert torch.allclose(m, m_ref, atol=1e-12)
    assert torch.allclose(cov, second - torch.outer(m_ref, m_ref), atol=1e-12)
    assert bool((torch.linalg.eigvalsh(cov) > 0).all())

    n = 200_000
    x = gmm.sample(n, generator=gen(7), dtype=torch.float64)  # (n, 3)
    # CLT: the sample mean has standard error sqrt(Sigma_ii / n); the sample covariance entry
    # (i, j) has standard error sqrt(Var[(x_i - m_i)(x_j - m_j)] / n) (estimated from the
    # sample). With a fixed seed the check is deterministic; 5 standard errors make it robust
    # to changing that seed (two-sided tail ~ 6e-7 per entry).
    se_mean = (torch.diag(cov) / n).sqrt()
    assert bool(((x.mean(0) - m).abs() < 5 * se_mean).all())
    xc = x - m
    prods = xc[:, :, None] * xc[:, None, :]  # (n, 3, 3)
    se_cov = (prods.var(0) / n).sqrt()
    assert bool(((prods.mean(0) - cov).abs() < 5 * se_cov).all())


def test_gmm_score_is_gradient_of_log_prob() -> None:
    gmm = small_gmm()
    x = gmm.sample(32, generator=gen(3), dtype=torch.float64).requires_grad_(True)
    (grad,) = torch.autograd.grad(gmm.log_prob(x).sum(), x)
    assert torch.allclose(gmm.score(x.detach()), grad, atol=1e-10)


def test_gmm_parameter_forms() -> None:
    means = [[0.0, 0.0], [1.0, 1.0]]
    iso = GaussianMixture(means, 0.5)
    per = GaussianMixture(means, [0.5, 0.5])
    diag = GaussianMixture(means, [[0.5, 0.5], [0.5, 0.5]], weights=[3.0, 3.0])
    x = torch.randn(5, 2, generator=gen(0), dtype=torch.float64)
    assert torch.allclose(iso.log_prob(x), per.log_prob(x))
    assert torch.allclose(iso.log_prob(x), diag.log_prob(x))
    assert torch.allclose(diag.weights, torch.tensor([0.5, 0.5], dtype=torch.float64))
    # a zero weight switches a component off
    one = GaussianMixture(means, 0.5, weights=[1.0, 0.0])
    single = GaussianMixture(means[:1], 0.5)
    assert torch.allclose(one.log_prob(x), single.log_prob(x))
    # any dimension
    g5 = GaussianMixture(torch.zeros(2, 5), torch.ones(2, 5))
    assert g5.dim == 5 and g5.sample(4, generator=gen(0)).shape == (4, 5)
    ds = make_toy("gmm", means=means, stds=0.5)
    assert isinstance(ds, GaussianMixture) and isinstance(ds, Dataset)


# --------------------------------------------------------------------------------------
# bad inputs
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -3, 2.5, True, "4", None])
def test_bad_n(n: object) -> None:
    for ds in (Moons(), small_gmm(), load_digits("test")):
        with pytest.raises(ValueError, match=r"^n must be a positive int"):
            ds.sample(n, generator=gen(0))  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["seed", 0, np.random.default_rng(0)])
def test_bad_generator(bad: object) -> None:
    for ds in (Rings(), small_gmm(), load_digits("test")):
        with pytest.raises(ValueError, match="generator must be a torch.Generator"):
            ds.sample(4, generator=bad)  # type: ignore[arg-type]


def test_bad_dtype() -> None:
    with pytest.raises(ValueError, match="dtype"):
        Moons().sample(4, generator=gen(0), dtype=torch.int64)
    with pytest.raises(ValueError, match="dtype"):
        small_gmm().sample(4, generator=gen(0), dtype="float32")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: EightGaussians(std=-0.1), "std"),
        (lambda: EightGaussians(radius=0.0), "radius"),
        (lambda: Moons(noise=-1.0), "noise"),
        (lambda: Moons(scale=float("inf")), "scale"),
        (lambda: Circles(factor=1.5), "factor"),
        (lambda: Checkerboard(cells=3), "cells"),
        (lambda: Rings(num_rings=0), "num_rings"),
        (lambda: Pinwheel(arms=2.5), "arms"),  # type: ignore[arg-type]
        (lambda: TwoSpirals(turns=-1.0), "turns"),
        (lambda: SwissRoll(noise=float("nan")), "noise"),
        (lambda: GaussianMixture([[0.0, 0.0]], [-1.0]), "stds"),
        (lambda: GaussianMixture([[0.0, 0.0]], [[1.0, 0.0]]), "stds"),
        (lambda: GaussianMixture([[0.0, 0.0], [1.0, 1.0]], [1.0, 1.0, 1.0]), "stds"),
        (lambda: GaussianMixture([0.0, 0.0], 1.0), "means"),
        (lambda: GaussianMixture([[0.0, float("nan")]], 1.0), "means"),
        (lambda: GaussianMixture([["a", "b"]], 1.0), "means"),
        (lambda: GaussianMixture([[0.0], [1.0]], 1.0, weights=[0.0, 0.0]), "weights"),
        (lambda: GaussianMixture([[0.0], [1.0]], 1.0, weights=[2.0, -1.0]), "weights"),
        (lambda: GaussianMixture([[0.0], [1.0]], 1.0, weights=[1.0]), "weights"),
        (lambda: make_toy("mooons"), r"unknown toy dataset 'mooons'.*8gaussians.*moons"),
        (lambda: make_toy("moons", nosie=0.1), "nosie"),
    ],
)
def test_bad_constructor_arguments(build, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        build()


def test_bad_log_prob_input() -> None:
    gmm = small_gmm()
    with pytest.raises(ValueError, match=r"x must have shape \(B, D\) = \(B, 3\)"):
        gmm.log_prob(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="x must be a torch.Tensor"):
        gmm.log_prob(np.zeros((4, 3)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="x must be a floating-point"):
        gmm.score(torch.zeros(4, 3, dtype=torch.int64))


# --------------------------------------------------------------------------------------
# digits (shipped)
# --------------------------------------------------------------------------------------


def _row_multiset(images: torch.Tensor, labels: torch.Tensor) -> list[tuple[int, ...]]:
    """Each (image, label) pair as a tuple of small integers, sorted."""
    pix = torch.round((images.reshape(len(images), -1) + 1.0) * 8.0).to(torch.int64)
    return sorted(tuple(r) + (int(y),) for r, y in zip(pix.tolist(), labels.tolist(), strict=True))


def test_digits() -> None:
    full, train, test = load_digits("all"), load_digits("train"), load_digits()
    test = load_digits("test")
    assert len(full) == 1797 and len(train) + len(test) == 1797 and len(test) == 359
    for ds in (full, train, test):
        assert isinstance(ds, ImageDataset) and isinstance(ds, Dataset)
        assert ds.images.shape[1:] == (1, 8, 8) and ds.shape == (1, 8, 8)
        assert ds.images.dtype == torch.float32 and ds.labels.dtype == torch.int64
        assert float(ds.images.min()) >= -1.0 and float(ds.images.max()) <= 1.0
        assert ds.num_classes == 10 and set(ds.labels.tolist()) == set(range(10))
        # pixels are the original 0..16 counts, x = p / 8 - 1
        p = (ds.images + 1.0) * 8.0
        assert torch.equal(p, torch.round(p))
    assert float(full.images.min()) == -1.0 and float(full.images.max()) == 1.0
    # train and test partition the data set (as multisets of (image, label) rows)
    assert _row_multiset(
        torch.cat([train.images, test.images]), torch.cat([train.labels, test.labels])
    ) == _row_multiset(full.images, full.labels)
    # the split is fixed
    assert torch.equal(load_digits("train").images, train.images)
    assert load_digits("test", dtype=torch.float64).images.dtype == torch.float64
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        load_digits("valid")


def test_image_dataset_sampling() -> None:
    labels = torch.arange(6) % 3
    images = labels.to(torch.float32)[:, None, None, None].expand(6, 2, 3, 3).clone()
    ds = ImageDataset(images, labels, num_classes=3, name="toy")
    x = ds.sample(50, generator=gen(0))
    assert x.shape == (50, 2, 3, 3) and torch.equal(x, ds.sample(50, generator=gen(0)))
    assert ds.sample(5, generator=gen(0), dtype=torch.float64).dtype == torch.float64
    xs, ys = ds.sample_with_labels(50, generator=gen(1))
    assert torch.equal(xs[:, 0, 0, 0].to(torch.int64), ys)
    assert len(ds) == 6 and ds.dim == 18
    with pytest.raises(ValueError, match="labels y must lie in"):
        ImageDataset(images, labels, num_classes=2)
    with pytest.raises(ValueError, match="images must have shape"):
        ImageDataset(images[:, 0], labels, num_classes=3)
    with pytest.raises(ValueError, match="labels must be an int64"):
        ImageDataset(images, labels.to(torch.int32), num_classes=3)


# --------------------------------------------------------------------------------------
# MNIST (IDX files written by the test)
# --------------------------------------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray, gz: bool, magic: int | None = None) -> Path:
    header = struct.pack(">I", magic if magic is not None else 0x0800 | array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)
    return path


def _write_mnist(root: Path, gz: bool, n_train: int = 5, n_test: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    arrays["train-images-idx3-ubyte"][0, 0, :2] = [0, 255]  # hit both ends of the range
    for name, arr in arrays.items():
        _write_idx(root / name, arr, gz)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_loads_idx(tmp_path: Path, gz: bool) -> None:
    arrays = _write_mnist(tmp_path, gz)
    train = load_mnist(tmp_path)
    assert train.images.shape == (5, 1, 28, 28) and train.images.dtype == torch.float32
    expected = arrays["train-images-idx3-ubyte"].astype(np.float64) / 255.0 * 2.0 - 1.0
    np.testing.assert_allclose(train.images[:, 0].numpy(), expected, atol=1e-6)
    assert float(train.images.min()) == -1.0 and float(train.images.max()) == 1.0
    assert train.labels.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert train.num_classes == 10 and train.name == "mnist"
    test = load_mnist(str(tmp_path), split="test", dtype=torch.float64)
    assert test.images.shape == (3, 1, 28, 28) and test.images.dtype == torch.float64
    assert len(load_mnist(tmp_path, split="all")) == 8
    assert train.sample(4, generator=gen(0)).shape == (4, 1, 28, 28)


def test_mnist_missing_files(tmp_path: Path) -> None:
    _write_mnist(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    load_mnist(tmp_path, "train")  # the train files are still there
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte") as info:
        load_mnist(tmp_path, "test")
    assert str(tmp_path) in str(info.value)
    with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path / "nowhere")


def test_mnist_corrupt_files(tmp_path: Path) -> None:
    arrays = _write_mnist(tmp_path, gz=False)
    images = arrays["train-images-idx3-ubyte"]
    # wrong magic number (claims 4 dimensions of int32)
    _write_idx(tmp_path / "train-images-idx3-ubyte", images, gz=False, magic=0x00000C04)
    with pytest.raises(ValueError, match=r"corrupt IDX file .*train-images-idx3-ubyte.*magic"):
        load_mnist(tmp_path)
    # header says 5 images, payload holds fewer bytes
    path = _write_idx(tmp_path / "train-images-idx3-ubyte", images, gz=False)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*header declares"):
        load_mnist(tmp_path)
    # truncated header
    path.write_bytes(b"\x00\x00\x08")
    with pytest.raises(ValueError, match=r"corrupt IDX file .*train-images-idx3-ubyte"):
        load_mnist(tmp_path)
    # image / label count mismatch
    _write_idx(tmp_path / "train-images-idx3-ubyte", images[:4], gz=False)
    with pytest.raises(ValueError, match="4 images but .* 5 labels"):
        load_mnist(tmp_path)
    # a .gz that is not gzip
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz"):
        load_mnist(tmp_path, "test")


# --------------------------------------------------------------------------------------
# CIFAR-10 (python batches written by the test)
# --------------------------------------------------------------------------------------

CIFAR_NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _cifar_batch(n: int, seed: int) -> dict[bytes, object]:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"testing batch",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def _write_cifar(directory: Path, protocol: int = 4, n: int = 2) -> dict[str, dict]:
    directory.mkdir(parents=True, exist_ok=True)
    batches = {}
    for i, name in enumerate(CIFAR_NAMES):
        batches[name] = _cifar_batch(n, seed=i)
        with (directory / name).open("wb") as f:
            pickle.dump(batches[name], f, protocol=protocol)
    return batches


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("subdir", [False, True])
def test_cifar_loads_batches(tmp_path: Path, protocol: int, subdir: bool) -> None:
    batches = _write_cifar(tmp_path / "cifar-10-batches-py" if subdir else tmp_path, protocol)
    train = load_cifar10(tmp_path)
    assert train.images.shape == (10, 3, 32, 32) and train.shape == (3, 32, 32)
    assert float(train.images.min()) >= -1.0 and float(train.images.max()) <= 1.0
    first = batches["data_batch_1"]
    data = first[b"data"].astype(np.float64) / 255.0 * 2.0 - 1.0
    # rows are 1024 red, then 1024 green, then 1024 blue values, each plane row-major
    np.testing.assert_allclose(train.images[0, 0].numpy(), data[0, :1024].reshape(32, 32), atol=1e-6)
    np.testing.assert_allclose(train.images[1, 2].numpy(), data[1, 2048:].reshape(32, 32), atol=1e-6)
    assert train.labels[:2].tolist() == first[b"labels"]
    test = load_cifar10(tmp_path, split="test")
    assert len(test) == 2 and test.labels.tolist() == batches["test_batch"][b"labels"]
    assert len(load_cifar10(tmp_path, split="all")) == 12


def test_cifar_accepts_numpy1_module_names(tmp_path: Path) -> None:
    # real CIFAR-10 batches were pickled by numpy 1.x, whose helpers live in numpy.core
    _write_cifar(tmp_path, protocol=3)
    path = tmp_path / "test_batch"
    raw = path.read_bytes()
    assert b"numpy._core.multiarray\n_reconstruct" in raw
    path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert load_cifar10(tmp_path, split="test").images.shape == (2, 3, 32, 32)


class _Exploit:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (self.command,))


def test_cifar_unpickler_refuses_code(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    batch = _cifar_batch(2, 0)
    batch[b"data"] = _Exploit(f"touch {marker}")
    with (tmp_path / "test_batch").open("wb") as f:
        pickle.dump(batch, f)
    with pytest.raises(ValueError, match=r"test_batch.*refusing to load global (posix|os|nt)\.system"):
        load_cifar10(tmp_path, split="test")
    assert not marker.exists()  # refused, not executed
    # any other global is refused too
    with (tmp_path / "test_batch").open("wb") as f:
        pickle.dump({b"data": eval, b"labels": []}, f)
    with pytest.raises(ValueError, match="refusing to load global builtins.eval"):
        load_cifar10(tmp_path, split="test")


def test_cifar_missing_and_malformed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="test_batch") as info:
        load_cifar10(tmp_path, split="test")
    assert str(tmp_path / "cifar-10-batches-py") in str(info.value)
    _write_cifar(tmp_path)
    for k in (3, 4, 5):  # a subset of the training batches is a smaller training set
        (tmp_path / f"data_batch_{k}").unlink()
    assert len(load_cifar10(tmp_path)) == 4
    bad = _cifar_batch(2, 0)
    bad[b"data"] = np.zeros((2, 100), dtype=np.uint8)
    with (tmp_path / "test_batch").open("wb") as f:
        pickle.dump(bad, f)
    with pytest.raises(ValueError, match=r"test_batch.*\(N, 3072\)"):
        load_cifar10(tmp_path, split="test")
    (tmp_path / "test_batch").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot unpickle CIFAR-10 batch .*test_batch"):
        load_cifar10(tmp_path, split="test")
    for k in (1, 2):
        (tmp_path / f"data_batch_{k}").unlink()
    with pytest.raises(ValueError, match="any of the data_batch_k"):
        load_cifar10(tmp_path)
    # protocol 2 rebuilds bytes through _codecs.encode, allowed for latin-1 text only
    evil = pickle.dumps({b"data": 0}, protocol=2).replace(b"latin1", b"utf_16")
    (tmp_path / "test_batch").write_bytes(evil)
    with pytest.raises(ValueError, match="only latin-1 byte strings"):
        load_cifar10(tmp_path, split="test")


# --------------------------------------------------------------------------------------
# tables (.npy / .csv)
# --------------------------------------------------------------------------------------


def test_load_npy_and_sample(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).normal(size=(10, 3))
    np.save(tmp_path / "points.npy", arr)
    ds = load_array(tmp_path / "points.npy")
    assert isinstance(ds, ArrayDataset) and isinstance(ds, Dataset)
    assert ds.data.shape == (10, 3) and ds.data.dtype == torch.float32
    assert ds.dim == 3 and ds.name == "points" and len(ds) == 10
    x = ds.sample(25, generator=gen(0))
    assert x.shape == (25, 3) and torch.equal(x, ds.sample(25, generator=gen(0)))
    # every sample is a row of the table (rows drawn with replacement)
    assert bool((torch.cdist(x, ds.data).min(dim=1).values == 0).all())
    ds64 = load_array(str(tmp_path / "points.npy"), dtype=torch.float64, name="pts")
    assert ds64.name == "pts" and np.array_equal(ds64.data.numpy(), arr)
    np.save(tmp_path / "ints.npy", np.arange(6).reshape(3, 2))
    assert load_array(tmp_path / "ints.npy").data[2].tolist() == [4.0, 5.0]


def test_load_csv(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("x, y,z\n1,2,3\n4.5,-5e-1,6\n\n7,8,9\n")
    ds = load_array(tmp_path / "h.csv", dtype=torch.float64)
    assert ds.data.tolist() == [[1, 2, 3], [4.5, -0.5, 6], [7, 8, 9]]
    (tmp_path / "n.csv").write_text("1,2\n3,4\n")
    assert load_array(tmp_path / "n.csv").data.shape == (2, 2)
    (tmp_path / "one.csv").write_text("value\n1\n2\n3\n")
    assert load_array(tmp_path / "one.csv").data.shape == (3, 1)


def test_load_array_rejects_bad_files(tmp_path: Path) -> None:
    arr = np.zeros((8, 2))
    arr[2, 0] = np.nan
    arr[5, 1] = np.inf
    np.save(tmp_path / "nan.npy", arr)
    with pytest.raises(ValueError, match=r"2 non-finite value\(s\).* in 2 row\(s\).*: 2, 5"):
        load_array(tmp_path / "nan.npy")
    (tmp_path / "nan.csv").write_text("a,b\n1,2\nnan,4\n5,6\n")
    with pytest.raises(ValueError, match=r"1 non-finite value\(s\).*rows.*: 1"):
        load_array(tmp_path / "nan.csv")
    np.save(tmp_path / "vec.npy", np.zeros(5))
    with pytest.raises(ValueError, match="2-D"):
        load_array(tmp_path / "vec.npy")
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="2-D"):
        load_array(tmp_path / "cube.npy")
    np.save(tmp_path / "single.npy", np.zeros((1, 4)))
    with pytest.raises(ValueError, match="N >= 2"):
        load_array(tmp_path / "single.npy")
    np.save(tmp_path / "text.npy", np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(ValueError, match="integers or floats"):
        load_array(tmp_path / "text.npy")
    np.save(tmp_path / "obj.npy", np.array([[{}], [{}]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="object arrays are refused"):
        load_array(tmp_path / "obj.npy")
    (tmp_path / "words.csv").write_text("1,2\n3,four\n")
    with pytest.raises(ValueError, match="not numeric"):
        load_array(tmp_path / "words.csv")
    (tmp_path / "mixed.csv").write_text("x,2\n3,4\n")
    with pytest.raises(ValueError, match="mixes numbers and text"):
        load_array(tmp_path / "mixed.csv")
    (tmp_path / "ragged.csv").write_text("1,2\n3,4,5\n")
    with pytest.raises(ValueError, match="ragged.csv"):
        load_array(tmp_path / "ragged.csv")
    (tmp_path / "empty.csv").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        load_array(tmp_path / "empty.csv")
    with pytest.raises(ValueError, match="must end in one of"):
        load_array(tmp_path / "data.txt")
    with pytest.raises(ValueError, match="does not exist"):
        load_array(tmp_path / "missing.npy")
    with pytest.raises(ValueError, match="data must be a floating-point"):
        ArrayDataset(torch.zeros(3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="data contains 1 non-finite"):
        ArrayDataset(torch.tensor([[0.0], [float("nan")]]))


def test_checkerboard_log_prob_is_the_uniform_density_on_the_black_cells() -> None:
    """-log(18) on every sample (8 black cells of side 1.5), -inf on white cells and off the
    board, and exp(log p) integrates to 1 over a grid."""
    from genlab.data.toy2d import Checkerboard

    ds = Checkerboard()
    x = ds.sample(4000, torch.Generator().manual_seed(0), dtype=torch.float64)
    lp = ds.log_prob(x)
    assert torch.allclose(lp, torch.full_like(lp, -math.log(18.0)))
    white = torch.tensor([[-3.0 + 1.5 * 1 + 0.7, -3.0 + 0.2]], dtype=torch.float64)  # cell (1, 0)
    off = torch.tensor([[3.1, 0.0], [0.0, -3.2]], dtype=torch.float64)
    assert torch.isinf(ds.log_prob(white)).all() and torch.isinf(ds.log_prob(off)).all()
    h = 0.01
    grid = torch.arange(-3.5 + h / 2, 3.5, h, dtype=torch.float64)
    pts = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    assert float(ds.log_prob(pts).exp().sum()) * h * h == pytest.approx(1.0, abs=2e-3)
