"""The ``.dbits`` container: one file, many items, every byte checked.

    MAGIC (6 bytes) | version (u16) | header length (u32) | header (zlib JSON)
    | ANS words (u32, little-endian) | fallback blobs | SHA-256 of everything before (32 bytes)

The header names the model (fingerprint: a hash of its config and weights), the chain settings
(T, lattice resolution, batch, the stream layout: batch sizes, warm start, prefill) and, per item, its name, kind, shape, dtype,
number of examples, a SHA-256 of the original array, and whether it fell back to deflate.
"""
from __future__ import annotations

import hashlib
import json
import struct
import zlib

import numpy as np
import torch

from ..errors import ContainerError

__all__ = ["MAGIC", "VERSION", "ContainerError", "pack", "unpack", "array_digest"]

MAGIC = b"DBITS\x00"
VERSION = 2  # 2: the warm start (layout in the header)
_HEAD = struct.Struct("<HI")
_DIGEST = 32


def array_digest(a: np.ndarray) -> str:
    """SHA-256 (first 64 bits) of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(a)
    return hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()[:16]  # the file has its own SHA-256


def pack(header: dict, words: np.ndarray, blobs: list[bytes]) -> bytes:
    header = dict(header, words=int(len(words)), blobs=[len(b) for b in blobs])
    hdr = zlib.compress(json.dumps(header, separators=(",", ":")).encode(), 9)
    body = b"".join([MAGIC, _HEAD.pack(VERSION, len(hdr)), hdr, np.asarray(words, dtype="<u4").tobytes(), *blobs])
    return body + hashlib.sha256(body).digest()


def unpack(data: bytes) -> tuple[dict, np.ndarray, list[bytes]]:
    """Header, ANS words and fallback blobs; raises ``ContainerError`` on any damage."""
    if len(data) < len(MAGIC) + _HEAD.size + _DIGEST or not data.startswith(MAGIC):
        raise ContainerError("not a diffbits container (bad magic bytes or too short)")
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    version, n_hdr = _HEAD.unpack_from(body, len(MAGIC))
    if version != VERSION:
        raise ContainerError(f"container format version {version}; this diffbits reads version {VERSION}")
    if hashlib.sha256(body).digest() != digest:
        raise ContainerError("checksum mismatch: the file is truncated or corrupted")
    at = len(MAGIC) + _HEAD.size
    try:
        header = json.loads(zlib.decompress(body[at:at + n_hdr]))
    except (zlib.error, ValueError) as e:
        raise ContainerError(f"unreadable header ({e})") from None
    at += n_hdr
    n_words = int(header["words"])
    words = np.frombuffer(body, dtype="<u4", count=n_words, offset=at).astype(np.uint32)
    at += 4 * n_words
    blobs = []
    for size in header["blobs"]:
        blobs.append(body[at:at + size])
        at += size
    if at != len(body):
        raise ContainerError("the file's length does not match its header")
    return header, words, blobs
