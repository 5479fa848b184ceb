"""Inputs of a denoiser: the noise level embedding and Fourier features of z_t."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

# VDM normalises gamma_t to [0, 1] with these fixed constants before embedding it.
GAMMA_RANGE = (-13.3, 5.0)


def sinusoidal_embedding(u: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Transformer-style embedding of a scalar per example (u scaled by 1000, as in VDM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=u.device, dtype=u.dtype) / half)
    args = 1000 * u[:, None] * freqs
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    return nn.functional.pad(emb, (0, dim % 2))


class GammaEmbedding(nn.Module):
    """``gamma_t`` (B,) -> conditioning vector (B, mult * width): normalise, sinusoid, MLP.
    An optional class label adds a learned embedding (index ``num_classes`` = no label)."""

    def __init__(self, width: int, gamma_range: Sequence[float] = GAMMA_RANGE, num_classes: int = 0, mult: int = 4):
        super().__init__()
        self.width, self.dim = width, mult * width
        self.gamma_min, self.gamma_max = map(float, gamma_range)
        self.mlp = nn.Sequential(nn.Linear(width, self.dim), nn.SiLU(), nn.Linear(self.dim, self.dim))
        self.label = nn.Embedding(num_classes + 1, self.dim) if num_classes else None

    def forward(self, gamma_t: Tensor, cond: Tensor | None = None) -> Tensor:
        u = (gamma_t - self.gamma_min) / (self.gamma_max - self.gamma_min)
        emb = self.mlp(sinusoidal_embedding(u, self.width))
        if cond is not None and self.label is None:
            raise ValueError("this network was built without classes; pass cond=None")
        if self.label is not None:  # no label given: the "no label" class, what guidance drops to
            if cond is None:
                cond = torch.full(emb.shape[:1], self.label.num_embeddings - 1, device=emb.device)
            emb = emb + self.label(cond)
        return emb


def fourier_periods(levels: int, octaves: Sequence[int]) -> list[float]:
    """Periods of one bin width ``2/K`` divided by ``2^k`` for each k in ``octaves``
    (VDM's frequencies 2^7, 2^8 for K = 256 are octaves (0, 1))."""
    return [2.0 / levels / 2.0**k for k in octaves]


class FourierFeatures(nn.Module):
    """``[z, sin(2 pi z / p), cos(2 pi z / p)]`` for each period p, concatenated on dim 1
    (channels of an image, coordinates of a flat vector)."""

    def __init__(self, periods: Sequence[float] = ()):
        super().__init__()
        self.freqs = [2 * math.pi / float(p) for p in periods]

    def out_channels(self, channels: int) -> int:
        return channels * (1 + 2 * len(self.freqs))

    def forward(self, z: Tensor) -> Tensor:
        if not self.freqs:
            return z
        h = torch.cat([z * w for w in self.freqs], dim=1)
        return torch.cat([z, torch.sin(h), torch.cos(h)], dim=1)

    def extra_repr(self) -> str:
        return f"freqs={[round(w, 2) for w in self.freqs]}"
