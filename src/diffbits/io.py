"""The user's files in and out: images, WAV files and ``.npy``/``.npz`` arrays.

Every command that takes files reads them here and writes its results back in the same
format: a PNG in gives a PNG out of the same size holding the same levels (no rescaling), an
array gives an array of the same dtype and shape (with a leading draw axis when several
draws were asked for), a WAV file gives a WAV file with the same header. Preview pictures are
separate (``plots.save_grid``) and written only when asked.

An input file is an *item*: ``meta`` (name, kind, per array its key, shape and dtype) and its
arrays. ``examples_of`` cuts an array into the model's examples, ``restore`` undoes that. A
signal (C, N) longer than the model's (C, L) is cut into ceil(N / L) examples, the last padded
with its final sample; the padding is dropped on the way back.
"""
from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = ["IMAGE_SUFFIXES", "load_arrays", "read_item", "examples_of", "restore", "write_item", "read_examples",
           "read_mask", "check_output", "write_like", "levels_dtype", "samples_meta", "write_samples"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
_NPY_MAGIC = b"\x93NUMPY"
_OUTPUT_SUFFIX = {"image": ".png", "npy": ".npy", "npz": ".npz", "wav": ".wav"}


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a ``.npy`` (key "") or ``.npz`` file, never unpickling anything; a broken or
    foreign file is a ``DataError`` that says what it is."""
    path = Path(path)
    with path.open("rb") as fh:
        head = fh.read(len(_NPY_MAGIC))
    if path.suffix.lower() == ".npy" and not head.startswith(_NPY_MAGIC):
        raise DataError(f"{path}: not a .npy file (it does not start with numpy's header); is it damaged?")
    if path.suffix.lower() == ".npz" and not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a .npz file (not a zip archive); is it damaged or truncated?")
    try:
        if path.suffix.lower() == ".npy":
            return {"": np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as e:
        if "pickle" in str(e):
            raise DataError(f"{path}: holds Python objects rather than plain numeric arrays; diffbits does not "
                            f"load pickled data (save integer arrays with numpy.save or numpy.savez)") from None
        raise DataError(f"{path}: cannot read the arrays ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: damaged or truncated ({e})") from None


def read_item(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """``(meta, arrays)`` for one input file; ``arrays`` maps a key ("" for npy and images) to the array."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix, mode, extra = path.suffix.lower(), None, {}
    if suffix in (".npy", ".npz"):
        arrays, kind = load_arrays(path), suffix[1:]
    elif suffix == ".wav":
        from .audio import read_wav

        levels, extra["wav"] = read_wav(path)
        arrays, kind = {"": levels}, "wav"
    elif suffix in IMAGE_SUFFIXES:
        from PIL import Image

        try:
            with Image.open(path) as im:
                mode = "L" if im.mode in ("L", "1", "LA") else "RGB"  # 8-bit gray or RGB pixels
                arrays, kind = {"": np.asarray(im.convert(mode))}, "image"
        except Exception as e:
            raise DataError(f"{path}: cannot read the image ({e})") from None
    else:
        raise DataError(f"{path}: unsupported input type {suffix!r} (images, .wav, .npy or .npz)")
    if not arrays:
        raise DataError(f"{path}: holds no arrays")
    meta = {"name": path.name, "kind": kind, "mode": mode,
            "arrays": [{"key": k, "shape": list(a.shape), "dtype": a.dtype.str} for k, a in arrays.items()], **extra}
    return meta, arrays


def examples_of(a: np.ndarray, shape: tuple[int, ...], levels: int, where: str) -> tuple[np.ndarray, dict]:
    """The array as (n, *shape) int64 examples, and how to undo it (``hwc``: it was H x W x C;
    ``length``: a signal cut into padded pieces): ``a.shape`` must end in ``shape`` (or, for one
    channel, in ``shape[1:]``), or be a (C, N) signal for (C, L) examples; values in [0, levels)."""
    if a.dtype.kind not in "iub":
        raise DataError(f"{where}: dtype {a.dtype} is not integer; the model codes integer levels 0..{levels - 1}")
    x, layout = _layout(a, shape, where)
    if x.size and (x.min() < 0 or x.max() >= levels):
        raise DataError(f"{where}: values span {x.min()}..{x.max()}, but the model codes {levels} levels (0..{levels - 1})")
    return x.astype(np.int64), layout


def _layout(a: np.ndarray, shape: tuple[int, ...], where: str) -> tuple[np.ndarray, dict]:
    """``a`` reshaped into (n, *shape) examples, any dtype, and the layout ``restore`` undoes."""
    if len(shape) == 2 and a.ndim == 2 and a.shape[0] == shape[0] and a.shape[1] != shape[1] and a.shape[1]:
        length, piece = a.shape[1], shape[1]
        padded = np.concatenate([a, np.repeat(a[:, -1:], -length % piece, axis=1)], axis=1)
        x, _ = _layout(padded.reshape(shape[0], -1, piece).transpose(1, 0, 2), shape, where)
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
    return a.reshape((-1,) + shape), {"hwc": hwc}


def restore(x: np.ndarray, spec: dict) -> np.ndarray:
    """Undo ``examples_of`` for one array described by ``spec`` (shape, dtype, layout)."""
    shape, dtype = tuple(spec["shape"]), np.dtype(spec["dtype"])
    if spec.get("length"):  # a signal in padded pieces (n, C, L)
        x = x.transpose(1, 0, 2).reshape(x.shape[1], -1)[:, :spec["length"]]
    flat = x.reshape(-1)
    if len(shape) == 3 and spec.get("hwc"):
        return flat.reshape(shape[2], shape[0], shape[1]).transpose(1, 2, 0).astype(dtype)
    if flat.size != math.prod(shape):
        raise DataError(f"decoded {flat.size} values for an array of shape {shape}")
    return flat.reshape(shape).astype(dtype)


def _item_bytes(meta: dict, arrays: dict[str, np.ndarray]) -> bytes:
    """An item serialised in its own format (PNG for every image)."""
    buf = io.BytesIO()
    if meta["kind"] == "image":
        from PIL import Image

        Image.fromarray(arrays[""], mode=meta["mode"]).save(buf, format="PNG")
    elif meta["kind"] == "wav":
        from .audio import wav_bytes

        return wav_bytes(arrays[""], meta["wav"])
    elif meta["kind"] == "npy":
        np.save(buf, arrays[""], allow_pickle=False)
    else:
        np.savez(buf, **arrays)
    return buf.getvalue()


def write_item(meta: dict, arrays: dict[str, np.ndarray], folder: Path) -> Path:
    """Write an item under its original name (images as PNG) into ``folder``."""
    name = Path(meta["name"])
    path = Path(folder) / (name.stem + ".png" if meta["kind"] == "image" else name.name)
    path.write_bytes(_item_bytes(meta, arrays))
    return path


def read_examples(path: Path, shape: tuple[int, ...], levels: int, exact: bool = True) -> tuple[np.ndarray, dict]:
    """Every array of an image, WAV, .npy or .npz file, in order, as (n, *shape) examples, and the
    item's meta (with each array's layout and example count, for ``write_like``): integer levels in
    [0, levels) (images always; arrays when ``exact``), else finite numbers (float64)."""
    meta, arrays = read_item(path)
    out = []
    for spec in meta["arrays"]:
        a, key = arrays[spec["key"]], spec["key"]
        where = f"{path}[{key}]" if key else str(path)
        if exact or meta["kind"] == "image":
            x, layout = examples_of(a, shape, levels, where)
        else:
            if a.dtype.kind not in "iubf":
                raise DataError(f"{where}: dtype {a.dtype} is not a number type")
            x, layout = _layout(a, shape, where)
            x = x.astype(np.float64)
            if not np.isfinite(x).all():
                raise DataError(f"{where}: contains NaN or infinite values")
        spec.update(layout, examples=len(x))
        out.append(x)
    return np.concatenate(out), meta


def read_mask(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A mask file as bool (m, *shape): an (H, W) image or array covers every channel; an RGB
    image marks a pixel when any of its channels is non-zero."""
    meta, arrays = read_item(path)
    if len(arrays) != 1:
        raise DataError(f"{path}: a mask file holds one array, this one {len(arrays)}")
    a = next(iter(arrays.values()))
    if a.dtype.kind not in "iubf":
        raise DataError(f"{path}: dtype {a.dtype} is not a number type")
    a = a != 0
    if meta["kind"] == "image" and a.ndim == 3:
        a = a.any(-1)
    if len(shape) == 3 and a.shape == shape[1:]:
        return np.broadcast_to(a, shape)[None].copy()
    return examples_of(a.astype(np.uint8), shape, 2, str(path))[0].astype(bool)


def check_output(meta: dict, out: Path) -> Path:
    """``out`` if its suffix is the input's format (``.png`` for any image), else a ``DataError``;
    called before the work, so a long run never ends in a refusal."""
    out, want = Path(out), _OUTPUT_SUFFIX[meta["kind"]]
    if out.suffix.lower() != want:
        raise DataError(f"{out}: the input {meta['name']} is {'an image' if want == '.png' else 'a ' + want} file, "
                        f"so the output is written as {want} too (name it ...{want})")
    return out


def write_like(meta: dict, x: np.ndarray, out: Path, draws: int = 1) -> list[Path]:
    """Write examples ``x`` ((draws * n, *shape), draw-major) into ``out`` in the format of the item
    ``meta`` came from (``read_examples``): same kind, shapes and dtypes; ``draws > 1`` adds a
    leading draw axis to each array, or for images and WAV files writes ``out_0``, ``out_1``, ...
    Values are cast to the input's dtype (they are levels of the model, so they fit)."""
    out = check_output(meta, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    per_draw = np.split(np.asarray(x), draws)
    restored = []
    for xd in per_draw:  # one copy of the whole item per draw
        arrays, at = {}, 0
        for spec in meta["arrays"]:
            arrays[spec["key"]] = restore(xd[at:at + spec["examples"]], spec)
            at += spec["examples"]
        restored.append(arrays)
    if draws == 1:
        out.write_bytes(_item_bytes(meta, restored[0]))
        return [out]
    if meta["kind"] in ("npy", "npz"):
        stacked = {spec["key"]: np.stack([r[spec["key"]] for r in restored]) for spec in meta["arrays"]}
        out.write_bytes(_item_bytes(meta, stacked))
        return [out]
    paths = [out.with_name(f"{out.stem}_{d}{out.suffix}") for d in range(draws)]
    for p, arrays in zip(paths, restored):
        p.write_bytes(_item_bytes(meta, arrays))
    return paths


def levels_dtype(levels: int, recorded: str = "") -> np.dtype:
    """The dtype a run's data came in (``recorded``), else the smallest unsigned one that holds ``levels``."""
    if recorded:
        return np.dtype(recorded)
    return np.dtype(np.uint8 if levels <= 256 else np.uint16 if levels <= 65536 else np.int64)


def samples_meta(out: Path, shape: tuple[int, ...], levels: int, dtype: str = "", n: int = 1) -> tuple[dict, int]:
    """The item that ``n`` samples of shape ``shape`` become in ``out`` (by its suffix), and the
    number of draws ``write_like`` splits them into: one array (n, *shape) in the data's dtype for
    ``.npy`` (``.npz``: key ``x``); one PNG per sample for image data."""
    out, shape = Path(out), tuple(shape)
    suffix = out.suffix.lower()
    if suffix in (".npy", ".npz"):
        spec = {"key": "" if suffix == ".npy" else "x", "shape": [n, *shape], "dtype": levels_dtype(levels, dtype).str,
                "examples": n}
        return {"name": out.name, "kind": suffix[1:], "mode": None, "arrays": [spec]}, 1
    if suffix == ".png":
        if len(shape) != 3 or shape[0] not in (1, 3) or levels > 256:
            raise DataError(f"{out}: these samples ({shape}, {levels} levels) are not 8-bit gray or RGB images; "
                            f"write .npy or .npz")
        c, h, w = shape
        spec = {"key": "", "shape": [h, w] if c == 1 else [h, w, c], "dtype": "|u1", "hwc": c == 3, "examples": 1}
        return {"name": out.name, "kind": "image", "mode": "L" if c == 1 else "RGB", "arrays": [spec]}, n
    raise DataError(f"{out}: write samples as .npy, .npz or (images) .png")


def write_samples(x, out: Path, shape: tuple[int, ...], levels: int, dtype: str = "") -> list[Path]:
    """Samples (n, *shape) of integer levels into ``out`` (``samples_meta``)."""
    meta, draws = samples_meta(out, shape, levels, dtype, len(x))
    return write_like(meta, np.asarray(x), out, draws)
