"""``compress`` and ``decompress``: files in, one ``.dbits`` container out, and back, bit-exact.

Every example is bits-back coded by the model; the encoder decodes the stream once to verify,
and an item whose examples do not come back exactly (or that the chain cannot code) is stored
with deflate instead and flagged. Nothing is written until everything has been checked.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import time
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import write_atomic
from ..errors import DataError
from ..runs import load_run, model_fingerprint
from .bitsback import BitsBackCoder, CodingError, OutOfRange
from .container import ContainerError, array_digest, pack, unpack
from ..io import examples_of, read_item, restore, write_item
from .rate_optimal import LATTICE, chain_grid, rate_optimal_knots

__all__ = ["compress", "decompress"]


_EMPTY_STREAM = (np.zeros(0, np.uint32), {"layout": None, "initial_words": 0, "warm_words": 0,
                                         "info_bits": np.zeros(0)}, 0.0, 0.0)


def _deflate(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k or "_": v for k, v in arrays.items()})
    return zlib.compress(buf.getvalue(), 9)


def _inflate(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(zlib.decompress(blob)), allow_pickle=False) as z:
        return {("" if k == "_" else k): z[k] for k in z.files}


GRIDS = ("auto", "rate-optimal", "uniform-t")


def _knots(header: dict):
    steps = header.get("knot_steps")
    return None if steps is None else np.concatenate([[0], np.cumsum(steps)]).tolist()


@torch.no_grad()
def _bound_bpd(model, x: np.ndarray, T: int, draws: int, seed: int = 0, knots=None) -> np.ndarray:
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


@torch.no_grad()
def compress(run: Path, inputs: list[Path], out: Path, T: int = 100, resolution: float = 4.0, batch: int = 64,
             draws: int = 4, progress: bool = False, grid: str = "auto") -> dict:
    """Compress ``inputs`` into ``out`` with the model of ``run``; returns the report
    ``{"items": [...], "total": {...}}`` (bits/dim actual, net of initial bits, and the bound).
    ``grid``: where the T steps go: ``rate-optimal`` (``codec.rate_optimal``, chosen for these inputs
    and kept in the header), ``uniform-t``, or ``auto``: rate-optimal when its expected saving
    is more than twice what its knots add to the header (large inputs) and T fits the lattice
    (``codec.rate_optimal.LATTICE`` steps), else uniform-t."""
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {', '.join(GRIDS)}, got {grid!r}")
    if grid == "rate-optimal" and T > LATTICE:
        raise ValueError(f"--grid rate-optimal places at most {LATTICE} steps, got T = {T}; use --grid uniform-t")
    cfg, model = load_run(run, "cpu")
    shape, levels = tuple(model.data_shape), model.levels
    if len(set(p.name for p in map(Path, inputs))) != len(inputs):
        raise DataError("two inputs share a file name; they would overwrite each other on decompression")
    items = []
    for p in map(Path, inputs):
        meta, arrays = read_item(p)
        xs = []
        for spec in meta["arrays"]:
            x, layout = examples_of(arrays[spec["key"]], shape, levels, f"{p}[{spec['key']}]" if spec["key"] else str(p))
            spec.update(layout)
            spec["sha256"], spec["examples"] = array_digest(arrays[spec["key"]]), len(x)
            xs.append(x)
        items.append({"meta": meta, "arrays": arrays, "x": np.concatenate(xs) if xs else np.zeros((0,) + shape, np.int64)})
    knots = None
    if grid != "uniform-t" and T <= LATTICE and any(len(it["x"]) for it in items):  # auto: uniform above
        x_all = np.concatenate([it["x"] for it in items])
        knots, saving = rate_optimal_knots(model, x_all, T)
        knots = knots.tolist()
        header_bits = 8 * len(zlib.compress(json.dumps(np.diff(knots).tolist()).encode(), 9))
        if grid == "auto" and saving * x_all[0].size * len(x_all) < 2 * header_bits:
            knots = None  # the expected saving would not pay for the knots in the header
    coder = BitsBackCoder(model, T=T, resolution=resolution, batch=batch, progress=progress, knots=knots)
    coded = [i for i, it in enumerate(items) if len(it["x"])]
    words, rep, t_enc, t_dec = _EMPTY_STREAM
    for _ in range(4):  # encode, verify, drop what failed, again
        if not coded:
            break
        x = np.concatenate([items[i]["x"] for i in coded])
        owner = np.concatenate([[i] * len(items[i]["x"]) for i in coded]).astype(int)
        tic = time.perf_counter()
        try:
            words, rep = coder.encode(x)
            t_enc = time.perf_counter() - tic
            tic = time.perf_counter()
            back = coder.decode(words, rep["layout"])
            t_dec = time.perf_counter() - tic
            bad = np.flatnonzero((back != x).reshape(len(x), -1).any(1))
        except OutOfRange as e:
            bad = np.arange(*e.rows)
        except CodingError:
            bad = np.arange(len(x))
        if not len(bad):
            break
        failed = set(owner[bad].tolist())
        coded = [i for i in coded if i not in failed]
    else:
        coded = []
    if not coded:  # nothing bits-back coded: no stream (not the last failed attempt's)
        words, rep, t_enc, t_dec = _EMPTY_STREAM
    for i, it in enumerate(items):
        it["fallback"] = i not in coded and len(it["x"]) > 0
    blobs = [_deflate(it["arrays"]) if it["fallback"] else b"" for it in items]
    header = {"model": model_fingerprint(cfg, model), "levels": levels, "shape": list(shape), "T": T,
              "resolution": resolution, "batch": batch, "layout": rep["layout"],
              "knot_steps": None if knots is None else np.diff(knots).tolist(),
              "items": [dict(it["meta"], fallback=it["fallback"]) for it in items]}
    data = pack(header, words, blobs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda fh: fh.write(data))
    return _report(items, coded, rep, words, data, blobs, model, T, draws, t_enc, t_dec, knots)


def _report(items, coded, rep, words, data, blobs, model, T, draws, t_enc, t_dec, knots) -> dict:
    dims_per = model.dims
    n_coded = sum(len(items[i]["x"]) for i in coded)
    warm = rep["layout"]["warm"] if rep["layout"] else 0
    chain_bits = 32.0 * (len(words) - rep["initial_words"] - rep["warm_words"])
    info = rep["info_bits"]
    # bits per coded example: the warm start's deflated bytes shared by its examples, the chain's by ideal information
    per_example = np.concatenate([np.full(warm, 32.0 * rep["warm_words"] / max(warm, 1)),
                                  info * (chain_bits / info.sum() if info.sum() > 0 else 0.0)])
    total_dims = sum(len(it["x"]) for it in items) * dims_per
    shared = 8.0 * (len(data) - 4 * len(words) - sum(map(len, blobs))) + 32.0 * rep["initial_words"]
    rows, at = [], 0
    for i, it in enumerate(items):
        n = len(it["x"])
        dims = n * dims_per
        if i in coded:
            net = float(per_example[at:at + n].sum())
            at += n
        else:
            net = 8.0 * len(blobs[i])
        bound = float(_bound_bpd(model, it["x"], T, draws, knots=knots).mean()) if n else float("nan")
        bpd = (net + shared * dims / max(total_dims, 1)) / max(dims, 1)
        rows.append({"name": it["meta"]["name"], "examples": n, "dims": dims, "fallback": it["fallback"],
                     "bpd": bpd, "net_bpd": net / max(dims, 1), "bound_bpd": bound, "overhead_bpd": bpd - bound,
                     "encode_s": t_enc * n / max(n_coded, 1) if i in coded else 0.0})
    bound_all = (sum(r["bound_bpd"] * r["dims"] for r in rows if r["dims"]) / max(total_dims, 1))
    total = {"items": len(items), "examples": total_dims // dims_per, "dims": total_dims, "bytes": len(data),
             "bpd": 8.0 * len(data) / max(total_dims, 1),
             "net_bpd": (float(per_example.sum()) + 8.0 * sum(map(len, blobs))) / max(total_dims, 1),
             "container_bytes": len(data) - 4 * len(words) - sum(map(len, blobs)),
             "bound_bpd": bound_all, "initial_bits": 32 * rep["initial_words"],
             "warm_examples": warm, "warm_bits": 32 * rep["warm_words"],
             "fallback_items": sum(r["fallback"] for r in rows), "T": T,
             "grid": "uniform-t" if knots is None else "rate-optimal", "encode_s": t_enc, "verify_s": t_dec,
             "encode_examples_per_s": n_coded / t_enc if t_enc else None}
    total["overhead_bpd"] = total["bpd"] - total["bound_bpd"]
    return {"items": rows, "total": total}


@torch.no_grad()
def decompress(path: Path, run: Path, out_dir: Path, progress: bool = False) -> list[Path]:
    """Restore every item of ``path`` into ``out_dir``; returns the written paths."""
    path = Path(path)
    if not path.is_file():
        raise ContainerError(f"{path}: no such file")
    header, words, blobs = unpack(path.read_bytes())
    cfg, model = load_run(run, "cpu")
    if header["model"] != model_fingerprint(cfg, model):
        raise ContainerError(f"{path} was compressed with another model (fingerprint {header['model'][:12]}...); "
                             f"{run} has {model_fingerprint(cfg, model)[:12]}...")
    shape = tuple(header["shape"])
    metas = header["items"]
    n = [sum(s["examples"] for s in m["arrays"]) if not m["fallback"] else 0 for m in metas]
    coder = BitsBackCoder(model, T=header["T"], resolution=header["resolution"], batch=header["batch"], progress=progress,
                          knots=_knots(header))
    try:
        x = coder.decode(words, header["layout"]) if sum(n) else np.zeros((0,) + shape)
    except (CodingError, ValueError, OverflowError) as e:
        raise ContainerError(f"{path}: the stream does not decode with this model ({e})") from None
    restored, at = [], 0
    for m, k, blob in zip(metas, n, blobs):
        if m["fallback"]:
            arrays = _inflate(blob)
        else:
            arrays, xs = {}, x[at:at + k]
            at += k
            j = 0
            for spec in m["arrays"]:
                arrays[spec["key"]] = restore(xs[j:j + spec["examples"]], spec)
                j += spec["examples"]
        for spec in m["arrays"]:
            if array_digest(arrays[spec["key"]]) != spec["sha256"]:
                raise ContainerError(f"{m['name']}: decoded data does not match its checksum (model or machine differs)")
        restored.append((m, arrays))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".dbits-") as tmp:  # all or nothing
        staged = [write_item(m, arrays, Path(tmp)) for m, arrays in restored]
        return [Path(os.replace(p, out_dir / p.name) or out_dir / p.name) for p in staged]
