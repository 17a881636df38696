"""pix2pix and CycleGAN: the objectives' mathematics, the players' gradients, determinism,
the domain transforms and a small unpaired translation that learns."""

from __future__ import annotations

import doctest
import math

import pytest
import torch
from torch import nn

import genlab.data.domains as domains_module
import genlab.models.cyclegan as cyclegan_module
import genlab.models.pix2pix as pix2pix_module
import genlab.models.translation as translation_module
from genlab.data import GaussianMixture, load_digits
from genlab.data.domains import DOMAIN_TRANSFORMS, ImageTransform, TransformedImages, invert, rotate90
from genlab.models import CycleGAN, Pix2Pix
from genlab.models.gan_losses import cycle_consistency_loss
from genlab.models.translation import TRANSLATION_LOSSES, ResidualMLP
from genlab.paths.corruptions import Corruption, DataCoupling, make_corruption
from genlab.paths.couplings import DataSource

D64 = torch.float64
SHAPE = (1, 8, 8)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def digits():
    return load_digits("train")


def _images(n: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=_gen(seed), dtype=D64) * 2 - 1


# --------------------------------------------------------------------------- test modules


class Scale(nn.Module):
    """x -> w x with one learnable scalar w (w = -1: the negation, an exact inverse of itself)."""

    def __init__(self, w: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=D64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w * x


class Rotate(nn.Module):
    """x -> rot90(x, k) over (H, W), parameter-free."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.rot90(x, self.k, dims=(-2, -1))


class Constant(nn.Module):
    """A discriminator whose every output equals ``value``: (B, *D) [, target] -> (B, *out)."""

    def __init__(self, value: float, out: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.value, self.out = value, out

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        return torch.full((x.shape[0], *self.out), self.value, dtype=x.dtype)


class Negate(Corruption):
    """C(x) = -x, deterministic."""

    name = "negate"

    def apply(self, x1: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return -x1


def _pix2pix(**kw) -> Pix2Pix:
    kw.setdefault("corruption", make_corruption("inpaint", mask="random", size=0.5))
    kw.setdefault("hidden", 4)
    return Pix2Pix(SHAPE, **kw).double()


def _cyclegan_2d(**kw) -> CycleGAN:
    source = DataSource(GaussianMixture([[0.0, 0.0]], 0.3), "blob")
    kw.setdefault("hidden", 8)
    return CycleGAN((2,), source, **kw).double()


def _cyclegan_images(digits, name: str = "inverted", **kw) -> CycleGAN:
    kw.setdefault("hidden", 4)
    return CycleGAN(SHAPE, TransformedImages(digits, name), transform=name, **kw).double()


def _grads(params: list[nn.Parameter]) -> list[bool]:
    return [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params]


# --------------------------------------------------------------------------- domains


def test_inverted_is_an_involution_and_rotated_has_order_four():
    x = _images()
    assert torch.equal(invert(invert(x)), x)
    r = rotate90
    assert torch.equal(r(r(r(r(x)))), x)
    assert not torch.equal(r(r(x)), x)  # order exactly 4 on a generic image, not 2
    assert torch.equal(r(x)[0, 0, 0], x[0, 0, :, -1])  # counter-clockwise: top row = last column
    assert set(DOMAIN_TRANSFORMS) == {"inverted", "rotated"}
    for name, fn in DOMAIN_TRANSFORMS.items():
        t = ImageTransform(name)
        assert torch.equal(t(x), fn(x))
        assert torch.equal(t.inputs(x, _gen()), fn(x))
        assert name in repr(t)


def test_domain_transform_errors():
    with pytest.raises(ValueError, match="valid domain transforms are: inverted, rotated"):
        ImageTransform("flipped")
    with pytest.raises(ValueError, match="square"):
        rotate90(torch.zeros(2, 1, 8, 4))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        invert(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="image data set"):
        TransformedImages(GaussianMixture([[0.0, 0.0]], 1.0), "inverted")


def test_transformed_images_draw_from_their_own_generator(digits):
    source = TransformedImages(digits, "rotated")
    assert source.gaussian is False
    assert repr(source) == "TransformedImages(digits, rotated)"
    x_a = source.sample((16, *SHAPE), _gen(5), dtype=D64)
    # the same draw as the data set's own sampler with the same seed, then transformed
    assert torch.equal(x_a, rotate90(digits.sample(16, _gen(5)).to(D64)))
    # drawing a training batch with another generator in between changes nothing
    g_loss, g_data = _gen(5), _gen(5)
    batch = digits.sample(16, g_data)
    again = source.sample((16, *SHAPE), g_loss, dtype=D64)
    assert torch.equal(again, x_a)
    # a different stream gives different (unpaired) images than the batch
    assert not torch.equal(source.sample((16, *SHAPE), _gen(6)), rotate90(batch))
    assert source.sample(3, _gen()).shape == (3, *SHAPE)
    with pytest.raises(ValueError, match="same space"):
        source.sample((4, 1, 16, 16), _gen())


# --------------------------------------------------------------------------- pix2pix


def test_pix2pix_players_get_gradients_only_from_their_own_loss():
    model, x = _pix2pix(), _images()
    d_params, g_params = model.discriminator_parameters(), model.generator_parameters()
    assert set(model.player_parameters()) == {"d", "g"}
    model.d_loss(x, _gen())["loss"].backward()
    assert all(_grads(d_params)) and all(p.grad is None for p in g_params)
    model.zero_grad(set_to_none=True)
    model.g_loss(x, _gen())["loss"].backward()
    assert all(p.grad is None for p in d_params)
    assert sum(_grads(g_params)) > 0.9 * len(g_params)  # a few BatchNorm shifts may cancel exactly
    assert all(p.requires_grad for p in d_params)  # unfrozen after g_loss


def test_pix2pix_l1_is_the_mean_absolute_error_and_zero_for_the_clean_image():
    x = _images()
    for w, expected in ((-1.0, 0.0), (1.0, float((-x - x).abs().mean()))):
        model = _pix2pix(corruption=Negate(), generator=Scale(w), discriminator=Constant(0.0, (1, 2, 2)))
        out = model.g_loss(x, _gen())
        assert math.isclose(float(out["l1"]), expected, abs_tol=1e-12)
        # constant logit 0: non-saturating adversarial term softplus(0) = log 2
        assert math.isclose(float(out["adversarial"]), math.log(2.0), rel_tol=1e-12)
        assert math.isclose(float(out["loss"].detach()), math.log(2.0) + 100.0 * expected, rel_tol=1e-12)
        d = model.d_loss(x, _gen())
        assert math.isclose(float(d["loss"]), 2 * math.log(2.0), rel_tol=1e-12)
        assert float(d["d_real"]) == float(d["d_fake"]) == 0.0


def test_pix2pix_d_loss_sees_the_corrupted_input_and_the_pair():
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    class Recorder(Constant):
        def forward(self, s, t=None):
            seen.append((s, t))
            return super().forward(s, t)

    corruption = make_corruption("superres", factor=2)
    model = _pix2pix(corruption=corruption, noise_std=0.1, discriminator=Recorder(0.0, (4,)))
    x = _images()
    model.d_loss(x, _gen(3))
    expected_source = DataCoupling(corruption, 0.1).inputs(x, _gen(3))
    (s_real, t_real), (s_fake, t_fake) = seen
    assert torch.equal(s_real, expected_source) and torch.equal(s_fake, expected_source)
    assert torch.equal(t_real, x)
    assert not t_fake.requires_grad


def test_pix2pix_is_deterministic_and_accepts_every_batch_form():
    x = _images()
    a, b = _pix2pix(), _pix2pix()
    b.load_state_dict(a.state_dict())
    for batch in (x, (x, torch.zeros(6, dtype=torch.long)), {"x": x}):
        ga, gb = a.g_loss(batch, _gen(7)), b.g_loss(batch, _gen(7))
        assert all(torch.equal(ga[k], gb[k]) for k in ga)
        da, db = a.d_loss(batch, _gen(7)), b.d_loss(batch, _gen(7))
        assert all(torch.equal(da[k], db[k]) for k in da)
    assert not torch.equal(a.g_loss(x, _gen(8))["l1"], a.g_loss(x, _gen(9))["l1"])  # random mask


def test_pix2pix_generate_and_sample():
    model, x = _pix2pix(), _images(4)
    assert model.starts_from_inputs and isinstance(model.coupling, DataCoupling)
    x0 = model.coupling.inputs(x, _gen())
    assert model.generate(4, x0=x0).shape == (4, *SHAPE)
    sol = model.sample(4, generator=_gen(), x0=x0)
    assert sol.x.shape == (4, *SHAPE) and sol.nfe == 1
    with pytest.raises(ValueError, match="pass x0"):
        model.generate(4)
    with pytest.raises(ValueError, match="x0 must have shape"):
        model.generate(4, x0=torch.zeros(4, 1, 16, 16, dtype=D64))


def test_pix2pix_validation():
    with pytest.raises(ValueError, match="valid losses are"):
        _pix2pix(loss="hinge")
    with pytest.raises(ValueError, match="valid losses are"):
        _pix2pix(loss="wgan-gp")
    with pytest.raises(ValueError, match="unknown option"):
        _pix2pix(loss="lsgan", loss_args={"margin": 1.0})
    for bad in (-1.0, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="l1_weight"):
            _pix2pix(l1_weight=bad)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        Pix2Pix((2,), "denoise")
    with pytest.raises(ValueError, match="valid corruptions"):
        Pix2Pix(SHAPE, "blur")
    with pytest.raises(ValueError, match="hidden"):
        _pix2pix(hidden=0)
    with pytest.raises(ValueError, match="generator must be an nn.Module"):
        _pix2pix(generator=lambda s: s)
    model = _pix2pix()
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, 8, 8\)"):
        model.d_loss(torch.zeros(4, 1, 16, 16, dtype=D64), _gen())
    with pytest.raises(ValueError, match="non-finite"):
        model.g_loss(torch.full((2, *SHAPE), float("nan"), dtype=D64), _gen())


# --------------------------------------------------------------------------- CycleGAN


def test_cyclegan_players_get_gradients_only_from_their_own_loss(digits):
    for model, x in (
        (_cyclegan_2d(), torch.randn(16, 2, generator=_gen(), dtype=D64)),
        (_cyclegan_images(digits), _images(8)),
    ):
        d_params, g_params = model.discriminator_parameters(), model.generator_parameters()
        assert len(d_params) and len(g_params)
        model.d_loss(x, _gen())["loss"].backward()
        assert all(_grads(d_params)) and all(p.grad is None for p in g_params)
        model.zero_grad(set_to_none=True)
        model.g_loss(x, _gen())["loss"].backward()
        assert all(p.grad is None for p in d_params)
        assert sum(_grads(g_params)) > 0.9 * len(g_params)


@pytest.mark.parametrize("name, k_ab, k_ba", [("inverted", None, None), ("rotated", -1, 1)])
def test_cycle_term_vanishes_for_exact_inverse_maps(digits, name, k_ab, k_ba):
    # domain A = T(digits); G_ab = T^{-1}, G_ba = T are exact inverses: the cycle term is 0
    g_ab = Scale(-1.0) if k_ab is None else Rotate(k_ab)
    g_ba = Scale(-1.0) if k_ba is None else Rotate(k_ba)
    model = _cyclegan_images(digits, name, g_ab=g_ab, g_ba=g_ba)
    out = model.g_loss(_images(), _gen())
    assert float(out["cycle"]) == 0.0
    # and G_ab maps the transformed held-out images back to the truth
    x = digits.images[:5].to(D64)
    assert torch.equal(model.generate(5, x0=model.coupling.inputs(x, _gen())), x)


def test_cycle_term_is_the_per_element_mean_of_cycle_consistency_loss(digits):
    # lsgan with discriminators constant at the generator's target c = 1: adversarial terms 0
    model = _cyclegan_images(digits, d_a=Constant(1.0), d_b=Constant(1.0), cycle_weight=10.0)
    x_b = _images()
    out = model.g_loss(x_b, _gen(4))
    assert float(out["g_ab"]) == 0.0 and float(out["g_ba"]) == 0.0
    assert float(out["cycle"]) > 0.0
    torch.testing.assert_close(out["loss"], 10.0 * out["cycle"], rtol=1e-12, atol=0)
    x_a = model.source.sample((6, *SHAPE), _gen(4), dtype=D64)
    summed = cycle_consistency_loss(model.g_ab, model.g_ba, x_a, x_b)  # sums over C * H * W
    torch.testing.assert_close(out["cycle"], summed.detach() / math.prod(SHAPE), rtol=1e-10, atol=0)


def test_cyclegan_lsgan_terms_with_constant_discriminators():
    a, b, c = -1.0, 1.0, 0.0
    for t in (0.0, 0.5, 2.0):
        model = _cyclegan_2d(loss_args={"a": a, "b": b, "c": c}, d_a=Constant(t), d_b=Constant(t))
        x = torch.randn(8, 2, generator=_gen(), dtype=D64)
        d = model.d_loss(x, _gen())
        per_player = 0.5 * (t - b) ** 2 + 0.5 * (t - a) ** 2
        assert math.isclose(float(d["d_a"]), per_player) and math.isclose(float(d["d_b"]), per_player)
        assert math.isclose(float(d["loss"]), 2 * per_player)
        g = model.g_loss(x, _gen())
        assert math.isclose(float(g["g_ab"]), 0.5 * (t - c) ** 2)
        assert math.isclose(
            float(g["g_ab"]) + float(g["g_ba"]) + 10.0 * float(g["cycle"]), float(g["loss"].detach())
        )


def test_cyclegan_is_deterministic_given_the_generator(digits):
    for make, x in (
        (_cyclegan_2d, torch.randn(16, 2, generator=_gen(), dtype=D64)),
        (lambda: _cyclegan_images(digits, "rotated"), _images(8)),
    ):
        m1, m2 = make(), make()
        m2.load_state_dict(m1.state_dict())
        for loss in ("d_loss", "g_loss"):
            o1, o2 = getattr(m1, loss)(x, _gen(11)), getattr(m2, loss)(x, _gen(11))
            assert all(torch.equal(o1[k], o2[k]) for k in o1)
        assert not torch.equal(m1.d_loss(x, _gen(11))["loss"], m1.d_loss(x, _gen(12))["loss"])


def test_cyclegan_generate_and_inputs(digits):
    model = _cyclegan_2d()
    assert model.starts_from_inputs is False and model.coupling is None
    assert model.generate(5, _gen()).shape == (5, 2)
    assert torch.equal(model.generate(5, _gen(3)), model.generate(5, _gen(3)))
    x0 = torch.randn(3, 2, dtype=D64)
    assert torch.equal(model.sample(3, x0=x0).x, model.g_ab(x0).detach())
    images = _cyclegan_images(digits, "rotated")
    assert images.starts_from_inputs is True
    x = _images(4)
    assert torch.equal(images.coupling.inputs(x, _gen()), rotate90(x))
    assert images.sample(4, generator=_gen()).x.shape == (4, *SHAPE)
    with pytest.raises(ValueError, match="x0 must have shape"):
        model.generate(3, x0=torch.zeros(3, 5, dtype=D64))
    with pytest.raises(ValueError, match="not class-conditional"):
        model.sample(3, y=torch.zeros(3, dtype=torch.long))


def test_cyclegan_validation(digits):
    with pytest.raises(ValueError, match="valid losses are"):
        _cyclegan_2d(loss="wgan")
    for bad in (-0.5, float("nan")):
        with pytest.raises(ValueError, match="cycle_weight"):
            _cyclegan_2d(cycle_weight=bad)
    with pytest.raises(ValueError, match="source"):
        CycleGAN((2,), object())
    with pytest.raises(ValueError, match="transform applies to image"):
        _cyclegan_2d(transform="inverted")
    with pytest.raises(ValueError, match="valid domain transforms"):
        CycleGAN(SHAPE, TransformedImages(digits, "inverted"), transform="mirrored")
    with pytest.raises(ValueError, match="multiples of 4, got 8x6"):
        CycleGAN((1, 8, 6), TransformedImages(digits, "inverted"))
    with pytest.raises(ValueError, match="same space"):
        CycleGAN((1, 16, 16), TransformedImages(digits, "inverted"), hidden=4).d_loss(
            torch.zeros(2, 1, 16, 16), _gen()
        )
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        _cyclegan_2d().g_loss(torch.zeros(4, 3, dtype=D64), _gen())
    assert TRANSLATION_LOSSES == ("lsgan", "minimax", "nonsaturating")


def test_residual_mlp_is_identity_plus_mlp():
    net = ResidualMLP(3, width=8, depth=1).double()
    x = torch.randn(4, 3, generator=_gen(), dtype=D64)
    torch.testing.assert_close(net(x), x + net.net(x))
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        net(torch.zeros(4, 2, dtype=D64))


def test_cyclegan_learns_to_shift_a_gaussian_blob():
    # A = N((0, 0), 0.3^2 I), B = N((2, 1), 0.3^2 I): G_ab should learn x -> x + (2, 1).
    # cycle_weight 1, not the paper's 10: in 2 dims the L1 cycle subgradient (10 / 2 per
    # coordinate) swamps the LSGAN signal and the maps stay near their start for 1000+ steps;
    # with 1 the mean lands within ~0.1 of the target in 150 steps (seeds 0-2); 0.25x is the bar.
    target = torch.tensor([2.0, 1.0])
    data = GaussianMixture(target[None], 0.3)
    source = DataSource(GaussianMixture([[0.0, 0.0]], 0.3), "blob")
    with torch.random.fork_rng():  # seed the networks' initialisation without leaking the state
        torch.manual_seed(0)
        model = CycleGAN((2,), source, hidden=32, depth=2, cycle_weight=1.0)
    opt_d = torch.optim.Adam(model.discriminator_parameters(), lr=2e-3, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(model.generator_parameters(), lr=2e-3, betas=(0.5, 0.999))
    g_data, g_loss = _gen(1), _gen(2)

    def distance() -> float:
        with torch.no_grad():
            return float((model.generate(512, _gen(3)).mean(0) - target).norm())

    before = distance()
    for _ in range(150):
        batch = data.sample(64, g_data)
        opt_d.zero_grad()
        model.d_loss(batch, g_loss)["loss"].backward()
        opt_d.step()
        opt_g.zero_grad()
        model.g_loss(batch, g_loss)["loss"].backward()
        opt_g.step()
    after = distance()
    assert before > 1.5
    assert after < 0.25 * before, (before, after)


def test_docstring_examples_run():
    for module in (translation_module, pix2pix_module, cyclegan_module, domains_module):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0 and result.attempted > 0


def test_identity_term_is_the_per_element_mean_and_vanishes_for_identity_maps(digits):
    # constant discriminators at the LSGAN generator target: the adversarial terms are 0
    model = _cyclegan_images(
        digits, d_a=Constant(1.0), d_b=Constant(1.0), cycle_weight=0.0, identity_weight=5.0
    )
    x_b = _images()
    out = model.g_loss(x_b, _gen(4))
    x_a = model.source.sample((6, *SHAPE), _gen(4), dtype=D64)
    expected = (model.g_ab(x_b) - x_b).abs().mean() + (model.g_ba(x_a) - x_a).abs().mean()
    torch.testing.assert_close(out["identity"], expected.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(out["loss"], 5.0 * out["identity"], rtol=1e-12, atol=0)
    same = _cyclegan_images(digits, g_ab=Scale(1.0), g_ba=Scale(1.0), identity_weight=1.0)
    assert float(same.g_loss(x_b, _gen(4))["identity"]) == 0.0


def test_image_pool_returns_fakes_until_full_then_half_from_history():
    from genlab.models.translation import ImagePool

    pool, g = ImagePool(8, (3,)), _gen(0)
    first = torch.arange(15.0).reshape(5, 3)
    assert torch.equal(pool.query(first, g), first)  # filling: every fake as it is
    second = 100 + torch.arange(15.0).reshape(5, 3)
    out = pool.query(second, g)
    assert torch.equal(out[:3], second[:3]) and int(pool.count) == 8  # three fill the pool
    seen = {tuple(r) for r in torch.cat([first, second]).tolist()}
    from_history, total = 0, 0
    for step in range(400):
        fakes = 1000 * (step + 1) + torch.randn(6, 3, generator=g)
        before = {tuple(r) for r in pool.items.tolist()}
        out = pool.query(fakes, g)
        for row, fake in zip(out.tolist(), fakes.tolist(), strict=True):
            total += 1
            if row != fake:  # from the history: a sample stored before this batch
                from_history += 1
                assert tuple(row) in before and tuple(row) in seen
        seen |= {tuple(r) for r in fakes.tolist()}
        assert {tuple(r) for r in pool.items.tolist()} <= seen
    share = from_history / total  # 1/2, less the rare slot drawn twice in one batch
    assert abs(share - 0.5) < 5 * math.sqrt(0.25 / total), share
    assert torch.equal(ImagePool(0, (3,)).query(first, g), first)
    assert not list(ImagePool(0, (3,)).state_dict())  # no state without a pool


def test_cyclegan_discriminators_see_the_pooled_fakes(digits):
    model = _cyclegan_2d(pool_size=4)
    x = torch.randn(16, 2, generator=_gen(), dtype=D64)
    model.d_loss(x, _gen(1))
    assert int(model.pool_a.count) == 4 and int(model.pool_b.count) == 4
    assert {"pool_a.items", "pool_b.count"} <= set(model.state_dict())
