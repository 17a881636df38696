"""Metrics: W2, MMD^2, the Frechet distance, their floors and the digits classifier."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import genlab.metrics as metrics
from genlab.data import load_digits
from genlab.metrics import (
    DEFAULT_BANDWIDTH_FACTORS,
    SAMPLE_METRICS,
    DigitsClassifier,
    DigitsClassifierConfig,
    compute_metrics,
    default_cache_dir,
    digits_fd_floor,
    digits_features,
    frechet_digits_distance,
    frechet_distance,
    gaussian_stats,
    get_digits_classifier,
    metric_floor,
    mmd,
    train_digits_classifier,
    wasserstein2,
)


def _gaussian_sampler(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(n, 2, generator=generator, dtype=torch.float64)


# --------------------------------------------------------------------------------------
# W2
# --------------------------------------------------------------------------------------


def test_w2_of_a_sample_with_itself_is_zero(gen: torch.Generator) -> None:
    x = torch.randn(300, 3, generator=gen, dtype=torch.float64)
    assert wasserstein2(x, x) == 0.0


def test_w2_tiny_discrete_cases_by_hand() -> None:
    # 1-D: x = {0, 2}, y = {1, 5}. Monotone plan 0->1, 2->5 costs (1 + 9) / 2 = 5, the
    # crossed plan (25 + 1) / 2 = 13, so W2 = sqrt(5).
    x = torch.tensor([[0.0], [2.0]], dtype=torch.float64)
    y = torch.tensor([[1.0], [5.0]], dtype=torch.float64)
    assert wasserstein2(x, y) == pytest.approx(math.sqrt(5.0), rel=1e-12)
    # unequal sizes: the single point at 0 sends mass 1/2 to 1 and to 3: (1 + 9) / 2.
    assert wasserstein2(x[:1], torch.tensor([[1.0], [3.0]])) == pytest.approx(math.sqrt(5.0))
    # 2-D: opposite corners of the unit square; every pair is at distance 1.
    a = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert wasserstein2(a, b) == pytest.approx(1.0, rel=1e-12)


def test_w2_of_a_pure_shift_is_the_shift_length(gen: torch.Generator) -> None:
    # For any coupling of x with x + c, E||X - X' - c||^2 = E||X - X'||^2 + ||c||^2 (the
    # marginals have equal means), minimised by the identity plan: W2 = ||c|| exactly.
    x = torch.randn(400, 2, generator=gen, dtype=torch.float64)
    c = torch.tensor([0.3, -1.2], dtype=torch.float64)
    assert wasserstein2(x, x + c) == pytest.approx(float(c.norm()), rel=1e-10)


def test_w2_between_shifted_gaussians_matches_closed_form(gen: torch.Generator) -> None:
    # W2(N(0, I), N(m, I)) = ||m||. For samples x, y of size n, the identity above gives
    # W2^2(x, y + m) = W2^2(x, y) + ||m||^2 - 2 m.(xbar - ybar) exactly, so the deviation
    # from ||m|| is at most floor^2 / (2 ||m||) + |mhat.(xbar - ybar)|, the latter
    # N(0, 2/n): tolerance floor + 4 sqrt(2/n).
    n = 1000
    m = torch.tensor([2.0, 1.0], dtype=torch.float64)
    x = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    floor = wasserstein2(x, y)
    shifted = wasserstein2(x, y + m)
    identity = floor**2 + float(m @ m) - 2.0 * float(m @ (x.mean(0) - y.mean(0)))
    assert shifted**2 == pytest.approx(identity, rel=1e-9)
    assert abs(shifted - float(m.norm())) < floor + 4.0 * math.sqrt(2.0 / n)
    assert 0.0 < floor < 0.3


def test_w2_accepts_numpy_and_float32() -> None:
    x = np.array([[0.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    assert wasserstein2(x, x + np.array([3.0, 4.0], dtype=np.float32)) == pytest.approx(5.0)


# --------------------------------------------------------------------------------------
# MMD^2
# --------------------------------------------------------------------------------------


def test_mmd_is_unbiased_near_zero_and_detects_a_shift() -> None:
    g = torch.Generator().manual_seed(1)
    n, reps = 200, 20
    null = []
    for _ in range(reps):
        x = torch.randn(n, 2, generator=g, dtype=torch.float64)
        y = torch.randn(n, 2, generator=g, dtype=torch.float64)
        null.append(mmd(x, y, bandwidths=(0.5, 1.0, 2.0)))
    values = torch.tensor(null)
    mean, std = float(values.mean()), float(values.std())
    assert abs(mean) < 4.0 * std / math.sqrt(reps)  # unbiased: E MMD_u^2 = 0 under p = q
    assert float(values.min()) < 0.0  # an unbiased estimator does go negative
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    y = torch.randn(n, 2, generator=g, dtype=torch.float64) + torch.tensor([1.0, 0.0])
    shifted = mmd(x, y, bandwidths=(0.5, 1.0, 2.0))
    assert shifted > mean + 10.0 * std
    assert mmd(x, y) > mean + 10.0 * std  # median heuristic too


def test_mmd_symmetric_and_permutation_invariant(gen: torch.Generator) -> None:
    x = torch.randn(150, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(120, 3, generator=gen, dtype=torch.float64) * 1.3
    assert mmd(x, y) == pytest.approx(mmd(y, x), rel=1e-10, abs=1e-14)
    perm = torch.randperm(120, generator=gen)
    assert mmd(x, y[perm]) == pytest.approx(mmd(x, y), rel=1e-10, abs=1e-14)
    # x against a shuffled copy of itself: both within-terms equal the mean off-diagonal
    # kernel value k_off, the cross term is (N k_off (N - 1) + N) / N^2, so
    # MMD_u^2 = 2 (k_off - 1) / N < 0, a clean closed form.
    h = 0.7
    d2 = torch.cdist(x, x).pow(2)
    k = torch.exp(-d2 / (2 * h * h))
    n = x.shape[0]
    k_off = float((k.sum() - n) / (n * (n - 1)))
    expected = 2.0 * (k_off - 1.0) / n
    assert mmd(x, x[torch.randperm(n, generator=gen)], [h]) == pytest.approx(expected, rel=1e-9)


def test_mmd_default_bandwidths_are_documented() -> None:
    assert DEFAULT_BANDWIDTH_FACTORS == (0.5, 1.0, 2.0)


@pytest.mark.parametrize("bad", [[], [0.0], [-1.0], [float("nan")], [float("inf")], "1.0", 2.0])
def test_mmd_rejects_bad_bandwidths(bad: object) -> None:
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="bandwidth"):
        mmd(x, x + 1, bandwidths=bad)  # type: ignore[arg-type]


def test_mmd_needs_two_points() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        mmd(torch.zeros(1, 2), torch.zeros(5, 2))


# --------------------------------------------------------------------------------------
# Frechet distance
# --------------------------------------------------------------------------------------


def test_frechet_distance_diagonal_closed_form(gen: torch.Generator) -> None:
    f = 5
    mu1 = torch.randn(f, generator=gen, dtype=torch.float64)
    mu2 = torch.randn(f, generator=gen, dtype=torch.float64)
    a = torch.rand(f, generator=gen, dtype=torch.float64) + 0.1
    b = torch.rand(f, generator=gen, dtype=torch.float64) + 0.1
    expected = float((mu1 - mu2).pow(2).sum() + (a.sqrt() - b.sqrt()).pow(2).sum())
    value = frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b))
    assert value == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_zero_for_identical_stats_and_symmetric(gen: torch.Generator) -> None:
    f = 6
    w1 = torch.randn(f, f, generator=gen, dtype=torch.float64)
    w2 = torch.randn(f, f, generator=gen, dtype=torch.float64)
    c1, c2 = w1 @ w1.T + 0.1 * torch.eye(f), w2 @ w2.T + 0.1 * torch.eye(f)
    mu1 = torch.randn(f, generator=gen, dtype=torch.float64)
    mu2 = torch.randn(f, generator=gen, dtype=torch.float64)
    assert frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(frechet_distance(mu2, c2, mu1, c1), rel=1e-8)
    # a singular covariance (rank 1) is handled
    v = torch.randn(f, 1, generator=gen, dtype=torch.float64)
    assert frechet_distance(mu1, v @ v.T, mu1, v @ v.T) == pytest.approx(0.0, abs=1e-4)


def test_gaussian_stats_match_numpy(gen: torch.Generator) -> None:
    feats = torch.randn(50, 4, generator=gen)
    mu, cov = gaussian_stats(feats)
    assert mu.dtype == torch.float64 and mu.shape == (4,) and cov.shape == (4, 4)
    np.testing.assert_allclose(mu.numpy(), feats.double().numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov.numpy(), np.cov(feats.double().numpy().T), rtol=1e-10)


# --------------------------------------------------------------------------------------
# registry and floors
# --------------------------------------------------------------------------------------


def test_compute_metrics_registry_and_flattening(gen: torch.Generator) -> None:
    assert set(SAMPLE_METRICS) == {"w2", "mmd"}
    x = torch.randn(30, 1, 2, 2, generator=gen)
    out = compute_metrics(x, x + 1.0, ["w2", "mmd"])
    assert list(out) == ["w2", "mmd"]
    assert out["w2"] == pytest.approx(2.0, rel=1e-6)  # shift by 1 in 4 dims: ||c|| = 2
    assert compute_metrics(x, x, "w2") == {"w2": 0.0}


def test_metric_floor_is_small_positive_and_shrinks_with_n() -> None:
    small = metric_floor(_gaussian_sampler, 200, ["w2", "mmd"], torch.Generator().manual_seed(0))
    large = metric_floor(_gaussian_sampler, 2000, ["w2"], torch.Generator().manual_seed(0))
    assert 0.0 < large["w2"] < small["w2"] < 0.5
    assert abs(small["mmd"]) < 0.02
    again = metric_floor(_gaussian_sampler, 200, ["w2", "mmd"], torch.Generator().manual_seed(0))
    assert again == small  # same generator seed, same floor


# --------------------------------------------------------------------------------------
# digits classifier
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[DigitsClassifier, dict, Path]:
    cache = tmp_path_factory.mktemp("genlab_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENLAB_CACHE", str(cache))
        assert default_cache_dir() == cache
        model, info = get_digits_classifier()
    assert info["source"] == "trained"
    return model, info, cache


def test_classifier_training_is_deterministic() -> None:
    m1, acc1 = train_digits_classifier(seed=3, epochs=1)
    m2, acc2 = train_digits_classifier(seed=3, epochs=1)
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert acc1 == acc2
    m3, _ = train_digits_classifier(seed=4, epochs=1)
    assert not torch.equal(m3.state_dict()["fc.weight"], s1["fc.weight"])


def test_classifier_accuracy_and_cache_round_trip(
    classifier: tuple[DigitsClassifier, dict, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, info, cache = classifier
    # measured: 0.983 test accuracy (353 / 359) after 20 epochs, ~2 s on 2 CPU cores
    assert info["test_accuracy"] >= 0.9
    assert info["seed"] == DigitsClassifierConfig().seed
    weights = cache / "digits_classifier.safetensors"
    meta = json.loads((cache / "digits_classifier.json").read_text())
    assert meta["test_accuracy"] == info["test_accuracy"] and "code_hash" in meta
    assert set(load_file(str(weights))) == set(model.state_dict())

    monkeypatch.setenv("GENLAB_CACHE", str(cache))
    loaded, info2 = get_digits_classifier()
    assert info2["source"] == "cache"
    images = load_digits("test").images[:50]
    assert torch.equal(digits_features(loaded, images), digits_features(model, images))
    assert digits_features(model, images).shape == (50, 64)


def test_stale_cache_is_retrained(classifier: tuple[DigitsClassifier, dict, Path], tmp_path: Path) -> None:
    _, _, cache = classifier
    for name in ("digits_classifier.safetensors", "digits_classifier.json"):
        (tmp_path / name).write_bytes((cache / name).read_bytes())
    meta = json.loads((tmp_path / "digits_classifier.json").read_text())
    meta["code_hash"] = "0" * 64
    (tmp_path / "digits_classifier.json").write_text(json.dumps(meta))
    _, info = get_digits_classifier(tmp_path)
    assert info["source"] == "trained"
    assert get_digits_classifier(tmp_path)[1]["source"] == "cache"


def test_frechet_digits_distance_orders_sets(
    classifier: tuple[DigitsClassifier, dict, Path],
) -> None:
    model = classifier[0]
    test = load_digits("test").images
    noise = torch.rand(test.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    same = frechet_digits_distance(test, test, model)
    floor = digits_fd_floor(model)
    far = frechet_digits_distance(test, noise, model)
    assert same == pytest.approx(0.0, abs=1e-6)
    assert 0.0 < floor < 20.0  # measured ~6
    assert far > 20.0 * floor  # measured ~1000


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", [wasserstein2, mmd])
def test_sample_metrics_reject_bad_input(metric: object) -> None:
    x = torch.zeros(5, 2)
    with pytest.raises(ValueError, match="same dimension"):
        metric(x, torch.zeros(5, 3))  # type: ignore[operator]
    bad = x.clone()
    bad[1, 0] = float("nan")
    with pytest.raises(ValueError, match="y contains 1 non-finite"):
        metric(x, bad)  # type: ignore[operator]
    with pytest.raises(ValueError, match=r"x must have shape \(N, D\)"):
        metric(torch.zeros(5), x)  # type: ignore[operator]
    with pytest.raises(ValueError, match="x must be a torch.Tensor"):
        metric([[0.0, 1.0]], x)  # type: ignore[operator]


def test_w2_max_points_guard() -> None:
    x = torch.zeros(11, 2)
    with pytest.raises(ValueError, match="max_points"):
        wasserstein2(x, x, max_points=10)
    assert wasserstein2(x, x, max_points=11) == 0.0


def test_unknown_metric_names_list_valid_ones() -> None:
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="unknown metric 'fid'.*mmd, w2"):
        compute_metrics(x, x, ["w2", "fid"])
    with pytest.raises(ValueError, match="unknown metric 'W2'"):
        metric_floor(_gaussian_sampler, 10, ["W2"], torch.Generator())
    with pytest.raises(ValueError, match="non-empty"):
        compute_metrics(x, x, [])
    with pytest.raises(ValueError, match="same event size"):
        compute_metrics(x, torch.zeros(4, 3), ["w2"])


def test_frechet_and_digits_reject_bad_input(
    classifier: tuple[DigitsClassifier, dict, Path],
) -> None:
    mu, cov = torch.zeros(3), torch.eye(3)
    with pytest.raises(ValueError, match="mu1 and mu2"):
        frechet_distance(mu, cov, torch.zeros(4), torch.eye(4))
    with pytest.raises(ValueError, match=r"cov2 must have shape \(F, F\)"):
        frechet_distance(mu, cov, mu, torch.eye(4))
    with pytest.raises(ValueError, match="cov1 must be a symmetric"):
        frechet_distance(mu, torch.triu(torch.ones(3, 3)), mu, cov)
    with pytest.raises(ValueError, match="positive semi-definite"):
        frechet_distance(mu, -cov, mu, cov)
    with pytest.raises(ValueError, match="features must have at least 2"):
        gaussian_stats(torch.zeros(1, 3))
    model = classifier[0]
    with pytest.raises(ValueError, match=r"images must have shape \(N, 1, 8, 8\)"):
        digits_features(model, torch.zeros(3, 64))
    with pytest.raises(ValueError, match="images_b needs at least 2"):
        frechet_digits_distance(torch.zeros(3, 1, 8, 8), torch.zeros(1, 1, 8, 8), model)
    nan_images = torch.zeros(3, 1, 8, 8)
    nan_images[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="images_a contains 1 non-finite"):
        frechet_digits_distance(nan_images, torch.zeros(3, 1, 8, 8), model)
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        metric_floor(_gaussian_sampler, 10, ["w2"], 0)  # type: ignore[arg-type]


def test_public_names_exported() -> None:
    for name in metrics.__all__:
        assert getattr(metrics, name) is not None
