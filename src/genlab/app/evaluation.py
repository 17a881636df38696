"""Scoring a trained run: ``genlab eval`` (metrics next to their floors), ``genlab log-prob``
(log-densities of a file), the test NLL / bits per dimension, and the score that
``train.eval_every`` computes during training to keep the best weights.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab._atomic import atomic_write_json
from genlab.app.builders import IMAGE_LEVELS
from genlab.app.conditioning import run_conditioning
from genlab.app.config import Config, ConfigError, SampleConfig
from genlab.app.datasets import build_dataset, digits_classifier_applies, prior_fit_data, reference_kind
from genlab.app.runs import STEPLESS_SAMPLERS, Run, as_run, generate, load_run, sample_settings
from genlab.data.images import ImageDataset
from genlab.devices import device_of, make_generator
from genlab.models.registry import likelihood_families
from genlab.models.vae import VAEConfig

#: seeds of the reference, labels and samples that choose the best checkpoint (evaluate uses others)
SELECTION_SEED = 1_000_003


def training_evaluator(cfg: Config, dataset: Any, model: Any, run_dir: Path) -> Any:
    """The score of a model's samples during training (``train.eval_metric``, lower is
    better), which picks the best checkpoint, against a fixed reference drawn from the
    *training* data (images: the train split; 2D: draws of their own seed), never the held-out
    data that ``evaluate`` reports, and on samples of their own seed: the choice does not fit
    the final score. Fixed seeds make the scores comparable across steps."""
    from genlab.metrics import compute_metrics

    n = cfg.train.eval_n or cfg.eval.n  # by default the final evaluation's number of samples
    image = isinstance(dataset, ImageDataset)
    digits = digits_classifier_applies(cfg.data)
    metric = cfg.train.eval_metric or ("fd" if digits else "w2")
    if metric == "fd" and not digits:
        raise ConfigError("train.eval_metric=fd (from the digits classifier) needs the 8x8 data.name=digits")
    run = Run(
        cfg=cfg, model=model, dataset=dataset, step=0, run_dir=run_dir, ema=False, device=device_of(model)
    )
    ref = dataset.sample(n, torch.Generator().manual_seed(SELECTION_SEED))
    cond = run_conditioning(run, n, gen=torch.Generator().manual_seed(SELECTION_SEED + 1))
    sample = dataclasses.replace(sample_settings(cfg), seed=SELECTION_SEED + 2)

    def evaluate(current: Any) -> float:
        run.model, run.device = current, device_of(current)  # the trainer has moved it to its device
        if getattr(current, "fits_prior", False):  # the prior of the weights being scored
            current.eval()
            current.fit_prior(prior_fit_data(dataset, next(current.parameters())))
        x = generate(run, n, sample, cond=cond).x
        if metric == "fd":
            from genlab.metrics import frechet_digits_distance, get_digits_classifier

            return float(frechet_digits_distance(x, ref, get_digits_classifier()[0]))
        flat = x.flatten(1) if image else x
        return float(compute_metrics(flat, ref.flatten(1), [metric])[metric])

    return _Scorer(metric, evaluate)


@dataclasses.dataclass
class _Scorer:
    """A training evaluator that knows its metric's name (for ``metrics.jsonl`` and TensorBoard)."""

    metric: str
    score: Any

    def __call__(self, model: Any) -> float:
        return float(self.score(model))


def _reference(run: Run, n: int, gen: torch.Generator) -> tuple[torch.Tensor, Any]:
    """n rows of the held-out data (:func:`~genlab.app.datasets.build_dataset` with split
    "test": its first n rows, or n draws when it has fewer), and the training set, whose
    samples give the floor."""
    if not hasattr(run.dataset, "__len__"):  # a toy distribution: fresh samples
        return run.dataset.sample(n, gen), run.dataset
    test = build_dataset(run.cfg.data, split="test")
    rows = test.images if isinstance(test, ImageDataset) else test.data
    return (rows[:n] if len(test) >= n else test.sample(n, gen)), run.dataset


def evaluate(
    run: Run | str | Path,
    *,
    metrics: list[str] | None = None,
    n: int | None = None,
    sample: SampleConfig | None = None,
    checkpoint: str | None = None,
    device: str | torch.device | None = "auto",
) -> dict[str, Any]:
    """Metrics of ``n`` generated samples (default ``eval.n``), drawn with the settings of
    ``sample`` (default: the run's; see :func:`~genlab.app.runs.sample_settings`), against
    held-out data, each next to its floor.

    The floor is the same metric between two independent samples of the true data (for
    digits: the train split against the test split), i.e. what a perfect model would score.
    Writes ``eval.json`` in the run directory and returns its content. ``acc`` is the digits
    classifier's accuracy on the requested labels of a class-conditional run (floor: its test
    accuracy); ``straightness`` that of the ODE paths (0 = straight, constant speed).
    """
    from genlab.app.config import RUN_METRICS
    from genlab.metrics import SAMPLE_METRICS, compute_metrics

    run = as_run(run, checkpoint, device)
    sample = sample if sample is not None else sample_settings(run.cfg)
    n = n or run.cfg.eval.n
    names = list(metrics or run.cfg.eval.metrics)
    skipped: dict[str, str] = {}
    if metrics is None and not digits_classifier_applies(run.cfg.data):  # a digits config on other data
        for name in ("fd", "acc"):
            if name in names:
                names.remove(name)
                skipped[name] = "the digits classifier applies to the 8x8 data.name=digits only"
    for name in names:
        if name not in SAMPLE_METRICS and name not in RUN_METRICS:
            valid = ", ".join([*SAMPLE_METRICS, *RUN_METRICS])
            raise ConfigError(f"unknown metric {name!r}; valid metrics: {valid}")
    if "nll" in names and not hasattr(run.model, "log_prob"):
        raise ConfigError(
            f"metric nll needs a model with a likelihood; families with one: {likelihood_families()}"
        )
    if "nll" in names and not run.cfg.model.has_log_prob():
        if isinstance(run.dataset, ImageDataset):  # a Bernoulli VAE
            raise ConfigError(
                "metric nll of a Bernoulli VAE is a probability of binary pixels, not a density of "
                "dequantised images (bits/dim); train with model.ae.likelihood=gaussian to compare NLLs"
            )
    for name in ("fd", "acc"):
        if name in names and not digits_classifier_applies(run.cfg.data):
            raise ConfigError(f"metric {name} (from the digits classifier) needs data.name=digits")
    inception = _fid_network(run) if "fid" in names else None  # before sampling: a missing file stops at once
    if "straightness" in names and "ode" not in run.model.SAMPLERS:
        raise ConfigError(f"metric straightness needs an ODE sampler; model.family={run.cfg.model.family}")
    cond = run_conditioning(run, n, sample.label, sample.guidance)
    if "acc" in names and (cond.y is None or bool((cond.y < 0).any())):
        raise ConfigError("metric acc needs a class-conditional run sampled with labels (not --label -1)")
    keep = "straightness" in names
    if keep and sample.sampler != "ode":
        raise ConfigError("metric straightness follows the ODE paths; evaluate it with --sampler ode")
    if keep and sample.steps < 2:
        raise ConfigError(
            "metric straightness needs --steps 2 or more: a one-step path is a straight segment, "
            "scored 0 whatever the model"
        )
    t0 = time.perf_counter()
    sol = generate(run, n, sample, return_trajectory=keep, cond=cond)
    sample_s = time.perf_counter() - t0
    gen_ref = torch.Generator().manual_seed(2_000_003)
    ref, pool = _reference(run, n, gen_ref)
    flat = {"samples": sol.x.flatten(1), "ref": ref.flatten(1)}
    sample_names = [m for m in names if m not in RUN_METRICS]
    values = compute_metrics(flat["samples"], flat["ref"], sample_names) if sample_names else {}
    floor_other = pool.sample(min(n, len(pool)) if hasattr(pool, "__len__") else n, gen_ref)
    floors: dict[str, float | None] = {}
    if sample_names:
        floors.update(compute_metrics(floor_other.flatten(1), flat["ref"], sample_names))
    extra: dict[str, Any] = {}
    if "nll" in names:
        values["nll"], floors["nll"], extra["nll_unit"] = _nll(run, ref)
        if isinstance(run.cfg.model, VAEConfig):
            k = run.cfg.model.ae.iwae_k
            extra["nll_estimate"] = f"IWAE bound with K = {k}: an upper bound on the NLL"
    if "fd" in names:
        from genlab.metrics import digits_fd_floor, frechet_digits_distance, get_digits_classifier

        classifier, info = get_digits_classifier()
        values["fd"] = frechet_digits_distance(sol.x, ref, classifier)
        floors["fd"] = digits_fd_floor(classifier)
        extra["fd_classifier_test_accuracy"] = info["test_accuracy"]
    if inception is not None:
        from genlab.metrics.inception import inception_features, inception_fid

        f_samples, f_ref, f_other = (inception_features(x, inception) for x in (sol.x, ref, floor_other))
        values["fid"], floors["fid"] = inception_fid(f_samples, f_ref), inception_fid(f_other, f_ref)
    if "acc" in names:
        from genlab.metrics import get_digits_classifier

        classifier, info = get_digits_classifier()
        with torch.no_grad():
            predicted = classifier(sol.x.float()).argmax(1)
        values["acc"] = float((predicted == cond.y).double().mean())
        floors["acc"] = float(info["test_accuracy"])
    if keep:
        from genlab.metrics import straightness

        assert sol.trajectory is not None
        values["straightness"] = straightness(sol.trajectory, sol.times)
    result = {
        "run_dir": str(run.run_dir),
        "step": run.step,
        "device": str(run.device),  # where the samples were drawn
        "trained_on": run.cfg.train.device,
        "n": n,
        "sampler": sample.sampler,
        "solver": sample.solver,
        "steps": steps_taken(sample.sampler, sample.steps, sol.nfe),
        "nfe": sol.nfe,
        "sample_s": sample_s,  # wall time of drawing the n samples
        "ema": run.ema,
        "checkpoint": checkpoint or sample.checkpoint,
        "guidance": cond.guidance,
        "label": sample.label,
        "reference": reference_kind(run.cfg.data),  # what the samples were scored against
        **({"skipped": skipped} if skipped else {}),
        "metrics": {k: {"value": values[k], "floor": floors.get(k)} for k in names},
        **extra,
    }
    atomic_write_json(run.run_dir / "eval.json", result)
    return result


def steps_taken(sampler: str | None, steps: int, nfe: int | None) -> int | None:
    """The steps a sampler took: ``sample.steps`` for those that read it, every step of the
    chain for DDPM's ancestral sampler (its NFE), none for one-pass samplers."""
    if sampler not in STEPLESS_SAMPLERS:
        return steps
    return nfe if sampler == "ddpm" else None


def _fid_network(run: Run) -> Any:
    """The Inception network of metric fid, once the run's data are checked to be images
    with 1 or 3 channels (a one-line ConfigError where the weights or pytorch-fid are missing)."""
    from genlab.metrics.inception import inception_network

    if not isinstance(run.dataset, ImageDataset) or run.dataset.images.shape[1] not in (1, 3):
        raise ConfigError(
            "metric fid (Inception features) needs images with 1 or 3 channels; use w2 or mmd for other data"
        )
    return inception_network(run.device)


#: evaluation log-probs use the exact divergence up to this dimension, Hutchinson above
EXACT_LOG_PROB_MAX_DIM = 16


def _log_prob(run: Run, x: torch.Tensor, steps: int = 100, divergence: str | None = None) -> torch.Tensor:
    """log p(x) in nats per point, 100 RK4 steps; exact divergence up to D = 16, Hutchinson
    above (one Rademacher probe per point, seeded; unbiased for log p because log p is linear
    in the divergence integral). The exact divergence of an image network costs D backward
    passes per evaluation: 3.4 s for 64 digits through the U-Net."""
    if divergence is None:
        divergence = "exact" if x[0].numel() <= EXACT_LOG_PROB_MAX_DIM else "hutchinson"
    gen = make_generator(run.device, 0)
    scale = run.standardization  # the model's density is of z-scores: change variables back
    z = x if scale is None else scale.apply(x)
    out = []
    with torch.no_grad():  # the divergence functions enable gradients locally where needed
        for chunk in z.split(512):
            res = run.model.log_prob(chunk.to(run.device), steps=steps, divergence=divergence, generator=gen)
            out.append(res if isinstance(res, torch.Tensor) else res.log_prob)
    logp = torch.cat(out).detach().cpu()
    return logp if scale is None else logp + scale.log_det


def _nll(run: Run, ref: torch.Tensor) -> tuple[float, float | None, str]:
    """Test NLL: nats/point for vectors; bits/dim of dequantised data for images. The floor
    is the true NLL when the data set has a closed-form density (gmm)."""
    from genlab.likelihood import bits_per_dim, dequantize

    if isinstance(run.dataset, ImageDataset):
        levels = IMAGE_LEVELS.get(run.cfg.data.name, 256)
        x = dequantize(ref, levels, torch.Generator().manual_seed(0))  # bins centred on the grid
        nll = -_log_prob(run, x)
        return float(bits_per_dim(nll, x[0].numel(), levels).mean()), None, "bits/dim"
    floor = float(-run.dataset.log_prob(ref.double()).mean()) if hasattr(run.dataset, "log_prob") else None
    return float(-_log_prob(run, ref).mean()), floor, "nats/point"


def log_prob_file(
    run_dir: str | Path,
    data: str | Path,
    out: str | Path,
    steps: int = 100,
    divergence: str = "exact",
    device: str | torch.device | None = "auto",
) -> Path:
    """log p (nats) of each row of a .npy file under a trained run's model, written as .npy
    (computed on ``device``)."""
    run = load_run(run_dir, device=device)
    if not hasattr(run.model, "log_prob"):
        raise ConfigError(
            f"model.family={run.cfg.model.family} has no likelihood; "
            f"families with one: {likelihood_families()}"
        )
    path = Path(data)
    out = Path(out)
    if path.suffix != ".npy" or not path.is_file():
        raise ConfigError(f"--data must be an existing .npy file, got {str(path)!r}")
    if out.suffix != ".npy":  # numpy would append .npy to any other name
        raise ConfigError(
            f"--out must end in .npy (the log-densities are written as an array), got {out.name!r}"
        )
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"--data {path.name} is not a readable .npy array ({first})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise ConfigError(
            f"--data {path.name} must hold numbers, got dtype {getattr(arr, 'dtype', type(arr))}"
        )
    shape = tuple(run.model.data_shape)
    if arr.ndim != len(shape) + 1 or arr.shape[0] == 0:
        raise ConfigError(
            f"--data {path.name} must hold N >= 1 rows of shape {shape}, i.e. an array of shape "
            f"(N, {', '.join(map(str, shape))}); got {arr.shape}"
        )
    x = torch.as_tensor(arr, dtype=torch.float32)
    if tuple(x.shape[1:]) != shape:
        raise ConfigError(f"--data rows have shape {tuple(x.shape[1:])}, the model expects {shape}")
    if not bool(torch.isfinite(x).all()):
        raise ConfigError(f"--data {path.name} contains non-finite values")
    logp = _log_prob(run, x, steps, divergence)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, logp.numpy())
    return out
