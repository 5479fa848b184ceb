"""``compress`` and ``decompress``: files in, one ``.dbits`` container out, and back, bit-exact.

Each input file is an item. Before anything is coded, every item gets its classical code
(``codec.classical``: JPEG-XL or PNG for images, FLAC for audio, xz, zstd or zlib for arrays and
for any file) and, where the model can code it, the model's expected cost (its T-step bound on a
sample of the item's examples). An item the model would code worse, or cannot code at all (its
shape, dtype or levels are not the model's), is stored classically. The model's items share one
bits-back stream, whose warm start is itself classically coded; the encoder decodes the stream
once to verify it, and an item that does not come back exactly is stored classically. Last, the
file is set beside the all-classical file and the smaller one is written: a file is never larger
than its items' classical codes and a few bytes of container. Nothing is written until every
item has been checked.
"""
from __future__ import annotations

import io
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import write_atomic
from ..errors import DataError
from ..io import IMAGE_SUFFIXES, _item_bytes, examples_of, read_item, restore, write_item
from ..runs import model_fingerprint, resolve_model
from . import classical
from .bitsback import BitsBackCoder, CodingError, OutOfRange
from .container import Chain, Container, ContainerError, Item, fingerprint_bytes, item_checksum, pack, unpack
from .rate_optimal import LATTICE, chain_grid, rate_optimal_knots

__all__ = ["compress", "decompress"]

GRIDS = ("auto", "rate-optimal", "uniform-t")
STORES = ("auto", "model", "classical")
SAMPLE = 64  # examples per item on which the model's cost is estimated
MARGIN = 0.98  # the model codes an item only if it expects to beat its classical code by 2%


def _kind(meta: dict) -> str:
    if meta["kind"] == "image":
        return "image-L" if meta["mode"] == "L" else "image-RGB"
    if meta["kind"] == "wav":
        return f"wav-{8 * meta['wav']['width']}"
    return meta["kind"]


def _meta(item: Item) -> dict:
    """The ``io`` meta of a container's item (for ``restore`` and ``write_item``)."""
    kind = item.kind.split("-")[0]
    meta = {"name": item.name, "kind": kind, "mode": item.kind.split("-")[1] if kind == "image" else None,
            "arrays": [dict(a) for a in item.arrays]}
    if kind == "wav":
        import base64

        meta["wav"] = {"width": int(item.kind.split("-")[1]) // 8,
                       "prefix": base64.b64encode(item.wav[:item.wav_split]).decode(),
                       "suffix": base64.b64encode(item.wav[item.wav_split:]).decode()}
    return meta


def _wav_split(meta: dict) -> tuple[bytes, int]:
    import base64

    prefix, suffix = (base64.b64decode(meta["wav"][k]) for k in ("prefix", "suffix"))
    return prefix + suffix, len(prefix)


def examples_per_array(spec: dict, shape: tuple[int, ...]) -> int:
    """How many of the model's examples an array of ``spec`` makes (``io.examples_of``)."""
    if spec.get("length"):
        return -(-spec["length"] // shape[1])
    return math.prod(spec["shape"]) // math.prod(shape)


@dataclass
class _Entry:
    """An input on its way into the container."""

    meta: dict
    arrays: dict[str, np.ndarray]
    x: np.ndarray | None  # the model's examples, or None where the model cannot code it
    why: str  # why it is stored classically (when it is)
    codec: str = ""  # its classical code
    payload: bytes = b""
    model_bits: float = math.inf  # the model's expected cost

    def item(self, codec: str) -> Item:
        """Its container record for ``codec`` (``model`` or its classical codec), checksummed."""
        meta = self.meta
        it = Item(meta["name"], _kind(meta), codec)
        if it.as_examples:
            it.arrays = [{k: s.get(k) for k in ("key", "dtype", "shape", "hwc", "length")} for s in meta["arrays"]]
        if it.kind.startswith("wav") and codec in ("model", "flac"):
            it.wav, it.wav_split = _wav_split(meta)
        it.size = 0 if codec == "model" else len(self.payload)
        it.checksum = item_checksum(it.record(), self.arrays)
        return it


def _classical(e: _Entry) -> None:
    """The item's best classical code: its picture (images: JPEG-XL, PNG), its samples (WAV
    files: FLAC) or its file's bytes (xz, zstd, zlib; any file)."""
    meta, kind = e.meta, e.meta["kind"]
    if kind == "image":
        cands = classical.encode_image(e.arrays[""])
    else:
        cands = classical.encode_bytes(_item_bytes(meta, e.arrays))
    sizes = {name: len(blob) for name, blob in cands.items()}
    if kind == "wav":  # FLAC holds the samples; the bytes around them are kept beside it
        flac = classical.encode_signal(e.arrays[""], 256 ** meta["wav"]["width"])
        cands.update(flac)
        sizes.update({name: len(blob) + len(_wav_split(meta)[0]) for name, blob in flac.items()})
    e.codec = min(sizes, key=sizes.get)
    e.payload = cands[e.codec]


def _read(p: Path, shape, levels) -> _Entry:
    meta, arrays = read_item(p)
    xs, why = [], ""
    for spec in meta["arrays"]:
        try:
            x, layout = examples_of(arrays[spec["key"]], shape, levels, f"{p}[{spec['key']}]" if spec["key"] else str(p))
        except DataError as err:
            why = str(err)
            break
        spec.update(layout, examples=len(x))
        xs.append(x)
    x = None if why else (np.concatenate(xs) if xs else np.zeros((0,) + shape, np.int64))
    e = _Entry(meta, arrays, x, why)
    _classical(e)
    return e


def _knots(chain: Chain | None):
    steps = chain.knot_steps if chain else None
    return None if not steps else np.concatenate([[0], np.cumsum(steps)]).tolist()


@torch.no_grad()
def bound_bpd(model, x: np.ndarray, T: int, draws: int, seed: int = 0, knots=None) -> np.ndarray:
    """The model's T-step bound per example (bits/dim), its time stratified into ``draws`` strata
    per example (``draws = T``: every step once, exact in t); on the chain through ``knots``
    (``codec.rate_optimal``) when given."""
    grid = None if knots is None else chain_grid(model.schedule, knots)
    g = torch.Generator().manual_seed(seed)
    out = np.zeros(len(x))
    for a in range(0, len(x), 256):
        xb = torch.as_tensor(x[a:a + 256])
        t = [(j + torch.rand(len(xb), generator=g, dtype=torch.float64)) / draws for j in range(draws)]
        out[a:a + 256] = torch.stack([model.bound(xb, T=T, t=tj.float(), generator=g, grid=grid).bpd for tj in t]).mean(0).numpy()
    return out


def _estimate(model, e: _Entry, T: int, knots) -> float:
    """The model's expected bits for the item: its bound on up to ``SAMPLE`` examples, scaled."""
    n = len(e.x)
    sample = e.x[np.linspace(0, n - 1, min(n, SAMPLE)).round().astype(int)]
    return float(bound_bpd(model, sample, T, draws=1, knots=knots).mean()) * model.dims * n


@torch.no_grad()
def compress(model_or_run, inputs: list[Path], out: Path, T: int = 100, resolution: float = 4.0, batch: int = 64,
             draws: int = 4, progress: bool = False, grid: str = "auto", store: str = "auto") -> dict:
    """Compress ``inputs`` into ``out`` with a shipped model's name or a run directory; returns the
    report ``{"items": [...], "total": {...}}``. ``grid``: where the T steps go: ``rate-optimal``
    (``codec.rate_optimal``, chosen for these inputs and kept in the header), ``uniform-t``, or
    ``auto``: rate-optimal when its expected saving is more than twice what its knots add to the
    header (large inputs) and T fits the lattice, else uniform-t. ``store``: ``auto`` codes an item
    with the model only where that is expected to pay (and keeps the model's file only if it is the
    smaller); ``model`` codes every item the model can with the model, whatever the cost (to measure
    the model's rate); ``classical`` stores every item classically."""
    if store not in STORES:
        raise ValueError(f"store must be one of {', '.join(STORES)}, got {store!r}")
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {', '.join(GRIDS)}, got {grid!r}")
    if grid == "rate-optimal" and T > LATTICE:
        raise ValueError(f"--grid rate-optimal places at most {LATTICE} steps, got T = {T}; use --grid uniform-t")
    if resolution <= 0 or resolution * 4 != round(resolution * 4):
        raise ValueError(f"resolution must be a positive multiple of 0.25, got {resolution}")
    cfg, model = resolve_model(model_or_run)
    shape, levels = tuple(model.data_shape), model.levels
    names = [Path(p).stem + ".png" if Path(p).suffix.lower() in IMAGE_SUFFIXES else Path(p).name for p in inputs]
    if len(set(names)) != len(names):
        raise DataError("two inputs would be restored under the same file name; rename one")
    entries = [_read(Path(p), shape, levels) for p in inputs]
    coded = [i for i, e in enumerate(entries) if e.x is not None and len(e.x)]
    if store == "classical":
        for i in coded:
            entries[i].why = "--store classical"
        coded = []

    knots = None
    if grid != "uniform-t" and T <= LATTICE and coded:
        x_all = np.concatenate([entries[i].x for i in coded])
        knots, saving = rate_optimal_knots(model, x_all, T)
        knots = knots.tolist()
        if grid == "auto" and saving * x_all[0].size * len(x_all) < 2 * 8 * 1.5 * T:  # ~1.5 bytes a knot
            knots = None
    for i in coded:
        e = entries[i]
        e.model_bits = _estimate(model, e, T, knots)
        if store == "auto" and e.model_bits > MARGIN * 8 * len(e.payload):
            e.why = f"the model expects {e.model_bits / 8:,.0f} bytes, {e.codec} takes {len(e.payload):,}"
    coded = [i for i in coded if not entries[i].why]

    coder = BitsBackCoder(model, T=T, resolution=resolution, batch=batch, progress=progress, knots=knots)
    words, rep, t_enc, t_dec = np.zeros(0, np.uint32), None, 0.0, 0.0
    for _ in range(4):  # encode, verify, drop what failed, again
        if not coded:
            break
        x = np.concatenate([entries[i].x for i in coded])
        owner = np.concatenate([[i] * len(entries[i].x) for i in coded]).astype(int)
        per_example = sum(entries[i].model_bits for i in coded) / len(x)
        tic = time.perf_counter()
        try:
            words, rep = coder.encode(x, bits_per_example=per_example)
            t_enc = time.perf_counter() - tic
            tic = time.perf_counter()
            back = coder.decode(words, rep["layout"], len(x))
            t_dec = time.perf_counter() - tic
            bad = np.flatnonzero((back != x).reshape(len(x), -1).any(1))
        except OutOfRange as err:
            bad = np.arange(*err.rows)
        except CodingError:
            bad = np.arange(len(x))
        if not len(bad):
            break
        for i in set(owner[bad].tolist()):
            entries[i].why = "its examples did not survive the verifying decode"
        coded = [i for i in coded if not entries[i].why]
    else:
        coded = []
    if not coded:
        words, rep = np.zeros(0, np.uint32), None

    def container(model_items: list[int]) -> Container:
        items = [e.item("model" if i in model_items else e.codec) for i, e in enumerate(entries)]
        payloads = [b"" if i in model_items else e.payload for i, e in enumerate(entries)]
        if not model_items:
            return Container(None, items, payloads, np.zeros(0, np.uint32))
        lay = rep["layout"]
        chain = Chain(fingerprint_bytes(model_fingerprint(cfg, model)), T, batch, resolution, lay["warm"],
                      lay["warm_codec"], lay["warm_bytes"], lay["prefill"], lay["trim"], lay["growth"],
                      None if knots is None else np.diff(knots).tolist())
        return Container(chain, items, payloads, words)

    data, all_classical = pack(container(coded)), pack(container([]))
    if store == "auto" and coded and len(all_classical) <= len(data):  # the model did not pay for itself here
        for i in coded:
            entries[i].why = "the file is smaller with every item stored classically"
        data, coded, rep = all_classical, [], None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda fh: fh.write(data))
    return _report(entries, coded, rep, words if coded else np.zeros(0, np.uint32), data, model, T, draws, t_enc,
                   t_dec, knots)


def _report(entries, coded, rep, words, data, model, T, draws, t_enc, t_dec, knots) -> dict:
    """Per item and in total: bytes and bits/dim, each item's classical rate and, for the model's
    items, the bound. ``chain_bpd`` is what the bits-back chain itself spent per dimension of the
    examples it coded (the warm start's examples are coded classically), beside ``chain_bound_bpd``,
    the bound on those same examples, and ``chain_excess_bpd`` (``paired_excess``); ``terms``
    gives each term's actual bits against its ideal."""
    n_coded = sum(len(entries[i].x) for i in coded)
    warm = rep["layout"]["warm"] if rep else 0
    chain_bits = 32.0 * (len(words) - rep["initial_words"] - rep["warm_words"]) if rep else 0.0
    warm_bits = 8.0 * rep["layout"]["warm_bytes"] if rep else 0.0
    info = rep["info_bits"] if rep else np.zeros(0)
    # bits per coded example: the warm start's bytes shared by its examples, the chain's by ideal information
    per_example = np.concatenate([np.full(warm, warm_bits / max(warm, 1)),
                                  info * (chain_bits / info.sum() if info.sum() > 0 else 0.0)])
    x = np.concatenate([entries[i].x for i in coded]) if coded else None
    bound = bound_bpd(model, x, T, draws, knots=knots) if coded else np.zeros(0)  # per coded example
    payload_bytes = sum(0 if i in coded else len(e.payload) for i, e in enumerate(entries))
    container_bytes = len(data) - 4 * len(words) - payload_bytes
    total_dims = sum(math.prod(a.shape) for e in entries for a in e.arrays.values())
    rows, at = [], 0
    for i, e in enumerate(entries):
        dims = sum(math.prod(a.shape) for a in e.arrays.values())
        if i in coded:
            n = len(e.x)
            net, item_bound, at = float(per_example[at:at + n].sum()), float(bound[at:at + n].mean()), at + n
        else:
            net, item_bound = 8.0 * len(e.payload), None
        rows.append({"name": e.meta["name"], "examples": len(e.x) if e.x is not None else None, "dims": dims,
                     "stored": "model" if i in coded else e.codec, "why": None if i in coded else e.why,
                     "classical_bpd": 8.0 * len(e.payload) / max(dims, 1),
                     "bpd": (net + 8.0 * container_bytes * dims / max(total_dims, 1)) / max(dims, 1),
                     "net_bpd": net / max(dims, 1), "bound_bpd": item_bound,
                     "encode_s": t_enc * len(e.x) / max(n_coded, 1) if i in coded else 0.0})
    total = {"items": len(entries), "dims": total_dims, "bytes": len(data), "bpd": 8.0 * len(data) / max(total_dims, 1),
             "classical_bytes": sum(len(e.payload) for e in entries), "container_bytes": container_bytes,
             "model_items": len(coded), "model_examples": n_coded, "T": T,
             "grid": "uniform-t" if knots is None else "rate-optimal"}
    if coded:
        dims = model.dims
        coded_dims, chain_dims = n_coded * dims, (n_coded - warm) * dims
        terms = {t: {"actual_bpd": v["actual"] / max(chain_dims, 1), "ideal_bpd": v["ideal"] / max(chain_dims, 1)}
                 for t, v in rep["terms"].items()}
        total.update({
            "model_bpd": (float(per_example.sum()) + 32.0 * rep["initial_words"]) / coded_dims,
            "net_bpd": float(per_example.sum()) / coded_dims, "bound_bpd": float(bound.mean()),
            "chain_bpd": chain_bits / max(chain_dims, 1),
            "chain_bound_bpd": float(bound[warm:].mean()) if n_coded > warm else None,
            "chain_excess_bpd": paired_excess(per_example[warm:] / dims, bound[warm:]),
            "initial_bits": 32 * rep["initial_words"], "warm_examples": warm, "warm_codec": rep["layout"]["warm_codec"],
            "warm_bits": warm_bits, "batches": len(rep["batches"]), "terms": terms,
            "encode_s": t_enc, "verify_s": t_dec, "encode_examples_per_s": n_coded / t_enc if t_enc else None,
            "decode_examples_per_s": n_coded / t_dec if t_dec else None})
    return {"items": rows, "total": total}


def paired_excess(spent: np.ndarray, bound: np.ndarray) -> list[float] | None:
    """[mean, standard error] over the chain's examples of (bits/dim it spent - its bound). Each
    example's cost is one sampled trajectory (bits-back's single-sample estimate of its bound), so
    this says whether the chain's gap to the bound is more than that sampling noise."""
    if len(spent) < 2:
        return None
    d = spent - bound
    return [float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))]


@torch.no_grad()
def decompress(path: Path, model_or_run, out_dir: Path, progress: bool = False) -> list[Path]:
    """Restore every item of ``path`` into ``out_dir``; returns the written paths. ``model_or_run``
    (a shipped model's name or a run directory) may be None for a file with no model-coded item."""
    path = Path(path)
    if not path.is_file():
        raise ContainerError(f"{path}: no such file")
    c = unpack(path.read_bytes())
    x, model_examples = None, []
    if c.chain is not None:
        if model_or_run is None:
            raise ContainerError(f"{path} was coded with a model: name it with --model (a shipped model or a run)")
        cfg, model = resolve_model(model_or_run)
        if c.chain.fingerprint != fingerprint_bytes(model_fingerprint(cfg, model)):
            raise ContainerError(f"{path} was compressed with another model (fingerprint {c.chain.fingerprint.hex()}); "
                                 f"{model_or_run} has {fingerprint_bytes(model_fingerprint(cfg, model)).hex()}")
        shape = tuple(model.data_shape)
        model_examples = [sum(examples_per_array(a, shape) for a in it.arrays) if it.codec == "model" else 0
                          for it in c.items]
        layout = {k: getattr(c.chain, k) for k in ("warm", "warm_codec", "warm_bytes", "prefill", "trim", "growth")}
        try:  # a corrupted header can make an impossible chain (knots, T, batch) as well as a bad stream
            coder = BitsBackCoder(model, T=c.chain.T, resolution=c.chain.resolution, batch=c.chain.batch,
                                  progress=progress, knots=_knots(c.chain))
            x = coder.decode(c.words, layout, sum(model_examples))
        except (CodingError, ValueError, OverflowError, RuntimeError, IndexError, MemoryError) as err:
            raise ContainerError(f"{path}: the stream does not decode with this model ({err})") from None
    restored, at = [], 0
    for k, (item, payload) in enumerate(zip(c.items, c.payloads)):
        meta = _meta(item)
        if item.codec == "model":
            n = model_examples[k]
            arrays = _from_examples(meta, x[at:at + n], model.data_shape)
            at += n
        else:
            arrays = _from_classical(meta, item, payload)
        if item_checksum(item.record(), arrays) != item.checksum:
            raise ContainerError(f"{item.name}: decoded data does not match its checksum (corrupted file, or the "
                                 f"model computes differently on this machine)")
        restored.append((meta, arrays))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".dbits-") as tmp:  # all or nothing
        staged = [write_item(m, arrays, Path(tmp)) for m, arrays in restored]
        return [Path(os.replace(p, out_dir / p.name) or out_dir / p.name) for p in staged]


def _from_examples(meta: dict, x: np.ndarray, shape) -> dict[str, np.ndarray]:
    arrays, j = {}, 0
    for spec in meta["arrays"]:
        n = examples_per_array(spec, tuple(shape))
        try:
            arrays[spec["key"]] = restore(x[j:j + n], spec)
        except (DataError, ValueError) as err:
            raise ContainerError(f"{meta['name']}: the decoded examples do not fit their array ({err})") from None
        j += n
    return arrays


def _from_classical(meta: dict, item: Item, payload: bytes) -> dict[str, np.ndarray]:
    """The arrays of a classically stored item (``_classical``)."""
    kind = meta["kind"]
    if kind == "image":
        pixels = classical.decode_image(item.codec, payload)
        if pixels.ndim != (2 if meta["mode"] == "L" else 3) or pixels.dtype != np.uint8:
            raise ContainerError(f"{item.name}: the stored picture is not an 8-bit {meta['mode']} image")
        meta["arrays"] = [{"key": "", "shape": list(pixels.shape), "dtype": "|u1"}]
        return {"": pixels}
    if kind == "wav" and item.codec == "flac":
        levels = classical.decode_signal(payload)
        return {"": levels.astype(np.uint8 if meta["wav"]["width"] == 1 else np.uint16)}
    raw = classical.decode_bytes(item.codec, payload)
    try:
        if kind == "wav":
            from ..audio import parse_wav

            levels, meta["wav"] = parse_wav(raw, item.name)
            return {"": levels}
        if kind == "npy":
            arrays = {"": np.load(io.BytesIO(raw), allow_pickle=False)}
        else:
            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
    except ContainerError:
        raise
    except Exception as err:
        raise ContainerError(f"{item.name}: the stored file does not parse ({err}): the file is corrupted") from None
    meta["arrays"] = [{"key": k, "shape": list(a.shape), "dtype": a.dtype.str} for k, a in arrays.items()]
    return arrays
