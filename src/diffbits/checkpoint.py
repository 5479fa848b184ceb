"""Checkpoints: one file, written atomically, readable with ``torch.load(weights_only=True)``."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

__all__ = ["save_checkpoint", "load_checkpoint", "write_atomic", "CHECKPOINT", "CHECKPOINT_STABLE"]

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_STABLE = "checkpoint-stable.pt"  # a wsd run's state when its final decay began


def save_checkpoint(state: dict, path: Path) -> None:
    write_atomic(path, lambda fh: torch.save(state, fh))


def write_atomic(path: Path, write) -> None:
    """``write(fh)`` into a temporary file in the same folder, fsync, then rename over ``path``:
    a crash leaves either the old file or the new one, never half of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint here (was the run started?)")
    return torch.load(path, map_location=map_location, weights_only=True)
