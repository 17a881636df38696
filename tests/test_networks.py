"""Tests for genlab.networks: shapes, time broadcasting, batch independence, gradients,
class conditioning with a null token, and input validation."""

from __future__ import annotations

import math
import re
from typing import TypeVar

import pytest
import torch
from torch import nn

import genlab.networks as networks
from genlab.networks import (
    ACTIVATIONS,
    TIME_EMBEDDINGS,
    ClassEmbedding,
    FourierTimeEmbedding,
    MLPConfig,
    SinusoidalTimeEmbedding,
    TimeMLP,
    UNet,
    UNetConfig,
    count_parameters,
)


def small_unet(**overrides: object) -> UNetConfig:
    """A tiny U-Net config (8 base channels) so the file runs in seconds."""
    fields: dict[str, object] = dict(base_channels=8, groups=4, time_dim=16)
    fields.update(overrides)
    return UNetConfig(**fields)  # type: ignore[arg-type]


M = TypeVar("M", bound=nn.Module)


def perturb_(module: M, seed: int = 0, std: float = 0.1) -> M:
    """Add Gaussian noise to every parameter (moves the zero-initialised U-Net head off 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


# ----------------------------------------------------------------------------- public API


def test_public_names_are_exported() -> None:
    for name in networks.__all__:
        assert hasattr(networks, name), name
    assert set(TIME_EMBEDDINGS) == {"sinusoidal", "fourier"}
    assert set(ACTIVATIONS) == {"silu", "relu", "gelu", "tanh", "elu", "softplus"}


def test_count_parameters() -> None:
    lin = nn.Linear(3, 2)
    assert count_parameters(lin) == 8
    lin.bias.requires_grad_(False)
    assert count_parameters(lin, trainable_only=True) == 6
    # Fourier frequencies are a buffer, not a parameter.
    assert count_parameters(FourierTimeEmbedding(16)) == 0


# ----------------------------------------------------------------------------- embeddings


@pytest.mark.parametrize("name", sorted(TIME_EMBEDDINGS))
def test_time_embedding_shape_deterministic_and_distinct(name: str) -> None:
    emb = TIME_EMBEDDINGS[name](32)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    e = emb(t)
    assert e.shape == (4, 32)
    assert torch.equal(e, emb(t))  # deterministic
    assert torch.equal(e, TIME_EMBEDDINGS[name](32)(t))  # same construction, same features
    for i in range(4):  # different times give different embeddings
        for j in range(i + 1, 4):
            assert (e[i] - e[j]).abs().max() > 1e-3
    assert emb(t.double()).dtype == torch.float64


def test_sinusoidal_closed_form() -> None:
    emb = SinusoidalTimeEmbedding(8, max_period=10000.0, time_scale=1000.0)
    e0 = emb(torch.zeros(1))
    assert torch.equal(e0, torch.tensor([[1.0] * 4 + [0.0] * 4]))  # cos 0 = 1, sin 0 = 0
    t = 0.3
    freqs = [10000.0 ** (-k / 4) for k in range(4)]
    expected = [math.cos(1000 * t * w) for w in freqs] + [math.sin(1000 * t * w) for w in freqs]
    got = emb(torch.tensor([t], dtype=torch.float64))[0]
    assert torch.allclose(got, torch.tensor(expected, dtype=torch.float64), atol=1e-9)


def test_fourier_seed_and_scale() -> None:
    t = torch.rand(5, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(123)  # global RNG must not matter
    a = FourierTimeEmbedding(16, seed=7)(t)
    torch.manual_seed(999)
    b = FourierTimeEmbedding(16, seed=7)(t)
    c = FourierTimeEmbedding(16, seed=8)(t)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    emb = FourierTimeEmbedding(4000, scale=16.0)
    assert abs(emb.W.std().item() - 16.0) < 1.0
    assert "W" in emb.state_dict()
    assert torch.allclose(a.pow(2)[:, :8] + a.pow(2)[:, 8:], torch.ones(5, 8))  # sin^2+cos^2


@pytest.mark.parametrize("cls", [SinusoidalTimeEmbedding, FourierTimeEmbedding])
def test_time_embedding_rejects_bad_input(cls: type[nn.Module]) -> None:
    with pytest.raises(ValueError, match="even"):
        cls(7)
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        cls(8)(torch.zeros(2, 1))


def test_class_embedding_null_token() -> None:
    emb = ClassEmbedding(3, 4)
    assert emb.table.num_embeddings == 4 and emb.null_index == 3
    idx = emb.labels(torch.tensor([0, -1, 2]), 3)
    assert idx.tolist() == [0, 3, 2]
    assert emb.labels(None, 2).tolist() == [3, 3]
    with pytest.raises(ValueError, match="integer"):
        emb(torch.tensor([0.0, 1.0]), 2)


# ----------------------------------------------------------------------------- MLP


@pytest.mark.parametrize(
    "config",
    [
        MLPConfig(dim=2),
        MLPConfig(dim=5, width=32, depth=2, activation="tanh", time_embedding="fourier"),
        MLPConfig(dim=5, width=16, depth=1, out_dim=3, num_classes=4),
    ],
    ids=["dim2-default", "dim5-fourier", "dim5-out3-classes"],
)
def test_mlp_output_shape(config: MLPConfig) -> None:
    net = TimeMLP(config)
    x = torch.randn(7, config.dim)
    assert net(x, torch.rand(7)).shape == (7, config.output_dim)
    y = torch.tensor([0, 1, 2, 3, -1, 0, 1]) if config.num_classes else None
    assert net(x, 0.5, y).shape == (7, config.output_dim)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_every_activation(activation: str) -> None:
    net = TimeMLP(MLPConfig(dim=3, width=8, depth=2, activation=activation))
    assert net(torch.randn(4, 3), 0.1).shape == (4, 3)


def test_mlp_default_parameter_count() -> None:
    # Default TimeMLP(dim=2): 264,962 parameters.
    assert 100_000 < count_parameters(TimeMLP(MLPConfig(dim=2))) < 500_000


# ----------------------------------------------------------------------------- U-Net


@pytest.mark.parametrize(
    "config",
    [
        UNetConfig(),  # 8x8, 1 channel, defaults
        small_unet(in_channels=3, image_size=16, channel_mults=(1, 2, 2)),
        small_unet(in_channels=3, image_size=32, channel_mults=(1, 2, 2), attention=True),
        small_unet(image_size=8, num_res_blocks=2, num_classes=10, dropout=0.1),
    ],
    ids=["8x8-c1-default", "16x16-c3", "32x32-c3-attn", "8x8-2blocks-classes"],
)
def test_unet_output_shape_and_zero_init(config: UNetConfig) -> None:
    net = UNet(config)
    s, c = config.image_size, config.in_channels
    x = torch.randn(2, c, s, s)
    y = torch.tensor([3, -1]) if config.num_classes else None
    out = net(x, torch.rand(2), y)
    assert out.shape == (2, c, s, s)
    assert torch.equal(out, torch.zeros_like(out))  # zero-initialised output conv


def test_unet_default_parameter_count() -> None:
    # Default 8x8 UNet (base 32, mults (1, 2), 1 res block, time_dim 128): 646,561 parameters.
    assert count_parameters(UNet(UNetConfig())) < 1_000_000


# ----------------------------------------------------------------------------- shared behaviour


def _mlp() -> TimeMLP:
    return TimeMLP(MLPConfig(dim=3, width=32, depth=3, num_classes=4))


def _unet() -> UNet:
    return perturb_(UNet(small_unet(image_size=8, attention=True, num_classes=4)))


NETS = {"mlp": (_mlp, (3,)), "unet": (_unet, (1, 8, 8))}


@pytest.mark.parametrize("kind", sorted(NETS))
def test_scalar_time_broadcasts(kind: str) -> None:
    make, shape = NETS[kind]
    torch.manual_seed(0)
    net = make().eval()
    x = torch.randn(4, *shape)
    ref = net(x, torch.full((4,), 0.3))
    assert ref.abs().max() > 0
    assert torch.equal(net(x, 0.3), ref)
    assert torch.equal(net(x, torch.tensor(0.3)), ref)
    assert not torch.allclose(net(x, 0.7), ref)  # and time actually matters


@pytest.mark.parametrize("kind", sorted(NETS))
def test_batch_independence(kind: str) -> None:
    make, shape = NETS[kind]
    torch.manual_seed(0)
    net = make().double().eval()
    x = torch.randn(5, *shape, dtype=torch.float64)
    t = torch.rand(5, dtype=torch.float64)
    y = torch.tensor([0, 1, -1, 3, 2])
    batch = net(x, t, y)
    for i in range(5):
        single = net(x[i : i + 1], t[i : i + 1], y[i : i + 1])
        assert torch.allclose(batch[i : i + 1], single, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("kind", sorted(NETS))
def test_class_conditioning(kind: str) -> None:
    make, shape = NETS[kind]
    torch.manual_seed(0)
    net = perturb_(make(), seed=1).eval()  # perturbed so labels visibly change the output
    x = torch.randn(4, *shape)
    out_none = net(x, 0.5)
    assert torch.equal(out_none, net(x, 0.5, torch.full((4,), -1)))
    assert torch.equal(out_none, net(x, 0.5, None))
    mixed = net(x, 0.5, torch.tensor([-1, 0, -1, 2]))
    assert torch.equal(mixed[[0, 2]], out_none[[0, 2]])
    a = net(x, 0.5, torch.zeros(4, dtype=torch.long))
    b = net(x, 0.5, torch.ones(4, dtype=torch.long))
    assert not torch.allclose(a, b)
    assert not torch.allclose(a, out_none)


def test_mlp_gradient_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    net = TimeMLP(MLPConfig(dim=3, width=16, depth=3, num_classes=2))
    x = torch.randn(8, 3)
    loss = net(x, torch.rand(8), torch.tensor([0, 1, -1, 0, 1, -1, 0, 1])).pow(2).mean()
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_unet_gradient_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    net = UNet(small_unet(image_size=8, attention=True, num_classes=2, num_res_blocks=2))
    x = torch.randn(4, 1, 8, 8)
    t = torch.rand(4)
    y = torch.tensor([0, 1, -1, 1])
    opt = torch.optim.SGD(net.parameters(), lr=0.1)

    def step() -> None:
        opt.zero_grad()
        (net(x, t, y) - x).pow(2).mean().backward()

    # First backward: the output conv is zero, so only it receives a gradient.
    step()
    for name, p in net.named_parameters():
        nonzero = p.grad is not None and bool(p.grad.abs().sum() > 0)
        assert nonzero == name.startswith("conv_out."), name
    opt.step()
    # After one step the output conv is non-zero and every parameter gets a gradient.
    step()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# ----------------------------------------------------------------------------- validation


def test_mlp_rejects_bad_inputs() -> None:
    net = TimeMLP(MLPConfig(dim=2, width=8, depth=2))
    with pytest.raises(ValueError, match=r"\(B, dim\) = \(B, 2\)"):
        net(torch.randn(4, 3), 0.5)
    with pytest.raises(ValueError, match=r"\(B, dim\)"):
        net(torch.randn(4), 0.5)
    with pytest.raises(ValueError, match=r"\(B, dim\)"):
        net(torch.randn(4, 2, 1), 0.5)
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        net(torch.randn(4, 2), torch.rand(3))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        net(torch.randn(4, 2), 1.5)
    with pytest.raises(ValueError, match="without class conditioning"):
        net(torch.randn(4, 2), 0.5, torch.zeros(4, dtype=torch.long))


def test_mlp_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown activation 'swish'.*gelu.*relu.*silu"):
        MLPConfig(dim=2, activation="swish")
    with pytest.raises(ValueError, match="unknown time embedding 'learned'.*fourier.*sinusoidal"):
        MLPConfig(dim=2, time_embedding="learned")
    with pytest.raises(ValueError, match="depth"):
        MLPConfig(dim=2, depth=0)
    with pytest.raises(ValueError, match="dim"):
        MLPConfig(dim=0)
    with pytest.raises(ValueError, match="even"):
        MLPConfig(dim=2, time_dim=63)


def test_unet_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match=re.escape("divisible by 2**(len(channel_mults) - 1) = 4")):
        UNetConfig(image_size=10, channel_mults=(1, 2, 2))
    with pytest.raises(ValueError, match="groups"):
        UNetConfig(base_channels=12, groups=8)
    with pytest.raises(ValueError, match="channel_mults"):
        UNetConfig(channel_mults=())
    with pytest.raises(ValueError, match="dropout"):
        UNetConfig(dropout=1.0)
    with pytest.raises(ValueError, match="unknown time embedding"):
        UNetConfig(time_embedding="nope")


def test_unet_rejects_bad_inputs() -> None:
    net = UNet(small_unet(image_size=8, num_classes=3))
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"in_channels=3"):
        net(torch.randn(2, 3, 8, 8), 0.5)
    with pytest.raises(ValueError, match="image_size"):
        net(torch.randn(2, 1, 16, 16), 0.5)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        net(torch.randn(2, 64), 0.5)
    with pytest.raises(ValueError, match=r"\[0, 2\] or be -1"):
        net(x, 0.5, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"\[0, 2\] or be -1"):
        net(x, 0.5, torch.tensor([-2, 0]))
    with pytest.raises(ValueError, match="integer"):
        net(x, 0.5, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        net(x, 0.5, torch.tensor([0, 1, 2]))
    unconditional = UNet(small_unet(image_size=8))
    with pytest.raises(ValueError, match="num_classes"):
        unconditional(x, 0.5, torch.tensor([0, 1]))


@pytest.mark.parametrize(("h", "w"), [(28, 28), (5, 12), (8, 8), (1, 31)])
def test_padding_to_the_working_side_is_undone_by_cropping(h: int, w: int) -> None:
    from genlab.networks.sizing import crop_image, pad_image, working_side

    side = working_side(h, w)
    assert side >= max(h, w, 8) and side & (side - 1) == 0 and (side == 8 or side // 2 < max(h, w))
    x = torch.randn(2, 3, h, w) + 5.0  # nonzero everywhere, so the zeros below are the padding
    padded = pad_image(x, side)
    assert padded.shape == (2, 3, side, side)
    assert torch.equal(crop_image(padded, h, w), x)
    assert int((padded == 0).sum()) == 2 * 3 * (side * side - h * w)


def test_time_mlp_one_time_for_the_batch_equals_a_time_per_row() -> None:
    """With one time for the whole batch (a solver step) the MLP computes the time features
    once and broadcasts them: the same field and the same Jacobian as a time per row."""
    from genlab.networks.mlp import MLPConfig, TimeMLP

    torch.manual_seed(0)
    net = TimeMLP(MLPConfig(dim=3, width=32, depth=3)).double()
    x = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    shared = torch.tensor(0.375, dtype=torch.float64).expand(7)  # stride 0: the broadcast path
    per_row = torch.full((7,), 0.375, dtype=torch.float64)  # a time per row: the general path
    assert shared.stride(0) == 0 and per_row.stride(0) == 1
    a, b = net(x, shared), net(x, per_row)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    (ga,) = torch.autograd.grad(a[:, 0].sum(), x)
    (gb,) = torch.autograd.grad(b[:, 0].sum(), x)
    torch.testing.assert_close(ga, gb, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(net(x, 0.375), b, rtol=1e-12, atol=1e-12)  # a float is one time too
