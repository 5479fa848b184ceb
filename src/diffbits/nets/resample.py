"""Down- and upsampling between U-Net levels, for any size (odd sizes included) and 1-D or 2-D data."""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from .blocks import conv


class Downsample(nn.Module):
    """3x3 convolution with stride 2: ``n -> ceil(n / 2)`` per spatial axis."""

    def __init__(self, dims: int, c_in: int, c_out: int):
        super().__init__()
        self.conv = (nn.Conv1d, nn.Conv2d)[dims - 1](c_in, c_out, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour resize to the skip connection's size, then a 3x3 convolution."""

    def __init__(self, dims: int, c_in: int, c_out: int):
        super().__init__()
        self.conv = conv(dims, c_in, c_out)

    def forward(self, x: Tensor, size) -> Tensor:
        return self.conv(F.interpolate(x, size=tuple(size), mode="nearest"))


def default_channel_mult(size: int) -> tuple[int, ...]:
    """DDPM's ``(1, 2, 2, 2)`` at 32x32 and above; one level fewer per halving below
    (levels stop at about 4 pixels)."""
    if size >= 32:
        return (1, 2, 2, 2)
    return (1, 2, 2) if size >= 16 else (1, 2)
