"""A run directory and loading what it holds.

``RUN/config.json`` (the typed ``RunConfig``), ``RUN/checkpoint.pt`` (model, EMA weights,
optimiser, step; ``torch.load(weights_only=True)``), ``RUN/metrics.jsonl`` (one JSON row per
logged step), plots, and ``RUN/grids/`` (sampling grids computed for this run, cached).
"""
from __future__ import annotations

from pathlib import Path

from .build import build_model
from .checkpoint import CHECKPOINT, load_checkpoint
from .config import RunConfig
from .distributed import pick_device
from .errors import RunError
from .vdm import VDM

__all__ = ["load_run", "CONFIG", "METRICS", "GRIDS"]

CONFIG = "config.json"
METRICS = "metrics.jsonl"
GRIDS = "grids"


def load_run(run_dir: str | Path, device: str = "auto") -> tuple[RunConfig, VDM]:
    """``(config, model)`` of a trained run: the model carries the run's EMA weights, in eval mode,
    on ``device`` (``auto``: a GPU when there is one)."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).exists():
        raise RunError(f"{run_dir}: not a diffbits run (no {CONFIG})")
    if not (run_dir / CHECKPOINT).exists():
        raise RunError(f"{run_dir}: no {CHECKPOINT} yet (was the run started?)")
    cfg = RunConfig.load(run_dir / CONFIG)
    dev = pick_device(device)
    ck = load_checkpoint(run_dir / CHECKPOINT, map_location=dev)
    model = build_model(cfg.model, tuple(cfg.shape), cfg.levels).to(dev)
    ema = {k[len("module."):]: v for k, v in ck["ema"].items() if k.startswith("module.")}
    model.load_state_dict(ema)
    return cfg, model.eval()
