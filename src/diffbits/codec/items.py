"""Inputs and outputs of the codec: image files, WAV files and ``.npy``/``.npz`` arrays, each an
item made of one or more examples of the model's shape, restored bit-exact under its original
name. A signal (C, N) longer than the model's (C, L) is cut into ceil(N / L) examples, the last
padded with its final sample; the padding is dropped on the way back."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = ["IMAGE_SUFFIXES", "read_item", "examples_of", "restore", "write_item"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def read_item(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """``(meta, arrays)`` for one input file; ``arrays`` maps a key ("" for npy and images) to the array."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            arrays, kind, mode = {"": np.load(path, allow_pickle=False)}, "npy", None
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arrays, kind, mode = {k: z[k] for k in z.files}, "npz", None
        elif suffix == ".wav":
            from ..audio import read_wav

            levels, wav = read_wav(path)
            arrays, kind, mode = {"": levels}, "wav", None
        elif suffix in IMAGE_SUFFIXES:
            from PIL import Image

            with Image.open(path) as im:
                mode = "L" if im.mode in ("L", "1", "LA") else "RGB"  # 8-bit gray or RGB pixels
                arrays, kind = {"": np.asarray(im.convert(mode))}, "image"
        else:
            raise DataError(f"{path}: unsupported input type {suffix!r} (images, .wav, .npy or .npz)")
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if not arrays:
        raise DataError(f"{path}: holds no arrays")
    meta = {"name": path.name, "kind": kind, "mode": mode,
            "arrays": [{"key": k, "shape": list(a.shape), "dtype": a.dtype.str} for k, a in arrays.items()]}
    if kind == "wav":
        meta["wav"] = wav
    return meta, arrays


def examples_of(a: np.ndarray, shape: tuple[int, ...], levels: int, where: str) -> tuple[np.ndarray, dict]:
    """The array as (n, *shape) int64 examples, and how to undo it (``hwc``: it was H x W x C;
    ``length``: a signal cut into padded pieces): ``a.shape`` must end in ``shape`` (or, for one
    channel, in ``shape[1:]``), or be a (C, N) signal for (C, L) examples; values in [0, levels)."""
    if a.dtype.kind not in "iub":
        raise DataError(f"{where}: dtype {a.dtype} is not integer; the model codes integer levels 0..{levels - 1}")
    if len(shape) == 2 and a.ndim == 2 and a.shape[0] == shape[0] and a.shape[1] != shape[1] and a.shape[1]:
        length, piece = a.shape[1], shape[1]
        padded = np.concatenate([a, np.repeat(a[:, -1:], -length % piece, axis=1)], axis=1)
        x, _ = examples_of(padded.reshape(shape[0], -1, piece).transpose(1, 0, 2), shape, levels, where)
        return x, {"length": length}
    hwc = a.ndim == 3 and len(shape) == 3 and shape[0] > 1 and a.shape == (shape[1], shape[2], shape[0])
    if hwc:
        a = a.transpose(2, 0, 1)  # an H x W x C image
    tail = len(shape)
    if a.shape[a.ndim - tail:] == shape:
        pass
    elif shape[0] == 1 and a.shape[a.ndim - tail + 1:] == shape[1:] and a.ndim >= tail - 1:
        a = a[..., None, :, :] if tail == 3 else a[..., None, :]
    else:
        raise DataError(f"{where}: shape {a.shape} does not match the model's examples {shape}")
    x = a.reshape((-1,) + shape).astype(np.int64)
    if x.size and (x.min() < 0 or x.max() >= levels):
        raise DataError(f"{where}: values span {x.min()}..{x.max()}, but the model codes {levels} levels (0..{levels - 1})")
    return x, {"hwc": hwc}


def restore(x: np.ndarray, spec: dict) -> np.ndarray:
    """Undo ``examples_of`` for one array described by ``spec`` (shape, dtype)."""
    shape, dtype = tuple(spec["shape"]), np.dtype(spec["dtype"])
    if spec.get("length"):  # a signal in padded pieces (n, C, L)
        x = x.transpose(1, 0, 2).reshape(x.shape[1], -1)[:, :spec["length"]]
    flat = x.reshape(-1)
    if len(shape) == 3 and spec.get("hwc"):
        return flat.reshape(shape[2], shape[0], shape[1]).transpose(1, 2, 0).astype(dtype)
    if flat.size != math.prod(shape):
        raise DataError(f"decoded {flat.size} values for an array of shape {shape}")
    return flat.reshape(shape).astype(dtype)


def write_item(meta: dict, arrays: dict[str, np.ndarray], folder: Path) -> Path:
    """Serialise an item (``.npy``, ``.npz`` or PNG) under its original name into ``folder``."""
    name = meta["name"]
    if meta["kind"] == "image":
        from PIL import Image

        path = folder / (Path(name).stem + ".png")
        buf = io.BytesIO()
        Image.fromarray(arrays[""], mode=meta["mode"]).save(buf, format="PNG")
        path.write_bytes(buf.getvalue())
        return path
    path = folder / name
    if meta["kind"] == "wav":
        from ..audio import wav_bytes

        path.write_bytes(wav_bytes(arrays[""], meta["wav"]))
        return path
    buf = io.BytesIO()
    if meta["kind"] == "npy":
        np.save(buf, arrays[""], allow_pickle=False)
    else:
        np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    return path
