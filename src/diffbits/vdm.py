"""The variational diffusion model: a denoiser, a schedule and a discrete data map."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from . import bound as B
from .grids import Grid, fixed_grid
from .precision import NetCall
from .schedules import Schedule, alpha_sigma
from .tensors import append_dims, randn_like, sum_dims

__all__ = ["VDM"]


class VDM(nn.Module):
    """``VDM(denoiser, schedule, levels, data_shape)``.

    ``denoiser(z_t, gamma_t[, cond]) -> eps_hat`` may be any callable or module.
    ``bound(x)`` returns the per-example terms of the negative ELBO (continuous time, or
    ``T`` steps). With ``variance_min`` and a schedule that has interior parameters, the
    gradient of those parameters is that of ``E[L_diff^2]`` (see ``diffbits.variance``).
    """

    def __init__(
        self,
        denoiser: Callable,
        schedule: Schedule,
        levels: int,
        data_shape: tuple[int, ...],
        recon: str = "auto",
        variance_min: bool = True,
        num_classes: int = 0,
    ):
        super().__init__()
        if levels < 2:
            raise ValueError(f"levels must be at least 2, got {levels}")
        self.denoiser = denoiser
        self.schedule = schedule
        self.levels = int(levels)
        self.data_shape = tuple(int(d) for d in data_shape)
        self.recon_method = recon
        self.variance_min = variance_min
        self.num_classes = num_classes  # > 0: conditional; label num_classes means "no label"
        self.net_call = NetCall()  # the network's precision and layout (train.precision, ...)

    @property
    def dims(self) -> int:
        return math.prod(self.data_shape)

    def eps_hat(self, z_t: Tensor, gamma_t: Tensor, cond=None) -> Tensor:
        if cond is None:
            return self.net_call(self.denoiser, z_t, gamma_t)
        return self.net_call(self.denoiser, z_t, gamma_t, cond=cond)

    def _check(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(f"expected data of shape (B, {', '.join(map(str, self.data_shape))}), got {tuple(x.shape)}")
        if x.dtype.is_floating_point or x.dtype == torch.bool:
            raise TypeError(f"bound expects integer levels, got dtype {x.dtype}")

    def bound(
        self,
        x: Tensor,
        T: int | None = None,
        grid: Grid | None = None,
        cond=None,
        t: Tensor | None = None,
        eps: Tensor | None = None,
        eps_0: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> B.BoundTerms:
        """Negative ELBO terms (nats per example) for integer data ``x`` of shape (B, *data_shape).

        The diffusion term is continuous-time by default (docs/bound.md eq. 8), the chain of
        ``T`` steps uniform in t (eq. 10), or the chain through the levels of ``grid`` (a
        ``Grid``, such as the codec's rate-optimal one; eq. 11). ``t``, ``eps`` (diffusion noise)
        and ``eps_0`` (noise of z_0) may be given to compare two models on the same draw;
        otherwise t is antithetic (eq. 12)."""
        self._check(x)
        f = B.data_to_signal(x, self.levels, self.schedule.gamma_0.dtype)
        eps_0 = randn_like(f, generator) if eps_0 is None else eps_0
        alpha_0, sigma_0 = alpha_sigma(self.schedule.gamma_0)
        recon = B.recon_nll(x, alpha_0 * f + sigma_0 * eps_0, self.schedule.gamma_0, self.levels, self.recon_method)
        if t is None:
            t = B.antithetic_times(len(x), generator=generator, device=x.device)
        eps = randn_like(f, generator) if eps is None else eps
        if grid is not None:
            diffusion = self._diffusion_on_grid(f, t, eps, cond, grid)
        elif T:
            diffusion = self._diffusion_discrete(f, t, eps, cond, T)
        else:
            diffusion = self._diffusion_continuous(f, t, eps, cond)
        return B.BoundTerms(prior=B.prior_kl(f, self.schedule.gamma_1), recon=recon, diffusion=diffusion,
                            dims=self.dims)

    def _eps_error(self, f: Tensor, gamma_t: Tensor, eps: Tensor, cond) -> Tensor:
        """``||eps - eps_hat(z_t, gamma_t)||^2`` per example, ``z_t = alpha_t f + sigma_t eps``."""
        alpha_t, sigma_t = alpha_sigma(gamma_t)
        z_t = append_dims(alpha_t, f.dim()) * f + append_dims(sigma_t, f.dim()) * eps
        return sum_dims((eps - self.eps_hat(z_t, gamma_t, cond)) ** 2)

    def _variance_scale(self, f: Tensor) -> Tensor | None:
        """The per-example gradient scale of the schedule's interior (``diffbits.variance``),
        filled with ``2 L`` once the loss is known; None when it does not apply."""
        if self.variance_min and self.schedule.has_interior and torch.is_grad_enabled():
            return torch.zeros(len(f), device=f.device, dtype=f.dtype)
        return None

    def _diffusion_continuous(self, f: Tensor, t: Tensor, eps: Tensor, cond) -> Tensor:
        scale = self._variance_scale(f)
        gamma_t, dgamma_t = self.schedule.gamma_and_derivative(t, scale)
        loss = B.diffusion_continuous(self._eps_error(f, gamma_t, eps, cond), dgamma_t)
        if scale is not None:
            scale.copy_(2 * loss.detach())  # grad_eta E[L^2] = E[2 L grad_eta L] (docs/schedules.md)
        return loss

    def _diffusion_discrete(self, f: Tensor, t: Tensor, eps: Tensor, cond, T: int) -> Tensor:
        scale = self._variance_scale(f)
        t = (torch.floor(t * T).clamp(0, T - 1) + 1) / T  # t in {1/T, ..., 1}, s = t - 1/T
        gamma_t, _ = self.schedule.gamma_and_derivative(t, scale)
        gamma_s, _ = self.schedule.gamma_and_derivative(t - 1.0 / T, scale)
        loss = B.diffusion_discrete(self._eps_error(f, gamma_t, eps, cond), gamma_t, gamma_s, T)
        if scale is not None:
            scale.copy_(2 * loss.detach())
        return loss

    def _diffusion_on_grid(self, f: Tensor, t: Tensor, eps: Tensor, cond, grid: Grid) -> Tensor:
        gammas = grid.gamma.flip(0).to(f.device, f.dtype)  # increasing: gamma(0) .. gamma(1)
        T = grid.steps
        i = torch.floor(t * T).clamp(0, T - 1).long() + 1  # step i of the chain, uniform in 1..T
        return B.diffusion_discrete(self._eps_error(f, gammas[i], eps, cond), gammas[i], gammas[i - 1], T)

    def loss_terms(self, x: Tensor, T: int | None = None, t: Tensor | None = None, eps: Tensor | None = None,
                   eps_0: Tensor | None = None, cond: Tensor | None = None) -> B.BoundTerms:
        """What training minimises: the bound (``t``, ``eps``, ``eps_0``, ``cond`` as in ``bound``)."""
        return self.bound(x, T=T, cond=cond, t=t, eps=eps, eps_0=eps_0)

    def guided_eps(self, cond: Tensor | None, guidance: float = 1.0):
        """``eps_fn(z, gamma)`` with classifier-free guidance (Ho & Salimans 2022):
        ``eps_u + w (eps_c - eps_u)``, ``eps_u`` without a label; w = 1 is the conditional
        model, w = 0 the unconditional one, w > 1 sharpens toward the class."""
        if cond is None or guidance == 1.0:
            return lambda z_t, gamma_t: self.eps_hat(z_t, gamma_t, cond)
        if not self.num_classes:
            raise ValueError("guidance needs a conditional model (trained with labels)")
        if guidance == 0.0:  # eps_u alone: half the calls, and bit-equal to the unconditional model
            return lambda z_t, gamma_t: self.eps_hat(z_t, gamma_t)
        none = torch.full_like(cond, self.num_classes)

        def eps_fn(z_t, gamma_t):
            both = self.eps_hat(torch.cat([z_t, z_t]), torch.cat([gamma_t, gamma_t]), torch.cat([cond, none]))
            eps_c, eps_u = both.chunk(2)
            return eps_u + guidance * (eps_c - eps_u)

        return eps_fn

    def forward(self, x: Tensor, T: int | None = None, cond=None) -> Tensor:
        """Mean negative ELBO in bits/dim: the training loss."""
        return self.bound(x, T=T, cond=cond).bpd.mean()

    @torch.no_grad()
    def sample(
        self,
        n: int,
        steps: int = 250,
        cond=None,
        generator: torch.Generator | None = None,
        progress: bool = False,
        sampler: str = "ancestral",
        grid: "Grid | str" = "uniform-t",
        decode: bool = True,
        guidance: float = 1.0,
        euler_last: bool = False,
    ) -> Tensor:
        """Draw ``n`` samples with ``sampler`` (``samplers.SAMPLERS``) on ``grid``, a ``Grid``
        or a step-schedule name (``grids.FIXED``) with ``steps`` steps; ``cond``
        (class labels, (n,)) with ``guidance`` as in ``guided_eps``; ``euler_last``: Heun's
        last step is an Euler step (``samplers.sampler_for_nfe``, an odd call budget), or DPM-Solver++(2M)'s
        first order; also where ``grid.info`` says so for this sampler (a solver-aware grid may be fitted
        in that form). The initial
        noise is drawn first, so a seed gives the same start whatever the grid. Returns
        integer data (decoder argmax), or with ``decode=False`` the signal ``z_0 / alpha_0``."""
        from .samplers import EULER_LAST, get_sampler

        dev = self.schedule.gamma_0.device
        z = randn_like(torch.empty((n,) + self.data_shape, device=dev), generator)
        if isinstance(grid, str):
            grid = fixed_grid(grid, self.schedule, steps)
        euler_last = euler_last or (sampler in EULER_LAST and bool(grid.info.get("euler_last"))
                                    and grid.info.get("sampler", sampler) == sampler)
        fn = get_sampler(sampler, euler_last)
        gammas = grid.gamma.to(dev, z.dtype)

        if cond is not None:
            cond = torch.as_tensor(cond, device=dev).long().expand(n)
        z_end = fn(self.guided_eps(cond, guidance), z, gammas, generator=generator, progress=progress)
        signal = z_end / alpha_sigma(gammas[-1])[0]  # the grid's last level (gamma_0 for full grids)
        return B.signal_to_data(signal, self.levels) if decode else signal

    def decode(self, z_0: Tensor) -> Tensor:
        """Argmax of ``p(x | z_0)``: the bin nearest to ``z_0 / alpha_0``."""
        alpha_0, _ = alpha_sigma(self.schedule.gamma_0)
        return B.signal_to_data(z_0 / alpha_0, self.levels)
