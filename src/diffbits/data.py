"""Data sources for ``--data``: integer arrays with a known number of levels.

- ``digits``: scikit-learn's 8x8 digits (17 levels), shaped (N, 1, 8, 8). Fixed split:
  the first 1500 images train, the last 297 test.
- ``FILE.npz`` / ``FILE.npy``: integer arrays (N, H, W) -> (N, 1, H, W), (N, C, H, W) or
  (N, D). An npz holding one array needs no key; otherwise ``FILE.npz:KEY``.
- a folder of PNG/JPEG images, all one size, gray or RGB, 8 bit.
- any of these may end in a Python slice of examples: ``mnist10k.npz[:9000]``.

Files and folders are used whole for every split; ``digits`` has its own test split.
Levels: uint8 -> 256, uint16 -> 65536, bool -> 2, other integers -> max + 1, unless given.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["Dataset", "DataError", "load_dataset", "DIGITS_TRAIN"]

DIGITS_TRAIN = 1500  # digits: first 1500 train, last 297 test
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
_SLICE = re.compile(r"^(?P<base>.*)\[(?P<start>-?\d*):(?P<stop>-?\d*)\]$")


class DataError(ValueError):
    """Bad input data; the message names the file and the problem."""


@dataclass
class Dataset:
    x: torch.Tensor  # int64, (N, *shape)
    levels: int
    name: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return self.x.shape[0]


def _infer_levels(arr: np.ndarray) -> int:
    if arr.dtype == np.uint8:
        return 256
    if arr.dtype == np.uint16:
        return 65536
    if arr.dtype == np.bool_:
        return 2
    return int(arr.max()) + 1


def _as_levels(arr: np.ndarray, source: str, levels: int | None) -> tuple[np.ndarray, int]:
    """Validate an integer array and infer its number of levels."""
    if arr.size == 0:
        raise DataError(f"{source}: no data (empty array)")
    if arr.dtype.kind == "f":
        if np.isnan(arr).any():
            raise DataError(f"{source}: contains NaN; expected integer levels")
        raise DataError(f"{source}: floating-point data ({arr.dtype}); expected integer levels in [0, levels)")
    if arr.dtype.kind not in "uib":
        raise DataError(f"{source}: dtype {arr.dtype} is not an integer type")
    lo, hi = int(arr.min()), int(arr.max())
    k = levels or _infer_levels(arr)
    if lo < 0 or hi >= k:
        raise DataError(f"{source}: values span [{lo}, {hi}], outside [0, {k}) for {k} levels")
    if k < 2:
        raise DataError(f"{source}: need at least 2 levels, got {k}")
    return arr, k


def _shape_examples(arr: np.ndarray, source: str) -> np.ndarray:
    if arr.ndim == 3:  # (N, H, W): one channel
        return arr[:, None]
    if arr.ndim in (2, 4):
        return arr
    raise DataError(f"{source}: array of shape {arr.shape}; expected (N, H, W), (N, C, H, W) or (N, D)")


def _load_array(path: Path, key: str | None) -> np.ndarray:
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as z:
            if key is None:
                if len(z.files) != 1:
                    raise DataError(f"{path}: holds arrays {z.files}; choose one with {path}:KEY")
                key = z.files[0]
            if key not in z.files:
                raise DataError(f"{path}: no array {key!r}; it holds {z.files}")
            return z[key]
    except DataError:
        raise
    except Exception as e:  # corrupt zip, pickled object arrays, ...
        raise DataError(f"{path}: cannot read array ({e})") from None


def _load_folder(folder: Path) -> np.ndarray:
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no PNG or JPEG images in this folder")
    images, first = [], None
    for p in files:
        try:
            with Image.open(p) as im:
                if im.mode not in ("L", "RGB", "P", "RGBA", "LA", "1"):
                    raise DataError(f"{p}: image mode {im.mode} is not 8-bit gray or RGB")
                a = np.asarray(im.convert("L" if im.mode in ("L", "LA", "1") else "RGB"))
        except DataError:
            raise
        except Exception as e:
            raise DataError(f"{p}: unreadable image ({e})") from None
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        if first is None:
            first = (p, a.shape)
        elif a.shape != first[1]:
            raise DataError(f"{p}: shape {a.shape} differs from {first[0].name} {first[1]}; all images must share one size")
        images.append(a)
    return np.stack(images).astype(np.uint8)


def _digits(split: str) -> np.ndarray:
    from sklearn.datasets import load_digits

    x = load_digits().images.astype(np.int64).reshape(-1, 1, 8, 8)
    if split == "train":
        return x[:DIGITS_TRAIN]
    if split == "test":
        return x[DIGITS_TRAIN:]
    return x


def load_dataset(spec: str, split: str = "train", levels: int | None = None) -> Dataset:
    """Load ``spec`` (see module docstring). ``split`` is 'train', 'test' or 'all'."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be train, test or all, got {split!r}")
    sl = slice(None)
    m = _SLICE.match(spec)
    if m:
        spec = m["base"]
        sl = slice(int(m["start"]) if m["start"] else None, int(m["stop"]) if m["stop"] else None)
    if spec == "digits":
        arr, k = _digits(split), levels or 17
        name = f"digits/{split}"
    else:
        path, key = Path(spec), None
        if not path.exists() and ":" in spec:
            head, key = spec.rsplit(":", 1)
            path = Path(head)
        if not path.exists():
            raise DataError(f"{spec}: no such file or folder (or built-in dataset; built-in: digits)")
        if path.is_dir():
            arr = _load_folder(path)
        elif path.suffix in (".npy", ".npz"):
            arr = _load_array(path, key)
        else:
            raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .npz, .npy or a folder of images")
        arr = _shape_examples(arr, str(path))
        name = str(path)
        arr, k = _as_levels(arr, str(path), levels)
    arr = arr[sl]
    if len(arr) == 0:
        raise DataError(f"{spec}{'[...]' if m else ''}: the selection holds no examples")
    return Dataset(torch.from_numpy(np.ascontiguousarray(arr)).long(), int(k), name + (f"[{m['start']}:{m['stop']}]" if m else ""))
