"""The VAE's second-stage prior: a Gaussian mixture fitted by EM to the aggregate posterior.
Its density is the mixture's, EM never lowers the likelihood and recovers a known mixture, and
a VAE that samples from it also scores its bounds with it."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genlab.models.latent_prior import GaussianMixturePrior
from genlab.models.vae import VAE

D64 = torch.float64
PI = torch.tensor([0.2, 0.5, 0.3], dtype=D64)
MEANS = torch.tensor([[-4.0, 0.0], [0.0, 3.0], [4.0, -1.0]], dtype=D64)
STDS = torch.tensor([[0.5, 1.0], [1.0, 0.3], [0.7, 0.7]], dtype=D64)


def _draw(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    k = torch.multinomial(PI, n, replacement=True, generator=g)
    return MEANS[k] + STDS[k] * torch.randn(n, 2, generator=g, dtype=D64)


def test_mixture_log_prob_is_the_mixture_density() -> None:
    prior = GaussianMixturePrior(3, 2).double()
    prior.logits.copy_(PI.log() + 1.7)  # unnormalised logits: log_softmax normalises them
    prior.means.copy_(MEANS)
    prior.log_vars.copy_(2 * STDS.log())
    ref = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(PI),
        torch.distributions.Independent(torch.distributions.Normal(MEANS, STDS), 1),
    )
    z = torch.randn(50, 2, dtype=D64, generator=torch.Generator().manual_seed(0)) * 3
    assert torch.allclose(prior.log_prob(z), ref.log_prob(z), atol=1e-12)


def test_em_never_lowers_the_likelihood_and_recovers_a_known_mixture() -> None:
    """Dempster et al.: every EM iteration keeps or raises the mean log-likelihood; on 20000
    draws of three separated components it finds their weights, means and stds (sorted by the
    first coordinate) within a few standard errors, and its likelihood is that of the truth."""
    z = _draw(20_000, 1)
    prior = GaussianMixturePrior(3, 2).double()
    history = prior.fit(z, iters=100, generator=torch.Generator().manual_seed(2))
    steps = torch.tensor(history)
    assert bool((steps[1:] - steps[:-1] >= -1e-9).all())
    order = prior.means[:, 0].argsort()
    pi = torch.softmax(prior.logits, 0)[order]
    assert torch.allclose(pi, PI, atol=5 * math.sqrt(0.25 / 20_000))
    assert torch.allclose(prior.means[order], MEANS, atol=0.05)
    assert torch.allclose(torch.exp(0.5 * prior.log_vars[order]), STDS, rtol=0.05)
    truth = GaussianMixturePrior(3, 2).double()
    truth.logits.copy_(PI.log())
    truth.means.copy_(MEANS)
    truth.log_vars.copy_(2 * STDS.log())
    assert history[-1] >= float(truth.log_prob(z).mean()) - 1e-6  # EM's optimum is at least as likely


def test_mixture_samples_have_the_mixtures_moments() -> None:
    prior = GaussianMixturePrior(3, 2).double()
    prior.logits.copy_(PI.log())
    prior.means.copy_(MEANS)
    prior.log_vars.copy_(2 * STDS.log())
    n = 200_000
    x = prior.sample(n, torch.Generator().manual_seed(3))
    mean = (PI[:, None] * MEANS).sum(0)
    second = (PI[:, None] * (MEANS**2 + STDS**2)).sum(0)
    var = second - mean**2
    assert torch.all((x.mean(0) - mean).abs() < 5 * (var / n).sqrt())


class _Linear(nn.Module):
    """A fixed encoder: q(z | x) = N(A x, diag exp(logvar)) with A = the first L coordinates."""

    def __init__(self, lat: int) -> None:
        super().__init__()
        self.lat = lat
        self.logvar = nn.Parameter(torch.full((lat,), -1.0, dtype=D64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, : self.lat], self.logvar.expand(x.shape[0], -1)], 1)


def _vae() -> tuple[VAE, torch.Tensor]:
    torch.manual_seed(0)
    vae = VAE(
        (3,),
        latent_dim=2,
        decoder_std=0.5,
        encoder=_Linear(2),
        decoder=nn.Linear(2, 3),
        prior="gmm",
        prior_components=3,
    ).double()
    x = torch.cat([_draw(4000, 4), torch.randn(4000, 1, dtype=D64)], 1)
    return vae, x


def test_the_fitted_prior_scores_the_bounds_and_the_training_loss_keeps_n01() -> None:
    """Before fit_prior the VAE is the N(0, I) one; after it, the IWAE bound is
    log mean_k p(x | z_k) p(z_k) / q(z_k | x) with the mixture's p(z) (rebuilt from the same
    draws), the ELBO's KL is the Monte-Carlo average of log q - log p, and the training loss is
    unchanged (stage one's prior is N(0, I))."""
    vae, x = _vae()
    xb = x[:16]
    assert torch.allclose(
        vae.log_prior(torch.zeros(1, 2, dtype=D64)), torch.tensor([-math.log(2 * math.pi)], dtype=D64)
    )
    before = vae.loss(xb, torch.Generator().manual_seed(5))["loss"]
    vae.fit_prior(x)
    assert vae.uses_fitted_prior
    after = vae.loss(xb, torch.Generator().manual_seed(5))["loss"]
    assert torch.equal(before, after)
    k = 7
    bound = vae.iwae_bound(xb, k, torch.Generator().manual_seed(6))
    mu, logvar = vae.encode(xb)
    z = vae._draw(mu, logvar, k, torch.Generator().manual_seed(6))
    log_q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    want = torch.logsumexp(vae._log_lik_many(xb, z) + vae.prior_gmm.log_prob(z) - log_q, 0) - math.log(k)
    assert torch.allclose(bound, want, atol=1e-10)
    recon, kl = vae.elbo_terms(xb, torch.Generator().manual_seed(6), k)
    assert torch.allclose(kl, (log_q - vae.prior_gmm.log_prob(z)).mean(0), atol=1e-10)


def test_a_vae_with_the_fitted_prior_samples_from_it() -> None:
    """With a linear decoder W z + b, the mean of the decoded samples is W E_p[z] + b under the
    fitted mixture (within 5 standard errors), not W 0 + b."""
    vae, x = _vae()
    vae.fit_prior(x)
    n = 100_000
    out = vae.generate(n, torch.Generator().manual_seed(7))
    pi = torch.softmax(vae.prior_gmm.logits, 0)
    ez = (pi[:, None] * vae.prior_gmm.means).sum(0)
    want = vae.decoder.weight @ ez + vae.decoder.bias
    se = out.std(0) / math.sqrt(n)
    assert torch.all((out.mean(0) - want).abs() < 5 * se)
    assert (want - vae.decoder.bias).abs().max() > 20 * se.max()  # far from the N(0, I) mean


def test_the_fitted_prior_travels_with_the_state_dict() -> None:
    vae, x = _vae()
    vae.fit_prior(x)
    state = vae.state_dict()
    assert {"prior_fitted", "prior_gmm.logits", "prior_gmm.means", "prior_gmm.log_vars"} <= set(state)
    fresh, _ = _vae()
    fresh.load_state_dict(state)
    assert torch.equal(
        fresh.generate(5, torch.Generator().manual_seed(8)), vae.generate(5, torch.Generator().manual_seed(8))
    )


def test_prior_errors() -> None:
    with pytest.raises(ValueError, match="unknown prior .flow."):
        VAE((2,), prior="flow")
    with pytest.raises(ValueError, match="prior='gmm'"):
        VAE((2,)).fit_prior(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="N >= 5"):
        GaussianMixturePrior(5, 2).fit(torch.zeros(3, 2))
