"""The ``genlab`` command: train | sample | eval | log-prob | reflow | compare | demo.

Errors the user can fix print one line ``genlab: error: ...`` and exit with status 2;
``--debug`` shows the traceback instead. Ctrl-C during training saves a checkpoint first.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genlab.app.arguments import (
    DEMO_CONFIGS,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    build_parser,
    command_first,
    command_names,
)


def _set_threads(args: argparse.Namespace) -> None:
    """Apply --threads (checked: a positive integer)."""
    _positive(args.threads, "--threads")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def _positive(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        from genlab.app.config import ConfigError

        raise ConfigError(f"{flag} must be a positive integer, got {value}")


def _sample_settings(args: argparse.Namespace, run: Any, n: int | None = None) -> Any:
    """The run's sample settings with the sampling flags given."""
    from genlab.app.runs import sample_settings

    flags = ("solver", "steps", "seed", "sampler", "noise", "eta", "snr", "label", "guidance", "checkpoint")
    return sample_settings(run.cfg, n=n, **{k: getattr(args, k) for k in flags})


def _device(args: argparse.Namespace) -> str:
    """The --device flag, checked here so that a typo is one line (default: auto)."""
    from genlab.app.config import ConfigError
    from genlab.devices import DeviceError, resolve_device

    device = args.device or "auto"
    try:
        resolve_device(device, "--device")
    except DeviceError as err:
        raise ConfigError(str(err)) from None
    return device


def _with_device(args: argparse.Namespace, overrides: list[str]) -> list[str]:
    """--device DEV as the override train.device=DEV (after the others: the flag wins)."""
    return [*overrides, f"train.device={_device(args)}"] if args.device else list(overrides)


def _cmd_train(args: argparse.Namespace) -> int:
    from genlab.app import runs
    from genlab.app.config import ConfigError
    from genlab.app.train import train

    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    cfg = runs.resolve_config(args.config, _with_device(args, args.overrides))
    if args.resume and (out / "checkpoints").is_dir():  # the run's own config, plus the overrides given
        saved = runs.saved_config(out, _with_device(args, args.overrides))
        if saved.model.family != cfg.model.family:
            raise ConfigError(
                f"--resume: {out} holds a {saved.model.family} run, not the {cfg.model.family} of "
                f"{args.config}; use a new --out"
            )
        cfg = saved
    main_process = os.environ.get("RANK", "0") == "0"  # torchrun: rank 0 speaks for the group
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if main_process:
        where = f" ({world} processes)" if world > 1 else ""
        print(f"training into {out}{where}")
    res = train(cfg, out, resume=args.resume, progress=not args.no_progress)
    if main_process:
        print(
            f"done: step {res.step}, loss {res.final_loss:.4f}, {res.steps_per_s:.0f} steps/s; "
            f"checkpoints in {out}/checkpoints"
        )
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from genlab.app import runs

    _set_threads(args)

    _positive(args.n, "--n")
    _positive(args.steps, "--steps")
    run = runs.load_run(args.run_dir, checkpoint=args.checkpoint, device=_device(args))
    sample = _sample_settings(args, run, n=args.n)
    path = runs.sample_to_file(run, args.out, sample)
    print(f"wrote {sample.n} samples to {path}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from genlab.app import evaluation, reporting, runs

    _set_threads(args)

    _positive(args.n, "--n")
    _positive(args.steps, "--steps")
    metrics = [m for m in args.metrics.split(",") if m] if args.metrics else None
    run = runs.load_run(args.run_dir, checkpoint=args.checkpoint, device=_device(args))
    result = evaluation.evaluate(run, metrics=metrics, n=args.n, sample=_sample_settings(args, run))
    print(reporting.format_table(result))
    print(f"(held-out data: {result['reference']})")
    for name, why in result.get("skipped", {}).items():
        print(f"(metric {name} of the config skipped: {why})")
    if "fd_classifier_test_accuracy" in result:
        acc = result["fd_classifier_test_accuracy"]
        print(f"(fd uses the penultimate features of a digits classifier, test accuracy {acc:.3f})")
    if "nll_unit" in result:
        print(f"(nll in {result['nll_unit']}; its floor is the true NLL when the density is known)")
    if "nll_estimate" in result:
        print(f"(nll: {result['nll_estimate']})")
    print(f"wrote {Path(args.run_dir) / 'eval.json'}")
    if args.figures:
        for path in reporting.make_figures(args.run_dir, checkpoint=args.checkpoint, device=_device(args)):
            print(f"wrote {path}")
    return 0


def _cmd_log_prob(args: argparse.Namespace) -> int:
    from genlab.app import evaluation

    _set_threads(args)

    _positive(args.steps, "--steps")
    path = evaluation.log_prob_file(
        args.run_dir, args.data, args.out, args.steps, args.divergence, device=_device(args)
    )
    print(f"wrote log-densities (nats) to {path}")
    return 0


#: a file in every run genlab demo makes: the demo replaces only its own runs
DEMO_MARKER = ".genlab-demo"


def _cmd_demo(args: argparse.Namespace) -> int:
    from genlab.app import evaluation, reporting, runs
    from genlab.app.train import train

    t0 = time.perf_counter()
    cfg = runs.resolve_config(DEMO_CONFIGS[args.family], _with_device(args, args.overrides))
    out = Path(args.out or ("runs/demo" if args.family == "flow_matching" else f"runs/demo-{args.family}"))
    family = args.family.replace("_", " ")
    # the default runs/demo* directories are the demo's own; another --out must hold no other run
    if args.out and (out / "checkpoints").is_dir() and not (out / DEMO_MARKER).is_file():
        from genlab.app.config import ConfigError

        raise ConfigError(f"{out} holds a run that genlab demo did not make; choose another --out")
    print(f"genlab demo: {family} on 2D {cfg.data.name}, {cfg.train.steps} steps -> {out}")
    res = train(cfg, out, overwrite=True, progress=not args.no_progress)
    (out / DEMO_MARKER).write_text("made by genlab demo, which may replace this run\n")
    device = res.device
    print(
        f"trained on {device}: loss {res.final_loss:.4f} at step {res.step} ({res.steps_per_s:.0f} steps/s)"
    )
    result = evaluation.evaluate(out, device=device)
    figures = reporting.make_figures(out, device=device)
    print()
    how = f"the {result['sampler']} sampler" + (
        f" ({result['solver']})" if result["sampler"] == "ode" else ""
    )
    weights = "EMA" if result["ema"] else "raw"
    nfe = result["nfe"]
    taken = f"{result['steps']} steps" if result["steps"] is not None else "one pass"
    taken += f" (NFE {nfe})"
    print(f"samples: {result['n']} with {how}, {taken}, {weights} weights")
    print(reporting.format_table(result))
    print("(floor = the same metric between two independent samples of the true data)")
    print()
    print(f"checkpoint : {out}/checkpoints")
    print(f"metrics    : {out}/metrics.jsonl, {out}/eval.json, TensorBoard in {out}/tb")
    for path in figures:
        print(f"figure     : {path}")
    print(f"total time : {time.perf_counter() - t0:.0f} s")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from genlab.app import compare, reporting

    configs = [c for c in args.configs if "=" not in c]
    overrides = _with_device(args, [c for c in args.configs if "=" in c])
    _positive(args.seeds, "--seeds")
    _positive(args.threads, "--threads")
    _positive(args.n, "--n")
    metrics = [m for m in args.metrics.split(",") if m] if args.metrics else None
    result = compare.compare(
        configs,
        args.out,
        args.budget,
        args.seeds,
        overrides,
        metrics,
        args.threads,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        n=args.n,
    )
    print(reporting.compare_table(result))
    out = Path(args.out)
    figure = f", {result['figure']}" if "figure" in result else ""
    print(f"wrote {out / compare.RESULT_FILE}, {out / compare.TABLE_FILE}{figure}")
    return 0


def _cmd_reflow(args: argparse.Namespace) -> int:
    from genlab.app.train import reflow

    print(f"reflow: {args.pairs} pairs from {args.run_dir} ({args.steps} RK4 steps) -> {args.out}")
    res = reflow(
        args.run_dir,
        args.out,
        args.pairs,
        args.steps,
        args.overrides,
        progress=not args.no_progress,
        device=_device(args) if args.device else None,
    )
    print(
        f"done: step {res.step}, loss {res.final_loss:.4f}; sample in 1-2 steps with "
        f"genlab eval {args.out} --solver euler --steps 1"
    )
    return 0


COMMANDS = {
    "train": _cmd_train,
    "sample": _cmd_sample,
    "eval": _cmd_eval,
    "log-prob": _cmd_log_prob,
    "reflow": _cmd_reflow,
    "compare": _cmd_compare,
    "demo": _cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``genlab`` console script; returns the exit status."""
    from genlab.training.distributed import exit_process_group

    return exit_process_group(_run(argv))


def _one_line_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> str:
    """Warnings of the genlab command read like its errors: one line on stderr."""
    return f"genlab: warning: {message}\n"


def _run(argv: Sequence[str] | None) -> int:
    warnings.formatwarning = _one_line_warning  # type: ignore[assignment]
    parser = build_parser()
    try:  # argparse exits on --help (0) and on a usage error (2, its one line printed)
        given = list(sys.argv[1:] if argv is None else argv)
        args, extra = parser.parse_known_args(command_first(given, command_names(parser)))
        # dotted overrides may also follow the flags: `genlab train moons --out X train.steps=10`
        if extra:
            dotted = all("=" in e and not e.startswith("-") for e in extra)
            if dotted and hasattr(args, "overrides"):
                args.overrides = [*args.overrides, *extra]
            elif dotted and hasattr(args, "configs"):  # compare: its overrides share the positionals
                args.configs = [*args.configs, *extra]
            else:
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as err:
        return err.code if isinstance(err.code, int) else EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt as err:
        if args.debug:
            raise
        from genlab.training.trainer import Interrupted

        if isinstance(err, Interrupted):
            print(
                "genlab: stopped by SIGTERM; the last step was checkpointed, continue with --resume",
                file=sys.stderr,
            )
            return EXIT_TERMINATED
        print(
            "\ngenlab: interrupted; the last state was checkpointed, continue with --resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except (ValueError, RuntimeError, OSError) as err:
        if args.debug:
            raise
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"genlab: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
