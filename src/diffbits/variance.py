"""Variance minimisation of the schedule interior (docs/schedules.md eqs. 10-12).

The continuous-time bound depends on the schedule only through its endpoints,
so the interior parameters ``eta`` are free to minimise the variance of the
Monte Carlo estimate instead: ``grad_eta E[L^2] = E[2 L grad_eta L]``.

``scale_grad(a, scale)`` is the identity in the forward pass and multiplies
the incoming gradient by ``scale`` (per example) in the backward pass. The
bound creates ``scale`` empty, places ``scale_grad`` on the interior
``shape(t)`` and ``shape'(t)``, and fills ``scale`` with ``2 * L_diff`` once
``L_diff`` is known. The same backward pass then delivers the bound gradient
to the denoiser and the endpoints, and the variance gradient to ``eta``: no
second backward through the denoiser.
"""
from __future__ import annotations

import torch
from torch import Tensor


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: Tensor, scale: Tensor) -> Tensor:
        # Kept as an attribute (not saved): it is filled after this forward.
        ctx.scale = scale
        return a.view_as(a)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad * ctx.scale, None


def scale_grad(a: Tensor, scale: Tensor) -> Tensor:
    """Identity whose backward multiplies the gradient by ``scale`` (read at backward time)."""
    return _ScaleGrad.apply(a, scale)
