"""Peer samplers driving a diffbits model, each on Karras (rho = 7) sigmas: DPM-Solver++(2M) from
k-diffusion (``sample_dpmpp_2m``) and diffusers (``DPMSolverMultistepScheduler``), and Heun from
k-diffusion (``sample_heun``) and diffusers (``HeunDiscreteScheduler``).

All see the same network and the same noise range as ours: k-diffusion through its EDM-form
denoiser ``D(x, s)`` (``x = z / alpha``, ``s = sigma / alpha``), diffusers through
``trained_betas`` that reproduce the model's ``gamma`` at 1000 timesteps. The DPM-Solver++(2M)
peers stop at the model's smallest noise level, as ours do, and return ``z / alpha``. The Heun
peers run as their libraries (and EDM's Algorithm 1) do: Heun steps down to the smallest level,
then one Euler step to s = 0, so ``n`` sigmas cost ``2n - 1`` calls; they get the largest ``n``
within the budget (NFE 10: 5 sigmas, 9 calls).
Install: ``pip install --no-deps k-diffusion==0.1.1.post1 torchsde trampoline`` and diffusers.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import torch

from diffbits.grids import gamma_of
from diffbits.schedules import alpha_sigma


class MissingPeer(RuntimeError):
    pass


def _load_kdiffusion_sampling():
    """k_diffusion.sampling without the package's __init__ (which imports CLIP, wandb, ...);
    its utils import torchvision only for image helpers, stubbed here."""
    if "k_diffusion.sampling" in sys.modules:
        return sys.modules["k_diffusion.sampling"]
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        raise MissingPeer("k-diffusion is not installed: pip install --no-deps k-diffusion==0.1.1.post1 torchsde trampoline")
    root = Path(list(spec.submodule_search_locations)[0])
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = [str(root)]
    sys.modules["k_diffusion"] = pkg
    stubbed = importlib.util.find_spec("torchvision") is None
    if stubbed:
        tv = types.ModuleType("torchvision")
        tv.transforms = types.ModuleType("torchvision.transforms")
        tv.transforms.functional = types.ModuleType("torchvision.transforms.functional")
        sys.modules.update({"torchvision": tv, "torchvision.transforms": tv.transforms,
                            "torchvision.transforms.functional": tv.transforms.functional})
    for name in ("utils", "sampling"):
        s = importlib.util.spec_from_file_location(f"k_diffusion.{name}", root / f"{name}.py")
        mod = importlib.util.module_from_spec(s)
        sys.modules[f"k_diffusion.{name}"] = mod
        s.loader.exec_module(mod)
        setattr(pkg, name, mod)
    if stubbed:  # others (diffusers) probe for torchvision: leave no trace
        for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"):
            del sys.modules[name]
    return sys.modules["k_diffusion.sampling"]


def _kdiffusion(model, z: torch.Tensor, count: int, sample: str, keep_zero: bool) -> torch.Tensor:
    """k-diffusion's ``sample`` on ``get_sigmas_karras(count)`` over the model's noise range
    (with or without its appended zero), through the model's EDM-form denoiser."""
    K = _load_kdiffusion_sampling()
    g = gamma_of(model.schedule, torch.tensor([0.0, 1.0]))
    smin, smax = float((g[0] / 2).exp()), float((g[1] / 2).exp())
    sigmas = K.get_sigmas_karras(count, smin, smax, rho=7.0)
    sigmas = (sigmas if keep_zero else sigmas[:-1]).to(z)

    def denoiser(x, s):  # EDM form: x = z / alpha, s = sigma / alpha
        gamma = 2 * s.log()
        alpha, sigma = alpha_sigma(gamma.view(-1, *[1] * (x.dim() - 1)))
        zz = alpha * x
        return (zz - sigma * model.eps_hat(zz, gamma)) / alpha

    alpha_1 = alpha_sigma(torch.tensor(2 * torch.log(sigmas[0]).item()))[0]
    return getattr(K, sample)(denoiser, z / alpha_1, sigmas, disable=True)  # x = z / alpha at the last sigma


@torch.no_grad()
def kdiffusion_dpmpp_2m(model, z: torch.Tensor, nfe: int) -> torch.Tensor:
    """k-diffusion DPM-Solver++(2M) on ``nfe + 1`` Karras sigmas down to the smallest level: ``nfe`` calls."""
    return _kdiffusion(model, z, nfe + 1, "sample_dpmpp_2m", keep_zero=False)


@torch.no_grad()
def kdiffusion_heun(model, z: torch.Tensor, nfe: int) -> torch.Tensor:
    """k-diffusion Heun (EDM Alg. 1 without churn) on ``n = (nfe + 1) // 2`` Karras sigmas and
    the appended zero: ``2n - 1`` calls."""
    return _kdiffusion(model, z, (nfe + 1) // 2, "sample_heun", keep_zero=True)


def _diffusers_betas(model, timesteps: int):
    """(betas, gamma at each timestep) reproducing the model's schedule on ``timesteps`` steps."""
    t = torch.linspace(0.0, 1.0, timesteps, dtype=torch.float64)
    gam = gamma_of(model.schedule, t)
    abar = torch.sigmoid(-gam)
    return 1 - abar / torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]]), gam


@torch.no_grad()
def diffusers_dpmpp_2m(model, z: torch.Tensor, steps: int, timesteps: int = 1000) -> torch.Tensor:
    """diffusers' DPMSolverMultistepScheduler (dpmsolver++, order 2, use_karras_sigmas) with
    its own defaults otherwise, on betas matching the model's schedule."""
    try:
        from diffusers import DPMSolverMultistepScheduler
    except ImportError as e:
        raise MissingPeer(f"diffusers is not installed ({e})") from None
    betas, gam = _diffusers_betas(model, timesteps)
    sched = DPMSolverMultistepScheduler(num_train_timesteps=timesteps, trained_betas=betas.numpy(),
                                        algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True,
                                        final_sigmas_type="sigma_min")
    sched.set_timesteps(steps)
    x = z.clone()
    for k in sched.timesteps:
        gamma = torch.tensor(float(gam[int(k)]), dtype=z.dtype).expand(z.shape[0])
        x = sched.step(model.eps_hat(x, gamma), k, x).prev_sample
    alpha_end = alpha_sigma(gam[0])[0].to(z)  # final_sigmas_type sigma_min: ends at timestep 0's level
    return x / alpha_end


@torch.no_grad()
def diffusers_heun(model, z: torch.Tensor, nfe: int, timesteps: int = 1000) -> torch.Tensor:
    """diffusers' HeunDiscreteScheduler (use_karras_sigmas, its defaults otherwise) with
    ``n = (nfe + 1) // 2`` inference steps: ``2n - 1`` calls, the last an Euler step to s = 0.
    The network sees the level of the scheduler's (fractional) timestep, interpolated in
    log sigma as the scheduler itself places it."""
    try:
        from diffusers import HeunDiscreteScheduler
    except ImportError as e:
        raise MissingPeer(f"diffusers is not installed ({e})") from None
    betas, gam = _diffusers_betas(model, timesteps)
    sched = HeunDiscreteScheduler(num_train_timesteps=timesteps, trained_betas=betas.numpy(), use_karras_sigmas=True)
    sched.set_timesteps((nfe + 1) // 2)
    steps = torch.arange(timesteps, dtype=torch.float64)
    x = z * float(sched.init_noise_sigma)
    for k in sched.timesteps:
        gamma_k = torch.from_numpy(np.interp(float(k), steps.numpy(), gam.numpy(), left=np.nan, right=np.nan).reshape(1))
        gamma = gamma_k.to(z.dtype).expand(z.shape[0])
        x = sched.step(model.eps_hat(sched.scale_model_input(x, k), gamma), k, x).prev_sample
    return x  # at s = 0: the signal


PEERS = {  # name -> (the solver it runs, the function, whether it ends at s = 0 rather than the smallest level)
    "k-diffusion dpmpp_2m + karras": ("dpmpp2m", kdiffusion_dpmpp_2m, False),
    "diffusers DPM++2M + karras": ("dpmpp2m", diffusers_dpmpp_2m, False),
    "k-diffusion heun + karras": ("heun", kdiffusion_heun, True),
    "diffusers Heun + karras": ("heun", diffusers_heun, True),
}
