"""Adapter for lucidrains' ``denoising-diffusion-pytorch`` (PyPI), used as a peer in benchmarks.

We use its ``ContinuousTimeGaussianDiffusion`` (learned noise schedule) and its ``Unet``,
train them the way its own ``Trainer`` does (Adam, betas (0.9, 0.99), gradient norm
clipped to 1, ``ema_pytorch.EMA`` with decay 0.995 updated every 10 steps), and wrap the
trained network and schedule as a diffbits denoiser and ``Schedule``, so that its bound
is computed by ``diffbits.VDM.bound``, term for term as ours.

Facts about the peer that matter here (version 2.3.4):
- it works with ``log_snr = -gamma``; its ``Unet`` is conditioned on ``log_snr`` itself
  (a learned random-Fourier embedding of the raw value), not on t;
- its learned schedule ``learned_noise_schedule`` has a monotone interior but *fixed*
  endpoints, log SNR from 9.21 down to -10.0 (those of its 'linear' schedule), i.e.
  gamma_0 = -9.21, gamma_1 = 10.0;
- its objective is the unweighted mean of ``||eps - eps_hat||^2`` (not the ELBO; no
  gamma'(t) weight), and the schedule interior is trained by that same loss;
- it maps images in [0, 1] to [-1, 1] by ``2 img - 1``; we feed ``img = (x + 1/2) / K``
  so that it sees exactly our ``f(x) = (2x + 1)/K - 1``.

Its package ``__init__`` imports torchvision (and its trainer accelerate), which we do
not need; we import the two module files we use with stubs for those two names.
"""
from __future__ import annotations

import copy
import functools
import importlib
import importlib.util
import math
import sys
import time
import types

import torch
from torch import Tensor, nn

from diffbits import VDM
from diffbits.schedules import Schedule

PACKAGE = "denoising_diffusion_pytorch"
PIP = "pip install einops ema-pytorch==0.8.3 && pip install --no-deps denoising-diffusion-pytorch==2.3.4"

# Its Trainer's defaults, which we follow.
ADAM_BETAS = (0.9, 0.99)
MAX_GRAD_NORM = 1.0
EMA_DECAY, EMA_EVERY = 0.995, 10


class MissingPeer(ImportError):
    pass


@functools.cache
def load_peer() -> tuple[type, type, type]:
    """``(Unet, ContinuousTimeGaussianDiffusion, EMA)`` without the package ``__init__``."""
    try:
        import einops  # noqa: F401
        from ema_pytorch import EMA
    except ImportError as e:
        raise MissingPeer(f"{e.name} is not installed (the peer needs it); install with: {PIP}") from None
    spec = importlib.util.find_spec(PACKAGE)  # locates the package without running it
    if spec is None:
        raise MissingPeer(f"{PACKAGE} is not installed; install with: {PIP}")
    if PACKAGE not in sys.modules:  # a bare package object: submodules load, __init__ does not run
        pkg = types.ModuleType(PACKAGE)
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules[PACKAGE] = pkg
    # Names its main module imports for its Trainer only; stubbed while it loads.
    stubs = {
        "torchvision": types.SimpleNamespace(transforms=None, utils=None),
        "accelerate": types.SimpleNamespace(Accelerator=None),
    }
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        unet_mod = importlib.import_module(f"{PACKAGE}.denoising_diffusion_pytorch")
        ct_mod = importlib.import_module(f"{PACKAGE}.continuous_time_gaussian_diffusion")
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return unet_mod.Unet, ct_mod.ContinuousTimeGaussianDiffusion, EMA


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build(shape: tuple[int, int, int], dim: int, dim_mults=(1, 2)) -> nn.Module:
    """The peer's continuous-time diffusion with its learned schedule and a ``Unet``.
    ``dim_mults=(1, 2)`` downsamples once, so sides must be even (8x8 and 28x28 are)."""
    Unet, Diffusion, _ = load_peer()
    channels, height, width = shape
    if height != width or height % 2 ** (len(dim_mults) - 1):
        raise ValueError(f"the peer's Unet needs square images with sides divisible by "
                         f"{2 ** (len(dim_mults) - 1)}; got {height}x{width}")
    # learned_sinusoidal_cond: required by its continuous-time class (conditions on log SNR)
    unet = Unet(dim=dim, dim_mults=tuple(dim_mults), channels=channels, learned_sinusoidal_cond=True)
    return Diffusion(unet, image_size=height, channels=channels, noise_schedule="learned")


def match_dim(shape, target_params: int, dim_mults=(1, 2), candidates=range(8, 129, 4)) -> int:
    """The ``Unet`` width whose parameter count is closest (in ratio) to ``target_params``."""
    def ratio(dim):
        return abs(math.log(count_params(build(shape, dim, dim_mults).model) / target_params))
    return min(candidates, key=ratio)


def to_peer_input(x: Tensor, levels: int) -> Tensor:
    """Integer levels -> the peer's [0, 1] input, which it maps to ``(2x + 1)/K - 1``."""
    return (x.float() + 0.5) / levels


class TrainStep:
    """One step of its Trainer: loss, backward, gradient norm clipped to 1, Adam, EMA update.
    ``step(img)`` takes a batch from ``to_peer_input`` and returns the loss."""

    def __init__(self, diffusion: nn.Module, lr: float):
        _, _, EMA = load_peer()
        self.diffusion, self.steps = diffusion, 0
        self.opt = torch.optim.Adam(diffusion.parameters(), lr=lr, betas=ADAM_BETAS)
        self.ema = EMA(diffusion, beta=EMA_DECAY, update_every=EMA_EVERY)

    def __call__(self, img: Tensor) -> Tensor:
        loss = self.diffusion(img)
        if not torch.isfinite(loss):
            raise RuntimeError(f"peer: non-finite loss at step {self.steps}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.diffusion.parameters(), MAX_GRAD_NORM)
        self.opt.step()
        self.ema.update()
        self.steps += 1
        return loss


def train(diffusion: nn.Module, x: Tensor, levels: int, minutes: float, batch_size: int,
          lr: float, seed: int = 0, on_step=None) -> tuple[nn.Module, dict]:
    """Train for ``minutes`` of wall clock as the peer's Trainer would; returns the EMA
    copy of the diffusion model and a summary (steps, seconds, examples/s). ``on_step(step,
    seconds)``, if given, is called after every step with the ``TrainStep`` (its ``ema``) and
    the seconds of training so far (benchmarks take snapshots)."""
    device = next(diffusion.parameters()).device
    torch.manual_seed(seed)
    step = TrainStep(diffusion, lr)
    gen = torch.Generator().manual_seed(seed)
    n, order = len(x), torch.empty(0, dtype=torch.long)
    diffusion.train()
    start = time.perf_counter()
    while time.perf_counter() - start < minutes * 60:
        if len(order) < batch_size:  # a fresh permutation per epoch
            order = torch.cat([order, torch.randperm(n, generator=gen)])
        idx, order = order[:batch_size], order[batch_size:]
        step(to_peer_input(x[idx].to(device), levels))
        if on_step is not None:
            on_step(step, time.perf_counter() - start)
    seconds = time.perf_counter() - start
    model = copy.deepcopy(step.ema.ema_model).eval()
    return model, {"steps": step.steps, "seconds": seconds, "examples_per_s": step.steps * batch_size / seconds}


class PeerDenoiser(nn.Module):
    """Its ``Unet(z, log_snr)`` as our ``denoiser(z_t, gamma_t)``: both predict eps."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, z_t: Tensor, gamma_t: Tensor) -> Tensor:
        return self.unet(z_t, -gamma_t)


class PeerSchedule(Schedule):
    """Its learned ``log_snr(t)`` as our schedule: ``gamma(t) = -log_snr(t)``, with
    ``gamma'(t)`` by forward-mode autodiff (it is elementwise in t)."""

    def __init__(self, log_snr: nn.Module):
        super().__init__()
        self.log_snr = log_snr

    def _ends(self) -> Tensor:
        p = next(self.log_snr.parameters())
        return -self.log_snr(torch.tensor([0.0, 1.0], device=p.device, dtype=p.dtype))

    @property
    def gamma_0(self) -> Tensor:
        return self._ends()[0]

    @property
    def gamma_1(self) -> Tensor:
        return self._ends()[1]

    def gamma_and_derivative(self, t: Tensor, interior_grad_scale=None) -> tuple[Tensor, Tensor]:
        log_snr, dlog_snr = torch.func.jvp(self.log_snr, (t,), (torch.ones_like(t),))
        return -log_snr, -dlog_snr


def as_vdm(diffusion: nn.Module, levels: int, shape: tuple[int, ...]) -> VDM:
    """The trained peer as a diffbits ``VDM``: same data map, levels and bound as ours."""
    return VDM(PeerDenoiser(diffusion.model), PeerSchedule(diffusion.log_snr), levels, shape).eval()
