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

__all__ = ["load_run", "resolve_model", "model_fingerprint", "run_grid", "signal_examples", "export", "shipped_weights", "model_card",
           "GRID_NAMES", "CONFIG", "METRICS", "VALIDATION", "GRIDS"]

CONFIG = "config.json"
METRICS = "metrics.jsonl"
VALIDATION = "validation.jsonl"  # the EMA model's bound on held-out training examples (train.validation)
GRIDS = "grids"
GRID_NAMES = (*FIXED, "score-optimal", "solver-aware", "wasserstein")


def load_run(run_dir: str | Path, device: str = "auto") -> tuple[RunConfig, VDM]:
    """``(config, model)`` of a trained run or a shipped model (``shipped``: a name or its
    directory): the model carries the run's EMA weights, in eval mode, on ``device`` (``auto``:
    a GPU when there is one)."""
    from .shipped import WEIGHTS, find

    run_dir = find(run_dir)
    ckpt, weights = run_dir / CHECKPOINT, run_dir / WEIGHTS
    if not ckpt.exists() and not weights.exists():
        raise RunError(f"{run_dir}: no {CHECKPOINT} yet (was the run started?)")
    cfg = RunConfig.load(run_dir / CONFIG)
    dev = pick_device(device)
    model = build_model(cfg.model, tuple(cfg.shape), cfg.levels).to(dev)
    if ckpt.exists():
        ck = load_checkpoint(ckpt, map_location=dev)
        ema = ck.get("ema_best") or ck["ema"]  # with train.validation: the weights with the best held-out bound
        state = {k[len("module."):]: v for k, v in ema.items() if k.startswith("module.")}
    else:
        from safetensors.torch import load_file

        state = load_file(str(weights), device=str(dev))
    model.load_state_dict(state)
    return cfg, model.eval()


def resolve_model(model_or_run) -> tuple[RunConfig, VDM]:
    """``(config, model)`` on the CPU for a shipped model's name, a run directory, or a pair
    already loaded."""
    if isinstance(model_or_run, tuple):
        return model_or_run
    return load_run(model_or_run, "cpu")


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
             variant: str = "corrector", seed: int = 0, progress: bool = False, sampler: str | None = None,
             euler_last: bool = False) -> Grid:
    """The ``steps``-step sampling grid ``name`` for the run's model: a ``GRID.json`` file, a fixed
    grid (``grids.FIXED``), ``score-optimal`` (its probe costs are estimated once per weights, on
    ``data`` or the run's training data, kept in ``RUN/grids/`` and shared by every step count),
    ``solver-aware`` (for ``sampler``, Heun's last step an Euler step with ``euler_last``; seeded
    with the fixed grids and, once the run has its probe, the score-optimal one; kept per weights
    as ``RUN/grids/solver-aware-SAMPLER-STEPS[-euler-last].json``) or ``wasserstein`` (blur models).
    Computed grids are written to ``RUN/grids/NAME-STEPS.json``."""
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
    if name == "solver-aware":
        return _solver_aware(run_dir, cfg, model, key, sampler, steps, data, seed, progress, euler_last)
    if name == "wasserstein":
        from .soft import wasserstein_grid

        grid = wasserstein_grid(model.corruption, signal_examples(cfg, model, data, 512, seed), steps)
    else:
        from .score_optimal import EXAMPLES, probe_costs, score_optimal

        costs_file = _costs_path(run_dir, variant)
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


def _solver_aware(run_dir, cfg, model, key: str, sampler: str | None, steps: int, data, seed: int,
                  progress: bool, euler_last: bool = False) -> Grid:
    """The cached solver-aware grid for these weights, or a new one (``solver_aware.py``)."""
    from .solver_aware import SOLVERS, solver_aware

    if sampler not in SOLVERS:
        raise ValueError(f"a solver-aware grid is made for one solver: name it with --sampler "
                         f"{' | '.join(SOLVERS)} (got {sampler or 'none'})")
    path = Path(run_dir) / GRIDS / f"solver-aware-{sampler}-{steps}{'-euler-last' if euler_last else ''}.json"
    if path.exists():
        cached = Grid.load(path)
        if cached.info.get("model") == key:
            return cached
    seeds = {}  # beside the DP path and the fixed grids, which solver_aware always tries
    costs = _load_costs(_costs_path(run_dir, "corrector"), key, data)
    if costs is not None:  # a seed when its probe is already paid for; it is seldom the best start
        from .score_optimal import score_optimal

        seeds["score-optimal"] = score_optimal(model, None, steps, costs=costs, check=False).gamma
    gen = torch.Generator(model.schedule.gamma_0.device).manual_seed(seed + 1)
    grid = solver_aware(model, sampler, steps, seeds=seeds, generator=gen, progress=progress, euler_last=euler_last)
    grid.info["model"] = key
    grid.save(path)
    return grid


def _costs_path(run_dir, variant: str) -> Path:
    """Where the run keeps the score-optimal probe costs of ``variant`` (shared by every step count)."""
    return Path(run_dir) / GRIDS / f"score-optimal-{variant}.costs.json"


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


SHIPPED_LIMIT = 5_000_000  # bytes: a shipped model's weights file stays below this


def shipped_weights(model, weights: str = "auto") -> dict[str, torch.Tensor]:
    """The state dict as it will be shipped. ``float16`` stores the network's large tensors
    (1,024 values or more) in half precision and keeps the schedule and every small tensor in
    float32; ``auto`` does so only when float32 would pass ``SHIPPED_LIMIT``. The model is set to
    the stored values (upcast), so that what is measured and fingerprinted is what ships."""
    if weights not in ("auto", "float32", "float16"):
        raise ValueError(f"weights must be auto, float32 or float16, got {weights!r}")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if weights == "auto":
        weights = "float16" if sum(v.numel() * v.element_size() for v in state.values()) > SHIPPED_LIMIT else "float32"
    if weights == "float16":
        for k, v in state.items():
            if k.startswith("denoiser.") and v.is_floating_point() and v.numel() >= 1024:
                half = v.to(torch.float16)
                if not torch.isfinite(half).all():
                    raise ValueError(f"{k}: a value is out of float16's range; export with --weights float32")
                state[k] = half
        model.load_state_dict(state)  # the model now computes with exactly the shipped values
    return state


def export(out_dir: Path, cfg: RunConfig, model, stored: dict[str, torch.Tensor], card_fields: dict) -> Path:
    """Write the shipped form of a model (config, the ``stored`` weights from ``shipped_weights``,
    card) into ``out_dir``."""
    from safetensors.torch import save_file

    from .shipped import CARD, WEIGHTS

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(out_dir / CONFIG)
    save_file(stored, str(out_dir / WEIGHTS))
    halves = any(v.dtype == torch.float16 for v in stored.values())
    fields = dict(card_fields, fingerprint=model_fingerprint(cfg, model),
                  parameters=sum(v.numel() for v in stored.values()), shape=list(cfg.shape), levels=cfg.levels,
                  weights="float16" if halves else "float32")
    (out_dir / CARD).write_text(json.dumps(fields, indent=1) + "\n")
    (out_dir / "README.md").write_text(model_card(out_dir.name, fields, cfg))
    return out_dir


def model_card(name: str, card: dict, cfg: RunConfig) -> str:
    """The card for people: what the model is, what it was trained on and how, how good it is."""
    m = cfg.model
    lines = [f"# {name}", "",
             f"A diffbits VDM for {tuple(card['shape'])} examples with {card['levels']} levels, shipped so that "
             f"`diffbits compress --model {name}` works without training.", "",
             f"- data: {card['data']}",
             f"- trained with: `{card['command']}`",
             f"- steps: {card['steps']:,}" + (f" in {card['minutes']:.0f} minutes" if card.get("minutes") else "")
             + (f"; the weights are step {card['weights_step']:,}'s, the best on the held-out training examples "
                f"({card['validation_bpd']:.4f} bits/dim)" if "weights_step" in card else ""),
             f"- network: {m.net}, width {m.width}, depth {m.depth}, {card['parameters']:,} parameters "
             f"({card.get('weights', 'float32')} EMA weights, `model.safetensors`"
             + (", large tensors in float16, computed in float32)" if card.get("weights") == "float16" else ")"),
             f"- fingerprint: `{card['fingerprint']}` (files compressed with this model carry its first 48 bits)"]
    if "test_bpd" in card:
        lines.append(f"- held-out bound: {card['test_bpd']:.4f} ± {card['test_stderr']:.4f} bits/dim on "
                     f"{card['test_examples']:,} examples of `{card['test']}`")
    if card.get("examples"):
        lines.append(f"- `{card['examples']}`: the first held-out examples, in the data's own dtype (the tests code them)")
    return "\n".join(lines) + "\n"
