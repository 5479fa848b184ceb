"""Building blocks shared by the convolutional denoisers (1-D signals and 2-D images)."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def conv(dims: int, c_in: int, c_out: int, kernel: int = 3, zero: bool = False) -> nn.Module:
    layer = (nn.Conv1d, nn.Conv2d)[dims - 1](c_in, c_out, kernel, padding=kernel // 2)
    if zero:
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    return layer


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups of at least 4 channels (fewer for narrow layers)."""
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0 and channels // g >= min(4, channels))
    return nn.GroupNorm(groups, channels)


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose CPU mask comes from 16 random bits per element, four elements per
    64-bit draw (``bernoulli_`` draws per element: 2.4x slower forward and backward on CPU).
    The drop probability is rounded to a multiple of 2^-16. Other devices use ``F.dropout``."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu" or x.numel() % 4:
            return super().forward(x)
        threshold = round(self.p * 65536) - 32768  # int16 bits >= threshold: kept
        bits = torch.randint(-2**63, 2**63 - 1, (x.numel() // 4,), dtype=torch.int64)
        keep = bits.view(torch.int16).view(x.shape) >= threshold
        return x * (keep.to(x.dtype) * (1.0 / (1.0 - self.p)))


class ResnetBlock(nn.Module):
    """norm-swish-conv, norm scaled and shifted by the conditioning, swish-dropout-conv
    (zero init), + skip. Scale-shift after the norm (as in improved DDPM) keeps the noise
    level visible: an additive bias before a GroupNorm can be normalised away."""

    def __init__(self, dims: int, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in), conv(dims, c_in, c_out)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2, self.conv2 = group_norm(c_out), conv(dims, c_out, c_out, zero=True)
        self.dropout = Dropout(dropout)
        self.skip = conv(dims, c_in, c_out, kernel=1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb).view(h.shape[0], 2 * h.shape[1], *(1,) * (h.dim() - 2)).chunk(2, dim=1)
        # (GN(h) w + b)(1 + scale) + shift, with the norm's affine folded in: one pass over h
        w, b = (v.view(1, -1, *(1,) * (h.dim() - 2)) for v in (self.norm2.weight, self.norm2.bias))
        h = torch.addcmul(b * (1 + scale) + shift, F.group_norm(h, self.norm2.num_groups, eps=self.norm2.eps),
                          w * (1 + scale))
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Self-attention over all positions, residual, output projection zero-initialised."""

    def __init__(self, channels: int, heads: int = 1):
        super().__init__()
        self.heads = heads
        self.norm = group_norm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        h = self.norm(x).flatten(2).transpose(1, 2)  # (B, N, C)
        q, k, v = self.qkv(h).view(b, -1, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, -1, c)
        return x + self.proj(h).transpose(1, 2).view_as(x)
