"""Figures and text tables of a trained run (``genlab eval --figures``, ``genlab demo``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from genlab.app.conditioning import model_classes, run_conditioning
from genlab.app.runs import Run, generate, load_run, sample_settings
from genlab.data.images import ImageDataset


def make_figures(
    run_dir: str | Path,
    n: int | None = None,
    checkpoint: str | None = None,
    device: str | torch.device = "auto",
) -> list[Path]:
    """Samples vs data, trajectories, vector field, the path as a GIF, the loss curve;
    reconstructions and latent interpolations for autoencoders (sampled on ``device``).

    2D figures draw ``n`` points: by default as many as the run's ``eval.json`` scored (whose
    metrics they show), else the run's ``eval.n``."""
    import json

    from genlab import viz

    run = load_run(run_dir, checkpoint=checkpoint, device=device)
    ev = run.run_dir / "eval.json"
    scored = json.loads(ev.read_text()) if ev.exists() else None
    n = n or (int(scored["n"]) if scored else run.cfg.eval.n)
    fig_dir = run.run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    written: list[Path] = []
    metrics_file = run.run_dir / "metrics.jsonl"
    if metrics_file.exists():
        written.append(Path(viz.plot_loss_curve(metrics_file, fig_dir / "loss.png")))
    if isinstance(run.dataset, ImageDataset):
        written += _conditional_figures(run, fig_dir)
        written += _autoencoder_figures(run, fig_dir)
        x = generate(run, 64).x
        written.append(Path(viz.plot_image_grid(x, fig_dir / "samples.png", title="samples")))
        written.append(
            Path(viz.plot_samples_vs_data_images(x, run.dataset.images[:64], fig_dir / "samples_vs_data.png"))
        )
        return written
    x_final = generate(run, n).x  # with the configured sampler
    data = run.dataset.sample(n, torch.Generator().manual_seed(0))
    if x_final.shape[1] != 2:  # vectors of another dimension: coordinates in pairs, marginals
        written.append(Path(viz.plot_pairs(x_final, data, fig_dir / "samples_vs_data.png")))
        return written
    if "ode" not in run.model.SAMPLERS:  # no flow in time to draw (RealNVP)
        written.append(Path(viz.plot_samples_vs_data(x_final, data, fig_dir / "samples_vs_data.png")))
        return written
    ode = sample_settings(run.cfg, sampler="ode")
    sol = generate(run, n, ode, return_trajectory=True)  # the flow, for the pictures
    traj = sol.trajectory
    assert traj is not None
    shown = None
    if scored and scored["n"] == n:  # the metrics of these very numbers of points
        shown = {k: v["value"] for k, v in scored["metrics"].items()}
    written.append(
        Path(viz.plot_samples_vs_data(x_final, data, fig_dir / "samples_vs_data.png", metrics=shown))
    )
    written.append(Path(viz.plot_trajectories(traj, fig_dir / "trajectories.png", data=data)))
    times = (0.0, 0.25, 0.5, 0.75, 1.0)
    idx = [int(round(t * (traj.shape[0] - 1))) for t in times]
    with torch.no_grad():
        written.append(
            Path(
                viz.plot_vector_field(
                    _on_cpu(run.model.velocity, run.device),
                    fig_dir / "vector_field.png",
                    times=times,
                    samples_at_t=[traj[i] for i in idx],
                )
            )
        )
    written.append(Path(viz.animate_path(traj, sol.times, fig_dir / "path.gif", data=data)))
    return written


def _on_cpu(field: Any, device: torch.device) -> Any:
    """``field(x, t)`` of a model on ``device``, called with and returning CPU tensors."""

    def call(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return field(x.to(device), t.to(device)).cpu()

    return call


def _conditional_figures(run: Run, fig_dir: Path) -> list[Path]:
    """Inputs | samples | truth for a data-coupling run; one row per class for a
    class-conditional one (with the configured guidance)."""
    from genlab import viz
    from genlab.app.conditioning import Conditioning

    if getattr(run.model, "starts_from_inputs", False):
        draws = []
        # three samples per input show the corruption's randomness; a CycleGAN's image
        # transform has none (one row)
        for k in range(1 if run.cfg.model.family == "cyclegan" else 3):
            cond = run_conditioning(run, 12, gen=torch.Generator().manual_seed(run.cfg.sample.seed + k))
            seeded = sample_settings(run.cfg, seed=run.cfg.sample.seed + k)
            draws.append((cond, generate(run, 12, seeded, cond=cond).x))
        first = draws[0][0]
        assert first.x0 is not None  # a data-coupling run always has inputs
        samples = torch.stack([x for _, x in draws])  # (3, 12, C, H, W)
        out = fig_dir / "inputs_samples_truth.png"
        return [Path(viz.plot_conditional_samples(first.x0, samples, first.truth, out))]
    classes = model_classes(run.model)
    if classes is None:
        return []
    per = 8
    guidance = run.cfg.sample.guidance
    y = torch.arange(classes).repeat_interleave(per)
    cond = Conditioning(y=y, guidance=guidance if run.cfg.model.label_dropout_rate > 0 else None)
    x = generate(run, classes * per, cond=cond).x
    title = "one class per row" + (f", guidance w = {cond.guidance:g}" if cond.guidance is not None else "")
    names = [f"y={c}" for c in range(classes)]  # for picture folders: the sorted subfolders' order
    out = fig_dir / "samples_by_class.png"
    return [Path(viz.plot_image_grid(x, out, nrow=per, title=title, row_labels=names))]


def _autoencoder_figures(run: Run, fig_dir: Path) -> list[Path]:
    """Held-out images above their reconstructions (VAE, VQ-VAE) and decoded straight lines
    between the posterior means of held-out pairs (VAE)."""
    from genlab import viz
    from genlab.app.conditioning import held_out_images

    model: Any = run.model
    if not hasattr(model, "reconstruct"):
        return []
    images, _ = held_out_images(run, 24, torch.Generator().manual_seed(run.cfg.sample.seed))
    images = images.to(run.device)
    with torch.no_grad():
        recon = model.reconstruct(images[:12])
    grid = torch.cat([images[:12], recon]).cpu()
    written = [
        Path(
            viz.plot_image_grid(
                grid, fig_dir / "reconstructions.png", nrow=12, title="held-out digits (top), reconstructions"
            )
        )
    ]
    if hasattr(model, "interpolate"):
        steps = 10
        rows = [model.interpolate(images[12 + 2 * i], images[13 + 2 * i], steps) for i in range(6)]
        written.append(
            Path(
                viz.plot_image_grid(
                    torch.cat(rows).cpu(),
                    fig_dir / "latent_interpolation.png",
                    nrow=steps,
                    title="latent interpolation (posterior means)",
                )
            )
        )
    return written


def format_table(result: dict[str, Any]) -> str:
    """A small text table of metric values next to their floors (with a note when the
    unbiased MMD² is below 0, which it is for laws it cannot tell apart)."""
    lines = [f"{'metric':<8} {'value':>10} {'floor':>10}"]
    for name, entry in result["metrics"].items():
        floor = entry["floor"]
        floor_s = f"{floor:>10.4f}" if floor is not None else f"{'-':>10}"
        lines.append(f"{name:<8} {entry['value']:>10.4f} {floor_s}")
    mmd = result["metrics"].get("mmd")
    if mmd is not None and min(mmd["value"], mmd["floor"] if mmd["floor"] is not None else 0.0) < 0:
        note = "(mmd is the unbiased MMD²: it scatters around 0 for equal laws; below 0 = no difference seen)"
        lines.append(note)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# genlab compare

#: metric -> table heading, in table order
METRIC_NAMES = {"w2": "W2", "mmd": "MMD²", "fd": "FD", "fid": "FID", "nll": "NLL", "acc": "acc"}
HIGHER_IS_BETTER = frozenset({"acc"})


def _fmt(x: float | None, metric: str) -> str:
    if x is None:
        return "-"
    if metric == "mmd":
        return f"{x:.4f}"
    return f"{x:.3f}" if metric in ("w2", "acc") else f"{x:.2f}"


def _cell(s: dict[str, float] | None, metric: str) -> str:
    if s is None:
        return "-"
    return f"{_fmt(s['mean'], metric)} ± {_fmt(s['std'], metric)}" if s["n"] > 1 else _fmt(s["mean"], metric)


def compare_table(result: dict[str, Any]) -> str:
    """The table of ``genlab compare``: one row per config, mean ± std over the seeds that
    finished, next to the floors; notes say which rows were resumed, failed or are bounds."""
    rows = result["rows"]
    metrics = [m for m in METRIC_NAMES if any(m in r["summary"]["metrics"] for r in rows)]
    floors = {
        m: next((r["summary"]["floors"].get(m) for r in rows if m in r["summary"]["floors"]), None)
        for m in metrics
    }
    unit = next((r["summary"]["nll_unit"] for r in rows if r["summary"]["nll_unit"]), None)

    def head(m: str) -> str:
        name = METRIC_NAMES[m] + (f" ({unit})" if m == "nll" and unit else "")
        arrow = "↑" if m in HIGHER_IS_BETTER else "↓"
        bound = "test accuracy" if m == "acc" else "floor"
        floor = f" ({bound} {_fmt(floors[m], m)})" if floors[m] is not None else ""
        return f"{name} {arrow}{floor}"

    env = result["environment"]
    settings = result["settings"]
    lines = [
        f"Data {result['data']}; budget {result['budget']} of training per run; mean ± std over "
        f"{settings['seeds']} seed(s); every model scored on n = {settings.get('n', '?')} samples"
        + (f" against {result['reference']}. " if result.get("reference") else ". ")
        + f"{env['cpu_model'] or 'CPU'} ({env['cpu_count']} cores, load {env['loadavg_start'][0]:.1f} "
        f"at the start), torch {env['torch']} on {settings['threads']} thread(s).",
        "",
        "| model | family | batch | steps | train s | NFE | sample s | scored at | "
        + " | ".join(map(head, metrics))
        + " |",
        "|" + "---|" * (8 + len(metrics)),
    ]
    notes = []
    for r in rows:
        s = r["summary"]
        if not s["metrics"]:
            lines.append(f"| {r['name']} | {r['family']} | " + " | ".join(["-"] * (6 + len(metrics))) + " |")
            notes.append(f"{r['name']}: every seed failed ({r['seeds'][0]['failed']}).")
            continue
        nll_bound = s.get("nll_estimate") is not None
        cells = [
            r["name"],
            r["family"],
            str(r.get("batch_size", "-")),
            str(r["steps"]),
            f"{s['train_s']['mean']:.1f}" if s.get("train_s") else "-",
            str(s["nfe"]),
            f"{s['sample_s']['mean']:.2f}",
            "/".join(s["checkpoint"]),
            *[
                _cell(s["metrics"].get(m), m) + (" (bound)" if m == "nll" and nll_bound else "")
                for m in metrics
            ],
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if s["failed"]:
            failed = [x["failed"] for x in r["seeds"] if "failed" in x]
            notes.append(
                f"{r['name']}: {s['failed']} of {len(r['seeds'])} seeds failed ({failed[0]}); "
                "its row is over the others."
            )
        if s["resumed"]:
            notes.append(
                f"{r['name']}: {s['resumed']} seed(s) resumed after an interruption; their train s "
                "is summed over the logging windows of metrics.jsonl."
            )
        if nll_bound:
            notes.append(f"{r['name']}: NLL is {s['nll_estimate']}.")
    lines += [
        "",
        "train s: wall time of the training loop (in-training evaluations excluded); sample s: drawing "
        "the evaluation samples; NFE: network evaluations per sample (1 for VAEs, GANs, RealNVP); "
        "scored at: the checkpoint scored (best = chosen during training on the training data, "
        "never on the held-out data scored here). Floor: the metric between two independent draws "
        "of the data (NLL: the true NLL where the density is known); '-': not defined for that family.",
        *[f"- {note}" for note in notes],
    ]
    return "\n".join(lines)


def compare_figure(
    result: dict[str, Any], out: Path, n: int = 1000, device: str | torch.device = "auto"
) -> Path:
    """compare.png in ``out``: the data, then samples of every config's first finished run
    (drawn on ``device``)."""
    from genlab.app.evaluation import _reference
    from genlab.viz.compare import plot_comparison

    samples, captions = {}, {}
    data = None
    for row in result["rows"]:
        done = [r for r in row["seeds"] if "failed" not in r]
        if not done:
            continue
        run = load_run(out / "runs" / row["name"] / f"seed{done[0]['seed']}", device=device)
        k = 36 if isinstance(run.dataset, ImageDataset) else n
        samples[row["name"]] = generate(run, k).x
        metric, value = next(iter(done[0]["metrics"].items()))
        captions[row["name"]] = f"{METRIC_NAMES[metric]} {_fmt(value, metric)}"
        if data is None:
            data = _reference(run, k, torch.Generator().manual_seed(2_000_003))[0]
    assert data is not None
    title = f"{result['data']}, {result['budget']} of training per model: samples of one seed and its score"
    return plot_comparison(samples, data, out / "compare.png", captions, title=title)
