"""What a denoiser costs: parameters, FLOPs and activations of one forward pass."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@torch.no_grad()
def cost(net: nn.Module, data_shape: tuple[int, ...]) -> dict:
    """``{"params", "flops", "activations"}`` for one example of ``data_shape``: FLOPs count a
    multiply-add as 2, as ``flop_counter`` does; activations are the values every leaf module
    writes (what memory-bound layers such as norms and nonlinearities pay for)."""
    ref = next(net.parameters())
    z = torch.zeros((1,) + tuple(data_shape), device=ref.device, dtype=ref.dtype)
    written = []

    def count(module, inputs, output):
        if isinstance(output, torch.Tensor):
            written.append(output.numel())

    hooks = [m.register_forward_hook(count) for m in net.modules() if not list(m.children())]
    try:
        with FlopCounterMode(display=False) as counter:
            net(z, torch.zeros(1, device=ref.device, dtype=ref.dtype))
    finally:
        for h in hooks:
            h.remove()
    return {"params": sum(p.numel() for p in net.parameters()), "flops": int(counter.get_total_flops()),
            "activations": int(sum(written))}
