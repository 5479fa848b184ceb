"""Small tensor helpers shared by every layer."""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["append_dims", "sum_dims", "randn_like"]


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """``v`` of shape (B,) (or a scalar) with trailing singleton dimensions up to ``ndim``, so that
    one value per example broadcasts over that example's data."""
    v = torch.as_tensor(v)
    if v.dim() > ndim:
        raise ValueError(f"cannot append dimensions to a {v.dim()}-d tensor to make it {ndim}-d")
    return v.reshape(v.shape + (1,) * (ndim - v.dim()))


def sum_dims(v: Tensor) -> Tensor:
    """Sum over every dimension but the first (the batch)."""
    return v.flatten(1).sum(1)


def randn_like(z: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard normal noise shaped like ``z``, drawn on the generator's device (so a CPU
    generator gives the same noise whatever device ``z`` is on)."""
    dev = generator.device if generator is not None else z.device
    return torch.randn(z.shape, generator=generator, device=dev, dtype=z.dtype).to(z.device)
