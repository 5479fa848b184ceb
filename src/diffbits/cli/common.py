"""What the commands share: option groups, strict JSON, deprecated names, class labels."""
from __future__ import annotations

import argparse
import json
import math
import sys


class Formatter(argparse.RawDescriptionHelpFormatter):
    """An option's help ends with its default (where it has one and the help does not already say
    it); descriptions keep their line breaks."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS \
                or "default" in text or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def command(sub, name: str, run, help: str, description: str | None = None, aliases=()) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=description or help, formatter_class=Formatter,
                       aliases=list(aliases))
    p.set_defaults(handler=run)
    return p


def add_device(p) -> None:
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (a GPU when there is one)")


def add_seed(p) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same output")


def add_grid(p, steps: int = 250, sampler_help: str = "ancestral | ddim | heun | dpmpp2m", nfe: bool = False) -> None:
    """The sampler, the grid of noise levels it walks and its number of steps (or, with ``nfe``,
    its network calls: see ``call_budget``)."""
    p.add_argument("--sampler", help=sampler_help + " (default: ancestral; blur models: momentum)")
    p.add_argument("--grid", default=None,
                   help="the noise levels to visit: uniform-t | uniform-logsnr | edm | cosine | score-optimal "
                        "(estimated from the model, cached in the run) | solver-aware (fitted to --sampler, "
                        "cached in the run) | wasserstein (blur models) | GRID.json "
                        "(from `diffbits grid`); default: uniform-t")
    p.add_argument("--schedule", dest="schedule", default=None, help=argparse.SUPPRESS)  # deprecated name of --grid
    p.add_argument("--steps", type=int, default=None if nfe else steps,
                   help="steps of the grid over the model's whole noise range"
                        + (f" (default: {steps}, or what --nfe allows)" if nfe else ""))
    if nfe:
        add_nfe(p)


def add_nfe(p) -> None:
    p.add_argument("--nfe", type=int, help="network calls to spend, in place of --steps: the steps --sampler takes "
                                           "with them (Heun: 2 per step, an odd budget ending with an Euler step)")


def call_budget(a, sampler: str | None, default_steps: int) -> tuple[int, bool]:
    """``(steps, euler_last)`` from ``--steps`` or ``--nfe`` (``samplers.nfe_budget``): Heun
    on an odd budget takes a last Euler step."""
    from ..samplers import EVALS_PER_STEP, nfe_budget

    if a.nfe is None:
        return (default_steps if a.steps is None else a.steps), False
    if a.steps is not None:
        raise ValueError("give --steps or --nfe, not both")
    if sampler not in EVALS_PER_STEP:
        raise ValueError(f"--nfe counts a sampler's network calls: name it with --sampler "
                         f"({' | '.join(EVALS_PER_STEP)})")
    return nfe_budget(sampler, a.nfe)


def grid_name(a) -> str:
    """``--grid``, or the deprecated ``--schedule`` with a warning."""
    if a.schedule is not None:
        warn("--schedule is deprecated (it named the sampling grid, not the noise schedule); use --grid")
        if a.grid is not None and a.grid != a.schedule:
            raise ValueError("give --grid only (--schedule is its deprecated name)")
        return a.schedule
    return a.grid or "uniform-t"


def warn(message: str) -> None:
    print(f"diffbits: warning: {message}", file=sys.stderr)


def strict(value):
    """``value`` with every NaN or infinity replaced by None: strict JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def print_json(value) -> None:
    print(json.dumps(strict(value), allow_nan=False))


def class_labels(cfg, classes: list[str] | None, guidance: float, run):
    """The label indices of ``--class`` values on a conditional run (None: unconditional)."""
    import torch

    if not cfg.model.num_classes:
        if classes or guidance != 1.0:
            raise ValueError(f"{run}: --class and --guidance need a run trained with --labels")
        return None
    names = cfg.classes or [str(i) for i in range(cfg.model.num_classes)]
    wanted = classes or names
    bad = [c for c in wanted if c not in names and not (c.isdigit() and int(c) < len(names))]
    if bad:
        raise ValueError(f"unknown class(es) {bad}; this run has {names}")
    return torch.tensor([names.index(c) if c in names else int(c) for c in wanted])
