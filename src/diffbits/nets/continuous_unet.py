"""``ContinuousUNet`` (docs/networks.md section 5, eqs. 4-6; Calvo-Ordonez et al., "The Missing U for Efficient Diffusion
Models"): the U-Net's levels kept, each level's stack of residual blocks replaced by one
second-order ODE block whose weights every solver step shares; attention at the lowest level only."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .blocks import AttnBlock, conv, group_norm
from .embedding import GAMMA_RANGE, FourierFeatures, GammaEmbedding
from .heads import eps_output
from .ode import ODEBlock
from .resample import Downsample, default_channel_mult


class ContinuousUNet(nn.Module):
    """Down: an ODE block per level, then a strided conv. Middle: ODE block, attention, ODE block.
    Up: nearest resize, concatenate the level's skip, 1x1 conv, ODE block. Every ODE block sees the
    noise-level embedding through its GroupNorm scale and shift, at every solver evaluation.
    ``ode_steps`` steps of ``ode_solver`` (RK4: 4 evaluations each) per block. Same interface and
    output as ``ScoreUNet``."""

    def __init__(
        self,
        channels: int = 1,
        width: int = 64,
        channel_mult: Sequence[int] | None = None,
        ode_steps: int = 1,
        ode_solver: str = "rk4",
        attention: bool = True,
        fourier_periods: Sequence[float] = (),
        gamma_range: Sequence[float] = GAMMA_RANGE,
        num_classes: int = 0,
        dims: int = 2,
        levels: int = 0,
        size: int = 32,
    ):
        super().__init__()
        widths = [width * m for m in (channel_mult or default_channel_mult(size))]
        self.fourier = FourierFeatures(fourier_periods)
        self.embed = GammaEmbedding(width, gamma_range, num_classes)
        e = self.embed.dim

        def ode(c: int) -> ODEBlock:
            return ODEBlock(dims, c, e, ode_steps, ode_solver)

        self.conv_in = conv(dims, self.fourier.out_channels(channels), widths[0])
        self.down = nn.ModuleList([ode(w) for w in widths])
        self.downsample = nn.ModuleList([Downsample(dims, a, b) for a, b in zip(widths[:-1], widths[1:])])
        c = widths[-1]
        self.mid1, self.mid2 = ode(c), ode(c)
        self.attn = AttnBlock(c) if attention else nn.Identity()
        # up: nearest resize, and one 1x1 conv merges it with the skip (no 3x3 conv on the way up)
        self.merge = nn.ModuleList([conv(dims, w + up, w, kernel=1) for w, up in zip(widths, widths[1:] + [c])])
        self.up = nn.ModuleList([ode(w) for w in widths])
        self.norm_out = group_norm(widths[0])
        self.levels = levels
        self.conv_out = conv(dims, widths[0], channels * (levels or 1), zero=True)

    def forward(self, z_t: Tensor, gamma_t: Tensor, cond: Tensor | None = None) -> Tensor:
        emb = self.embed(gamma_t.to(z_t.dtype).expand(z_t.shape[0]), cond)
        h = self.conv_in(self.fourier(z_t))
        skips = []
        for level, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
        h = self.mid2(self.attn(self.mid1(h, emb)), emb)
        for level in reversed(range(len(self.up))):
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[2:], mode="nearest")
            h = self.up[level](self.merge[level](torch.cat([h, skip], dim=1)), emb)
        return eps_output(self.conv_out(F.silu(self.norm_out(h))), z_t, gamma_t, self.levels)
