"""Build a ``VDM`` from a ``RunConfig`` and the data's shape and levels."""
from __future__ import annotations

import math

from .config import ModelConfig
from .corruptions import BlurSchedule, Corruption
from .nets import ContinuousUNet, ResidualMLP, ScoreUNet, SignalView, UNet, fourier_periods
from .nets.resample import default_channel_mult
from .schedules import build_schedule
from .soft import SoftDiffusion
from .vdm import VDM

__all__ = ["build_model", "build_denoiser", "default_gamma_0", "attention_level", "NETS", "ATTENTION_POSITIONS"]

NETS = ("score_unet", "unet", "continuous_unet", "mlp")
ATTENTION_POSITIONS = 256  # self-attention only where a level has at most this many positions


def default_gamma_0(levels: int) -> float:
    """``-log SNR_max`` scaled to the bin width: VDM's -13.3 for 256 levels puts sigma_0 at
    about a sixth of a bin; keep that ratio, ``-13.3 + 2 ln(256 / K)`` (-7.9 for K = 17)."""
    return -13.3 + 2 * math.log(256 / levels)


def build_denoiser(cfg: ModelConfig, data_shape: tuple[int, ...], levels: int, head_levels: int = 0):
    """The network ``cfg.net`` for data of ``data_shape`` ((C, H, W) images, (C, L) signals, (D,) vectors;
    a convolutional net reads a vector as a one-channel signal, ``SignalView``)."""
    periods = fourier_periods(levels, cfg.fourier_octaves)
    net = cfg.net
    if net == "auto":
        net = "mlp" if len(data_shape) == 1 else "score_unet"
    if net == "mlp":
        return ResidualMLP(data_shape, width=cfg.width, depth=cfg.depth, dropout=cfg.dropout, fourier_periods=periods,
                           num_classes=cfg.num_classes)
    if net not in NETS:
        raise ValueError(f"unknown net {cfg.net!r}; use auto, {', '.join(NETS)}")
    if len(data_shape) == 1:
        return SignalView(build_denoiser(cfg, (1, data_shape[0]), levels, head_levels))
    if len(data_shape) not in (2, 3):
        raise ValueError(f"{net} needs (C, L) or (C, H, W) data, got shape {data_shape}")
    common = dict(channels=data_shape[0], width=cfg.width, fourier_periods=periods, dims=len(data_shape) - 1,
                  levels=head_levels, num_classes=cfg.num_classes)
    if net == "score_unet":
        return ScoreUNet(depth=cfg.depth, dropout=cfg.dropout, attention=cfg.attention, **common)
    size = min(data_shape[1:])
    if net == "unet":
        mult = cfg.channel_mult or default_channel_mult(size)
        return UNet(channel_mult=mult, num_res_blocks=cfg.res_blocks, dropout=cfg.dropout,
                    attention_levels=attention_level(data_shape, len(mult)) if cfg.attention else (), size=size,
                    **common)
    return ContinuousUNet(channel_mult=cfg.channel_mult, ode_steps=cfg.ode_steps, ode_solver=cfg.ode_solver,
                          attention=cfg.attention, size=size, **common)


def attention_level(data_shape: tuple[int, ...], levels: int) -> tuple[int, ...]:
    """The U-Net level that gets self-attention: the first (finest) one with at most
    ``ATTENTION_POSITIONS`` positions, as DDPM's 16x16 level of a 32x32 image; none if no level
    is that small (the middle block's attention, at the coarsest level, is always there)."""
    sides = data_shape[1:]
    for level in range(levels):
        if math.prod(math.ceil(s / 2**level) for s in sides) <= ATTENTION_POSITIONS:
            return (level,)
    return ()


def build_model(cfg: ModelConfig, data_shape: tuple[int, ...], levels: int) -> VDM:
    if cfg.head not in ("eps", "categorical"):
        raise ValueError(f"unknown head {cfg.head!r}; use eps or categorical")
    head_levels = levels if cfg.head == "categorical" else 0
    denoiser = build_denoiser(cfg, data_shape, levels, head_levels)
    schedule = build_schedule(cfg.schedule, default_gamma_0(levels) if cfg.gamma_0 is None else cfg.gamma_0, cfg.gamma_1)
    if cfg.process == "blur":
        if len(data_shape) not in (2, 3) or head_levels or cfg.num_classes:
            raise ValueError("process=blur needs (C, L) or (C, H, W) data, head=eps and no labels")
        sigma_max = 0.6 * max(data_shape[1:]) if cfg.blur_sigma_max is None else cfg.blur_sigma_max
        corruption = Corruption(schedule, data_shape, BlurSchedule(sigma_max))
        return SoftDiffusion(denoiser, corruption, levels, loss=cfg.soft_loss)
    if cfg.process != "gaussian":
        raise ValueError(f"unknown process {cfg.process!r}; use gaussian or blur")
    return VDM(denoiser, schedule, levels, data_shape, recon=cfg.recon, variance_min=cfg.variance_min,
               num_classes=cfg.num_classes)
