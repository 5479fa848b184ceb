"""Peer samplers driving a diffbits model: k-diffusion's ``sample_dpmpp_2m`` on
``get_sigmas_karras`` and diffusers' ``DPMSolverMultistepScheduler`` with Karras sigmas.

Both see the same network and the same noise range as ours: k-diffusion through its
EDM-form denoiser ``D(x, s)`` (``x = z / alpha``, ``s = sigma / alpha``), diffusers through
``trained_betas`` that reproduce the model's ``gamma`` at 1000 timesteps. Both stop at the
model's smallest noise level, as ours do (no final jump to s = 0), and return ``z / alpha``.
Install: ``pip install --no-deps k-diffusion==0.1.1.post1 torchsde trampoline`` and diffusers.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

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


@torch.no_grad()
def kdiffusion_dpmpp_2m(model, z: torch.Tensor, steps: int) -> torch.Tensor:
    """k-diffusion DPM-Solver++(2M) on its Karras (rho = 7) sigmas, ``steps`` network calls."""
    K = _load_kdiffusion_sampling()
    g = gamma_of(model.schedule, torch.tensor([0.0, 1.0]))
    smin, smax = float((g[0] / 2).exp()), float((g[1] / 2).exp())
    sigmas = K.get_sigmas_karras(steps + 1, smin, smax, rho=7.0)[:-1].to(z)  # drop the appended zero

    def denoiser(x, s):  # EDM form: x = z / alpha, s = sigma / alpha
        gamma = 2 * s.log()
        alpha, sigma = alpha_sigma(gamma.view(-1, *[1] * (x.dim() - 1)))
        zz = alpha * x
        return (zz - sigma * model.eps_hat(zz, gamma)) / alpha

    alpha_1 = alpha_sigma(torch.tensor(2 * torch.log(sigmas[0]).item()))[0]
    x = K.sample_dpmpp_2m(denoiser, z / alpha_1, sigmas, disable=True)
    return x  # already z / alpha at the last sigma


@torch.no_grad()
def diffusers_dpmpp_2m(model, z: torch.Tensor, steps: int, timesteps: int = 1000) -> torch.Tensor:
    """diffusers' DPMSolverMultistepScheduler (dpmsolver++, order 2, use_karras_sigmas) with
    its own defaults otherwise, on betas matching the model's schedule."""
    try:
        from diffusers import DPMSolverMultistepScheduler
    except ImportError as e:
        raise MissingPeer(f"diffusers is not installed ({e})") from None
    t = torch.linspace(0.0, 1.0, timesteps, dtype=torch.float64)
    gam = gamma_of(model.schedule, t)
    abar = torch.sigmoid(-gam)
    betas = 1 - abar / torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
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


PEERS = {"k-diffusion dpmpp_2m + karras": kdiffusion_dpmpp_2m, "diffusers DPM++2M + karras": diffusers_dpmpp_2m}
