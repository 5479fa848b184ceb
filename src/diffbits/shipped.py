"""Models that ship with diffbits: small trained runs under the repository's ``models/``, usable
by name wherever a run directory is taken (``diffbits compress --model mnist ...``).

A shipped model is a run directory reduced to what coding and sampling need: ``config.json``,
``model.safetensors`` (the EMA weights, float32) and ``card.json`` (its data, the command that
trained it, its steps and minutes, its held-out bound), with ``README.md``, the card for people.
``runs.export`` makes one from a trained run; ``find`` resolves a name or a path.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import RunError

__all__ = ["SHIPPED", "WEIGHTS", "CARD", "shipped", "find", "card"]

SHIPPED = Path(os.environ.get("DIFFBITS_MODELS", Path(__file__).resolve().parents[2] / "models"))
WEIGHTS = "model.safetensors"
CARD = "card.json"


def shipped() -> dict[str, Path]:
    """Name -> directory of every shipped model."""
    if not SHIPPED.is_dir():
        return {}
    return {d.name: d for d in sorted(SHIPPED.iterdir()) if (d / CARD).is_file() and (d / WEIGHTS).is_file()}


def find(name_or_run) -> Path:
    """The run directory ``name_or_run`` names: a path to a run, or a shipped model's name."""
    p = Path(name_or_run)
    if (p / "config.json").is_file():
        return p
    models = shipped()
    if str(name_or_run) in models:
        return models[str(name_or_run)]
    raise RunError(f"{name_or_run}: neither a run directory nor a shipped model (shipped: "
                   f"{', '.join(models) or f'none found under {SHIPPED}'})")


def card(name_or_dir) -> dict:
    return json.loads((find(name_or_dir) / CARD).read_text())
