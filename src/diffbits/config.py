"""Typed run configuration, saved as ``config.json`` beside every run.

Override any field from the command line with ``--set section.field=value``
(value parsed as JSON when it can be, else taken as a string), e.g.
``--set model.width=32 --set train.lr=1e-3``.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["ModelConfig", "TrainConfig", "RunConfig", "apply_overrides"]


@dataclass
class ModelConfig:
    net: str = "auto"  # auto (score_unet for images, mlp for vectors) | score_unet | unet | continuous_unet | mlp
    width: int = 64  # base width: every network's first level
    depth: int = 4  # score_unet and mlp: residual blocks
    channel_mult: list[int] | None = None  # unet, continuous_unet: width multiple per level (None: by image size)
    res_blocks: int = 2  # unet: residual blocks per level (DDPM: 2)
    ode_steps: int = 1  # continuous_unet: solver steps per ODE block
    ode_solver: str = "rk4"  # continuous_unet: rk4 | euler
    dropout: float = 0.0
    attention: bool = True
    fourier_octaves: list[int] = field(default_factory=lambda: [0, 1])  # periods 2/K / 2^k
    schedule: str = "monotone_net"  # fixed_linear | learned_linear | cosine | monotone_net
    gamma_0: float | None = None  # None: -13.3 + 2 ln(256 / K), VDM's value for K = 256
    gamma_1: float = 5.0
    variance_min: bool = True  # interior of the schedule minimises the bound's variance
    recon: str = "auto"  # auto | softmax | gaussian
    head: str = "eps"  # eps (VDM) | categorical (K logits per coordinate; small K only)
    process: str = "gaussian"  # gaussian (VDM) | blur (soft diffusion: heat-equation blur plus noise, docs/soft.md eqs. 1-4)
    blur_sigma_max: float | None = None  # blur at t = 1; None: 0.6 x the image's longer side
    soft_loss: str = "elbo"  # blur models: elbo (the per-frequency bound) | ssm (Soft Score Matching)
    num_classes: int = 0  # > 0: conditional on a class label (filled from the data's labels)
    label_dropout: float = 0.1  # conditional models: share of labels replaced by "no label" (classifier-free guidance)


@dataclass
class TrainConfig:
    steps: int = 0  # total optimiser steps (0: until --minutes runs out)
    minutes: float = 0.0  # wall-clock budget of this invocation (0: no limit)
    batch_size: int = 128  # the global batch, over all processes and micro-batches
    micro_batch: int = 0  # examples per process per forward pass (0: batch_size / processes); the rest is accumulated
    lr: float = 2e-3
    warmup: int = 200  # steps of linear warm-up (see warmup_fraction)
    warmup_fraction: float = 0.0  # > 0: warm up over this share of the run's steps instead (--minutes: measured)
    grid_every: int = 0  # > 0: refit a score-optimal sampling grid every N steps (docs/score_optimal.md eq. 9)
    grid_steps: int = 20  # steps of that grid
    grid_blend: float = 0.1  # t <- b t* + (1 - b) t
    grid_variant: str = "corrector"  # corrector | predictor
    lr_decay: str = "none"  # none (constant after warm-up, as VDM) | cosine (to 0 at the end of the budget) | wsd
    decay_fraction: float = 0.2  # wsd: constant, then a cosine decay to 0 over this last share of the budget
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    grad_clip: float = 1.0  # 0 disables
    ema_decay: float = 0.999
    T: int = 0  # 0: continuous-time bound; else discrete with T steps
    seed: int = 0
    log_every: int = 50
    checkpoint_minutes: float = 1.0
    sample_steps: int = 250
    checkpoint_every: int = 0  # > 0: also checkpoint every N steps
    device: str = "auto"  # auto | cpu | cuda (under torchrun: cuda:LOCAL_RANK)
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16: the network only, never the bound
    compile: bool = False  # torch.compile the network (pays a compile on start)
    channels_last: bool = False  # NHWC layout for image networks (0.9x on this CPU; usually a gain on GPUs with bf16)
    validation: int = 0  # > 0: hold out this many training examples; the EMA weights with the best bound on them are kept
    validations: int = 10  # how often they are measured: at this many even points over the run's last 70%


@dataclass
class RunConfig:
    data: str = "digits"
    levels: int = 0  # 0: inferred from the data
    shape: list[int] = field(default_factory=list)  # one example's shape, filled from the data
    dtype: str = ""  # numpy dtype of the data's arrays, filled from the data ("": by the levels)
    labels: str = ""  # class labels for a conditional model: target (digits) | NPZ KEY | folders; "": none
    classes: list[str] = field(default_factory=list)  # class names, filled from the data
    crop: int = 0  # WAV folders: samples per example (0: data.AUDIO_CROP)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    recipe: list[dict] = field(default_factory=list)  # the recipe's decisions (field, value, reason), if it ran

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def save(self, path: Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        return _from_dict(cls, d, "config")

    @classmethod
    def load(cls, path: Path) -> "RunConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def _from_dict(cls, d: dict, where: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(names)}")
    kwargs = {}
    for k, v in d.items():
        t = hints[k]
        kwargs[k] = _from_dict(t, v, f"{where}.{k}") if dataclasses.is_dataclass(t) else _coerce(v, t, f"{where}.{k}")
    return cls(**kwargs)


def _coerce(value, t, where: str):
    origin = typing.get_origin(t)
    if origin in (typing.Union, types.UnionType):  # Optional[X]
        if value is None:
            return None
        (t,) = [a for a in typing.get_args(t) if a is not type(None)]
        return _coerce(value, t, where)
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(t)
        return [_coerce(v, item, where) for v in value]
    if t is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{where}: expected true or false, got {value!r}")
    if t is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if t is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if t is str:
        return str(value)
    return value


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``key=value`` strings (``model.width=32``, ``data=digits``) to a config."""
    d = asdict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node, parts = d, key.strip().split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise ValueError(f"--set {key}: no section {p!r}; sections: model, train")
            node = node[p]
        if parts[-1] not in node:
            raise ValueError(f"--set {key}: unknown field {parts[-1]!r}; known: {sorted(node)}")
        node[parts[-1]] = value
    return RunConfig.from_dict(d)
