"""``diffbits train`` and ``diffbits eval``."""
from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path

from .common import add_device, add_seed, command, print_json


def add_parsers(sub) -> None:
    p = command(sub, "train", run_train, "train a variational diffusion model (or a blur model)",
                "Train on --data until --steps or --minutes; the run directory holds config.json, checkpoint.pt,\n"
                "metrics.jsonl, loss.png and samples.png. Ctrl-C (or SIGTERM) saves a checkpoint; --resume continues.")
    p.add_argument("--data", help="digits | FILE.npz[:KEY] | FILE.npy | FOLDER of images or WAV files, optionally "
                                  "sliced: FILE.npz[:9000] (default: the config's, digits)")
    p.add_argument("-o", "--out", required=True, type=Path, help="the run directory to write")
    p.add_argument("--minutes", type=float, help="wall-clock budget of this invocation")
    p.add_argument("--steps", type=int, help="total optimiser steps of the run (--resume continues up to N)")
    p.add_argument("--config", type=Path, help="JSON config file (the config.json of any run)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. model.width=32 (repeatable)")
    p.add_argument("--seed", type=int, help="random seed of training (default: the config's, 0)")
    p.add_argument("--process", choices=["gaussian", "blur"],
                   help="gaussian (VDM) or blur (soft diffusion: blur plus noise); same as --set model.process=...")
    p.add_argument("--levels", type=int, help="number of levels K (default: inferred from the data)")
    p.add_argument("--labels", help="train a class-conditional model on these labels: target (digits) | "
                   "KEY (an array in the --data npz) | folders (one sub-folder per class)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--fresh", action="store_true", help="delete --out first if it holds a run")
    p.add_argument("--recipe", choices=["auto", "none"], default="auto",
                   help="auto: derive every field you did not set (network, head, batch, learning rate, warm-up, "
                        "decay, EMA, dropout) from the data, the budget and the device, one line per decision; "
                        "none: the plain defaults")
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = command(sub, "eval", run_eval, "the bound (or the ODE likelihood) in bits/dim on held-out data")
    p.add_argument("run", type=Path, help="a run directory")
    p.add_argument("--data", help="data to evaluate (default: the run's own; its test split for built-in data)")
    p.add_argument("--split", default="test", choices=["train", "test", "all"],
                   help="split of built-in data (files are used whole)")
    p.add_argument("--samples", type=int, default=1, help="Monte Carlo draws (t, noise) per example")
    p.add_argument("--T", type=int, default=0, help="discrete-time bound with T steps (0: continuous time)")
    p.add_argument("--method", default="bound", choices=["bound", "ode"],
                   help="bound: the variational bound; ode: probability-flow ODE NLL (dequantised upper bound)")
    p.add_argument("--rtol", type=float, default=1e-5, help="--method ode: relative tolerance of the solver")
    p.add_argument("--atol", type=float, default=1e-5, help="--method ode: absolute tolerance of the solver")
    p.add_argument("--hutchinson", type=int, default=1, metavar="N",
                   help="--method ode: Hutchinson probes of the divergence (0: exact trace, D backward passes)")
    p.add_argument("--batch-size", type=int, default=256, help="examples per forward pass")
    add_seed(p)
    p.add_argument("--json", action="store_true", help="print one JSON object (strict: no NaN)")
    add_device(p)


def run_train(a) -> int:
    from ..config import RunConfig, apply_overrides
    from ..train import train

    cfg = RunConfig.load(a.config) if a.config else RunConfig()
    cfg = apply_overrides(cfg, a.overrides)
    user = _user_fields(a)
    for name, value in (("data", a.data), ("levels", a.levels), ("labels", a.labels)):
        if value:
            setattr(cfg, name, value)
    if a.process:
        cfg.model.process = a.process
    if a.seed is not None:
        cfg.train.seed = a.seed
    if a.minutes is not None:
        cfg.train.minutes = a.minutes
    if a.steps is not None:
        cfg.train.steps = a.steps
    with _sigterm_as_interrupt():  # a scheduler's preemption: save, like Ctrl-C
        summary = train(cfg, a.out, resume=a.resume, fresh=a.fresh, progress=not a.quiet, recipe=a.recipe,
                        user_fields=user, say=print)
    if "samples" not in summary:  # not the main process of a torchrun job
        return 0
    procs = f" on {summary['processes']} processes" if summary["processes"] > 1 else ""
    print(f"trained to step {summary['step']} ({summary['elapsed_s'] / 60:.1f} min of training{procs})")
    print(f"samples: {summary['samples']}")
    print(f"run: {summary['run_dir']}")
    return 0


@contextlib.contextmanager
def _sigterm_as_interrupt():
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _user_fields(a) -> set[str]:
    """The ``section.field`` names this command line sets: every field of a --config file, each
    --set, and the flags that stand for fields. The recipe never changes them."""
    import json

    fields = set()
    if a.config:
        body = json.loads(Path(a.config).read_text())
        fields |= {f"{s}.{k}" for s in ("model", "train") for k in body.get(s, {})} | {"crop"} & set(body)
    fields |= {item.split("=", 1)[0].strip() for item in a.overrides}
    if a.process:
        fields.add("model.process")
    return fields


def _split(data: str | None, wanted: str) -> str:
    """The run's own data and built-in digits have splits; any other --data is used whole."""
    return wanted if not data or data == "digits" else "all"


def run_eval(a) -> int:
    from ..data import load_dataset
    from ..evaluate import evaluate
    from ..runs import load_run

    cfg, model = load_run(a.run, a.device)
    split = _split(a.data, a.split)
    data = load_dataset(a.data or cfg.data, split, cfg.levels, cfg.labels or None, cfg.crop or None)
    if a.method == "ode":
        return _eval_ode(a, model, data, split)
    res = evaluate(model, data, samples=a.samples, T=a.T or None, batch_size=a.batch_size, seed=a.seed,
                   progress=not a.json)
    res["run"] = str(a.run)
    if a.json:
        print_json(res)
        return 0
    print(f"{res['data']}: {res['n']} examples x {res['samples']} draws, T = {res['T']}")
    for term in ("prior", "recon", "diffusion"):
        print(f"  {term:<10} {res[term + '_bpd']:.4f} bits/dim")
    label = {"test": "test bound", "train": "train bound"}.get(split, "bound")
    print(f"{label}: {res['bpd']:.2f} bits/dim (+/- {res['stderr']:.3f} s.e.)")
    print(f"run: {a.run}")
    return 0


def _eval_ode(a, model, data, split: str) -> int:
    from ..ode_likelihood import evaluate_ode

    if a.T or a.samples != 1:
        raise ValueError("--T and --samples are for --method bound")
    res = evaluate_ode(model, data, probes=a.hutchinson, exact_trace=a.hutchinson == 0, rtol=a.rtol, atol=a.atol,
                       batch_size=a.batch_size, seed=a.seed, progress=not a.json)
    res["run"] = str(a.run)
    if a.json:
        print_json(res)
        return 0
    print(f"{res['data']}: {res['n']} examples, probability-flow ODE ({res['solver']}, rtol {res['rtol']:g}, "
          f"atol {res['atol']:g}), trace: {res['trace']}, {res['nfe']:.0f} drift evaluations per batch")
    if res["hutchinson_std_bpd"] == res["hutchinson_std_bpd"]:  # not nan
        print(f"  Hutchinson std of a one-probe estimate: {res['hutchinson_std_bpd']:.4f} bits/dim")
    label = {"test": "test NLL", "train": "train NLL"}.get(split, "NLL")
    print(f"{label} (ODE, dequantised: an upper bound): {res['bpd']:.2f} bits/dim (+/- {res['stderr']:.3f} s.e.)")
    print(f"run: {a.run}")
    return 0
