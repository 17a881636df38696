"""A small, deterministic digits classifier and the Frechet distance in its feature space.

FID needs a feature extractor; for the 8x8 digits, genlab trains its own tiny CNN on the
fixed *train* split (no weights are downloaded) and measures the Frechet distance

    FD = ||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^{1/2})

between Gaussian fits of its penultimate-layer features (64-dim). Training is fully
deterministic on CPU (seeded ``torch.Generator`` for the initialisation and the batch
order, no dropout, no global RNG) and takes a few seconds; :func:`get_digits_classifier`
caches the weights as **safetensors** (loading never executes code) next to a JSON file
holding the test accuracy, the seed and a hash of the training code and config, and
retrains when that hash changes.

Cache directory: ``cache_dir`` argument, else ``$GENLAB_CACHE``, else ``~/.cache/genlab``.

Read an FD against its floor, :func:`digits_fd_floor` (FD between the train and the test
split), since two finite samples of the same law never score zero.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from genlab._validate import check_finite, check_tensor
from genlab.data import load_digits
from genlab.metrics.distances import frechet_distance, gaussian_stats

__all__ = [
    "DigitsClassifier",
    "DigitsClassifierConfig",
    "train_digits_classifier",
    "get_digits_classifier",
    "digits_features",
    "frechet_digits_distance",
    "digits_fd_floor",
    "default_cache_dir",
]

_WEIGHTS_FILE = "digits_classifier.safetensors"
_INFO_FILE = "digits_classifier.json"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class DigitsClassifierConfig:
    """Hyper-parameters of the digits classifier (all enter the cache hash)."""

    seed: int = 0  # seeds the initialisation and the batch order
    epochs: int = 20  # full passes over the 1438 training images
    batch_size: int = 64  # last batch of an epoch may be smaller
    lr: float = 2e-3  # Adam learning rate (cosine-decayed to 0 over training)
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    channels: int = 32  # channels of the two convolutions (16 then `channels`)
    feature_dim: int = 64  # size of the penultimate (feature) layer


class DigitsClassifier(nn.Module):
    """CNN for (B, 1, 8, 8) digits in [-1, 1] -> (B, 10) logits.

    conv3x3(1 -> 16) - SiLU - conv3x3(16 -> C) - SiLU - maxpool2 -> (B, C, 4, 4)
    -> flatten - linear(16 C -> F) - SiLU = features (B, F) -> linear(F -> 10) = logits.

    SiLU rather than ReLU: with ReLU about 40% of the feature units are dead (constant 0),
    which makes the feature covariance singular and the Frechet distance ill-conditioned;
    with SiLU every unit varies (condition number of the train-feature covariance ~2e4).
    """

    def __init__(self, channels: int = 32, feature_dim: int = 64, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, channels, 3, padding=1)
        self.fc = nn.Linear(channels * 16, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 8, 8) -> (B, F) penultimate-layer activations."""
        h = F.silu(self.conv1(x))  # (B, 16, 8, 8)
        h = F.silu(self.conv2(h))  # (B, C, 8, 8)
        h = F.max_pool2d(h, 2)  # (B, C, 4, 4)
        return F.silu(self.fc(h.flatten(1)))  # (B, F)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 8, 8) -> (B, 10) logits."""
        return self.head(self.features(x))


def _build_model(config: DigitsClassifierConfig, generator: torch.Generator) -> DigitsClassifier:
    """A freshly initialised classifier, drawing only from ``generator``.

    The module is built under ``fork_rng`` so the global RNG is left untouched, then every
    weight is re-drawn with PyTorch's default scheme (kaiming-uniform, a = sqrt(5)) and every
    bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), in a fixed order.
    """
    with torch.random.fork_rng(devices=[]):
        model = DigitsClassifier(config.channels, config.feature_dim)
    for layer in (model.conv1, model.conv2, model.fc, model.head):
        nn.init.kaiming_uniform_(layer.weight, a=5**0.5, generator=generator)
        fan_in = layer.weight[0].numel()
        bound = 1.0 / fan_in**0.5
        assert layer.bias is not None  # every layer here has a bias
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return model


def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        pred = model(images).argmax(dim=1)  # (N,)
    return float((pred == labels).double().mean())


def train_digits_classifier(
    seed: int = 0,
    epochs: int = 20,
    config: DigitsClassifierConfig | None = None,
) -> tuple[DigitsClassifier, float]:
    """Train the classifier on the digits *train* split, deterministically, on CPU.

    Cross-entropy, AdamW with a cosine learning-rate decay, batches from
    ``torch.randperm(N, generator)`` each epoch; same seed, same weights, bit for bit.

    Args:
        seed: seed of the initialisation and batch order (overrides ``config.seed``).
        epochs: passes over the data (overrides ``config.epochs``).
        config: other hyper-parameters; defaults to :class:`DigitsClassifierConfig`.

    Returns:
        (model in eval mode, accuracy on the 359 test images).
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    base = config if config is not None else DigitsClassifierConfig()
    if not isinstance(base, DigitsClassifierConfig):
        raise ValueError(f"config must be a DigitsClassifierConfig, got {type(base).__name__}")
    cfg = DigitsClassifierConfig(**{**asdict(base), "seed": seed, "epochs": epochs})

    train, test = load_digits("train"), load_digits("test")
    generator = torch.Generator().manual_seed(cfg.seed)
    model = _build_model(cfg, generator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(train)
    steps_per_epoch = -(-n // cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs * steps_per_epoch)
    model.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=generator)  # (N,)
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            loss = F.cross_entropy(model(train.images[idx]), train.labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    model.eval()
    return model, _accuracy(model, test.images, test.labels)


# --------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$GENLAB_CACHE`` if set (and non-empty), else ``~/.cache/genlab``."""
    env = os.environ.get("GENLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "genlab"


def _code_hash(config: DigitsClassifierConfig) -> str:
    """sha256 of the model/training source code and the config: changes invalidate caches."""
    parts = [
        inspect.getsource(DigitsClassifier),
        inspect.getsource(_build_model),
        inspect.getsource(train_digits_classifier),
        json.dumps(asdict(config), sort_keys=True),
        str(_FORMAT_VERSION),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _atomic_write(path: Path, write: Any) -> None:
    """Write via a temporary file in the same directory and rename (safe under races)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _load_cached(directory: Path, expected_hash: str) -> tuple[DigitsClassifier, dict] | None:
    """The cached model and info if present and matching ``expected_hash``, else None."""
    weights, info_path = directory / _WEIGHTS_FILE, directory / _INFO_FILE
    if not (weights.is_file() and info_path.is_file()):
        return None
    try:
        info = json.loads(info_path.read_text())
        if not isinstance(info, dict) or info.get("code_hash") != expected_hash:
            return None
        cfg = DigitsClassifierConfig(**info["config"])
        with torch.random.fork_rng(devices=[]):
            model = DigitsClassifier(cfg.channels, cfg.feature_dim)
        model.load_state_dict(load_file(str(weights)), strict=True)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        return None  # unreadable or inconsistent cache: retrain
    model.eval()
    return model, info


def get_digits_classifier(
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[DigitsClassifier, dict[str, Any]]:
    """The default digits classifier, loaded from the cache or trained and cached.

    Files: ``<cache_dir>/digits_classifier.safetensors`` (weights) and
    ``digits_classifier.json`` (test accuracy, seed, config, code hash, training time).
    A missing, unreadable or stale (hash mismatch) cache is rebuilt by training with the
    default :class:`DigitsClassifierConfig` (a few seconds on CPU).

    Args:
        cache_dir: directory of the cache; None means :func:`default_cache_dir`.

    Returns:
        (model in eval mode on CPU, info dict with keys "test_accuracy", "seed", "config",
        "code_hash", "train_seconds", "source" ("cache" or "trained") and "path").
    """
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    config = DigitsClassifierConfig()
    expected = _code_hash(config)
    cached = _load_cached(directory, expected)
    if cached is not None:
        model, info = cached
        return model, {**info, "source": "cache", "path": str(directory)}

    start = time.perf_counter()
    model, accuracy = train_digits_classifier(config.seed, config.epochs, config)
    info = {
        "format_version": _FORMAT_VERSION,
        "test_accuracy": accuracy,
        "seed": config.seed,
        "config": asdict(config),
        "code_hash": expected,
        "train_seconds": time.perf_counter() - start,
        "torch_version": torch.__version__,
    }
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    _atomic_write(directory / _WEIGHTS_FILE, lambda p: save_file(state, p))
    _atomic_write(directory / _INFO_FILE, lambda p: Path(p).write_text(json.dumps(info, indent=2) + "\n"))
    return model, {**info, "source": "trained", "path": str(directory)}


# --------------------------------------------------------------------------------------
# features and Frechet distance
# --------------------------------------------------------------------------------------


def _check_images(images: Any, name: str) -> torch.Tensor:
    check_tensor(images, name)
    if images.dim() != 4 or tuple(images.shape[1:]) != (1, 8, 8) or images.shape[0] < 1:
        raise ValueError(f"{name} must have shape (N, 1, 8, 8) with N >= 1, got {images.shape}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor in [-1, 1], got {images.dtype}")
    return check_finite(images, name)


def digits_features(model: DigitsClassifier, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Penultimate-layer features of digits images.

    Images are expected in the range of :func:`genlab.data.load_digits`, [-1, 1]; generated
    samples slightly outside are passed through unchanged (clamp them yourself if wanted).

    Args:
        model: a :class:`DigitsClassifier` (e.g. from :func:`get_digits_classifier`).
        images: (N, 1, 8, 8) floating tensor.
        batch_size: images per forward pass.

    Returns:
        (N, F) float32 features on the CPU (F = 64 for the default classifier).
    """
    if not isinstance(model, DigitsClassifier):
        raise ValueError(f"model must be a DigitsClassifier, got {type(model).__name__}")
    _check_images(images, "images")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start : start + batch_size].to(device=param.device, dtype=param.dtype)
            out.append(model.features(chunk).float().cpu())  # (b, F)
    model.train(was_training)
    return torch.cat(out)


def frechet_digits_distance(
    images_a: torch.Tensor, images_b: torch.Tensor, model: DigitsClassifier | None = None
) -> float:
    """Frechet distance between two sets of digits in the classifier's feature space.

        FD = ||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^{1/2})

    with (mu, C) the mean and covariance of :func:`digits_features` (64-dim). FD is biased
    upwards at small N; compare sets of equal size and read it against
    :func:`digits_fd_floor`.

    Args:
        images_a: (N, 1, 8, 8), N >= 2.
        images_b: (M, 1, 8, 8), M >= 2.
        model: feature extractor; None loads/trains the default via
            :func:`get_digits_classifier`.

    Returns:
        FD >= 0 as a Python float.
    """
    for name, images in (("images_a", images_a), ("images_b", images_b)):
        _check_images(images, name)
        if images.shape[0] < 2:
            raise ValueError(f"{name} needs at least 2 images for a covariance, got 1")
    if model is None:
        model, _ = get_digits_classifier()
    mu_a, cov_a = gaussian_stats(digits_features(model, images_a))
    mu_b, cov_b = gaussian_stats(digits_features(model, images_b))
    return frechet_distance(mu_a, cov_a, mu_b, cov_b)


def digits_fd_floor(model: DigitsClassifier | None = None) -> float:
    """FD between the digits train (1438) and test (359) splits: the floor of a perfect model.

    Args:
        model: feature extractor; None uses :func:`get_digits_classifier`.
    """
    return frechet_digits_distance(load_digits("train").images, load_digits("test").images, model)
