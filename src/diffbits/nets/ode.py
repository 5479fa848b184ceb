"""Fixed-step ODE solvers over a state made of several tensors (position and velocity), and the
ODE block of ``ContinuousUNet`` (docs/networks.md eqs. 4-6)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .blocks import conv, group_norm

State = tuple[Tensor, ...]


def _axpy(a: float, dx: State, x: State) -> State:
    return tuple(xi + a * di for xi, di in zip(x, dx))


def rk4_step(f: Callable[[State], State], x: State, h: float) -> State:
    """Classical Runge-Kutta: ``x + h/6 (k1 + 2 k2 + 2 k3 + k4)``."""
    k1 = f(x)
    k2 = f(_axpy(h / 2, k1, x))
    k3 = f(_axpy(h / 2, k2, x))
    k4 = f(_axpy(h, k3, x))
    return tuple(xi + h / 6 * (a + 2 * b + 2 * c + d) for xi, a, b, c, d in zip(x, k1, k2, k3, k4))


def euler_step(f: Callable[[State], State], x: State, h: float) -> State:
    return _axpy(h, f(x), x)


SOLVERS = {"rk4": rk4_step, "euler": euler_step}


def odeint_fixed(f: Callable[[State], State], x: State, steps: int, solver: str = "rk4") -> State:
    """Integrate ``dx/ds = f(x)`` from s = 0 to 1 in ``steps`` equal steps (autonomous: the noise
    level enters ``f`` through its embedding, not through s)."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown ODE solver {solver!r}; use {' or '.join(SOLVERS)}")
    if steps < 1:
        raise ValueError(f"ODE steps must be at least 1, got {steps}")
    for _ in range(steps):
        x = SOLVERS[solver](f, x, 1.0 / steps)
    return x


class ODEBlock(nn.Module):
    """Second-order dynamics ``dx/ds = v``, ``dv/ds = f(x, v, emb)`` from ``x(0) = h`` and
    ``v(0) = stem(h)``; returns ``x(1)``. ``f`` is one bottleneck residual branch whose weights
    every solver step shares: 1x1 conv of [x, v] to ``c/2`` channels, GroupNorm scaled and
    shifted by the noise-level embedding, swish, 3x3 conv, GroupNorm, swish, 1x1 conv back to c."""

    def __init__(self, dims: int, channels: int, emb_dim: int, steps: int = 1, solver: str = "rk4"):
        super().__init__()
        b = max(channels // 2, 1)
        self.steps, self.solver = steps, solver
        self.stem = conv(dims, channels, channels, kernel=1)
        self.mix = conv(dims, 2 * channels, b, kernel=1)
        self.norm1, self.emb = group_norm(b), nn.Linear(emb_dim, 2 * b)
        self.conv = conv(dims, b, b)
        self.norm2, self.out = group_norm(b), conv(dims, b, channels, kernel=1)

    def f(self, state: State, scale: Tensor, shift: Tensor) -> State:
        """The vector field: ``(dx/ds, dv/ds) = (v, f(x, v, emb))``."""
        x, v = state
        h = self.norm1(self.mix(torch.cat([x, v], dim=1))) * (1 + scale) + shift
        h = F.silu(self.norm2(self.conv(F.silu(h))))
        return v, self.out(h)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        scale, shift = self.emb(emb).view(h.shape[0], -1, *(1,) * (h.dim() - 2)).chunk(2, dim=1)
        x, _ = odeint_fixed(lambda st: self.f(st, scale, shift), (h, self.stem(h)), self.steps, self.solver)
        return x
