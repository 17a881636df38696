"""Mathematical checks of the VAE (ELBO, IWAE, KL) and the VQ-VAE (quantiser, straight-through)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genlab.data import load_digits
from genlab.models.vae import VAE, gaussian_kl
from genlab.models.vqvae import VQVAE, VectorQuantizer

DT = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------
# KL
# --------------------------------------------------------------------------------------


def test_gaussian_kl_matches_monte_carlo() -> None:
    g = _gen(0)
    mu = torch.randn(4, 3, generator=g, dtype=DT)
    logvar = 0.8 * torch.randn(4, 3, generator=g, dtype=DT)
    n = 200_000
    std = torch.exp(0.5 * logvar)
    z = mu + std * torch.randn(n, 4, 3, generator=g, dtype=DT)  # (n, B, L) from q
    log_q = torch.distributions.Normal(mu, std).log_prob(z).sum(-1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    terms = log_q - log_p  # (n, B)
    est, se = terms.mean(0), terms.std(0) / math.sqrt(n)
    kl = gaussian_kl(mu, logvar)
    assert kl.shape == (4,)
    assert torch.all((est - kl).abs() < 5 * se), (est, kl, se)
    assert torch.allclose(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))


# --------------------------------------------------------------------------------------
# Linear-Gaussian VAE: p(z) = N(0, I), p(x | z) = N(W z + b, s^2 I), p(x) = N(b, W W^T + s^2 I)
# --------------------------------------------------------------------------------------

D, L, S = 3, 2, 0.5


def _linear_gaussian(mean_shift: float = 0.0, logvar_shift: float = 0.0) -> tuple[VAE, torch.Tensor]:
    """A VAE with linear networks; the encoder is the exact posterior, optionally perturbed.

    W has orthogonal columns, so W^T W is diagonal and so is the posterior covariance
    Sigma = (I + W^T W / s^2)^-1; the posterior mean is Sigma W^T (x - b) / s^2.
    """
    q, _ = torch.linalg.qr(torch.randn(D, L, generator=_gen(1), dtype=DT))
    W = q * torch.tensor([1.5, 0.7], dtype=DT)  # orthogonal columns of different lengths
    b = torch.tensor([0.3, -0.2, 0.5], dtype=DT)
    sigma = 1.0 / (1.0 + (W * W).sum(0) / S**2)  # (L,) diagonal posterior covariance
    A = sigma[:, None] * W.T / S**2  # (L, D): posterior mean = A (x - b)
    enc = nn.Linear(D, 2 * L).to(DT)
    dec = nn.Linear(L, D).to(DT)
    with torch.no_grad():
        enc.weight.copy_(torch.cat([A, torch.zeros(L, D, dtype=DT)]))
        enc.bias.copy_(torch.cat([-A @ b + mean_shift, sigma.log() + logvar_shift]))
        dec.weight.copy_(W)
        dec.bias.copy_(b)
    vae = VAE((D,), latent_dim=L, decoder_std=S, encoder=enc, decoder=dec).to(DT)
    marginal = torch.distributions.MultivariateNormal(b, W @ W.T + S**2 * torch.eye(D, dtype=DT))
    return vae, marginal  # type: ignore[return-value]


def _data(n: int, seed: int = 2) -> torch.Tensor:
    return 1.5 * torch.randn(n, D, generator=_gen(seed), dtype=DT)


def test_exact_posterior_bounds_are_tight() -> None:
    vae, marginal = _linear_gaussian()
    x = _data(8)
    log_px = marginal.log_prob(x)
    # log p(x, z) - log q(z | x) = log p(x) for every z: a single draw is exact.
    for k in (1, 5):
        assert torch.allclose(vae.iwae_bound(x, k, _gen(3)), log_px, atol=1e-10, rtol=0)
    # The ELBO with analytic KL: E_q[log p(x | z)] is a Monte-Carlo average.
    with torch.no_grad():
        elbo = vae.elbo(x, _gen(4), k=20_000)
    assert torch.allclose(elbo, log_px, atol=0.03, rtol=0)


def _diag_kl(m1: torch.Tensor, v1: torch.Tensor, m2: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
    """KL(N(m1, diag v1) || N(m2, diag v2)) summed over the last dim."""
    return 0.5 * (v1 / v2 + (m1 - m2) ** 2 / v2 - 1.0 + (v2 / v1).log()).sum(-1)


def test_perturbed_encoder_elbo_below_log_px_by_posterior_kl() -> None:
    exact, marginal = _linear_gaussian()
    vae, _ = _linear_gaussian(mean_shift=0.4, logvar_shift=0.6)
    x = _data(8)
    log_px = marginal.log_prob(x)
    with torch.no_grad():
        m_true, lv_true = exact.encode(x)
        m, lv = vae.encode(x)
        gap = _diag_kl(m, lv.exp(), m_true, lv_true.exp())  # ELBO = log p(x) - KL(q || p(z | x))
        elbo = vae.elbo(x, _gen(5), k=20_000)
    assert torch.all(gap > 0.1)
    assert torch.all(elbo < log_px - 0.05)
    assert torch.allclose(elbo, log_px - gap, atol=0.03, rtol=0)


def test_iwae_non_decreasing_in_k_and_k1_is_the_elbo() -> None:
    vae, marginal = _linear_gaussian(mean_shift=0.4, logvar_shift=0.6)
    x = _data(200, seed=6)
    log_px = marginal.log_prob(x).mean()
    with torch.no_grad():
        means = {
            k: torch.stack([vae.iwae_bound(x, k, _gen(10 + s), chunk=16).mean() for s in range(4)]).mean()
            for k in (1, 5, 50)
        }
        elbo = vae.elbo(x, _gen(7), k=2_000).mean()
        # IWAE_1 is an unbiased estimate of the ELBO: compare with many single draws.
        reps = 200
        one = vae.iwae_bound(x.repeat(reps, 1), 1, _gen(8)).reshape(reps, -1)  # (reps, B)
    se = one.mean(1).std() / math.sqrt(reps)
    assert abs(float(one.mean() - elbo)) < 5 * float(se) + 1e-3
    assert means[1] < means[5] < means[50] <= log_px + 1e-3
    assert float(log_px - means[1]) > 0.1  # the perturbed encoder leaves a visible gap


def test_bernoulli_log_likelihood_matches_closed_form() -> None:
    torch.manual_seed(0)
    vae = VAE((4,), latent_dim=2, hidden=8, likelihood="bernoulli").to(DT)
    x = torch.tensor([[-1.0, 1.0, 1.0, -1.0], [1.0, -1.0, 0.0, 1.0]], dtype=DT)
    z = torch.randn(2, 2, generator=_gen(0), dtype=DT)
    with torch.no_grad():
        p = torch.sigmoid(vae.decode(z))
        y = (x + 1) / 2
        expected = (y * p.log() + (1 - y) * (1 - p).log()).sum(1)
        assert torch.allclose(vae.log_likelihood(x, z), expected, atol=1e-12)
        assert vae.generate(3, _gen(1)).abs().max() <= 1.0


def test_learned_std_enters_the_gaussian_likelihood() -> None:
    torch.manual_seed(0)
    vae = VAE((3,), latent_dim=2, hidden=8).to(DT)
    with torch.no_grad():
        vae.log_std.fill_(math.log(0.3))  # type: ignore[union-attr]
        z = torch.randn(5, 2, generator=_gen(0), dtype=DT)
        x = torch.randn(5, 3, generator=_gen(1), dtype=DT)
        expected = torch.distributions.Normal(vae.decode(z), 0.3).log_prob(x).sum(1)
        assert torch.allclose(vae.log_likelihood(x, z), expected, atol=1e-12)


# --------------------------------------------------------------------------------------
# Vector quantiser
# --------------------------------------------------------------------------------------


def _quantizer(k: int = 6, d: int = 3) -> VectorQuantizer:
    vq = VectorQuantizer(k, d).to(DT)
    with torch.no_grad():
        vq.codebook.copy_(torch.randn(k, d, generator=_gen(0), dtype=DT))
    return vq


def test_quantizer_picks_the_nearest_code() -> None:
    vq = _quantizer()
    z_e = torch.randn(4, 3, 5, 5, generator=_gen(1), dtype=DT)
    z_q, idx, _, _ = vq(z_e)
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, 3)
    with torch.no_grad():
        brute = torch.tensor(
            [min(range(6), key=lambda k: float(((v - vq.codebook[k]) ** 2).sum())) for v in flat]
        )
    assert torch.equal(idx.reshape(-1), brute)
    assert torch.allclose(z_q.permute(0, 2, 3, 1).reshape(-1, 3), vq.codebook[brute])
    v = torch.randn(7, 3, generator=_gen(2), dtype=DT)  # (B, D) input
    z_q2, idx2, _, _ = vq(v)
    assert idx2.shape == (7,) and torch.allclose(z_q2, vq.codebook[idx2])


def test_straight_through_copies_the_gradient() -> None:
    vq = _quantizer()
    decoder = nn.Conv2d(3, 2, 3, padding=1).to(DT)

    def objective(z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(decoder(z)).pow(2).sum()

    z_e = torch.randn(2, 3, 4, 4, generator=_gen(3), dtype=DT, requires_grad=True)
    z_q_st, idx, _, _ = vq(z_e)
    (grad_e,) = torch.autograd.grad(objective(z_q_st), z_e)
    z_q = vq.lookup(idx).detach().requires_grad_(True)
    (grad_q,) = torch.autograd.grad(objective(z_q), z_q)
    assert grad_e.abs().max() > 0
    assert torch.allclose(grad_e, grad_q, atol=1e-14)


def test_codebook_and_commitment_gradients_go_to_separate_parameters() -> None:
    vq = _quantizer()
    encoder = nn.Conv2d(1, 3, 1).to(DT)
    x = torch.randn(2, 1, 4, 4, generator=_gen(4), dtype=DT)
    _, _, codebook_loss, commitment = vq(encoder(x))
    enc_grads = torch.autograd.grad(
        codebook_loss, [*encoder.parameters()], allow_unused=True, retain_graph=True
    )
    (book_grad,) = torch.autograd.grad(codebook_loss, [vq.codebook], retain_graph=True)
    assert all(g is None or g.abs().max() == 0 for g in enc_grads)
    assert book_grad.abs().max() > 0
    (book_grad,) = torch.autograd.grad(commitment, [vq.codebook], allow_unused=True, retain_graph=True)
    enc_grads = torch.autograd.grad(commitment, [*encoder.parameters()])
    assert book_grad is None or book_grad.abs().max() == 0
    assert all(g.abs().max() > 0 for g in enc_grads)
    # both are the same number: the mean squared distance to the chosen codes
    assert torch.allclose(codebook_loss, commitment)


def test_perplexity_and_usage() -> None:
    vq = VectorQuantizer(8, 2)
    uniform = torch.arange(8).repeat(5)
    assert vq.perplexity(uniform) == pytest.approx(8.0)
    assert vq.perplexity(torch.full((3, 4, 4), 5)) == pytest.approx(1.0)
    assert vq.perplexity(torch.tensor([0, 0, 1, 1])) == pytest.approx(2.0)
    assert vq.usage(uniform) == 1.0 and vq.usage(torch.tensor([0, 3, 3])) == 0.25


def test_vqvae_prior_counts_codes_with_add_one_smoothing() -> None:
    torch.manual_seed(0)
    model = VQVAE((1, 8, 8), num_codes=5, code_dim=2, hidden=8, downsample=4)  # 2x2 grid
    x = torch.rand(6, 1, 8, 8, generator=_gen(0)) * 2 - 1
    log_probs = model.fit_prior(x)
    idx = model.encode(x).flatten(1)  # (6, 4)
    counts = torch.ones(4, 5)
    for pos in range(4):
        for k in idx[:, pos]:
            counts[pos, k] += 1
    assert torch.allclose(log_probs, (counts / counts.sum(1, keepdim=True)).log(), atol=1e-6)
    s1, s2 = model.generate(3, _gen(1)), model.generate(3, _gen(1))
    assert s1.shape == (3, 1, 8, 8) and torch.equal(s1, s2)


# --------------------------------------------------------------------------------------
# Training on digits
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return load_digits("train").images[:256]


def _train(
    model: nn.Module, x: torch.Tensor, steps: int, lr: float, codebook_lr: float | None = None
) -> tuple[float, float]:
    def full_loss() -> float:
        with torch.no_grad():
            return float(model.loss(x, _gen(99))["loss"])  # type: ignore[operator]

    before = full_loss()
    if codebook_lr is None:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    else:  # the codes move by ~lr per Adam step, far slower than the encoder outputs
        rest = [p for name, p in model.named_parameters() if "codebook" not in name]
        book = [p for name, p in model.named_parameters() if "codebook" in name]
        opt = torch.optim.Adam([{"params": rest}, {"params": book, "lr": codebook_lr}], lr=lr)
    g = _gen(5)
    for step in range(steps):
        batch = x[(step * 64) % 256 :][:64]
        loss = model.loss(batch, g)["loss"]  # type: ignore[operator]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return before, full_loss()


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_vae_training_lowers_the_loss(digits: torch.Tensor, likelihood: str) -> None:
    torch.manual_seed(0)
    model = VAE((1, 8, 8), latent_dim=8, hidden=16, likelihood=likelihood)
    before, after = _train(model, digits, 40, 3e-3)
    assert after < before - 0.05 * abs(before), (before, after)
    out = model.loss(digits[:8], _gen(0))
    assert set(out) == {"loss", "recon", "kl", "elbo"}


def test_vqvae_training_lowers_the_loss(digits: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = VQVAE((1, 8, 8), num_codes=16, code_dim=8, hidden=16)
    before, after = _train(model, digits, 40, 2e-3, codebook_lr=2e-2)
    assert after < 0.8 * before, (before, after)
    out = model.loss(digits[:8])
    assert set(out) == {"loss", "recon", "codebook", "commitment", "perplexity", "usage"}
    assert 0 < float(out["usage"]) <= 1 and 1 <= float(out["perplexity"]) <= 16


def test_vqvae_loss_weights_the_commitment_by_beta_and_trains_the_codes_on_the_codebook_term() -> None:
    """VQVAE.loss = recon + ||sg(z_e) - e||^2 + beta ||z_e - sg(e)||^2 (van den Oord et al.):
    the codes' gradient is the codebook term's alone, in closed form
    d/de_k = 2 / (N D) sum_{i: k(i) = k} (e_k - z_e,i) (N vectors of D entries; the
    reconstruction reaches no code through the straight-through estimator), and the encoder's
    gradient is the reconstruction's plus beta times the commitment's."""
    torch.manual_seed(0)
    beta = 0.37
    model = VQVAE((1, 8, 8), num_codes=6, code_dim=4, hidden=8, beta=beta).double()
    model.codebook_initialised.fill_(True)  # keep the random codes (no first-batch initialisation)
    x = torch.rand(5, 1, 8, 8, dtype=torch.float64) * 2 - 1
    out = model.loss(x)
    enc = list(model.encoder.parameters())
    codebook = model.quantizer.codebook
    grads = torch.autograd.grad(out["loss"], [*enc, codebook], retain_graph=True)
    z_e = model._encode(x).detach()
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, 4)  # (N, D)
    k = model.quantizer.nearest(z_e).reshape(-1)
    expected = torch.zeros_like(codebook)
    expected.index_add_(0, k, 2.0 * (codebook.detach()[k] - flat) / flat.numel())
    torch.testing.assert_close(grads[-1], expected, rtol=1e-10, atol=1e-12)
    # the encoder: recon + beta * commitment, each differentiated on its own
    z_e = model._encode(x)
    z_q_st, _, _, commitment = model.quantizer(z_e)
    recon = torch.nn.functional.mse_loss(model._decode(z_q_st), x)
    want = torch.autograd.grad(recon + beta * commitment, enc, retain_graph=True)
    for got, w in zip(grads[:-1], want, strict=True):
        torch.testing.assert_close(got, w, rtol=1e-10, atol=1e-12)
    unweighted = torch.autograd.grad(recon + commitment, enc)
    assert not all(torch.allclose(g, u) for g, u in zip(grads[:-1], unweighted, strict=True))


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"data_shape": (1, 0, 7)}, "data_shape"),  # any H x W >= 1 (7 x 7, 8 x 16) is fine
        ({"data_shape": (1, 8, 16, 2)}, "data_shape"),
        ({"data_shape": (8, 8)}, "data_shape"),
        ({"data_shape": (2,), "latent_dim": 0}, "latent_dim"),
        ({"data_shape": (2,), "beta": -1.0}, "beta"),
        ({"data_shape": (2,), "likelihood": "poisson"}, "bernoulli, gaussian"),
        ({"data_shape": (2,), "decoder_std": -1.0}, "decoder_std"),
        ({"data_shape": (2,), "likelihood": "bernoulli", "decoder_std": 0.5}, "decoder_std"),
    ],
)
def test_vae_rejects_bad_config(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        VAE(**kwargs)


def test_bad_inputs_raise_value_errors() -> None:
    vae = VAE((1, 8, 8), hidden=8)
    with pytest.raises(ValueError, match="batch"):
        vae.loss(torch.zeros(4, 1, 16, 16))
    with pytest.raises(ValueError, match="x"):
        vae.elbo(torch.zeros(4, 64))
    with pytest.raises(ValueError, match="k"):
        vae.iwae_bound(torch.zeros(2, 1, 8, 8), 0)
    with pytest.raises(ValueError, match="z"):
        vae.decode(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="steps"):
        vae.interpolate(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8), 1)
    with pytest.raises(ValueError, match="mu and logvar"):
        gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="num_codes"):
        VectorQuantizer(0, 4)
    with pytest.raises(ValueError, match="downsample"):
        VQVAE((1, 8, 8), downsample=3)
    with pytest.raises(ValueError, match="data_shape"):
        VQVAE((12, 12))
    model = VQVAE((1, 8, 8), hidden=8)
    with pytest.raises(ValueError, match="batch"):
        model.loss(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="fit_prior"):
        model.generate(2)
    with pytest.raises(ValueError, match="z_e"):
        model.quantizer(torch.zeros(2, 5, 4, 4))


def test_kl_warmup_weights_the_kl_by_beta_times_the_share_of_warmup_steps_seen() -> None:
    """loss = -(recon - beta min(1, k / W) kl) at the k-th training call (Bowman et al. 2016),
    beta at every call after W; evaluation calls do not count; the count is in the state."""
    torch.manual_seed(0)
    vae = VAE((2,), latent_dim=2, hidden=8, beta=0.5, kl_warmup_steps=4)
    x = torch.randn(16, 2)
    for k in range(1, 7):
        out = vae.loss(x, torch.Generator().manual_seed(k))
        want = -(out["recon"] - 0.5 * min(1.0, k / 4) * out["kl"])
        torch.testing.assert_close(out["loss"].detach(), want)
    vae.eval()
    vae.loss(x)
    assert int(vae.state_dict()["kl_steps"]) == 6
    assert "kl_steps" not in VAE((2,), latent_dim=2, hidden=8).state_dict()  # no state without warm-up


class _FixedPosterior(nn.Module):
    """An encoder whose q(z | x) = N(mu, diag exp(logvar)) is the same for every x."""

    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor) -> None:
        super().__init__()
        self.mu, self.logvar = nn.Parameter(mu.clone()), nn.Parameter(logvar.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mu, self.logvar]).expand(x.shape[0], -1)


def test_reparameterised_gradient_of_the_reconstruction_term_is_the_exact_gradient() -> None:
    """The reparameterisation trick: z = mu + sigma eps moves the parameters of q out of the
    expectation, so the gradient of the k-draw average is unbiased for grad E_q[log p(x | z)].
    For a linear decoder W z + b with std s the expectation is closed-form,
    -(||x - W mu - b||^2 + sum_j ||W_:j||^2 sigma_j^2) / (2 s^2) + const, and the pathwise gradient
    of 100000 draws matches its gradient in mu and logvar within 5 standard errors."""
    g = _gen(7)
    lat, dim, s = 3, 4, 0.7
    mu, logvar = torch.randn(lat, generator=g, dtype=DT), 0.5 * torch.randn(lat, generator=g, dtype=DT)
    dec = nn.Linear(lat, dim).double()
    enc = _FixedPosterior(mu, logvar)
    vae = VAE((dim,), latent_dim=lat, decoder_std=s, encoder=enc, decoder=dec).double()
    x = torch.randn(1, dim, generator=g, dtype=DT)
    k = 100_000
    z = vae._draw(enc.mu[None], enc.logvar[None], k, _gen(8))  # (k, 1, L)
    per_draw = vae._log_lik_many(x, z)[:, 0]  # (k,)
    gmu_all, glv_all = torch.autograd.grad(per_draw.mean(), [enc.mu, enc.logvar])
    w, b = dec.weight.detach(), dec.bias.detach()
    # one draw's pathwise gradient, for the standard errors: d/dz = W^T (x - W z - b) / s^2,
    # dz/dmu = 1, dz/dlogvar = sigma eps / 2
    zd = z.detach()[:, 0]
    dz = (x - zd @ w.T - b) @ w / s**2  # (k, L)
    gm, gl = dz, dz * 0.5 * (zd - mu)
    r = x[0] - w @ mu - b
    exact_mu = w.T @ r / s**2
    exact_logvar = -0.5 * (w**2).sum(0) * torch.exp(logvar) / s**2
    assert torch.all((gmu_all - exact_mu).abs() < 5 * gm.std(0) / math.sqrt(k))
    assert torch.all((glv_all - exact_logvar).abs() < 5 * gl.std(0) / math.sqrt(k))
