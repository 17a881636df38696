"""Reflow pairs: generation with an exactly known flow, the pair data set and its file format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from genlab.metrics.straightness import path_energy, straightness
from genlab.models import FlowMatching
from genlab.paths import GaussianMarginal, GaussianPath
from genlab.paths.reflow import ReflowPairs
from genlab.samplers.reflow import generate_pairs
from genlab.solvers import integrate

DT = torch.float64
MEAN = torch.tensor([1.0, -2.0, 0.5], dtype=DT)
STD = torch.tensor([0.5, 2.0, 1.0], dtype=DT)
SHIFT = torch.tensor([3.0, 0.0, -1.0], dtype=DT)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class _Classes(nn.Module):
    """Stands in for a class embedding: marks the network as class-conditional."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes


class ExactVelocity(nn.Module):
    """The exact marginal velocity of data N(MEAN + y SHIFT, diag STD^2) on the linear path.

    Shifting the data mean by delta changes the marginal velocity to
    u_{m + delta}(x, t) = u_m(x - alpha_t delta, t) + alpha'_t delta, with alpha_t = t on the
    linear path. The float64 parameter ``one`` gives the model its dtype; ``class_embed``
    declares 3 classes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.marginal = GaussianMarginal(GaussianPath("linear"), MEAN, STD)
        self.one = nn.Parameter(torch.ones((), dtype=DT))
        self.class_embed = _Classes(3)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            return self.one * self.marginal.velocity(x, t)
        delta = y[:, None].to(x) * SHIFT  # (B, D)
        return self.one * (self.marginal.velocity(x - t[:, None] * delta, t) + delta)


@pytest.fixture
def model() -> FlowMatching:
    return FlowMatching(ExactVelocity(), (3,), path=GaussianPath("linear"))


# --------------------------------------------------------------------------------------
# generate_pairs
# --------------------------------------------------------------------------------------


def test_pairs_follow_the_exact_flow_map(model: FlowMatching) -> None:
    """For N(0, I) -> N(m, diag s^2) on the linear path the flow map is x1 = m + s x0."""
    x0, x1 = generate_pairs(model, 500, steps=100, generator=_gen(0))
    assert x0.shape == x1.shape == (500, 3)
    assert x0.dtype == x1.dtype == DT
    assert torch.equal(x0, torch.randn(500, 3, generator=_gen(0), dtype=DT))  # drawn from the source
    torch.testing.assert_close(x1, MEAN + STD * x0, rtol=0, atol=1e-8)
    assert not x1.requires_grad


def test_euler_pairs_are_close_but_coarser(model: FlowMatching) -> None:
    x0, x1 = generate_pairs(model, 200, steps=50, solver="euler", generator=_gen(1))
    err = float((x1 - (MEAN + STD * x0)).abs().max())
    assert 1e-8 < err < 0.2


def test_chunking_does_not_change_the_pairs(model: FlowMatching) -> None:
    whole = generate_pairs(model, 101, steps=20, generator=_gen(2), batch_size=4096)
    chunked = generate_pairs(model, 101, steps=20, generator=_gen(2), batch_size=7)
    assert torch.equal(whole[0], chunked[0])
    assert torch.equal(whole[1], chunked[1])


def test_labels_travel_with_their_chunk(model: FlowMatching) -> None:
    y = torch.randint(0, 3, (50,), generator=_gen(3))
    x0, x1 = generate_pairs(model, 50, steps=100, generator=_gen(4), batch_size=13, y=y)
    expected = MEAN + y[:, None].to(DT) * SHIFT + STD * x0
    torch.testing.assert_close(x1, expected, rtol=0, atol=1e-8)


def test_generation_leaves_training_mode(model: FlowMatching) -> None:
    model.train()
    generate_pairs(model, 4, steps=2)
    assert model.training


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n must be a positive int"),
        ({"n": 2.0}, "n must be a positive int"),
        ({"steps": 0}, "steps must be a positive int"),
        ({"batch_size": True}, "batch_size must be a positive int"),
        ({"generator": 0}, "generator must be a torch.Generator"),
        ({"y": torch.zeros(3, dtype=torch.int64)}, r"y must have shape \(n,\) = \(4,\)"),
        ({"solver": "nope"}, "solver"),
    ],
)
def test_generate_pairs_bad_inputs(model: FlowMatching, kwargs: dict, match: str) -> None:
    args = {"n": 4, "steps": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        generate_pairs(model, **args)


def test_generate_pairs_needs_a_model() -> None:
    with pytest.raises(ValueError, match="model must be a GaussianPathModel"):
        generate_pairs(nn.Linear(2, 2), 4)


def test_generate_pairs_refuses_data_couplings(model: FlowMatching) -> None:
    class FromInputs(nn.Module):  # what a data-coupling model (inpainting, ...) looks like
        source, data_shape, starts_from_inputs = model.source, model.data_shape, True

        def sample(self, *args, **kwargs):  # pragma: no cover - never reached
            raise AssertionError

    with pytest.raises(ValueError, match="data coupling"):
        generate_pairs(FromInputs(), 4)


def test_reflow_straightens_the_gaussian_flow(model: FlowMatching) -> None:
    """The pairs x1 = m + s x0 are an affine coupling; flow matching on it with the linear
    path has the exact velocity v(x, t) = (m + (s - 1) x0) at x = x0 + t (x1 - x0), i.e.
    x0 = (x - t m) / (1 + t (s - 1)): straight constant-speed paths with the same end
    points. The original flow's paths have non-constant speed (straightness > 0)."""
    x0, x1 = generate_pairs(model, 200, steps=100, generator=_gen(12))
    before = model.sample(200, grid=100, x0=x0, return_trajectory=True)
    assert before.trajectory is not None

    def reflowed(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        z = (x - t * MEAN) / (1 + t * (STD - 1))
        return MEAN + (STD - 1) * z

    after = integrate(reflowed, x0, 100, "rk4", return_trajectory=True)
    assert after.trajectory is not None
    torch.testing.assert_close(after.x, x1, rtol=0, atol=1e-8)
    s_before = straightness(before.trajectory, before.times)
    s_after = straightness(after.trajectory, after.times)
    assert s_before > 1e-2 and s_after < 1e-12
    transport = float(((after.x - x0) ** 2).sum(1).mean())
    assert path_energy(after.trajectory, after.times) == pytest.approx(transport, rel=1e-10)
    assert path_energy(before.trajectory, before.times) > transport


# --------------------------------------------------------------------------------------
# ReflowPairs
# --------------------------------------------------------------------------------------


def _pairs(n: int = 20, shape: tuple[int, ...] = (3,), labels: bool = False) -> ReflowPairs:
    g = _gen(5)
    x0 = torch.randn(n, *shape, generator=g, dtype=DT)
    x1 = 2.0 * x0 + 1.0
    y = torch.arange(n) % 4 if labels else None
    return ReflowPairs(x0, x1, y)


def test_sample_shapes_keys_and_pairing() -> None:
    ds = _pairs(20, (1, 2, 2))
    assert len(ds) == 20 and ds.shape == (1, 2, 2) and ds.dim == 4 and ds.name == "reflow"
    batch = ds.sample(64, _gen(6))
    assert set(batch) == {"x", "x0"}
    assert batch["x"].shape == batch["x0"].shape == (64, 1, 2, 2)
    torch.testing.assert_close(batch["x"], 2.0 * batch["x0"] + 1.0)  # rows stay paired
    assert "ReflowPairs(N=20" in repr(ds)


def test_sample_with_labels_and_dtype() -> None:
    ds = _pairs(20, labels=True)
    batch = ds.sample(30, _gen(7), dtype=torch.float32)
    assert set(batch) == {"x", "x0", "y"}
    assert batch["x"].dtype == batch["x0"].dtype == torch.float32
    assert batch["y"].shape == (30,) and batch["y"].dtype == torch.int64
    # the label belongs to the drawn pair: pair i has label i % 4 and x0 = ds.x0[i]
    idx = torch.cdist(batch["x0"].to(DT), ds.x0).argmin(1)
    assert torch.equal(batch["y"], idx % 4)


def test_sample_is_deterministic_with_a_seeded_generator() -> None:
    ds = _pairs(50)
    a, b = ds.sample(16, _gen(8)), ds.sample(16, _gen(8))
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = ds.sample(16, _gen(9))
    assert not torch.equal(a["x"], c["x"])


def test_dict_batch_feeds_the_flow_matching_loss(model: FlowMatching) -> None:
    ds = _pairs(20)
    out = model.loss(ds.sample(8, _gen(10)), _gen(11))
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])


@pytest.mark.parametrize("labels", [False, True])
def test_save_load_round_trip(tmp_path, labels: bool) -> None:
    ds = _pairs(12, (2, 3), labels=labels)
    written = ds.save(tmp_path / "pairs.npz")
    assert written == tmp_path / "pairs.npz" and written.is_file()
    back = ReflowPairs.load(written)
    assert torch.equal(back.x0, ds.x0) and torch.equal(back.x1, ds.x1)
    assert back.x0.dtype == DT and back.shape == (2, 3)
    if labels:
        assert back.y is not None and ds.y is not None and torch.equal(back.y, ds.y)
    else:
        assert back.y is None
    as32 = ReflowPairs.load(written, dtype=torch.float32)
    assert as32.x1.dtype == torch.float32
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file


def test_save_appends_the_suffix(tmp_path) -> None:
    written = _pairs().save(tmp_path / "pairs")
    assert written == tmp_path / "pairs.npz" and written.is_file()


def test_load_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        ReflowPairs.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x0=np.zeros((3, 2)), a=np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"lacks the array\(s\) x1"):
        ReflowPairs.load(tmp_path / "other.npz")
    np.save(tmp_path / "single.npy", np.zeros((3, 2)))
    with pytest.raises(ValueError, match="single array"):
        ReflowPairs.load(tmp_path / "single.npy")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="cannot read reflow pairs"):
        ReflowPairs.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "ints.npz", x0=np.zeros((3, 2), dtype=np.int64), x1=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="x0 must hold floats"):
        ReflowPairs.load(tmp_path / "ints.npz")


_X = torch.zeros(4, 2, dtype=DT)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([[0.0]], _X), "x0 must be a torch.Tensor"),
        ((_X, None), "x1 must be a torch.Tensor"),
        ((torch.zeros(4, dtype=DT), torch.zeros(4, dtype=DT)), r"x0 must have shape \(N, \*D\)"),
        ((_X, torch.zeros(5, 2, dtype=DT)), "x0 and x1 must have the same shape"),
        ((_X.long(), _X), "x0 must be a floating-point tensor"),
        ((_X, torch.full((4, 2), float("nan"), dtype=DT)), "x1 contains"),
        ((_X, _X, torch.zeros(3, dtype=torch.int64)), r"y must have shape \(N,\) = \(4,\)"),
        ((_X, _X, torch.zeros(4, dtype=DT)), "y must hold integer labels"),
        ((_X, _X, [0, 1, 2, 3]), "y must be a torch.Tensor"),
    ],
)
def test_reflow_pairs_bad_inputs(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ReflowPairs(*args)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n must be a positive int"),
        ({"generator": 1}, "generator must be a torch.Generator"),
        ({"dtype": torch.int64}, "dtype must be a floating"),
    ],
)
def test_sample_bad_inputs(kwargs: dict, match: str) -> None:
    args = {"n": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        _pairs().sample(**args)


def test_save_load_bad_paths(tmp_path) -> None:
    with pytest.raises(ValueError, match="path must be a str"):
        _pairs().save(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="path must be a str"):
        ReflowPairs.load(None)  # type: ignore[arg-type]
