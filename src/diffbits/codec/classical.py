"""Classical lossless codecs: the codec's floor and its warm start.

An item the model would code worse than its classical codec is stored classically, and the
first examples of the chain's stream (its warm start: the stack's first pops read their bytes)
are coded classically too. Per kind, every available candidate is tried and the smallest kept:

- 8-bit gray or RGB images: JPEG-XL lossless (``imagecodecs``, effort 10), PNG (level 9);
- signals of 8 or 16 bits: FLAC (``soundfile``, level 8);
- everything, and arrays of any kind: xz (preset 9e), zstd (level 19, ``imagecodecs``), zlib (9).

A codec whose library is not installed is skipped (zlib and xz ship with Python), so a file
never needs more than the libraries the machine that reads it has: the decoder names the
missing one.
"""
from __future__ import annotations

import io
import lzma
import zlib

import numpy as np

from ..errors import ContainerError

__all__ = ["BYTE_CODECS", "encode_bytes", "decode_bytes", "encode_image", "decode_image", "encode_signal",
           "decode_signal", "best", "encode_examples", "decode_examples"]

XZ = lzma.PRESET_EXTREME | 9


def _imagecodecs():
    try:
        import imagecodecs
    except ImportError:
        return None
    return imagecodecs


def _missing(codec: str, package: str):
    return ContainerError(f"this file stores an item with {codec}, which needs the Python package {package!r} "
                          f"(pip install {package})")


# -- bytes --------------------------------------------------------------------------------------

def _zstd_encode(data: bytes) -> bytes | None:
    ic = _imagecodecs()
    return bytes(ic.zstd_encode(data, level=19)) if ic is not None and ic.ZSTD.available else None


BYTE_CODECS = {
    "zlib": (lambda b: zlib.compress(b, 9), zlib.decompress),
    "lzma": (lambda b: lzma.compress(b, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": XZ}]),
             lambda b: lzma.decompress(b, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": XZ}])),
    "zstd": (_zstd_encode, None),
}


def encode_bytes(data: bytes) -> dict[str, bytes]:
    """Every available byte codec's output for ``data``, and ``raw``."""
    out = {"raw": bytes(data)}
    for name, (enc, _) in BYTE_CODECS.items():
        blob = enc(data)
        if blob is not None:
            out[name] = blob
    return out


def decode_bytes(codec: str, blob: bytes) -> bytes:
    try:
        if codec == "raw":
            return bytes(blob)
        if codec == "zstd":
            ic = _imagecodecs()
            if ic is None or not ic.ZSTD.available:
                raise _missing("zstd", "imagecodecs")
            return bytes(ic.zstd_decode(blob))
        return BYTE_CODECS[codec][1](blob)
    except (zlib.error, lzma.LZMAError, ValueError, RuntimeError) as e:
        raise ContainerError(f"stored bytes do not decompress with {codec} ({e}): the file is corrupted") from None


# -- images -------------------------------------------------------------------------------------

def encode_image(pixels: np.ndarray) -> dict[str, bytes]:
    """PNG and, where available, JPEG-XL lossless of an (H, W) or (H, W, 3) uint8 image."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", optimize=True)
    out = {"png": buf.getvalue()}
    ic = _imagecodecs()
    if ic is not None and ic.JPEGXL.available:
        out["jpegxl"] = bytes(ic.jpegxl_encode(pixels, lossless=True, effort=10))
    return out


def decode_image(codec: str, blob: bytes) -> np.ndarray:
    try:
        if codec == "png":
            from PIL import Image

            with Image.open(io.BytesIO(blob)) as im:
                return np.asarray(im)
        if codec == "jpegxl":
            ic = _imagecodecs()
            if ic is None or not ic.JPEGXL.available:
                raise _missing("JPEG-XL", "imagecodecs")
            return np.asarray(ic.jpegxl_decode(blob))
    except ContainerError:
        raise
    except Exception as e:  # the decoders raise their own types on damaged data
        raise ContainerError(f"a stored {codec} image does not decode ({e}): the file is corrupted") from None
    raise ContainerError(f"{codec} is not an image codec: the file is corrupted")


# -- signals ------------------------------------------------------------------------------------

FLAC_LEVELS = 65536


def encode_signal(levels: np.ndarray, n_levels: int) -> dict[str, bytes]:
    """FLAC (level 8) of a (C, N) signal of at most 65,536 levels, centred to 16-bit samples."""
    if n_levels > FLAC_LEVELS or levels.shape[0] > 8 or not levels.size:
        return {}
    try:
        import soundfile
    except ImportError:
        return {}
    samples = (levels.astype(np.int32) - FLAC_LEVELS // 2).T.astype(np.int16)
    buf = io.BytesIO()
    soundfile.write(buf, samples, 8000, format="FLAC", subtype="PCM_16", compression_level=1.0)
    return {"flac": buf.getvalue()}


def decode_signal(blob: bytes) -> np.ndarray:
    """The (C, N) levels ``encode_signal`` coded (uint16)."""
    try:
        import soundfile
    except ImportError:
        raise _missing("FLAC", "soundfile") from None
    try:
        samples, _ = soundfile.read(io.BytesIO(blob), dtype="int16", always_2d=True)
    except Exception as e:
        raise ContainerError(f"a stored FLAC stream does not decode ({e}): the file is corrupted") from None
    return (samples.T.astype(np.int32) + FLAC_LEVELS // 2).astype(np.uint16)


def best(candidates: dict[str, bytes]) -> tuple[str, bytes]:
    """The smallest candidate (ties: the first)."""
    name = min(candidates, key=lambda k: len(candidates[k]))
    return name, candidates[name]


# -- a model's examples (the warm start) --------------------------------------------------------

def _level_dtype(levels: int) -> np.dtype:
    return np.dtype("u1" if levels <= 256 else "<u2" if levels <= 65536 else "<u4")


def _is_image(shape: tuple[int, ...], levels: int) -> bool:
    return len(shape) == 3 and shape[0] in (1, 3) and levels <= 256


def encode_examples(x: np.ndarray, levels: int) -> dict[str, bytes]:
    """Every candidate coding of examples ``x`` (m, *shape) of ``levels`` levels: images stacked
    into one tall picture, signals joined end to end, and the raw level bytes for any shape."""
    shape = x.shape[1:]
    out = encode_bytes(np.ascontiguousarray(x, dtype=_level_dtype(levels)).tobytes())
    if _is_image(shape, levels):
        c, h, w = shape
        tall = x.astype(np.uint8).transpose(0, 2, 3, 1).reshape(len(x) * h, w, c)
        out.update(encode_image(tall[..., 0] if c == 1 else tall))
    elif len(shape) == 2:
        out.update(encode_signal(x.transpose(1, 0, 2).reshape(shape[0], -1), levels))
    return out


def decode_examples(codec: str, blob: bytes, m: int, shape: tuple[int, ...], levels: int) -> np.ndarray:
    """The ``m`` examples ``encode_examples`` coded with ``codec``, as int64."""
    if codec in ("png", "jpegxl"):
        if not _is_image(shape, levels):
            raise ContainerError(f"{codec} cannot hold examples of shape {shape}: the file is corrupted")
        c, h, w = shape
        a = decode_image(codec, blob)
        x = a.reshape(m, h, w, c).transpose(0, 3, 1, 2) if a.size == m * h * w * c else None
    elif codec == "flac":
        a = decode_signal(blob)
        x = a.reshape(shape[0], m, shape[1]).transpose(1, 0, 2) if len(shape) == 2 and a.size == m * np.prod(shape) else None
    else:
        raw, dt = decode_bytes(codec, blob), _level_dtype(levels)
        x = np.frombuffer(raw, dt).reshape((m,) + tuple(shape)) if len(raw) == m * int(np.prod(shape)) * dt.itemsize else None
    if x is None:
        raise ContainerError("the warm-start examples have the wrong size: the file is corrupted")
    x = x.astype(np.int64)
    if x.size and (x.min() < 0 or x.max() >= levels):
        raise ContainerError("a warm-start example lies outside the model's levels: the file is corrupted")
    return x
