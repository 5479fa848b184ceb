"""VDM's ScoreUNet: a U-Net without downsampling (docs/networks.md section 3)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .blocks import AttnBlock, ResnetBlock, conv, group_norm
from .embedding import GAMMA_RANGE, FourierFeatures, GammaEmbedding
from .heads import eps_output


class ScoreUNet(nn.Module):
    """Input conv, ``depth`` residual blocks, a middle block (resnet, attention, resnet),
    ``depth + 1`` up blocks with skip concatenation, zero-initialised output conv.
    Returns ``eps_hat = out + z_t`` (VDM's base measure), or with ``levels`` = K > 0 the
    categorical head (``heads.categorical_eps``): K logits per coordinate. ``dims`` = 2 for
    images (B, C, H, W), 1 for signals (B, C, L). Any spatial size: nothing is downsampled."""

    def __init__(
        self,
        channels: int = 1,
        width: int = 64,
        depth: int = 4,
        dropout: float = 0.0,
        attention: bool = True,
        fourier_periods: Sequence[float] = (),
        gamma_range: Sequence[float] = GAMMA_RANGE,
        num_classes: int = 0,
        dims: int = 2,
        levels: int = 0,
    ):
        super().__init__()
        self.fourier = FourierFeatures(fourier_periods)
        self.embed = GammaEmbedding(width, gamma_range, num_classes)
        e = self.embed.dim
        self.conv_in = conv(dims, self.fourier.out_channels(channels), width)
        self.down = nn.ModuleList([ResnetBlock(dims, width, width, e, dropout) for _ in range(depth)])
        self.mid1 = ResnetBlock(dims, width, width, e, dropout)
        self.attn = AttnBlock(width) if attention else None
        self.mid2 = ResnetBlock(dims, width, width, e, dropout)
        self.up = nn.ModuleList([ResnetBlock(dims, 2 * width, width, e, dropout) for _ in range(depth + 1)])
        self.norm_out = group_norm(width)
        self.levels = levels
        self.conv_out = conv(dims, width, channels * (levels or 1), zero=True)

    def forward(self, z_t: Tensor, gamma_t: Tensor, cond: Tensor | None = None) -> Tensor:
        emb = self.embed(gamma_t.to(z_t.dtype).expand(z_t.shape[0]), cond)
        h = self.conv_in(self.fourier(z_t))
        skips = [h]
        for block in self.down:
            h = block(h, emb)
            skips.append(h)
        h = self.mid1(h, emb)
        if self.attn is not None:
            h = self.attn(h)
        h = self.mid2(h, emb)
        for block in self.up:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return eps_output(self.conv_out(F.silu(self.norm_out(h))), z_t, gamma_t, self.levels)
