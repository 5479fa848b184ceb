"""How the denoiser is run: its precision and memory layout, nothing else.

``NetCall`` sits between a diffusion model and its network. With ``dtype=torch.bfloat16``
the network alone runs under autocast and its output comes back as float32; the schedule,
the bound's terms and the reconstruction stay in float32 because they are computed outside
it. With ``channels_last`` image inputs are handed over in NHWC order (the network's
weights must have been converted with ``to(memory_format=torch.channels_last)``).

``flush_denormals`` (called when diffbits is imported): on CPUs, subnormal floats are slow, and
a network in training makes more of them as it converges (tiny activations and gradients).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["NetCall", "PRECISIONS", "flush_denormals", "resolve_precision"]

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def flush_denormals() -> bool:
    """Treat subnormal float inputs and results as zero on the CPU (x86 DAZ/FTZ, Arm FZ), for
    this process. Without it a digits run slowed from 290 to 150 examples/s over 30 minutes and
    a trained network's steps cost 1.3x a fresh one's (benchmarks/RESULTS.md); nothing a model
    computes needs numbers below 1.2e-38. New threads inherit the mode, so this runs before
    torch starts its thread pool, at import. False where the CPU has no such mode."""
    return torch.set_flush_denormal(True)


@dataclass
class NetCall:
    dtype: torch.dtype | None = None  # autocast dtype of the network; None: float32
    channels_last: bool = False

    def __call__(self, net, z: Tensor, *args, **kwargs) -> Tensor:
        if self.channels_last and z.dim() == 4:
            z = z.contiguous(memory_format=torch.channels_last)
        if self.dtype is None:
            return net(z, *args, **kwargs)
        with torch.autocast(z.device.type, dtype=self.dtype):
            out = net(z, *args, **kwargs)
        return out.float()


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """``auto`` is bf16 on a GPU that supports it and float32 elsewhere (CPU bf16 is slower
    than float32 on most CPUs; ``benchmarks/throughput.py`` measures it)."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if name not in PRECISIONS:
        raise ValueError(f"train.precision must be auto, fp32 or bf16, got {name!r}")
    return PRECISIONS[name]
