"""Corruptions ``x_t = C_t x_0 + s_t eta`` (docs/soft.md eqs. 1-5), diagonal in the DCT basis.

``C_t = alpha_t V diag(exp(-Lambda tau_t)) V^T`` with ``Lambda_ij = pi^2 (i^2/H^2 + j^2/W^2)``
(the heat equation with reflecting boundaries), ``tau_t = sigma_B(t)^2 / 2`` and
``s_t = sigma_t``; ``alpha_t, sigma_t`` come from a VDM noise schedule ``gamma(t)``. With the
blur off (``sigma_B = 0``) this is the plain Gaussian process, ``C_t = alpha_t I``. The
variance-exploding form (Soft Diffusion's own) drops ``alpha``: ``C_t = D_t``, ``s_t = exp(gamma_t/2)``.

In the DCT basis every frequency k is its own Gaussian diffusion with
``gamma_k(t) = gamma(t) + 2 Lambda_k tau_t`` (blurring diffusion, Hoogeboom & Salimans 2022),
so the bound, samplers and schedules all work per frequency.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .schedules import Schedule, alpha_sigma
from .tensors import append_dims

__all__ = ["dct_matrix", "DCT", "BlurSchedule", "Corruption"]


def dct_matrix(n: int, dtype=torch.float64) -> Tensor:
    """Orthonormal DCT-II: coefficients ``c = M x``, inverse ``x = M^T c``."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    m = torch.cos(math.pi * (i + 0.5) * k / n) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m.to(dtype)


class DCT(nn.Module):
    """Separable orthonormal DCT over the trailing spatial axes of (B, C, *spatial) (1-D or 2-D),
    and the heat-equation eigenvalues ``Lambda`` of each frequency."""

    def __init__(self, spatial: tuple[int, ...]):
        super().__init__()
        if len(spatial) not in (1, 2):
            raise ValueError(f"blur needs 1-D or 2-D data, got spatial shape {spatial}")
        self.spatial = tuple(spatial)
        for a, n in enumerate(spatial):
            self.register_buffer(f"m{a}", dct_matrix(n), persistent=False)
        freqs = [torch.arange(n, dtype=torch.float64) ** 2 / n**2 for n in spatial]
        lam = freqs[0] if len(spatial) == 1 else freqs[0][:, None] + freqs[1][None, :]
        self.register_buffer("lam", math.pi**2 * lam, persistent=False)

    def _mats(self, x):
        return [getattr(self, f"m{a}").to(x.dtype) for a in range(len(self.spatial))]

    def forward(self, x: Tensor) -> Tensor:  # x -> coefficients
        ms = self._mats(x)
        if len(ms) == 1:
            return x @ ms[0].T
        return ms[0] @ x @ ms[1].T

    def inverse(self, c: Tensor) -> Tensor:
        ms = self._mats(c)
        if len(ms) == 1:
            return c @ ms[0]
        return ms[0].T @ c @ ms[1]

    def heat(self, x: Tensor, tau: Tensor | float) -> Tensor:
        """The heat equation run for time ``tau`` (reflecting boundaries): ``V exp(-Lambda tau) V^T x``."""
        tau = append_dims(torch.as_tensor(tau, dtype=x.dtype, device=x.device).reshape(-1), x.dim())
        return self.inverse(torch.exp(-self.lam.to(x.dtype) * tau) * self(x))


class BlurSchedule(nn.Module):
    """``sigma_B(t) = sigma_max sin(pi t / 2)^2`` (blurring diffusion), ``tau = sigma_B^2 / 2``;
    returns ``(tau, dtau/dt)``. ``sigma_max = 0``: no blur."""

    def __init__(self, sigma_max: float):
        super().__init__()
        if sigma_max < 0:
            raise ValueError(f"sigma_max must be >= 0, got {sigma_max}")
        self.sigma_max = float(sigma_max)

    def forward(self, t: Tensor) -> tuple[Tensor, Tensor]:
        s = torch.sin(math.pi * t / 2)
        sig = self.sigma_max * s**2
        dsig = self.sigma_max * 2 * s * torch.cos(math.pi * t / 2) * math.pi / 2
        return sig**2 / 2, sig * dsig


class Corruption(nn.Module):
    """``x_t = C_t x_0 + s_t eta`` for data of shape (C, *spatial): one interface for the plain
    Gaussian process (``blur=None`` or sigma_max 0) and blur-plus-noise."""

    def __init__(self, schedule: Schedule, data_shape: tuple[int, ...], blur: BlurSchedule | None = None,
                 variance_exploding: bool = False):
        super().__init__()
        self.schedule, self.variance_exploding = schedule, variance_exploding
        self.blur = blur if blur is not None else BlurSchedule(0.0)
        self.data_shape = tuple(data_shape)
        self.dct = DCT(self.data_shape[1:])

    @property
    def blurs(self) -> bool:
        return self.blur.sigma_max > 0

    def gamma_freq(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Per-frequency ``gamma_k(t) = gamma(t) + 2 Lambda_k tau(t)`` and its t-derivative,
        shaped (B, 1, *spatial) to broadcast over channels."""
        gamma, dgamma = self.schedule.gamma_and_derivative(t)
        tau, dtau = self.blur(t)
        n = 1 + len(self.data_shape)
        lam = self.dct.lam.to(gamma.dtype)
        return (append_dims(gamma, n) + 2 * lam * append_dims(tau, n),
                append_dims(dgamma, n) + 2 * lam * append_dims(dtau, n))

    def multiplier(self, t: Tensor) -> Tensor:
        """``C_t`` in the DCT basis: ``alpha_t exp(-Lambda tau_t)``, (B, 1, *spatial)."""
        gamma = self.schedule(t)
        tau, _ = self.blur(t)
        n = 1 + len(self.data_shape)
        alpha = torch.ones_like(gamma) if self.variance_exploding else alpha_sigma(gamma)[0]
        return append_dims(alpha, n) * torch.exp(-self.dct.lam.to(gamma.dtype) * append_dims(tau, n))

    def noise_std(self, t: Tensor) -> Tensor:
        """``s_t = sigma_t`` (variance exploding: ``sigma_t / alpha_t = exp(gamma_t / 2)``), (B, 1, ..., 1)."""
        gamma = self.schedule(t)
        s = torch.exp(gamma / 2) if self.variance_exploding else alpha_sigma(gamma)[1]
        return append_dims(s.reshape(-1), 1 + len(self.data_shape))

    def apply_C(self, x: Tensor, t: Tensor) -> Tensor:
        return self.dct.inverse(self.multiplier(t).to(x.dtype) * self.dct(x))

    def forward(self, x0: Tensor, t: Tensor, eta: Tensor) -> Tensor:
        """A draw of ``x_t``."""
        return self.apply_C(x0, t) + self.noise_std(t).to(x0.dtype) * eta
