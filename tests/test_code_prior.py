"""The VQ-VAE's autoregressive code prior (networks/pixelcnn.py, models/code_prior.py): the
masks are causal (checked by gradients), the fit learns a distribution with strong
dependencies between positions that the per-position prior cannot hold, and the VQ-VAE samples
through it."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.app.config import saved_run_config
from genlab.app.runs import resolve_config
from genlab.models.code_prior import PixelCNNPrior
from genlab.models.registry import DataInfo
from genlab.models.vqvae import VQVAE
from genlab.networks.pixelcnn import MaskedConv2d, PixelCNN, default_kernel


@pytest.mark.parametrize(("grid", "layers"), [((4, 4), 3), ((5, 3), 2), ((8, 8), 3)])
def test_pixelcnn_output_never_depends_on_later_positions(grid: tuple[int, int], layers: int) -> None:
    """d logits(i, j) / d input(i', j') = 0 for every (i', j') at or after (i, j) in raster
    order; and it is not 0 for the left neighbour (the network does look back)."""
    torch.manual_seed(0)
    net = PixelCNN(num_codes=5, hidden=8, layers=layers, kernel=default_kernel(grid)).double()
    h, w = grid
    e = torch.randn(1, 8, h, w, dtype=torch.float64, requires_grad=True)
    out = net.body(e)  # (1, K, h, w)
    for p in range(h * w):
        i, j = divmod(p, w)
        (grad,) = torch.autograd.grad(out[0, :, i, j].sum(), e, retain_graph=True)
        reach = grad[0].abs().sum(0).flatten()  # (h * w,) dependence on each input position
        assert float(reach[p:].max()) == 0.0, (grid, p)
        if j > 0:  # the left neighbour (the end of the row above can lie in the blind spot)
            assert float(reach[p - 1]) > 0.0
    if max(grid) <= 4:  # the default kernel sees every earlier position: no blind spot
        (grad,) = torch.autograd.grad(out[0, :, h - 1, 0].sum(), e)
        assert bool((grad[0].abs().sum(0).flatten()[: (h - 1) * w] > 0).all())


def test_mask_types() -> None:
    a = MaskedConv2d("A", 1, 1, 3).mask[0, 0]
    b = MaskedConv2d("B", 1, 1, 3).mask[0, 0]
    torch.testing.assert_close(a, torch.tensor([[1.0, 1, 1], [1, 0, 0], [0, 0, 0]]))
    torch.testing.assert_close(b, torch.tensor([[1.0, 1, 1], [1, 1, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="mask_type"):
        MaskedConv2d("C", 1, 1, 3)


def copied_codes(n: int, seed: int) -> torch.Tensor:
    """Grids whose 9 positions all hold one code, 0 or 1 with probability 1/2: the entropy is
    log 2 per grid, (log 2) / 9 per position; a per-position prior puts log 2 at every one."""
    first = torch.randint(2, (n, 1, 1), generator=torch.Generator().manual_seed(seed))
    return first.expand(n, 3, 3).clone()


def test_pixelcnn_prior_learns_dependencies_between_positions() -> None:
    prior = PixelCNNPrior(4, (3, 3), hidden=16, layers=2, steps=300, batch_size=64, lr=3e-3)
    losses = prior.fit(copied_codes(512, 0))
    # the fit approaches the entropy per position, (log 2) / 9 = 0.077 nats
    nll = float(prior.nll(copied_codes(512, 1)))
    assert nll < math.log(2) / 9 + 0.03 and losses[-1] < losses[0]
    grids = prior.sample(400, torch.Generator().manual_seed(2))
    constant = (grids == grids[:, :1, :1]).flatten(1).all(1)
    assert float(constant.float().mean()) > 0.95  # independent positions: 2^-8 of them
    ones = float((grids[:, 0, 0] == 1).float().mean())
    assert abs(ones - 0.5) < 0.1  # the first position keeps its marginal
    # the fit starts from the same weights and batches: the same codes give the same prior
    again = PixelCNNPrior(4, (3, 3), hidden=16, layers=2, steps=300, batch_size=64, lr=3e-3)
    again.fit(copied_codes(512, 0))
    for p, q in zip(prior.parameters(), again.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_vqvae_fits_and_samples_through_its_pixelcnn_prior() -> None:
    torch.manual_seed(0)
    cfg = resolve_config("digits_vqvae", ["model.ae.prior_args={steps: 20, hidden: 8, layers: 2}"])
    model = cfg.model.build(DataInfo((1, 8, 8)))
    assert isinstance(model, VQVAE) and model.prior_net is not None
    # the prior's weights are not in the autoencoder's optimiser groups
    in_groups = {id(p) for g in model.param_groups() for p in g["params"]}
    assert not in_groups & {id(p) for p in model.prior_net.parameters()}
    x = torch.rand(64, 1, 8, 8) * 2 - 1
    model.eval()
    model.fit_prior(x)
    codes = model.sample_indices(6, torch.Generator().manual_seed(0))
    assert codes.shape == (6, 4, 4) and int(codes.max()) < model.num_codes
    assert model.generate(3, torch.Generator().manual_seed(0)).shape == (3, 1, 8, 8)
    assert any(k.startswith("prior_net.") for k in model.state_dict())  # the EMA copy takes "prior_*"


def test_runs_saved_before_the_pixelcnn_keep_their_independent_prior() -> None:
    old = {"data": {"name": "digits"}, "model": {"family": "vqvae", "net": {"kind": "conv"}}}
    assert saved_run_config(old).model.ae.prior == "independent"
    new = {
        "data": {"name": "digits"},
        "model": {"family": "vqvae", "net": {"kind": "conv"}, "ae": {"prior": "pixelcnn"}},
    }
    assert saved_run_config(new).model.ae.prior == "pixelcnn"
    vae = {"data": {"name": "digits"}, "model": {"family": "vae", "net": {"kind": "conv"}}}
    saved_run_config(vae)  # the VQ-VAE's setting is not pushed onto other families
