"""The training recipe: every choice of a run derived from the data, the budget and the device.

``decide(facts)`` turns ``Facts`` (an example's shape, the levels, the number of training
examples, the budget in minutes or steps, the device) into one ``Decision`` per config field,
each with its reason; it is a pure function, so the same facts always give the same recipe.
``apply`` sets the decided fields the user did not set: a field the user set always wins.

The rules (docs/recipe.md):
- the network is the largest of a ladder whose predicted step count (FLOPs and activations per
  example, batch, the device's profile) still reaches ``TARGET_STEPS`` for an 8-minute budget,
  scaled by the square root of the budget (more compute: more steps and a larger network);
- images of side 32 and more, and signals of 2048 samples and more, get a U-Net with
  downsampling, smaller ones VDM's U-Net without (it won at every smaller size on the panel:
  8x8, 16x16 RGB, 28x28, 1024-sample speech); vectors of ``VECTOR_CONV_MIN`` values or more are
  read as one-channel signals (a convolution along the vector: on the panel's byte strings it
  beat every MLP), shorter ones (feature records) get an MLP; attention only where a level has
  at most ``build.ATTENTION_POSITIONS`` positions;
- few levels (``CATEGORICAL_LEVELS`` or fewer): the categorical output head;
- the batch from an example's size (many small steps on a CPU), the learning rate from the batch;
- regularisation from how often the budget will show each example (passes over the data) and
  how many examples there are per parameter; with many passes (``VALIDATION_PASSES``) over
  enough examples, ``VALIDATION_SHARE`` of them (``VALIDATION_MIN`` to ``VALIDATION_MAX``) are
  held out and the EMA weights with the best bound on them are kept (early stopping);
- warm-up ``WARMUP_FRACTION`` of the steps that fit, constant learning rate, a cosine decay to
  zero over the last ``DECAY_FRACTION`` of the budget (warm-up, stable, decay: Hagele et al.
  2024, arXiv 2405.18392), so ``--resume`` can extend a run from before its decay; EMA horizon
  ``EMA_FRACTION`` of the steps.
With ``--minutes`` the trainer measures the step rate in the first seconds and sizes the warm-up
to the steps that really fit (``train.warmup_fraction``); the decay follows the wall clock.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from .build import ATTENTION_POSITIONS
from .config import ModelConfig, RunConfig

__all__ = ["Facts", "Decision", "DeviceProfile", "decide", "apply", "configure", "changed_fields", "field_value",
           "profile_of", "predicted_step_seconds", "head_activations"]

BATCH_SCALE = 2**20  # batch = sqrt(BATCH_SCALE / values per example)
TARGET_STEPS = 2000  # steps an 8-minute budget should buy; sqrt(budget) more or fewer for others (then size)
TARGET_AT_S = 480.0
WARMUP_FRACTION = 0.05
DECAY_FRACTION = 0.2
EMA_FRACTION = 0.1
VALIDATION_PASSES, VALIDATION_SHARE, VALIDATION_MIN, VALIDATION_MAX = 20, 0.1, 50, 512
CATEGORICAL_LEVELS = 64
DOWNSAMPLE_SIDE = 32  # images this size and larger are downsampled (below, full resolution won on the panel)
DOWNSAMPLE_LENGTH = 2048  # signals this long and longer likewise (1024-sample speech: full resolution won)
LOWEST_SIDE = 4  # the U-Net's levels stop at about this many positions per side (signals: LOWEST_LENGTH)
LOWEST_LENGTH = 64
SIGNAL_CROP = 1024  # samples per example of recordings (WAV folders)
VECTOR_CONV_MIN = 32  # vectors this long and longer are decided (and built: nets.SignalView) as 1-channel signals
# The CPU profile, per thread (benchmarks/device_profile.py fits it; RESULTS.md has the table).
CPU_FLOPS_PER_THREAD, CPU_VALUES_PER_THREAD, CPU_STEP_OVERHEAD_S = 137e9, 0.285e9, 0.011
# (width, depth) from small to large; depth is residual blocks per level (U-Nets) or blocks (others)
LADDER = ((16, 1), (24, 1), (32, 1), (32, 2), (48, 2), (64, 2), (96, 2), (128, 2), (128, 3), (192, 3), (256, 3))


@dataclass(frozen=True)
class DeviceProfile:
    """What the planner assumes of a device: the arithmetic rate, the rate at which memory-bound
    layers (norms, nonlinearities) write values, and the fixed cost of one step (optimiser, EMA,
    Python); fitted by ``benchmarks/device_profile.py`` on this project's machines."""

    kind: str  # cpu | cuda
    threads: int
    flops_per_s: float
    values_per_s: float
    step_overhead_s: float

    def describe(self) -> str:
        return f"{self.threads}-thread CPU" if self.kind == "cpu" else f"{self.kind} GPU"


def profile_of(device: str, threads: int, processes: int = 1) -> DeviceProfile:
    """The planner's profile of ``device`` (cpu or cuda) with ``threads`` CPU threads per process,
    ``processes`` of them sharing each step (torchrun)."""
    if device.startswith("cuda"):
        return DeviceProfile("cuda", threads, 2e13 * processes, 2e11 * processes, 0.004)
    n = max(1, threads) * processes
    return DeviceProfile("cpu", n, CPU_FLOPS_PER_THREAD * n, CPU_VALUES_PER_THREAD * n, CPU_STEP_OVERHEAD_S)


@dataclass(frozen=True)
class Facts:
    """What the recipe is derived from."""

    shape: tuple[int, ...]  # one example: (C, H, W) images, (C, L) signals, (D,) vectors
    levels: int
    examples: int  # training examples
    minutes: float = 0.0  # wall-clock budget (0: a step budget)
    steps: int = 0  # step budget (0: a wall-clock budget)
    device: DeviceProfile = profile_of("cpu", 2)
    process: str = "gaussian"  # gaussian | blur
    classes: int = 0  # > 0: class-conditional
    crop: int = 0  # signals cut from longer recordings: the samples per example they were cut into (0: not cut)

    @property
    def kind(self) -> str:
        return {3: "images", 2: "signals", 1: "vectors"}.get(len(self.shape), "arrays")

    @property
    def dims(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Decision:
    field: str  # "model.width", "train.lr", ...
    value: Any
    reason: str

    def line(self) -> str:
        return f"recipe: {self.field} = {self.value!r}: {self.reason}"


def _pow2(x: float) -> int:
    return 2 ** max(0, round(math.log2(max(1.0, x))))


def _batch(f: Facts) -> tuple[int, str]:
    """Small examples in big batches, big examples in small ones: ``sqrt(BATCH_SCALE / D)``, a
    power of two, 128 for 8x8 digits and 32 for 28x28 MNIST on a CPU (four times that on a GPU)."""
    scale = BATCH_SCALE * (16 if f.device.kind != "cpu" else 1)
    b = min(128 if f.device.kind == "cpu" else 512, max(8, _pow2(math.sqrt(scale / f.dims))))
    b = min(b, max(8, _pow2(f.examples / 4)))  # several batches per pass even on tiny data
    return b, f"{f.dims} values per example, {f.examples:,} examples, on a {f.device.describe()}"


def _levels_of_unet(f: Facts) -> tuple[int, ...]:
    """Channel multipliers: one level per halving down to ``LOWEST_SIDE`` (signals ``LOWEST_LENGTH``)."""
    side, lowest = min(f.shape[1:]), (LOWEST_SIDE if f.kind == "images" else LOWEST_LENGTH)
    n = 1
    while side / 2 ** n >= lowest and n < 6:
        n += 1
    return (1,) + (2,) * (n - 1) if n <= 4 else (1, 2, 2) + (4,) * (n - 3)


def _net(f: Facts) -> tuple[str, tuple[int, ...] | None, str]:
    if f.kind == "vectors":
        return "mlp", None, "flat vectors: a residual MLP"
    side = min(f.shape[1:])
    if f.kind == "images" and side < DOWNSAMPLE_SIDE:
        return "score_unet", None, f"{side}-pixel side: too small to downsample; VDM's U-Net at full resolution"
    if f.kind == "signals" and side < DOWNSAMPLE_LENGTH:
        return "score_unet", None, f"signals of {side} samples: short enough for VDM's U-Net at full resolution"
    mult = _levels_of_unet(f)
    what = f"{side}-pixel side" if f.kind == "images" else f"signals of {side} samples"
    return "unet", mult, f"{what}: a U-Net with {len(mult) - 1} downsamplings (cheaper steps than full resolution)"


def _candidate(fixed: dict, net: str, width: int, depth: int, mult) -> ModelConfig:
    """The network the run will build: the ladder's width and depth, the user's own fields kept."""
    m = ModelConfig(net=net, width=width, depth=depth, res_blocks=depth, channel_mult=list(mult) if mult else None)
    for field, value in fixed.items():
        if field.startswith("model."):
            setattr(m, field[len("model."):], value)
    return m


def head_activations(shape: tuple[int, ...], levels: int) -> int:
    """Values the categorical head writes per example (K logits per value, a few passes over them),
    which ``nets.cost`` does not see (the head is functional)."""
    return 6 * math.prod(shape) * levels


def predicted_step_seconds(flops: float, activations: float, batch: int, device: DeviceProfile) -> float:
    """Forward and backward (3x the forward) over the batch, arithmetic and memory-bound layers,
    plus the fixed cost of a step."""
    return device.step_overhead_s + 3 * batch * (flops / device.flops_per_s + activations / device.values_per_s)


REFERENCE_RUNG = (32, 2)  # a step budget of N steps is sized as the time N steps of this rung take
# No smaller network while it still gets FLOOR_STEPS: on every dataset of the panel's 2-minute screen
# the best network was (32, 2), even where it got only ~500 steps (MNIST) and a smaller one more.
FLOOR_RUNG, FLOOR_STEPS = REFERENCE_RUNG, 400


def _size(f: Facts, fixed: dict, net: str, mult, batch: int) -> tuple[int, int, int, float, str]:
    """The largest (width, depth) of ``LADDER`` (those of its rungs that agree with a width or depth
    the user set) whose predicted steps in the budget still reach ``TARGET_STEPS`` scaled by the
    square root of the budget (more compute buys both more steps and a larger network), or all the
    steps asked for when fewer; the smallest when none does. A step budget of N steps counts as the
    time N steps of ``REFERENCE_RUNG`` take, so a longer step budget buys a larger network, as a
    longer wall clock does. Returns width, depth, parameters, predicted steps and the reason."""
    from .build import build_denoiser
    from .nets import cost

    depth_field = "model.res_blocks" if net == "unet" else "model.depth"

    @functools.cache  # a rung is built once (the reference and the floor rung are also ladder rungs)
    def step_seconds(width: int, depth: int) -> tuple[float, int]:
        m = _candidate(fixed, net, width, depth, mult)
        head_levels = f.levels if m.head == "categorical" else 0
        c = cost(build_denoiser(m, f.shape, f.levels, head_levels), f.shape)
        extra = head_activations(f.shape, f.levels) if head_levels else 0
        return predicted_step_seconds(c["flops"], c["activations"] + extra, batch, f.device), c["params"]

    rungs = list(dict.fromkeys((fixed.get("model.width", w), fixed.get(depth_field, d)) for w, d in LADDER))
    budget_s = f.minutes * 60 if f.minutes else f.steps * step_seconds(*REFERENCE_RUNG)[0]
    need = max(100, round(TARGET_STEPS * math.sqrt(budget_s / TARGET_AT_S)))  # compute split between steps and size
    need = min(need, f.steps) if f.steps else need
    chosen = None
    for width, depth in rungs:
        step_s, params = step_seconds(width, depth)
        steps = f.steps or budget_s / step_s
        if chosen is None or budget_s / step_s >= need:
            chosen = (width, depth, params, steps, step_s)
        if budget_s / step_s < need:
            break
    floored = False
    if net != "mlp" and not {"model.width", depth_field} & fixed.keys() and LADDER.index(chosen[:2]) < LADDER.index(FLOOR_RUNG):
        step_s, params = step_seconds(*FLOOR_RUNG)
        steps = f.steps or budget_s / step_s
        if steps >= FLOOR_STEPS:
            chosen, floored = (*FLOOR_RUNG, params, steps, step_s), True
    width, depth, params, steps, step_s = chosen
    if floored:
        reason = (f"about {steps:,.0f} steps of {step_s * 1e3:.0f} ms fit in {budget_s / 60:.1f} min on a "
                  f"{f.device.describe()}: fewer than {need:,}, but no network below width {FLOOR_RUNG[0]}, depth "
                  f"{FLOOR_RUNG[1]} while it gets {FLOOR_STEPS} ({params:,} parameters; it won the panel's "
                  f"2-minute screen everywhere)")
    elif f.steps:
        reason = (f"{f.steps} steps asked for, sized like {budget_s / 60:.1f} min of the reference network: "
                  f"{params:,} parameters, about {step_s * 1e3:.0f} ms a step predicted")
    else:
        reason = (f"about {steps:,.0f} steps of {step_s * 1e3:.0f} ms fit in {f.minutes:g} min on a "
                  f"{f.device.describe()}: the largest network that still gets {need:,} ({params:,} parameters)")
    return width, depth, params, steps, reason


def decide(f: Facts, fixed: dict | None = None) -> list[Decision]:
    """The recipe for ``f``: one decision per field, in the order they were made. ``fixed`` maps the
    fields the user set to their values: they are not decided, and every later decision takes
    them as given (a user's network is the one sized; a user's batch sets the learning rate)."""
    if not (f.minutes or f.steps):
        raise ValueError("the recipe needs a budget: minutes or steps")
    fixed = dict(fixed or {})
    out: list[Decision] = []

    def add(field: str, value, reason: str):
        """Decide ``field`` unless the user set it; returns the value the run will have."""
        if field in fixed:
            return fixed[field]
        out.append(Decision(field, value, reason))
        return value

    if f.crop and f.crop != SIGNAL_CROP:  # recordings: cut into short examples, then decide for those
        crop = add("crop", SIGNAL_CROP, f"recordings cut into examples of {SIGNAL_CROP} samples: about "
                                        f"{f.examples * f.crop // SIGNAL_CROP:,} of them, cheap steps; the U-Net "
                                        f"sees well past a few hundred samples")
        f = replace(f, shape=(f.shape[0], crop), examples=max(1, f.examples * f.crop // crop), crop=crop)

    as_signal = f.kind == "vectors" and f.dims >= VECTOR_CONV_MIN
    if as_signal:  # decided as a one-channel signal; build_denoiser reads each vector as one (nets.SignalView)
        f = replace(f, shape=(1, f.dims))
    net, mult, why = _net(f)
    if as_signal:
        why = (f"vectors of {f.dims} values, read as one-channel signals: a convolution along them (neighbouring "
               f"values share structure in sequences; set model.net=mlp for unordered features); " + why)
    net = add("model.net", net, why)
    if net == "unet" and mult is not None:
        mult = add("model.channel_mult", list(mult),
                   f"levels down to about {LOWEST_SIDE if f.kind == 'images' else LOWEST_LENGTH} positions")
    else:
        mult = fixed.get("model.channel_mult")
    head = "categorical" if f.levels <= CATEGORICAL_LEVELS and f.process == "gaussian" and f.kind != "vectors" else "eps"
    fixed["model.head"] = add("model.head", head, f"{f.levels} levels: " + (
        "few enough for K logits per value (exact at low noise)" if head == "categorical" else "predict the noise (VDM)"))
    batch, why = _batch(f)
    batch = add("train.batch_size", batch, why)
    width, depth, params, steps, why = _size(f, fixed, net, mult, batch)
    add("model.width", width, why)
    add("model.res_blocks" if net == "unet" else "model.depth", depth, "with the width, from the same ladder")
    if f.kind != "vectors":
        if net != "score_unet":
            attention, why = True, f"at the first level with at most {ATTENTION_POSITIONS} positions, and the middle"
        else:
            positions = math.prod(f.shape[1:])
            attention = positions <= ATTENTION_POSITIONS
            why = f"{positions} positions at full resolution: " + ("cheap enough" if attention else "too many")
        add("model.attention", attention, why)
    lr = 2e-3 if batch <= 32 else 3e-3
    add("train.lr", lr, f"batch {batch}: AdamW at {lr:g}")
    passes = steps * batch / max(1, f.examples)
    per_param = f.examples * f.dims / max(1, params)
    dropout = 0.1 if passes >= 20 or per_param < 1 else 0.0
    dropout = add("model.dropout", dropout, f"about {passes:,.0f} passes over {f.examples:,} examples, "
                                            f"{per_param:.2g} data values per parameter: "
                                            + ("regularise" if dropout else "little risk of overfitting"))
    add("train.weight_decay", 0.05 if dropout else 0.01, "with the dropout" if dropout else "AdamW's usual")
    held = min(VALIDATION_MAX, round(VALIDATION_SHARE * f.examples))
    held = held if passes >= VALIDATION_PASSES and held >= VALIDATION_MIN else 0
    add("train.validation", held,
        f"{held:,} training examples held out; the EMA weights with the best bound on them are kept (about "
        f"{passes:,.0f} passes: the end of the run may be past the best)" if held else
        (f"about {passes:,.0f} passes: the last weights are the best" if passes < VALIDATION_PASSES else
         f"{f.examples:,} examples: too few to hold any out"))
    decay = add("train.lr_decay", "wsd",
                f"warm-up, constant, then a cosine decay over the last {DECAY_FRACTION:.0%} of the budget")
    if decay == "wsd":
        add("train.decay_fraction", DECAY_FRACTION, "the decay's share of the budget")
    if "train.warmup" not in fixed:  # a warm-up the user set in steps is kept as it is
        add("train.warmup_fraction", WARMUP_FRACTION, f"{WARMUP_FRACTION:.0%} of the steps that fit"
            + (" (measured in the first seconds)" if f.minutes else ""))
    if "train.warmup_fraction" not in fixed:
        add("train.warmup", max(10, round(WARMUP_FRACTION * steps)),
            f"{WARMUP_FRACTION:.0%} of {steps:,.0f} predicted steps")
    horizon = max(20.0, EMA_FRACTION * steps)
    add("train.ema_decay", round(1 - 1 / horizon, 5), f"an EMA horizon of {horizon:,.0f} steps, {EMA_FRACTION:.0%} of the run")
    add("train.log_every", max(1, min(50, round(steps / 200))), "about 200 logged rows")
    return out


def configure(cfg: RunConfig, data, device, processes: int = 1, user_fields: set[str] | None = None,
              say=None) -> list[Decision]:
    """Apply the recipe for ``data`` (a ``data.Dataset``), ``cfg``'s budget and ``device`` (a
    ``torch.device``) to ``cfg`` in place, leaving ``user_fields`` (None: the fields that differ
    from their defaults) alone; reports each decision through ``say``; returns those applied.
    Recordings may be cut anew (``cfg.crop`` != ``data.crop``): the caller then reloads the data."""
    import torch

    facts = Facts(shape=tuple(data.shape), levels=data.levels, examples=len(data), minutes=cfg.train.minutes,
                  steps=cfg.train.steps, device=profile_of(torch.device(device).type, torch.get_num_threads(), processes),
                  process=cfg.model.process, classes=len(data.classes or []) if cfg.labels else 0, crop=data.crop)
    user = changed_fields(cfg) if user_fields is None else user_fields
    _, applied = apply(cfg, decide(facts, {f: field_value(cfg, f) for f in user}), user)
    if say:
        budget = f"{cfg.train.minutes:g} min" if cfg.train.minutes else f"{cfg.train.steps} steps"
        say(f"recipe: {data.name}, {len(data):,} examples of shape {tuple(data.shape)}, {data.levels} levels; "
            f"{budget} on a {facts.device.describe()}")
        for d in applied:
            say(d.line())
    return applied


def _owner(cfg: RunConfig, field: str) -> tuple[Any, str]:
    """The object holding ``section.field`` (or a top-level field) of ``cfg``, and the field's name."""
    section, _, name = field.rpartition(".")
    return (getattr(cfg, section) if section else cfg), name


def field_value(cfg: RunConfig, field: str):
    """The value of ``section.field`` (or a top-level field) in ``cfg``."""
    return getattr(*_owner(cfg, field))


def changed_fields(cfg: RunConfig) -> set[str]:
    """The ``section.field`` names whose value differs from the default: what a library user set."""
    default, now = asdict(RunConfig()), asdict(cfg)
    top = {k for k in ("crop",) if now[k] != default[k]}
    return top | {f"{s}.{k}" for s in ("model", "train") for k in now[s] if now[s][k] != default[s][k]}


def apply(cfg: RunConfig, decisions: list[Decision], user_fields: set[str]) -> tuple[RunConfig, list[Decision]]:
    """``cfg`` with every decided field the user did not set; returns it and the decisions applied."""
    applied = []
    for d in decisions:
        if d.field in user_fields:
            continue
        setattr(*_owner(cfg, d.field), d.value)
        applied.append(d)
    cfg.recipe = [{"field": d.field, "value": d.value, "reason": d.reason} for d in applied]
    return cfg, applied
