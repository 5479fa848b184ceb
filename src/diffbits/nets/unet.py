"""The DDPM U-Net (Ho et al. 2020, Appendix B): residual blocks at every level, downsampling
between levels, self-attention at chosen levels: the baseline for the lighter ``ContinuousUNet``."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .blocks import AttnBlock, ResnetBlock, conv, group_norm
from .embedding import GAMMA_RANGE, FourierFeatures, GammaEmbedding
from .heads import eps_output
from .resample import Downsample, Upsample, default_channel_mult


class UNet(nn.Module):
    """``num_res_blocks`` residual blocks per level going down (width ``width * channel_mult[l]``),
    ``num_res_blocks + 1`` coming up with skip concatenation, attention after each block at the
    levels in ``attention_levels`` (DDPM: the 16x16 level of a 32x32 input, level 1), and
    resnet-attention-resnet in the middle. Same interface and output as ``ScoreUNet``:
    ``eps_hat = out + z_t`` or the categorical head."""

    def __init__(
        self,
        channels: int = 1,
        width: int = 64,
        channel_mult: Sequence[int] | None = None,
        num_res_blocks: int = 2,
        attention_levels: Sequence[int] = (1,),
        dropout: float = 0.0,
        fourier_periods: Sequence[float] = (),
        gamma_range: Sequence[float] = GAMMA_RANGE,
        num_classes: int = 0,
        dims: int = 2,
        levels: int = 0,
        size: int = 32,
    ):
        super().__init__()
        mult = tuple(channel_mult or default_channel_mult(size))
        widths = [width * m for m in mult]
        self.fourier = FourierFeatures(fourier_periods)
        self.embed = GammaEmbedding(width, gamma_range, num_classes)
        e = self.embed.dim

        def attn(level: int, c: int) -> nn.Module:
            return AttnBlock(c) if level in attention_levels else nn.Identity()

        self.conv_in = conv(dims, self.fourier.out_channels(channels), width)
        self.down, skip_widths, c = nn.ModuleList(), [width], width
        for level, w in enumerate(widths):
            for _ in range(num_res_blocks):
                self.down.append(nn.ModuleList([ResnetBlock(dims, c, w, e, dropout), attn(level, w)]))
                c = w
                skip_widths.append(c)
            if level < len(widths) - 1:
                self.down.append(Downsample(dims, c, c))
                skip_widths.append(c)
        self.mid = nn.ModuleList([ResnetBlock(dims, c, c, e, dropout), AttnBlock(c), ResnetBlock(dims, c, c, e, dropout)])
        self.up = nn.ModuleList()
        for level, w in reversed(list(enumerate(widths))):
            for _ in range(num_res_blocks + 1):
                self.up.append(nn.ModuleList([ResnetBlock(dims, c + skip_widths.pop(), w, e, dropout), attn(level, w)]))
                c = w
            if level > 0:
                self.up.append(Upsample(dims, c, c))
        self.norm_out = group_norm(c)
        self.levels = levels
        self.conv_out = conv(dims, c, channels * (levels or 1), zero=True)

    def forward(self, z_t: Tensor, gamma_t: Tensor, cond: Tensor | None = None) -> Tensor:
        emb = self.embed(gamma_t.to(z_t.dtype).expand(z_t.shape[0]), cond)
        h = self.conv_in(self.fourier(z_t))
        skips = [h]
        for layer in self.down:
            h = layer(h) if isinstance(layer, Downsample) else layer[1](layer[0](h, emb))
            skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for layer in self.up:
            if isinstance(layer, Upsample):
                h = layer(h, skips[-1].shape[2:])
            else:
                h = layer[1](layer[0](torch.cat([h, skips.pop()], dim=1), emb))
        return eps_output(self.conv_out(F.silu(self.norm_out(h))), z_t, gamma_t, self.levels)
