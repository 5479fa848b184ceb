"""What a denoiser costs: parameters and FLOPs of one forward pass (``torch.utils.flop_counter``)."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@torch.no_grad()
def cost(net: nn.Module, data_shape: tuple[int, ...]) -> dict:
    """``{"params": ..., "flops": ...}`` for one example of ``data_shape`` (FLOPs count a
    multiply-add as 2, as ``flop_counter`` does)."""
    ref = next(net.parameters())
    z = torch.zeros((1,) + tuple(data_shape), device=ref.device, dtype=ref.dtype)
    with FlopCounterMode(display=False) as counter:
        net(z, torch.zeros(1, device=ref.device, dtype=ref.dtype))
    return {"params": sum(p.numel() for p in net.parameters()), "flops": int(counter.get_total_flops())}
