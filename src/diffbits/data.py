"""Data sources for ``--data``: integer arrays with a known number of levels.

- ``digits``: scikit-learn's 8x8 digits (17 levels), shaped (N, 1, 8, 8). Fixed split:
  the first 1500 images train, the last 297 test.
- ``FILE.npz`` / ``FILE.npy``: integer arrays (N, H, W) -> (N, 1, H, W), (N, C, H, W) or
  (N, D). An npz holding one array needs no key; otherwise ``FILE.npz:KEY``.
- a folder of PNG/JPEG images, all one size, gray or RGB, 8 bit.
- a folder of WAV files (8- or 16-bit PCM, any channels and rate): non-overlapping crops of
  ``crop`` samples (default ``AUDIO_CROP``), shaped (N, channels, crop); 256 or 65536 levels.
- any of these may end in a Python slice of examples: ``mnist10k.npz[:9000]``.

Files and folders are used whole for every split; ``digits`` has its own test split.
Levels: uint8 -> 256, uint16 -> 65536, bool -> 2, other integers -> max + 1, unless given.

Class labels (``labels=``, for conditional models): ``digits`` -> ``target`` (its digit);
an npz -> the name of an integer array of length N in the same file; a folder ->
``folders``: one sub-folder of images per class, classes in sorted name order.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DataError
from .io import load_arrays

__all__ = ["Dataset", "DataError", "load_dataset", "DIGITS_TRAIN"]

DIGITS_TRAIN = 1500  # digits: first 1500 train, last 297 test
AUDIO_CROP = 8192  # samples per example of a WAV folder
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
_SLICE = re.compile(r"^(?P<base>.*)\[(?P<start>-?\d*):(?P<stop>-?\d*)\]$")


@dataclass
class Dataset:
    x: torch.Tensor  # int64, (N, *shape)
    levels: int
    name: str
    y: torch.Tensor | None = None  # int64 class labels (N,), for conditional models
    classes: list[str] | None = None  # class names, index = label
    dtype: str = "<i8"  # numpy dtype of the source arrays (outputs such as samples are written in it)
    crop: int = 0  # samples per example when cut from longer signals (WAV folders); 0 otherwise

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
    arrays = load_arrays(path)
    if path.suffix == ".npy":
        return arrays[""]
    if key is None:
        if len(arrays) != 1:
            raise DataError(f"{path}: holds arrays {sorted(arrays)}; choose one with {path}:KEY")
        (key,) = arrays
    if key not in arrays:
        raise DataError(f"{path}: no array {key!r}; it holds {sorted(arrays)}")
    return arrays[key]


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


def _load_class_folders(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    subs = sorted(p for p in folder.iterdir() if p.is_dir())
    if not subs:
        raise DataError(f"{folder}: labels=folders needs one sub-folder of images per class; found none")
    parts = [_load_folder(p) for p in subs]
    if len({a.shape[1:] for a in parts}) > 1:
        raise DataError(f"{folder}: the class folders hold images of different sizes")
    y = np.concatenate([np.full(len(a), i) for i, a in enumerate(parts)])
    return np.concatenate(parts), y, [p.name for p in subs]


def _labels_array(y: np.ndarray, n: int, source: str) -> tuple[np.ndarray, list[str]]:
    if y.ndim != 1 or len(y) != n or y.dtype.kind not in "ui":
        raise DataError(f"{source}: labels must be integers, one per example ({n}); got {y.dtype} {y.shape}")
    if y.min() < 0:
        raise DataError(f"{source}: labels must be >= 0, got {y.min()}")
    return y, [str(i) for i in range(int(y.max()) + 1)]


def _load_wav_folder(folder: Path, crop: int) -> tuple[np.ndarray, int]:
    from .audio import crops, read_wav

    parts, kinds = [], set()
    for p in sorted(folder.glob("*.wav")):
        levels, meta = read_wav(p)
        kinds.add((meta["channels"], meta["width"]))
        parts.append(crops(levels, crop))
    if len(kinds) > 1:
        raise DataError(f"{folder}: WAV files differ in channels or sample width {sorted(kinds)}; use one kind")
    arr = np.concatenate(parts)
    if not len(arr):
        raise DataError(f"{folder}: every WAV file is shorter than one crop of {crop} samples")
    (_, width), = kinds
    return arr, 256 ** width


def _digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = d.images.astype(np.int64).reshape(-1, 1, 8, 8), d.target.astype(np.int64)
    part = {"train": slice(None, DIGITS_TRAIN), "test": slice(DIGITS_TRAIN, None), "all": slice(None)}[split]
    return x[part], y[part]


def load_dataset(spec: str, split: str = "train", levels: int | None = None, labels: str | None = None,
                 crop: int | None = None) -> Dataset:
    """Load ``spec`` (see module docstring). ``split`` is 'train', 'test' or 'all';
    ``labels`` names the class labels to load with it (none by default)."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be train, test or all, got {split!r}")
    sl = slice(None)
    m = _SLICE.match(spec)
    if m:
        spec = m["base"]
        sl = slice(int(m["start"]) if m["start"] else None, int(m["stop"]) if m["stop"] else None)
    y, classes, cut = None, None, 0
    if spec == "digits":
        (arr, y), k = _digits(split), levels or 17
        if labels and labels != "target":
            raise DataError(f"digits: its labels are 'target', not {labels!r}")
        y, classes = (y, [str(i) for i in range(10)]) if labels else (None, None)
        name = f"digits/{split}"
    else:
        path, key = Path(spec), None
        if not path.exists() and ":" in spec:
            head, key = spec.rsplit(":", 1)
            path = Path(head)
        if not path.exists():
            raise DataError(f"{spec}: no such file or folder (or built-in dataset; built-in: digits)")
        audio = path.is_dir() and any(path.glob("*.wav"))
        if audio:
            if labels:
                raise DataError(f"{path}: labels are not supported for audio folders")
            cut = crop or AUDIO_CROP
            arr, wav_levels = _load_wav_folder(path, cut)
            levels = levels or wav_levels
        elif path.is_dir():
            if labels and labels != "folders":
                raise DataError(f"{path}: a folder's labels are its sub-folders (labels=folders), not {labels!r}")
            arr, y, classes = _load_class_folders(path) if labels else (_load_folder(path), None, None)
        elif path.suffix in (".npy", ".npz"):
            arr = _load_array(path, key)
            if labels:
                if path.suffix != ".npz":
                    raise DataError(f"{path}: labels need an .npz holding the images and a labels array")
                y, classes = _labels_array(_load_array(path, labels), len(arr), f"{path}:{labels}")
        else:
            raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .npz, .npy or a folder of images")
        arr = arr if audio else _shape_examples(arr, str(path))
        name = str(path)
        arr, k = _as_levels(arr, str(path), levels)
    arr = arr[sl]
    if len(arr) == 0:
        raise DataError(f"{spec}{'[...]' if m else ''}: the selection holds no examples")
    return Dataset(torch.from_numpy(np.ascontiguousarray(arr)).long(), int(k),
                   name + (f"[{m['start']}:{m['stop']}]" if m else ""),
                   None if y is None else torch.from_numpy(np.asarray(y[sl])).long(), classes, arr.dtype.str, cut)
