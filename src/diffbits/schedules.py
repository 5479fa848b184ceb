"""Noise schedules: ``gamma(t) = -log SNR(t)``, increasing on t in [0, 1].

Every schedule here is ``gamma_0 + (gamma_1 - gamma_0) * shape(t)`` with a
monotone ``shape`` from 0 to 1, and returns ``gamma'(t)`` in closed form
(tested against finite differences). The interior (``shape``) and the
endpoints are separate, so that variance minimisation (docs/schedules.md eqs. 10-11) can scale the
interior's gradient alone: see ``diffbits.variance``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .variance import scale_grad

__all__ = [
    "Schedule",
    "FixedLinear",
    "LearnedLinear",
    "Cosine",
    "MonotoneNet",
    "alpha_sigma",
    "signal_of",
    "build_schedule",
]


def alpha_sigma(gamma: Tensor) -> tuple[Tensor, Tensor]:
    """``alpha = sqrt(sigmoid(-gamma))``, ``sigma = sqrt(sigmoid(gamma))``."""
    return torch.sigmoid(-gamma).sqrt(), torch.sigmoid(gamma).sqrt()


def signal_of(z: Tensor, gamma) -> Tensor:
    """``z / alpha(gamma)``: a latent at level ``gamma`` (a sampler's output at its last level) in signal
    units, ``alpha`` computed in ``z``'s dtype."""
    return z / alpha_sigma(torch.as_tensor(gamma, dtype=z.dtype))[0]


class Schedule(nn.Module):
    """Base class. Subclasses define ``shape(t) -> (a, a')`` with a(0)=0, a(1)=1."""

    gamma_0: Tensor
    gamma_1: Tensor
    has_interior = False  # True when ``shape`` has parameters of its own

    def shape(self, t: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def gamma_and_derivative(
        self, t: Tensor, interior_grad_scale: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(gamma(t), gamma'(t))``. ``interior_grad_scale`` (shape of ``t``) multiplies
        the gradient flowing into the interior parameters only (docs/schedules.md eq. 11)."""
        a, da = self.shape(t)
        if interior_grad_scale is not None and self.has_interior:
            a, da = scale_grad(a, interior_grad_scale), scale_grad(da, interior_grad_scale)
        span = self.gamma_1 - self.gamma_0
        return self.gamma_0 + span * a, span * da

    def forward(self, t: Tensor) -> Tensor:
        return self.gamma_and_derivative(t)[0]

    def extra_repr(self) -> str:
        return f"gamma_0={float(self.gamma_0):.3f}, gamma_1={float(self.gamma_1):.3f}"


class FixedLinear(Schedule):
    """``gamma(t) = gamma_0 + (gamma_1 - gamma_0) t`` with fixed endpoints."""

    def __init__(self, gamma_0: float = -13.3, gamma_1: float = 5.0):
        super().__init__()
        self.register_buffer("gamma_0", torch.tensor(float(gamma_0)))
        self.register_buffer("gamma_1", torch.tensor(float(gamma_1)))

    def shape(self, t):
        return t, torch.ones_like(t)


class LearnedLinear(FixedLinear):
    """Linear in t with learned endpoints (VDM's ``NoiseSchedule_Scalar``)."""

    def __init__(self, gamma_0: float = -13.3, gamma_1: float = 5.0):
        super().__init__()
        del self.gamma_0, self.gamma_1
        self.gamma_0 = nn.Parameter(torch.tensor(float(gamma_0)))
        self.gamma_1 = nn.Parameter(torch.tensor(float(gamma_1)))


class Cosine(Schedule):
    """Cosine schedule (alpha = cos(pi u / 2)), ``gamma = 2 log tan(pi u / 2)``,
    with u rescaled so that gamma hits the given endpoints exactly."""

    def __init__(self, gamma_0: float = -13.3, gamma_1: float = 5.0):
        super().__init__()
        self.register_buffer("gamma_0", torch.tensor(float(gamma_0)))
        self.register_buffer("gamma_1", torch.tensor(float(gamma_1)))
        # u_i with 2 log tan(pi u_i / 2) = gamma_i
        self.u0 = 2 / math.pi * math.atan(math.exp(gamma_0 / 2))
        self.u1 = 2 / math.pi * math.atan(math.exp(gamma_1 / 2))

    def gamma_and_derivative(self, t, interior_grad_scale=None):
        u = self.u0 + (self.u1 - self.u0) * t
        x = math.pi * u
        gamma = 2 * torch.log(torch.tan(x / 2))
        # d/du 2 log tan(pi u/2) = 2 pi / sin(pi u)
        return gamma, 2 * math.pi * (self.u1 - self.u0) / torch.sin(x)

    def shape(self, t):
        gamma, dgamma = self.gamma_and_derivative(t)
        span = self.gamma_1 - self.gamma_0
        return (gamma - self.gamma_0) / span, dgamma / span


class MonotoneNet(Schedule):
    """VDM's learned schedule (docs/schedules.md eqs. 5-7): ``g(t) = l1(t) + l3(sigmoid(l2(l1(t))))``
    with positive weights (abs), rescaled to learned endpoints:
    ``gamma(t) = gamma_0 + (gamma_1 - gamma_0) (g(t) - g(0)) / (g(1) - g(0))``.
    """

    has_interior = True

    def __init__(self, gamma_0: float = -13.3, gamma_1: float = 5.0, hidden: int = 1024):
        super().__init__()
        self.gamma_0 = nn.Parameter(torch.tensor(float(gamma_0)))
        self.gamma_1 = nn.Parameter(torch.tensor(float(gamma_1)))
        # l1 maps [0, 1] onto [-1, 1] at init, as VDM feeds 2(t - 1/2) to l2.
        self.w1 = nn.Parameter(torch.tensor(2.0))
        self.b1 = nn.Parameter(torch.tensor(-1.0))
        self.w2 = nn.Parameter(torch.randn(hidden))
        self.b2 = nn.Parameter(torch.randn(hidden))
        # Small l3 so that the initial schedule is close to linear.
        self.w3 = nn.Parameter(torch.randn(hidden) / hidden)

    def _g(self, t: Tensor) -> tuple[Tensor, Tensor]:
        w1, w2, w3 = self.w1.abs(), self.w2.abs(), self.w3.abs()
        h1 = w1 * t + self.b1
        s = torch.sigmoid(h1.unsqueeze(-1) * w2 + self.b2)
        g = h1 + s @ w3
        dg = w1 + (s * (1 - s) * w2) @ w3 * w1
        return g, dg

    def shape(self, t):
        g, dg = self._g(t)
        ends, _ = self._g(torch.tensor([0.0, 1.0], dtype=t.dtype, device=t.device))
        span = ends[1] - ends[0]
        return (g - ends[0]) / span, dg / span


SCHEDULES = {
    "fixed_linear": FixedLinear,
    "learned_linear": LearnedLinear,
    "cosine": Cosine,
    "monotone_net": MonotoneNet,
}


def build_schedule(name: str, gamma_0: float, gamma_1: float) -> Schedule:
    try:
        cls = SCHEDULES[name]
    except KeyError:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}") from None
    return cls(gamma_0=gamma_0, gamma_1=gamma_1)

