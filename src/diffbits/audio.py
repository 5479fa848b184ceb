"""WAV files as integer levels: PCM samples in, the same bytes out.

A WAV file is RIFF chunks; the samples are the ``data`` chunk. ``read_wav`` returns them as
levels (8-bit PCM is unsigned already: 256 levels; 16-bit is signed: ``s + 32768``, 65536
levels), shaped (channels, frames), with every byte around them (header, other chunks) kept
verbatim, so ``wav_bytes`` rebuilds the file bit for bit.
"""
from __future__ import annotations

import base64
import struct
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = ["read_wav", "wav_bytes", "crops"]

_OFFSET = {1: 0, 2: 32768}  # bytes per sample -> level of the sample 0
_DTYPE = {1: np.uint8, 2: np.dtype("<i2")}


def _chunks(raw: bytes, where: str):
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise DataError(f"{where}: not a RIFF/WAVE file")
    pos = 12
    while pos + 8 <= len(raw):
        tag, size = raw[pos:pos + 4], struct.unpack("<I", raw[pos + 4:pos + 8])[0]
        yield tag, pos + 8, min(size, len(raw) - pos - 8)
        pos += 8 + size + (size & 1)  # chunks are padded to even sizes


def read_wav(path: Path) -> tuple[np.ndarray, dict]:
    """``(levels (C, N) uint16 or uint8, meta)`` of a PCM WAV file; meta holds the
    sample width, channels, rate and the bytes before and after the samples (base64)."""
    path = Path(path)
    return parse_wav(path.read_bytes(), str(path))


def parse_wav(raw: bytes, where: str) -> tuple[np.ndarray, dict]:
    """``read_wav`` of a WAV file's bytes (``where`` names it in errors)."""
    path = where
    fmt = data = None
    for tag, start, size in _chunks(raw, where):
        if tag == b"fmt ":
            fmt = struct.unpack("<HHIIHH", raw[start:start + 16])
        elif tag == b"data":
            data = (start, size)
    if fmt is None or data is None:
        raise DataError(f"{path}: a WAV file needs a fmt and a data chunk")
    encoding, channels, rate, _, _, bits = fmt
    width = bits // 8
    if encoding != 1 or width not in _DTYPE:
        raise DataError(f"{path}: {bits}-bit {'PCM' if encoding == 1 else f'format {encoding}'} audio; "
                        f"diffbits reads 8- and 16-bit PCM")
    start, size = data
    size -= size % (width * channels)
    samples = np.frombuffer(raw[start:start + size], _DTYPE[width]).reshape(-1, channels).T
    levels = (samples.astype(np.int32) + _OFFSET[width]).astype(np.uint16 if width == 2 else np.uint8)
    meta = {"channels": channels, "rate": rate, "width": width,
            "prefix": base64.b64encode(raw[:start]).decode(), "suffix": base64.b64encode(raw[start + size:]).decode()}
    return levels, meta


def wav_bytes(levels: np.ndarray, meta: dict) -> bytes:
    """The file ``read_wav`` read: its bytes around the samples, and the samples."""
    width = meta["width"]
    samples = (levels.astype(np.int32) - _OFFSET[width]).T.reshape(-1).astype(_DTYPE[width])
    return base64.b64decode(meta["prefix"]) + samples.tobytes() + base64.b64decode(meta["suffix"])


def crops(levels: np.ndarray, length: int) -> np.ndarray:
    """Non-overlapping crops (n, C, length) of a (C, N) signal; the remainder is dropped."""
    n = levels.shape[1] // length
    return levels[:, :n * length].reshape(levels.shape[0], n, length).transpose(1, 0, 2)
