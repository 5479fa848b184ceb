"""A residual MLP denoiser for flat vectors (B, D)."""
from __future__ import annotations

import math
from typing import Sequence

from torch import Tensor, nn
from torch.nn import functional as F

from .blocks import Dropout
from .embedding import GAMMA_RANGE, FourierFeatures, GammaEmbedding


class _Block(nn.Module):
    def __init__(self, width: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.fc1 = nn.LayerNorm(width), nn.Linear(width, width)
        self.emb = nn.Linear(emb_dim, width)
        self.norm2, self.fc2 = nn.LayerNorm(width), nn.Linear(width, width)
        self.dropout = Dropout(dropout)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.fc1(F.silu(self.norm1(x))) + self.emb(emb)
        return x + self.fc2(self.dropout(F.silu(self.norm2(h))))


class ResidualMLP(nn.Module):
    """Fourier features, a linear stem, ``depth`` residual blocks conditioned on gamma,
    zero-initialised output; returns ``eps_hat = out + z_t``. Data of any shape is
    flattened to ``D = prod(data_shape)`` coordinates."""

    def __init__(
        self,
        data_shape: int | Sequence[int],
        width: int = 256,
        depth: int = 4,
        dropout: float = 0.0,
        fourier_periods: Sequence[float] = (),
        gamma_range: Sequence[float] = GAMMA_RANGE,
        num_classes: int = 0,
    ):
        super().__init__()
        self.data_shape = (data_shape,) if isinstance(data_shape, int) else tuple(data_shape)
        dim = math.prod(self.data_shape)
        self.fourier = FourierFeatures(fourier_periods)
        self.embed = GammaEmbedding(width, gamma_range, num_classes, mult=1)
        self.stem = nn.Linear(self.fourier.out_channels(dim), width)
        self.blocks = nn.ModuleList([_Block(width, self.embed.dim, dropout) for _ in range(depth)])
        self.norm_out, self.out = nn.LayerNorm(width), nn.Linear(width, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z_t: Tensor, gamma_t: Tensor, cond: Tensor | None = None) -> Tensor:
        emb = self.embed(gamma_t.to(z_t.dtype).expand(z_t.shape[0]), cond)
        z = z_t.flatten(1)
        h = self.stem(self.fourier(z))
        for block in self.blocks:
            h = block(h, emb)
        return (self.out(F.silu(self.norm_out(h))) + z).view_as(z_t)
