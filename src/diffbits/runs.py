"""A run directory and what it holds.

``RUN/config.json`` (the typed ``RunConfig``), ``RUN/checkpoint.pt`` (model, EMA weights,
optimiser, step; ``torch.load(weights_only=True)``), ``RUN/metrics.jsonl`` (one JSON row per
logged step), plots, and ``RUN/grids/``: sampling grids computed for this run's weights
(score-optimal costs, Wasserstein grids), reused until the weights change.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import torch

from .build import build_model
from .checkpoint import CHECKPOINT, load_checkpoint, write_atomic
from .config import RunConfig
from .distributed import pick_device
from .errors import RunError
from .grids import FIXED, Grid, fixed_grid
from .vdm import VDM

__all__ = ["load_run", "model_fingerprint", "run_grid", "signal_examples", "GRID_NAMES", "CONFIG", "METRICS", "GRIDS"]

CONFIG = "config.json"
METRICS = "metrics.jsonl"
GRIDS = "grids"
GRID_NAMES = (*FIXED, "score-optimal", "wasserstein")


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


def model_fingerprint(cfg: RunConfig, model) -> str:
    """SHA-256 (first 128 bits) over the model's config (canonical JSON) and its weights, in name order."""
    config = {"model": asdict(cfg.model), "levels": cfg.levels, "shape": list(cfg.shape)}
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    state = model.state_dict()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode() + str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:32]


def run_grid(run_dir: str | Path, cfg: RunConfig, model, name: str, steps: int, data: str | None = None,
             variant: str = "corrector", seed: int = 0, progress: bool = False) -> Grid:
    """The ``steps``-step sampling grid ``name`` for the run's model: a ``GRID.json`` file, a fixed
    grid (``grids.FIXED``), ``score-optimal`` (its probe costs are estimated once per weights, on
    ``data`` or the run's training data, kept in ``RUN/grids/`` and shared by every step count) or
    ``wasserstein`` (blur models). Computed grids are written to ``RUN/grids/NAME-STEPS.json``."""
    if name.endswith(".json"):
        return Grid.load(name)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    blur = cfg.model.process == "blur"
    if name not in GRID_NAMES:
        raise ValueError(f"unknown grid {name!r}; choose from {', '.join(GRID_NAMES)} or a GRID.json file")
    if blur and name not in ("uniform-t", "wasserstein"):
        raise ValueError(f"blur models sample on a uniform-t or wasserstein grid, not {name!r}")
    if name == "wasserstein" and not blur:
        raise ValueError("the wasserstein grid is for blur models (train with --process blur)")
    if name in FIXED:
        return fixed_grid(name, model.schedule, steps)
    folder = Path(run_dir) / GRIDS
    folder.mkdir(exist_ok=True)
    key = model_fingerprint(cfg, model)
    if name == "wasserstein":
        from .soft import wasserstein_grid

        grid = wasserstein_grid(model.corruption, signal_examples(cfg, model, data, 512, seed), steps)
    else:
        from .score_optimal import EXAMPLES, probe_costs, score_optimal

        costs_file = folder / f"score-optimal-{variant}.costs.json"
        costs = _load_costs(costs_file, key, data)
        if costs is None:
            gen = torch.Generator(model.schedule.gamma_0.device).manual_seed(seed)
            costs = probe_costs(model, signal_examples(cfg, model, data, EXAMPLES, seed), variant=variant,
                                generator=gen, progress=progress)
            body = {"model": key, "data": data or cfg.data, "t": costs[0].tolist(), "cost": costs[1].tolist()}
            write_atomic(costs_file, lambda fh: fh.write(json.dumps(body).encode()))
        grid = score_optimal(model, None, steps, variant=variant, costs=costs, check=False)
        name = f"score-optimal-{variant}"
    grid.info["model"] = key
    grid.save(folder / f"{name}-{steps}.json")
    return grid


def _load_costs(path: Path, key: str, data: str | None):
    """Cached probe costs when they belong to these weights (and this data, when one is named)."""
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if body.get("model") != key or (data and body.get("data") != data):
        return None
    return torch.tensor(body["t"], dtype=torch.float64), torch.tensor(body["cost"], dtype=torch.float64)


def signal_examples(cfg: RunConfig, model, data: str | None, n: int, seed: int) -> torch.Tensor:
    """Up to ``n`` random examples of ``data`` (default: the run's training data) in signal space,
    on the model's device."""
    from .bound import data_to_signal
    from .data import load_dataset

    split = "train" if not data or data == "digits" else "all"
    ds = load_dataset(data or cfg.data, split, cfg.levels, crop=cfg.crop or None)
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
    return data_to_signal(ds.x[idx].to(model.schedule.gamma_0.device), cfg.levels, torch.float32)
