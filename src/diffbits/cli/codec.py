"""``diffbits compress``, ``decompress``, ``models`` and ``export``: lossless files by bits-back
coding, with a shipped model or a trained run."""
from __future__ import annotations

from pathlib import Path

from .common import command, print_json, warn

MODEL_HELP = "a shipped model's name (`diffbits models` lists them) or a run directory"


def add_parsers(sub) -> None:
    p = command(sub, "compress", run_compress, "lossless compression with a model (bits-back coding)",
                "Code every input into one .dbits file: by the model's T-step chain where it beats the\n"
                "input's classical codec (JPEG-XL or PNG, FLAC, xz or zstd), classically otherwise, so the\n"
                "file is never larger than the classical codes plus a few bytes. decompress restores each\n"
                "file bit-exact under its own name. Nothing is written unless every item verified.")
    p.add_argument("inputs", type=Path, nargs="+", help="image files, .wav files, .npy or .npz arrays")
    p.add_argument("--model", help=MODEL_HELP + " (the older form `compress RUN FILES...` still works)")
    p.add_argument("-o", "--out", type=Path, required=True, help="the .dbits file to write")
    p.add_argument("--T", type=int, default=100, help="steps of the discrete-time chain")
    p.add_argument("--resolution", type=float, default=4.0,
                   help="latent lattice: lattice steps per standard deviation (a multiple of 0.25)")
    p.add_argument("--batch", type=int, default=64, help="most examples coded side by side")
    p.add_argument("--draws", type=int, default=4,
                   help="time strata per example for the bound reported beside the rate (T: every step once)")
    p.add_argument("--grid", choices=("auto", "rate-optimal", "uniform-t"), default="auto",
                   help="where the chain's T steps go: rate-optimal (chosen from the model's error on these inputs, "
                        "kept in the file), uniform in t, or auto: rate-optimal when it pays for its header bytes")
    p.add_argument("--store", choices=("auto", "model", "classical"), default="auto",
                   help="auto: the model codes an item only where it beats the item's classical code; model: "
                        "wherever it can (to measure its rate); classical: nowhere")
    p.add_argument("--json", action="store_true", help="print one JSON object (strict: no NaN)")
    p = command(sub, "decompress", run_decompress, "restore every item of a .dbits file, bit-exact")
    p.add_argument("file", type=Path, help="a .dbits file")
    p.add_argument("--model", help=MODEL_HELP + "; the one that compressed it (not needed when nothing was coded "
                                                "by a model)")
    p.add_argument("-o", "--out", type=Path, required=True, help="folder for the restored files")
    command(sub, "models", run_models, "list the shipped models (usable as --model NAME)")
    p = command(sub, "export", run_export, "write a trained run in the shipped form (config, EMA weights, card)")
    p.add_argument("run", type=Path, help="a trained run directory")
    p.add_argument("-o", "--out", type=Path, required=True, help="the model's folder, e.g. models/NAME")
    p.add_argument("--data", required=True, help="what it was trained on, in words")
    p.add_argument("--test", help="held-out data (a --data spec) on which to measure its bound for the card")
    p.add_argument("--command", dest="trained_with", required=True, help="the command that trained it")
    p.add_argument("--weights", choices=("auto", "float32", "float16"), default="auto",
                   help="how to store the network's large tensors (auto: float16 only when float32 would pass 5 MB)")


def run_compress(a) -> int:
    from ..codec import compress

    model, inputs = a.model, list(a.inputs)
    if model is None:
        if len(inputs) < 2:
            raise ValueError("name the model with --model NAME|RUN")
        model, inputs = inputs[0], inputs[1:]
        warn("`compress RUN FILES` is the older form; use `compress --model RUN FILES`")
    rep = compress(model, inputs, a.out, T=a.T, resolution=a.resolution, batch=a.batch, draws=a.draws,
                   progress=not a.json, grid=a.grid, store=a.store)
    if a.json:
        print_json(rep)
        return 0
    for r in rep["items"]:
        how = (f"model, bound {r['bound_bpd']:.4f}" if r["stored"] == "model" else f"{r['stored']}: {r['why']}")
        print(f"{r['name']}: {r['bpd']:.4f} bits/dim ({how}; classical {r['classical_bpd']:.4f})")
    t = rep["total"]
    line = f"total: {t['bytes']:,} bytes, {t['bpd']:.4f} bits/dim ({t['container_bytes']} bytes of container"
    if t["model_items"]:
        line += (f"; the model's items {t['model_bpd']:.4f}, bound at T={t['T']} ({t['grid']} steps) "
                 f"{t['bound_bpd']:.4f}")
        if t["chain_bound_bpd"] is not None:
            line += f"; the chain {t['chain_bpd']:.4f} against its examples' bound {t['chain_bound_bpd']:.4f}"
            if t["chain_excess_bpd"] is not None:
                line += " (excess {:+.4f} ± {:.4f})".format(*t["chain_excess_bpd"])
        line += f"; {t['encode_s']:.1f} s to encode, {t['verify_s']:.1f} s to verify"
    print(line + f") -> {a.out}")
    return 0


def run_decompress(a) -> int:
    from ..codec import decompress

    for p in decompress(a.file, a.model, a.out, progress=True):
        print(p)
    return 0


def run_models(a) -> int:
    from ..shipped import SHIPPED, card, shipped

    models = shipped()
    if not models:
        print(f"no shipped models under {SHIPPED}")
        return 0
    for name in models:
        c = card(name)
        print(f"{name}: {c['data']}; {c['parameters']:,} parameters, shape {tuple(c['shape'])}, {c['levels']} levels; "
              f"held-out bound {c.get('test_bpd', float('nan')):.4f} bits/dim ({c.get('steps', '?')} steps)")
    return 0


def run_export(a) -> int:
    from ..checkpoint import CHECKPOINT, load_checkpoint
    from ..runs import export, load_run, shipped_weights

    fields = {"data": a.data, "command": a.trained_with}
    ck = load_checkpoint(a.run / CHECKPOINT)
    fields["steps"] = int(ck["step"])
    fields["minutes"] = round(float(ck.get("elapsed", 0.0)) / 60, 1)
    if "ema_best" in ck:  # load_run takes the EMA weights with the best held-out bound: say which
        fields.update(weights_step=int(ck["best_step"]), validation_bpd=float(ck["best_bpd"]))
    cfg, model = load_run(a.run, "cpu")
    stored = shipped_weights(model, a.weights)  # the card measures the weights as shipped
    if a.test:
        from ..data import load_dataset
        from ..evaluate import evaluate

        test = load_dataset(a.test, "test")
        rep = evaluate(model, test, progress=True)
        fields.update(test=a.test, test_examples=len(test), test_bpd=rep["bpd"], test_stderr=rep["stderr"],
                      examples=EXAMPLES)
    out = export(a.out, cfg, model, stored, fields)
    if a.test:  # a few held-out examples travel with the model, in the data's own dtype (the tests code them)
        import numpy as np

        from ..io import levels_dtype

        x = test.x[:EXAMPLE_COUNT].numpy()
        x = x[:, 0] if x.ndim == 4 and x.shape[1] == 1 else x
        np.save(out / EXAMPLES, x.astype(levels_dtype(cfg.levels, cfg.dtype)))
    print(out)
    return 0


EXAMPLES, EXAMPLE_COUNT = "held_out.npy", 40
