"""A ``diffusers`` ``UNet2DModel`` and its discrete beta schedule as a diffbits model.

``from_diffusers(unet, scheduler)`` returns a ``VDM`` whose schedule is the scheduler's
``gamma_k = log((1 - abar_k) / abar_k)`` at ``t = k / (K - 1)``, linear in between, and
whose denoiser calls the UNet at the (fractional) timestep of any gamma. So our samplers,
step schedules (score-optimal included) and bound all apply to it. diffusers is optional.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..schedules import Schedule, alpha_sigma
from ..vdm import VDM

__all__ = ["DiscreteSchedule", "DiffusersDenoiser", "from_diffusers"]


def _interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Piecewise-linear ``np.interp`` for increasing ``xp``, clamped at the ends."""
    x = x.to(xp.dtype).clamp(xp[0], xp[-1])
    i = torch.searchsorted(xp, x.detach().contiguous(), right=True).clamp(1, len(xp) - 1)
    x0, x1, f0, f1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    return f0 + (f1 - f0) * (x - x0) / (x1 - x0)


class DiscreteSchedule(Schedule):
    """``gamma(t)`` through the K discrete levels of ``alphas_cumprod`` (timestep k at t = k / (K - 1))."""

    def __init__(self, alphas_cumprod: Tensor):
        super().__init__()
        abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        gammas = torch.log1p(-abar) - torch.log(abar)
        if not (gammas.diff() > 0).all():
            raise ValueError("alphas_cumprod must decrease strictly with the timestep")
        self.register_buffer("gammas", gammas)
        self.register_buffer("knots", torch.linspace(0.0, 1.0, len(abar), dtype=torch.float64))
        self.register_buffer("gamma_0", gammas[0].float())
        self.register_buffer("gamma_1", gammas[-1].float())

    def gamma_and_derivative(self, t: Tensor, interior_grad_scale=None) -> tuple[Tensor, Tensor]:
        gamma = _interp(t, self.knots, self.gammas)
        k = (t.double().clamp(0, 1) * (len(self.gammas) - 1)).floor().clamp(max=len(self.gammas) - 2).long()
        slope = (self.gammas[k + 1] - self.gammas[k]) * (len(self.gammas) - 1)
        return gamma.to(t.dtype), slope.to(t.dtype)

    def timestep(self, gamma: Tensor) -> Tensor:
        """The fractional diffusers timestep at which the schedule reaches ``gamma``."""
        return _interp(gamma, self.gammas, torch.arange(len(self.gammas), dtype=torch.float64, device=gamma.device))


class DiffusersDenoiser(nn.Module):
    """``eps_hat(z_t, gamma_t)`` from a UNet2DModel, whatever its ``prediction_type``."""

    def __init__(self, unet: nn.Module, schedule: DiscreteSchedule, prediction_type: str = "epsilon"):
        super().__init__()
        if prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"unsupported prediction_type {prediction_type!r}")
        self.unet, self.schedule_ref, self.prediction_type = unet, [schedule], prediction_type

    def forward(self, z_t: Tensor, gamma_t: Tensor, cond=None) -> Tensor:
        k = self.schedule_ref[0].timestep(gamma_t.expand(z_t.shape[0])).to(z_t.dtype)
        out = self.unet(z_t, k, class_labels=cond).sample if cond is not None else self.unet(z_t, k).sample
        if self.prediction_type == "epsilon":
            return out
        alpha, sigma = alpha_sigma(gamma_t.to(z_t.dtype).expand(z_t.shape[0]).view(-1, 1, 1, 1))
        if self.prediction_type == "v_prediction":  # v = alpha eps - sigma x
            return sigma * z_t + alpha * out
        return (z_t - alpha * out) / sigma  # "sample": x predicted


def from_diffusers(unet: nn.Module, scheduler, levels: int = 256) -> VDM:
    """A diffbits ``VDM`` around a diffusers UNet2DModel and a scheduler with ``alphas_cumprod``
    (DDPMScheduler, DDIMScheduler, ...); data in [-1, 1] as diffusers expects."""
    schedule = DiscreteSchedule(scheduler.alphas_cumprod)
    prediction = getattr(scheduler.config, "prediction_type", "epsilon")
    denoiser = DiffusersDenoiser(unet, schedule, prediction)
    cfg = unet.config
    shape = (cfg.in_channels, cfg.sample_size, cfg.sample_size) if isinstance(cfg.sample_size, int) \
        else (cfg.in_channels, *cfg.sample_size)
    return VDM(denoiser, schedule, levels, shape, variance_min=False)
