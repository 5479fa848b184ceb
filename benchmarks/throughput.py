"""CPU training throughput: our VDM training step against two peers, side by side in one process.

Two pairs per dataset, each at one network size and batch:
- ours (``model.net=score_unet``) vs addtt's PyTorch VDM (``UNetVDM``, its optimiser, clipping
  and EMA; ``benchmarks/peers/addtt.py``): the same network family, same width and blocks;
- ours (``model.net=unet``, ``channel_mult=[1, 2]``) vs lucidrains' ``ContinuousTimeGaussianDiffusion``
  with its ``Unet(dim, dim_mults=(1, 2))`` (``benchmarks/peers/lucidrains.py``); our ``res_blocks``
  is the one (1 or 2) whose parameter count is closest to its.
Ours is ``configs/<dataset>.json`` with the network, ``head=eps``, batch and CPU set (``--ours-set``
adds more) and is timed through ``Trainer.train_step``. Warm-up steps are not timed; the two
systems of a pair are then measured in turn (ABAB..., ``--rounds`` times each), median taken.
Prints a markdown table and appends it to ``benchmarks/RESULTS.md`` (not with ``--no-append``).

    python benchmarks/throughput.py [--datasets digits,mnist] [--batch 64] [--seconds 5] [--rounds 6]
    python benchmarks/throughput.py --seconds 5 --datasets digits --no-append   # a smoke run

On a busy machine use ``--threads 1``: with OpenMP threads and another process on a core, a
step can take 10-30x longer, the more so the more small ops it has (seen on the 2-core box).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from likelihood import CONFIGS, MNIST, datasets  # noqa: E402
from peers import addtt, lucidrains  # noqa: E402
from report import append_results, header  # noqa: E402

from diffbits.config import RunConfig, apply_overrides  # noqa: E402
from diffbits.data import Dataset, load_dataset  # noqa: E402
from diffbits.train import Trainer  # noqa: E402

DIM_MULTS = (1, 2)  # the downsampling pair: one downsampling, 8x8 -> 4x4, 28x28 -> 14x14


@dataclass
class System:
    name: str
    network: str
    params: int  # the denoising network's parameters (schedules not counted)
    step: Callable[[], object]  # one full training step
    runs: list[float] = field(default_factory=list)  # examples/s per measurement
    conv_share: float | None = None  # share of the step's CPU time in convolution kernels


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def batches(x: torch.Tensor, batch: int, seed: int = 0):
    """Shuffled batches of ``x`` forever (a fresh permutation per epoch, last partial dropped)."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x) - batch + 1, batch):
            yield x[order[i:i + batch]]


# -- the systems ------------------------------------------------------------------------------

def ours(name: str, data: Dataset, overrides: list[str], run_dir: Path, network: str) -> System:
    cfg = apply_overrides(RunConfig.load(CONFIGS / f"{name}.json"), overrides)
    trainer = Trainer.create(cfg, run_dir, data)
    return System("ours", network, count(trainer.model.denoiser), trainer.train_step)


def addtt_peer(data: Dataset, batch: int, width: int, depth: int, dropout: float) -> System:
    torch.manual_seed(0)
    peer = addtt.AddttVDM(data.shape, data.levels, width, depth, dropout=dropout)
    it = batches(data.x, batch)
    return System("addtt VDM", f"UNetVDM dim {width}, {depth} blocks, mid attention",
                  count(peer.net), lambda: peer.train_step(peer.to_input(next(it))))


def lucidrains_peer(data: Dataset, batch: int, width: int) -> System:
    torch.manual_seed(0)
    diffusion = lucidrains.build(data.shape, width, DIM_MULTS)
    diffusion.train()
    step, it = lucidrains.TrainStep(diffusion, lr=1e-4), batches(data.x, batch)  # lr: its Trainer's default
    return System("lucidrains CT", f"Unet dim {width}, mults {DIM_MULTS}", count(diffusion.model),
                  lambda: step(lucidrains.to_peer_input(next(it), data.levels)))


# -- measuring --------------------------------------------------------------------------------

def measure(system: System, seconds: float, batch: int) -> None:
    steps, tic = 0, time.perf_counter()
    while steps == 0 or time.perf_counter() - tic < seconds:
        system.step()
        steps += 1
    system.runs.append(steps * batch / (time.perf_counter() - tic))


CONV_KERNELS = ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_slow_conv2d_forward",
                "aten::_slow_conv2d_backward", "aten::cudnn_convolution")


def conv_share(system: System, steps: int = 10) -> float:
    """Share of the self CPU time of ``steps`` training steps spent in convolution kernels
    (forward and backward), from ``torch.profiler``: the part of a step no bookkeeping can speed up."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            system.step()
    events = prof.key_averages()
    return sum(e.self_cpu_time_total for e in events if e.key in CONV_KERNELS) / \
        sum(e.self_cpu_time_total for e in events)


def compare(pair: list[System], a) -> None:
    """Warm both up, then measure them in turn, ``a.rounds`` times each; then profile each."""
    for s in pair:
        for _ in range(a.warmup):
            s.step()
    for _ in range(a.rounds):
        for s in pair:
            measure(s, a.seconds, a.batch)
            print(f"  {s.name:14s} {s.runs[-1]:8.1f} examples/s", flush=True)
    for s in pair:
        s.conv_share = conv_share(s)


def rows_for(dataset: str, pair: list[System], batch: int) -> list[dict]:
    mine, peer = (statistics.median(s.runs) for s in pair)
    return [{"dataset": dataset, "system": s.name, "network": s.network, "params": s.params, "batch": batch,
             "rate": statistics.median(s.runs), "runs": s.runs, "ratio": mine / peer if s is pair[1] else None,
             "conv_share": s.conv_share} for s in pair]


def dataset_rows(name: str, a, run_dir: Path) -> list[dict]:
    train_spec, *_ = datasets(a.mnist)[name]
    data = load_dataset(train_spec, "train")
    common = [f"train.batch_size={a.batch}", "train.device=cpu", "model.head=eps", "model.attention=true"]
    rows = []

    print(f"[{name}] ours score_unet vs addtt", flush=True)
    pair = [ours(name, data, common + ["model.net=score_unet", f"model.width={a.width}", f"model.depth={a.depth}",
                                       f"model.dropout={a.dropout}"] + a.ours_set, run_dir / f"{name}-score",
                 f"score_unet width {a.width}, depth {a.depth}, mid attention"),
            addtt_peer(data, a.batch, a.width, a.depth, a.dropout)]
    compare(pair, a)
    rows += rows_for(name, pair, a.batch)

    print(f"[{name}] ours unet vs lucidrains", flush=True)
    peer = lucidrains_peer(data, a.batch, a.width)
    unet = common + ["model.net=unet", f"model.width={a.width}", f"model.channel_mult={list(DIM_MULTS)}",
                     "model.dropout=0"] + a.ours_set
    candidates = [ours(name, data, unet + [f"model.res_blocks={rb}"], run_dir / f"{name}-unet{rb}",
                       f"unet width {a.width}, mult {list(DIM_MULTS)}, {rb} res block(s)/level") for rb in (1, 2)]
    pair = [min(candidates, key=lambda s: abs(math.log(s.params / peer.params))), peer]
    del candidates
    compare(pair, a)
    return rows + rows_for(name, pair, a.batch)


SWITCHES = {  # name -> overrides of ours; each measured against the defaults in turn
    "defaults (fp32, no channels_last, no compile)": [],
    "channels_last=true": ["train.channels_last=true"],
    "precision=bf16": ["train.precision=bf16"],
    "micro_batch=batch/4 (4 accumulated)": None,  # filled with the batch
    "compile=true": ["train.compile=true"],
}


def switch_rows(name: str, a, run_dir: Path) -> list[dict]:
    """Ours (score_unet) with each speed switch, measured in turn with the defaults."""
    train_spec, *_ = datasets(a.mnist)[name]
    data = load_dataset(train_spec, "train")
    base = [f"train.batch_size={a.batch}", "train.device=cpu", "model.head=eps", "model.attention=true",
            "model.net=score_unet", f"model.width={a.width}", f"model.depth={a.depth}", f"model.dropout={a.dropout}"]
    systems = []
    for label, extra in SWITCHES.items():
        if label.startswith("compile") and not a.compile:
            continue
        extra = [f"train.micro_batch={a.batch // 4}"] if extra is None else extra
        print(f"[{name}] ours, {label}", flush=True)
        systems.append(ours(name, data, base + extra + a.ours_set, run_dir / f"{name}-{len(systems)}", label))
    compare(systems, a)
    ref = statistics.median(systems[0].runs)
    return [{"dataset": name, "system": "ours", "network": s.network, "params": s.params, "batch": a.batch,
             "rate": statistics.median(s.runs), "runs": s.runs, "ratio": statistics.median(s.runs) / ref}
            for s in systems]


def multi_process_rows(name: str, a, run_dir: Path) -> list[dict]:
    """Ours through the CLI: one process with all cores' threads, then torchrun with 2 processes
    of one thread each (gloo), same global batch; examples/s from metrics.jsonl, first window dropped."""
    train_spec, *_ = datasets(a.mnist)[name]
    sets = [f"train.batch_size={a.batch}", "train.device=cpu", "model.head=eps", "model.attention=true",
            "model.net=score_unet", f"model.width={a.width}", f"model.depth={a.depth}",
            f"model.dropout={a.dropout}", "train.log_every=5", "train.sample_steps=2", *a.ours_set]
    steps = a.mp_steps[name]
    rows = []
    for procs in (1, 2):
        out = run_dir / f"{name}-mp{procs}"
        cmd = (["-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517"] if procs > 1 else []) + \
            ["-m", "diffbits", "train", "--data", train_spec, "--steps", str(steps), "--out", str(out), "--quiet",
             *[x for kv in sets for x in ("--set", kv)]]
        threads = str(max(1, (os.cpu_count() or 1) // procs))
        print(f"[{name}] ours, {procs} process(es) x {threads} thread(s)", flush=True)
        subprocess.run([sys.executable, *cmd], check=True, env={**os.environ, "OMP_NUM_THREADS": threads},
                       stdout=subprocess.DEVNULL)
        rates = [json.loads(r)["examples_per_s"] for r in (out / "metrics.jsonl").read_text().splitlines()][1:]
        rows.append({"dataset": name, "system": "ours (CLI)", "network": f"{procs} process(es) x {threads} thread(s)",
                     "params": None, "batch": a.batch, "rate": statistics.median(rates), "runs": rates, "ratio": None})
    rows[1]["ratio"] = rows[1]["rate"] / rows[0]["rate"]
    return rows


def table(rows: list[dict]) -> str:
    out = ["| dataset | system | network | params | batch | examples/s | runs | ours / peer | conv share |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else ""
        share = f"{r['conv_share']:.0%}" if r.get("conv_share") is not None else ""
        runs = ", ".join(f"{v:.0f}" for v in r["runs"])
        params = f"{r['params']:,}" if r["params"] else ""
        out.append(f"| {r['dataset']} | {r['system']} | {r['network']} | {params} | {r['batch']} "
                   f"| {r['rate']:.1f} | {runs} | {ratio} | {share} |")
    return "\n".join(out)


def notes(a) -> str:
    v = importlib.metadata.version
    return "\n".join([
        f"- {a.rounds} measurements of {a.seconds} s per system after {a.warmup} untimed warm-up steps, taken in "
        f"turn (ABAB...), median shown; one process, {torch.get_num_threads()} torch threads, CPU.",
        f"- peers: addtt/variational-diffusion-models @ {addtt.commit()[:7]} (ema-pytorch {v('ema-pytorch')} "
        f"installed, it pins 0.1.4); denoising-diffusion-pytorch {v('denoising-diffusion-pytorch')}.",
        "- ours: configs/<dataset>.json (learned monotone_net schedule) with head=eps and the network shown; "
        "addtt: its defaults (fixed linear schedule, AdamW, clipping, EMA every step), vocab_size set to the "
        f"data's levels; dropout {a.dropout} on both. lucidrains: its learned schedule, Adam, clipping, "
        "EMA every 10 steps, no dropout (its default; ours 0 too).",
        "- conv share: the share of a step's CPU time (torch.profiler, 10 steps, self time) spent in "
        "convolution kernels, forward and backward (oneDNN on CPU).",
        "- params: the denoising network only; the learned schedules add 3,076 (ours) and 3,075 (lucidrains).",
        "- the architectures are not identical: ours conditions each residual block with a scale and shift "
        "(addtt: a shift only), so ours has ~13% more parameters at the same width and blocks; lucidrains' "
        "Unet has 2 blocks down and 2 up per level plus linear attention at every level, ours 1 (or 2) down "
        "and 2 (or 3) up, attention at level 1 only; our res_blocks is matched by parameter count.",
    ])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="digits,mnist", help="comma-separated: digits, mnist")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    ap.add_argument("--rounds", type=int, default=6, help="measurements per system (alternating)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps per system first")
    ap.add_argument("--width", type=int, default=32, help="base width of every network (addtt: a multiple of 32)")
    ap.add_argument("--depth", type=int, default=2, help="score_unet / UNetVDM residual blocks")
    ap.add_argument("--dropout", type=float, default=0.1, help="ours and addtt (its default)")
    ap.add_argument("--ours-set", action="append", default=[], metavar="KEY=VALUE", help="more overrides of ours")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--mnist", default=MNIST)
    ap.add_argument("--addtt-mirror", default=None, help="a git mirror to extract addtt's checkout from if missing")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                    help="also measure train.compile=true (compiling takes a minute or two)")
    ap.add_argument("--peers-only", action="store_true", help="skip the switches and the 1-vs-2-process runs")
    ap.add_argument("--mp-steps-digits", type=int, default=100, help="steps of each 1-/2-process run on digits")
    ap.add_argument("--mp-steps-mnist", type=int, default=40, help="steps of each 1-/2-process run on mnist")
    ap.add_argument("--no-append", action="store_true", help="print only; do not append to RESULTS.md")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    addtt.materialise(a.addtt_mirror)
    a.mp_steps = {"digits": a.mp_steps_digits, "mnist": a.mp_steps_mnist}
    rows, switches, procs = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in filter(None, a.datasets.split(",")):
            rows += dataset_rows(name, a, Path(tmp))
            if not a.peers_only:
                switches += switch_rows(name, a, Path(tmp))
                procs += multi_process_rows(name, a, Path(tmp))
    text = table(rows) + "\n\n" + notes(a)
    if switches:
        text += "\n\nSpeed switches (ours, ratio to the defaults):\n\n" + table(switches)
    if procs:
        text += ("\n\n1 vs 2 processes (torchrun, gloo, same global batch; ratio: 2 processes / 1; "
                 "runs: examples/s per 5-step window):\n\n" + table(procs))
    print("\n" + text)
    if not a.no_append:
        append_results("Training throughput: ours vs addtt VDM and lucidrains (benchmarks/throughput.py)",
                       header(), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
