"""The command line of ``genlab``: its parser, subcommands and flags (:mod:`genlab.app.cli`
runs them). Usage errors are one line and ``--help`` shows each option's default."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn

__all__ = [
    "DEMO_CONFIGS",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "build_parser",
    "command_first",
    "command_names",
]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM


#: the packaged config each demo family trains
DEMO_CONFIGS = {
    "flow_matching": "moons",
    "diffusion": "moons_diffusion",
    "ddpm": "moons_ddpm",
    "vae": "moons_vae",
    "gan": "moons_gan",
}


def _device_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--device",
        default=None,
        help=f"where to {what}: auto (CUDA, else MPS, else CPU; the default), cpu, cuda, cuda:N, mps",
    )


def _threads_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def _sampling_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sampler", default=None, help="ode|extension|ddim|dpm|em|pc|ald|ddpm|direct")
    p.add_argument("--solver", default=None, help="ODE solver: euler|midpoint|heun|rk4|dopri5")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the run's sample.steps)")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (default: the run's sample.seed)")
    p.add_argument("--noise", type=float, default=None, help="extension sampler: sigma_t >= 0")
    p.add_argument("--eta", type=float, default=None, help="ddim: 0 deterministic .. 1")
    p.add_argument("--snr", type=float, default=None, help="pc: corrector signal-to-noise ratio")
    p.add_argument("--label", type=int, default=None, help="class-conditional runs: class k (-1: none)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale w >= 0")
    p.add_argument(
        "--checkpoint",
        default=None,
        choices=["last", "best"],
        help="weights to sample: the last checkpoint or the best evaluation (train.eval_every > 0)",
    )


class _Help(argparse.HelpFormatter):
    """Help that ends with the default of each option that has one (None: the run's own)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            default not in (None, False, argparse.SUPPRESS)
            and action.option_strings
            and "%(default)" not in text
        ):
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """argparse with genlab's manners: a usage error is one line (and exit status 2), and
    ``--help`` shows each option's default."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"genlab: error: {message} (see {self.prog} --help)\n")


#: the options of ``genlab`` itself; every other option belongs to a subcommand
_TOP_LEVEL_FLAGS = ("--debug", "-h", "--help")


def command_first(argv: Sequence[str], commands: Sequence[str]) -> list[str]:
    """Options of a subcommand given before it (``genlab --device cpu sample RUN``) moved
    after the subcommand's name, where argparse looks for them; ``genlab``'s own options stay.

    >>> command_first(["--debug", "--device", "cpu", "sample", "r"], ["sample"])
    ['--debug', 'sample', '--device', 'cpu', 'r']
    """
    argv = list(argv)
    at = next((i for i, a in enumerate(argv) if a in commands), None)
    if at is None or at == 0:
        return argv
    own = [a for a in argv[:at] if a in _TOP_LEVEL_FLAGS]
    theirs = [a for a in argv[:at] if a not in _TOP_LEVEL_FLAGS]
    return [*own, argv[at], *theirs, *argv[at + 1 :]]


def command_names(parser: argparse.ArgumentParser) -> list[str]:
    """The subcommands of ``parser`` (train, sample, ...)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``genlab`` and its subcommands."""
    p = _Parser(prog="genlab", description="Deep generative models, trained and compared.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model from a YAML config")
    t.add_argument("config", help="YAML file or packaged config name (moons, digits, moons_diffusion, ...)")
    t.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.steps=2000 model.net.width=128")
    t.add_argument("--out", default=None, help="run directory (default runs/<config name>)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _device_flag(t, "train (the same as train.device=...)")

    s = sub.add_parser("sample", help="draw samples from a trained run")
    s.add_argument("run_dir", help="a run directory written by genlab train")
    s.add_argument("--n", type=int, default=None, help="how many samples (default: the run's sample.n)")
    _sampling_flags(s)
    _device_flag(s, "sample")
    _threads_flag(s)
    s.add_argument("--out", required=True, help="FILE.npy or FILE.png")

    e = sub.add_parser("eval", help="evaluate a trained run against held-out data")
    e.add_argument("run_dir", help="a run directory written by genlab train")
    e.add_argument("--n", type=int, default=None, help="samples scored (default: the run's eval.n)")
    e.add_argument(
        "--metrics", default=None, help="comma-separated, e.g. w2,mmd (fd for digits, fid for images)"
    )
    _sampling_flags(e)
    _device_flag(e, "sample and score")
    _threads_flag(e)
    e.add_argument("--figures", action="store_true", help="also write figures/ in the run directory")

    lp = sub.add_parser("log-prob", help="log-density (nats) of each row of a .npy file under a run's model")
    lp.add_argument("run_dir", help="a run directory written by genlab train (a model with a likelihood)")
    lp.add_argument("--data", required=True, help="FILE.npy of shape (N, *D)")
    lp.add_argument("--out", required=True, help="FILE.npy for the N log-densities")
    lp.add_argument("--steps", type=int, default=100, help="ODE steps of the change of variables")
    lp.add_argument(
        "--divergence",
        default="exact",
        choices=["exact", "hutchinson"],
        help="how the divergence is computed",
    )
    _device_flag(lp, "integrate")
    _threads_flag(lp)

    r = sub.add_parser("reflow", help="rectified flow: retrain a flow-matching run on its own ODE pairs")
    r.add_argument("run_dir", help="the trained flow-matching run (the teacher)")
    r.add_argument("--out", required=True, help="run directory of the reflowed model")
    r.add_argument("--pairs", type=int, default=20000, help="number of (x_0, x_1) pairs to generate")
    r.add_argument("--steps", type=int, default=100, help="RK4 steps of the teacher's ODE")
    r.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.steps=3000")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _device_flag(r, "draw the pairs and train")

    c = sub.add_parser(
        "compare", help="train several configs with one budget on one data set; table + figure"
    )
    c.add_argument(
        "configs", nargs="+", help="packaged config names or YAML files; key=value overrides apply to all"
    )
    c.add_argument(
        "--budget", default="30s", help="training budget per run: N or Nsteps, or Ns / Nmin (default 30s)"
    )
    c.add_argument("--seeds", type=int, default=3, help="training seeds per config (default 3)")
    c.add_argument(
        "--metrics", default=None, help="comma-separated subset of w2,mmd,fd,fid,nll,acc (default by data)"
    )
    c.add_argument("--threads", type=int, default=None, help="torch CPU threads of every run")
    c.add_argument("--n", type=int, default=None, help="samples scored per run (default: eval.n)")
    c.add_argument("--out", default="runs/compare", help="folder of the table, figure and runs")
    c.add_argument("--overwrite", action="store_true", help="discard a different comparison in --out")
    c.add_argument("--no-progress", action="store_true", help="hide the progress bars of the runs")
    _device_flag(c, "train and score every run")

    d = sub.add_parser("demo", help="train on 2D moons, evaluate, draw (about 2 minutes)")
    d.add_argument(
        "--family", default="flow_matching", choices=sorted(DEMO_CONFIGS), help="the family the demo trains"
    )
    d.add_argument("--out", default=None, help="run directory (default runs/demo or runs/demo-<family>)")
    d.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.steps=500")
    d.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _device_flag(d, "train, sample and score")
    return p
