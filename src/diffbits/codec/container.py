"""The ``.dbits`` container, version 4: a compact binary layout, every item checked. (Version 3 had
the same layout, but its chain did not mix the stack before each pop, so its streams decode differently.)

    magic "dB" | version (1 byte) | flags (1 byte)
    [STREAM]  model fingerprint (6 bytes) | T | batch | resolution x 4 | the stream's layout
              (warm-start examples, codec and bytes; prefill and trimmed words; batch growth)
    [KNOTS]   T step sizes on the rate-optimal lattice
    item count | per item: its record (below) | the items' stored bytes | ANS words (to the end)

Integers are unsigned LEB128 varints. An item record is its name, one byte for its kind and how
it is stored (by the model's chain, or by a classical codec), its arrays (key, dtype, shape and
layout: only for items the chain codes), a WAV file's bytes around the samples, the length of
its stored bytes, and 4 bytes of BLAKE2b over the record and the item's original arrays (dtype,
shape, bytes), XORed with a digest of the header before the items, checked after decoding. The model fingerprint (the first 48 bits of
``runs.model_fingerprint``) is checked before anything is decoded. A file with nothing coded
by the model carries no fingerprint and needs no model.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from ..errors import ContainerError

__all__ = ["MAGIC", "VERSION", "Chain", "Item", "Container", "pack", "unpack", "item_checksum", "KINDS", "CODECS"]

MAGIC = b"dB"
VERSION = 4
OLD_MAGIC = b"DBITS\x00"  # versions 1 and 2
FINGERPRINT_BYTES = 6
CHECKSUM_BYTES = 4
STREAM, KNOTS = 1, 2  # flags

KINDS = ("npy", "npz", "wav-8", "wav-16", "image-L", "image-RGB")  # file kinds (WAV sample width, Pillow mode)
SUFFIX = {"npy": ".npy", "npz": ".npz", "wav-8": ".wav", "wav-16": ".wav", "image-L": ".png", "image-RGB": ".png"}
CODECS = ("model", "raw", "zlib", "lzma", "zstd", "png", "jpegxl", "flac")  # how its bytes are stored
IMPLIED_SUFFIX = 8  # in an item's kind byte: its name is stored without the suffix its kind implies
DTYPES = ("|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "|b1", ">u2", ">i2", ">u4", ">i4", ">u8", ">i8")
HWC, CUT = 1, 2  # array layout flags: an H x W x C image; a signal cut into padded pieces (its length follows)


# -- varints ------------------------------------------------------------------------------------

def _uvarint(n: int) -> bytes:
    if n < 0:
        raise ValueError(f"varints are unsigned, got {n}")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class _Reader:
    """Reads the container's fields in order; any overrun is a ``ContainerError``."""

    def __init__(self, data: bytes, at: int = 0):
        self.data, self.at = data, at

    def take(self, n: int) -> bytes:
        if n < 0 or self.at + n > len(self.data):
            raise ContainerError("the file ends early: it is truncated or corrupted")
        out = self.data[self.at:self.at + n]
        self.at += n
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def uvarint(self) -> int:
        n = shift = 0
        while True:
            b = self.byte()
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7
            if shift > 63:
                raise ContainerError("a malformed number in the header: the file is corrupted")

    def text(self) -> str:
        try:
            return self.take(self.uvarint()).decode("utf-8")
        except UnicodeDecodeError:
            raise ContainerError("a malformed name in the header: the file is corrupted") from None


def _text(s: str) -> bytes:
    b = s.encode("utf-8")
    return _uvarint(len(b)) + b


# -- the parts ----------------------------------------------------------------------------------

@dataclass
class Chain:
    """What the decoder needs to rebuild the chain and walk the stream."""

    fingerprint: bytes  # FINGERPRINT_BYTES
    T: int
    batch: int
    resolution: float  # a multiple of 1/4
    warm: int = 0  # examples in the warm start
    warm_codec: str = "raw"
    warm_bytes: int = 0
    prefill: int = 0  # pseudo-random initial words
    trim: int = 0  # of them, never popped and cut off
    growth: int = 0  # batch growth, in 1/64ths of an example per coded example (bitsback)
    knot_steps: list[int] | None = None  # rate-optimal lattice steps (codec.rate_optimal), or uniform in t

    def to_bytes(self) -> bytes:
        code = round(self.resolution * 4)
        if code < 1 or code != self.resolution * 4:
            raise ValueError(f"resolution must be a positive multiple of 0.25, got {self.resolution}")
        if len(self.fingerprint) != FINGERPRINT_BYTES:
            raise ValueError("the fingerprint has the wrong length")
        return b"".join([self.fingerprint, _uvarint(self.T), _uvarint(self.batch), _uvarint(code),
                         _uvarint(self.warm), bytes([CODECS.index(self.warm_codec)]), _uvarint(self.warm_bytes),
                         _uvarint(self.prefill), _uvarint(self.trim), _uvarint(self.growth)])

    @classmethod
    def read(cls, r: _Reader) -> "Chain":
        fingerprint = r.take(FINGERPRINT_BYTES)
        T, batch, code = r.uvarint(), r.uvarint(), r.uvarint()
        warm, codec = r.uvarint(), r.byte()
        if codec >= len(CODECS) or T < 1 or batch < 1 or code < 1:
            raise ContainerError("the chain's settings are malformed: the file is corrupted")
        chain = cls(fingerprint, T, batch, code / 4, warm, CODECS[codec], r.uvarint(), r.uvarint(), r.uvarint(),
                    r.uvarint())
        if chain.trim > chain.prefill or not 1 <= chain.growth <= 255 or chain.warm < 1:
            raise ContainerError("the stream's layout is malformed: the file is corrupted")
        return chain


@dataclass
class Item:
    """One input file: its name (the output name), kind, how it is stored and, for items the
    chain codes, its arrays: ``[{"key", "dtype", "shape", "hwc", "length"}]``."""

    name: str
    kind: str
    codec: str
    arrays: list[dict] = field(default_factory=list)
    wav: bytes = b""  # a WAV file's bytes before its samples and after them, and where they split
    wav_split: int = 0
    size: int = 0  # its stored bytes (0 for the chain's items: they live in the stream)
    checksum: bytes = b""

    @property
    def as_examples(self) -> bool:
        """The model's chain codes its arrays: their keys, dtypes, shapes and layouts are recorded
        (a classical code holds its own)."""
        return self.codec == "model"

    def record(self) -> bytes:
        """Everything but the checksum (which covers this record). Images are written back as PNG,
        so their names are kept without suffix; other names lose theirs where the kind implies it."""
        suffix = SUFFIX[self.kind]
        implied = self.kind.startswith("image") or self.name.endswith(suffix)
        name = self.name[:len(self.name) - len(self.name.rsplit(".", 1)[-1]) - 1] \
            if self.kind.startswith("image") and "." in self.name else self.name[:-len(suffix)] if implied else self.name
        code = KINDS.index(self.kind) << 4 | (IMPLIED_SUFFIX if implied else 0) | CODECS.index(self.codec)
        out = [_text(name), bytes([code])]
        if self.as_examples:
            out.append(_uvarint(len(self.arrays)))
            for a in self.arrays:
                flags = (HWC if a.get("hwc") else 0) | (CUT if a.get("length") else 0)
                dtype = a["dtype"]
                out += [_text(a["key"]), bytes([DTYPES.index(dtype) if dtype in DTYPES else 255])]
                if dtype not in DTYPES:
                    out.append(_text(dtype))
                out += [bytes([flags]), _uvarint(len(a["shape"])), *map(_uvarint, a["shape"])]
                if a.get("length"):
                    out.append(_uvarint(a["length"]))
        if self.kind.startswith("wav") and self.codec in ("model", "flac"):
            out += [_uvarint(len(self.wav)), self.wav, _uvarint(self.wav_split)]
        out.append(_uvarint(self.size))
        return b"".join(out)

    @classmethod
    def read(cls, r: _Reader) -> "Item":
        name, code = r.text(), r.byte()
        if code >> 4 >= len(KINDS) or code & 7 >= len(CODECS):
            raise ContainerError("an item of unknown kind: the file is corrupted or from a newer diffbits")
        kind = KINDS[code >> 4]
        item = cls(name + SUFFIX[kind] if code & IMPLIED_SUFFIX else name, kind, CODECS[code & 7])
        if item.as_examples:
            for _ in range(r.uvarint()):
                key, d = r.text(), r.byte()
                dtype = r.text() if d == 255 else DTYPES[d] if d < len(DTYPES) else None
                if dtype is None:
                    raise ContainerError("an array of unknown dtype: the file is corrupted")
                flags = r.byte()
                if flags & ~(HWC | CUT):
                    raise ContainerError("an array with unknown layout flags: the file is corrupted")
                shape = [r.uvarint() for _ in range(r.uvarint())]
                length = r.uvarint() if flags & CUT else 0
                item.arrays.append({"key": key, "dtype": dtype, "shape": shape, "hwc": bool(flags & HWC),
                                    "length": length})
        if item.kind.startswith("wav") and item.codec in ("model", "flac"):
            item.wav = r.take(r.uvarint())
            item.wav_split = r.uvarint()
        item.size = r.uvarint()
        item.checksum = r.take(CHECKSUM_BYTES)
        return item


def item_checksum(record: bytes, arrays: dict[str, np.ndarray]) -> bytes:
    """BLAKE2b (4 bytes) over an item's record and its arrays' dtypes, shapes and bytes, in key order."""
    h = hashlib.blake2b(record, digest_size=CHECKSUM_BYTES)
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(key.encode() + a.dtype.str.encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.digest()


@dataclass
class Container:
    chain: Chain | None  # None: every item stored classically, no stream
    items: list[Item]
    payloads: list[bytes]  # per item: its stored bytes (b"" for the chain's)
    words: np.ndarray  # the ANS stream (uint32)


def pack(c: Container) -> bytes:
    """The file's bytes. Each item's ``checksum`` must already be set (``item_checksum``)."""
    flags = (STREAM if c.chain is not None else 0) | (KNOTS if c.chain is not None and c.chain.knot_steps else 0)
    out = [MAGIC, bytes([VERSION, flags])]
    if c.chain is not None:
        out.append(c.chain.to_bytes())
        if c.chain.knot_steps:
            out += [_uvarint(s) for s in c.chain.knot_steps]
    elif len(c.words):
        raise ValueError("a stream needs its chain's settings")
    mask = _header_mask(b"".join(out))
    out.append(_uvarint(len(c.items)))
    for item, payload in zip(c.items, c.payloads, strict=True):
        if item.size != len(payload) or len(item.checksum) != CHECKSUM_BYTES:
            raise ValueError(f"item {item.name!r}: set its size, then its checksum (item_checksum), before packing")
        out += [item.record(), _xor(item.checksum, mask)]
    out += list(c.payloads)
    out.append(np.asarray(c.words, dtype="<u4").tobytes())
    return b"".join(out)


def unpack(data: bytes) -> Container:
    """The container in ``data``; a ``ContainerError`` that says what is wrong otherwise."""
    if data.startswith(OLD_MAGIC):
        raise ContainerError("this file is in the container format of diffbits 0.1 (version 2), which this "
                             "diffbits no longer reads; decompress it with diffbits 0.1 and compress it again")
    if len(data) < 4 or not data.startswith(MAGIC):
        raise ContainerError("not a diffbits container (bad magic bytes or too short)")
    if data[2] == 3:
        raise ContainerError("this file is in container format version 3, whose chain this diffbits no longer "
                             "decodes (it now mixes the stack before each pop); decompress it with the diffbits "
                             "that wrote it and compress it again")
    if data[2] != VERSION:
        raise ContainerError(f"container format version {data[2]}; this diffbits reads version {VERSION}")
    flags, r = data[3], _Reader(data, 4)
    if flags & ~(STREAM | KNOTS):
        raise ContainerError("unknown flags in the header: the file is corrupted")
    chain = None
    if flags & STREAM:
        chain = Chain.read(r)
        if flags & KNOTS:
            chain.knot_steps = [r.uvarint() for _ in range(chain.T)]
    mask = _header_mask(data[:r.at])
    items = [Item.read(r) for _ in range(r.uvarint())]
    for item in items:
        item.checksum = _xor(item.checksum, mask)
    payloads = [r.take(item.size) for item in items]
    rest = len(data) - r.at
    if rest % 4 or (rest and chain is None):
        raise ContainerError("the file's length does not match its header: it is truncated or corrupted")
    words = np.frombuffer(data, dtype="<u4", offset=r.at).astype(np.uint32)
    return Container(chain, items, payloads, words)


def _header_mask(header: bytes) -> bytes:
    """Each item's stored checksum is XORed with a digest of the header before the items (magic,
    flags, the chain's settings, its knots), so that a corrupted setting the decode happens not to
    need (a batch size never reached, say) still fails every item's check, at no cost in bytes."""
    return hashlib.blake2b(header, digest_size=CHECKSUM_BYTES, person=b"dbits-header").digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def fingerprint_bytes(hexdigest: str) -> bytes:
    """The container's part of ``runs.model_fingerprint``."""
    return bytes.fromhex(hexdigest)[:FINGERPRINT_BYTES]

