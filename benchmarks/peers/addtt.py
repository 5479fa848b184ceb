"""Adapter for addtt's PyTorch port of VDM (github.com/addtt/variational-diffusion-models),
used as a throughput peer. Its code is not copied here: it is imported at run time from a
checkout (``$ADDTT_VDM``, default ``benchmarks/.cache/addtt-vdm``, gitignored).

What we found (commit 90a8b59, 2024-04-23, the newest; files vdm.py, vdm_unet.py, train.py, utils.py):
- loss (``VDM.forward``): the continuous-time VDM bound in bits/dim, mean over the batch:
  diffusion term ``0.5 gamma'(t) ||eps - eps_hat||^2`` (gamma'(t) by ``autograd.grad``),
  latent KL at t = 1 and a reconstruction term, a softmax over all 256 values per pixel;
  antithetic times; inputs must be floats in [0, 1] on a grid of ``vocab_size = 256`` values;
- schedule: ``fixed_linear`` by default (``learned_linear`` optional), gamma in [-13.3, 5];
- network ``UNetVDM``: VDM's score U-Net without downsampling: Fourier features (2^5, 2^6),
  ``n_blocks`` resnet blocks down, resnet + attention + resnet in the middle (always), then
  ``n_blocks + 1`` up blocks with skips; attention after every block if ``attention_everywhere``;
  GroupNorm(32), so the width must be a multiple of 32; output ``net(z) + z``;
- its CIFAR-10 defaults: embedding_dim 128, n_blocks 32, 1 head, dropout 0.1, batch 128,
  lr 2e-4, weight decay 0.01, gradient clipping on;
- per step (``Trainer.train``): ``zero_grad``; loss; backward; ``clip_grad_norm_(params, 1.0)``;
  ``AdamW(lr, betas=(0.9, 0.99), weight_decay=0.01, eps=1e-8)`` step on all parameters;
  ``ema_pytorch.EMA(beta=0.9999, update_every=1, power=3/4)`` update (it pins ema-pytorch 0.1.4;
  we run whichever is installed). Logging, sampling, eval and checkpoints are left out.

For data with K != 256 levels we set its ``vocab_size`` attribute to K and feed ``x / (K - 1)``,
so its grid checks pass and its reconstruction softmax has K entries, as ours.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import torch
from torch import Tensor, nn

REPO = "https://github.com/addtt/variational-diffusion-models"
DEFAULT_DIR = Path(__file__).resolve().parents[1] / ".cache" / "addtt-vdm"

# Its train.py defaults (architecture and optimisation).
DEFAULTS = dict(embedding_dim=128, n_blocks=32, n_attention_heads=1, dropout_prob=0.1, norm_groups=32,
                use_fourier_features=True, attention_everywhere=False, noise_schedule="fixed_linear",
                gamma_min=-13.3, gamma_max=5.0, antithetic_time_sampling=True, lr=2e-4,
                weight_decay=0.01, clip_grad_norm=True)
ADAMW_BETAS, ADAMW_EPS, MAX_GRAD_NORM = (0.9, 0.99), 1e-8, 1.0
EMA_DECAY, EMA_EVERY, EMA_POWER = 0.9999, 1, 3 / 4


class MissingPeer(ImportError):
    pass


def checkout_dir() -> Path:
    return Path(os.environ.get("ADDTT_VDM", DEFAULT_DIR))


def materialise(mirror: str | None = None) -> Path:
    """The checkout; if missing, extracted from a git ``mirror`` (a git dir) when one is
    given (argument or ``$ADDTT_VDM_MIRROR``), else an error saying how to get it."""
    path = checkout_dir()
    if (path / "vdm.py").exists():
        return path
    mirror = mirror or os.environ.get("ADDTT_VDM_MIRROR")
    if not mirror:
        raise MissingPeer(f"no checkout of addtt's VDM at {path}; get it with: git clone {REPO} {path} "
                          f"(or set ADDTT_VDM to a checkout, or ADDTT_VDM_MIRROR to a git mirror)")
    path.mkdir(parents=True, exist_ok=True)
    git = ["git", f"--git-dir={mirror}"]
    # code and licence only: a mirror may lack the large assets (GIFs)
    archive = subprocess.run([*git, "archive", "HEAD", "--", "*.py", "LICENSE", "requirements.txt"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(path)], input=archive, check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout
    (path / ".commit").write_text(commit)
    return path


def commit() -> str:
    """The checkout's commit (from a clone, or the ``.commit`` file ``materialise`` writes)."""
    path = checkout_dir()
    if (path / ".commit").exists():
        return (path / ".commit").read_text().strip()
    r = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


@functools.cache
def load_peer() -> tuple[type, type, type]:
    """``(VDM, UNetVDM, EMA)``. Its modules are top-level ``vdm``, ``vdm_unet`` and ``utils``;
    they load with its directory first on sys.path and stubs for the names its utils import
    only for logging and CIFAR loading, then leave sys.modules as it was."""
    from ema_pytorch import EMA

    path = str(materialise())
    names = ("vdm", "vdm_unet", "utils", "accelerate", "torchinfo", "torchvision",
             "torchvision.transforms", "torchvision.datasets")
    saved = {k: sys.modules.pop(k, None) for k in names}
    sys.modules.update({
        "accelerate": types.SimpleNamespace(Accelerator=object),
        "torchinfo": types.SimpleNamespace(summary=None),
        "torchvision": types.SimpleNamespace(transforms=None),
        "torchvision.transforms": types.SimpleNamespace(),
        "torchvision.datasets": types.SimpleNamespace(CIFAR10=None),
    })
    sys.path.insert(0, path)
    try:
        vdm, vdm_unet = importlib.import_module("vdm"), importlib.import_module("vdm_unet")
    finally:
        sys.path.remove(path)
        for k, v in saved.items():
            sys.modules.pop(k, None)
            if v is not None:
                sys.modules[k] = v
    return vdm.VDM, vdm_unet.UNetVDM, EMA


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class AddttVDM:
    """Its VDM and ``UNetVDM`` at a given size, with its optimiser, clipping and EMA."""

    def __init__(self, shape: tuple[int, int, int], levels: int, width: int, blocks: int,
                 attention_everywhere: bool = False, dropout: float | None = None, **overrides):
        VDM, UNetVDM, EMA = load_peer()
        cfg = argparse.Namespace(**{**DEFAULTS, **overrides, "embedding_dim": width, "n_blocks": blocks,
                                    "attention_everywhere": attention_everywhere, "input_channels": shape[0]})
        if dropout is not None:
            cfg.dropout_prob = dropout
        self.levels = levels
        self.net = UNetVDM(cfg)
        self.diffusion = VDM(self.net, cfg, image_shape=tuple(shape))
        self.diffusion.vocab_size = levels  # 256 in its code; see the module docstring
        self.opt = torch.optim.AdamW(self.diffusion.parameters(), cfg.lr, betas=ADAMW_BETAS,
                                     weight_decay=cfg.weight_decay, eps=ADAMW_EPS)
        self.ema = EMA(self.diffusion, beta=EMA_DECAY, update_every=EMA_EVERY, power=EMA_POWER)
        self.clip = cfg.clip_grad_norm

    def to_input(self, x: Tensor) -> Tensor:
        """Integer levels -> its input: floats in [0, 1] on the grid of ``levels`` values."""
        return x.float() / (self.levels - 1)

    def train_step(self, batch: Tensor) -> float:
        """One step of its ``Trainer.train`` on a batch from ``to_input``; returns the loss (bpd)."""
        self.diffusion.train()
        self.opt.zero_grad()
        loss, _ = self.diffusion(batch)
        loss.backward()
        if self.clip:
            nn.utils.clip_grad_norm_(self.diffusion.parameters(), MAX_GRAD_NORM)
        self.opt.step()
        self.ema.update()
        return loss.item()


def recon_bytes(shape: tuple[int, ...], levels: int, batch: int) -> int:
    """Bytes of the (batch, *shape, levels) float32 log-probabilities (and as large a one-hot)
    its reconstruction term materialises per step: too many for 16-bit data."""
    n = batch * levels * 4
    for d in shape:
        n *= d
    return 2 * n


def match_size(shape: tuple[int, int, int], levels: int, target_params: int,
               widths=(32, 64, 96, 128, 160, 192, 256), blocks=range(1, 17)) -> tuple[int, int]:
    """``(embedding_dim, n_blocks)`` whose ``UNetVDM`` parameter count is closest (in ratio) to
    ``target_params``; widths are multiples of 32 (its GroupNorm(32)). The count is affine in
    ``n_blocks``, so two builds per width suffice."""
    _, UNetVDM, _ = load_peer()

    def params(width, n):
        cfg = argparse.Namespace(**{**DEFAULTS, "embedding_dim": width, "n_blocks": n, "input_channels": shape[0]})
        return count_params(UNetVDM(cfg))

    best = None
    for w in widths:
        p1, p2 = params(w, 1), params(w, 2)
        for n in blocks:
            gap = abs(math.log((p1 + (n - 1) * (p2 - p1)) / target_params))
            if best is None or gap < best[0]:
                best = (gap, w, n)
    return best[1], best[2]


class AddttDenoiser(nn.Module):
    """Its ``UNetVDM(z_t, gamma_t)`` as our ``denoiser(z_t, gamma_t)``: both return eps_hat and
    take gamma itself (it rescales gamma to [0, 1] with its fixed gamma_min / gamma_max)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, z_t: Tensor, gamma_t: Tensor) -> Tensor:
        return self.net(z_t, gamma_t)


def as_vdm(diffusion: nn.Module, levels: int, shape: tuple[int, ...]):
    """Its trained VDM module (``AddttVDM.ema.ema_model`` for the EMA weights, ``.diffusion`` for
    the online ones) as a ``diffbits.VDM``: its network as the denoiser, its schedule as ours
    (``fixed_linear``: ``FixedLinear(gamma_min, gamma_max)``; ``learned_linear``: its b and |w|),
    the same data map ``f = 2 (x + 1/2) / K - 1``, so that our bound scores it."""
    from diffbits import VDM
    from diffbits.schedules import FixedLinear

    cfg, gamma = diffusion.cfg, diffusion.gamma
    if cfg.noise_schedule == "fixed_linear":
        schedule = FixedLinear(cfg.gamma_min, cfg.gamma_max)
    else:
        with torch.no_grad():
            schedule = FixedLinear(float(gamma.b), float(gamma.b + gamma.w.abs()))
    device = next(diffusion.model.parameters()).device
    return VDM(AddttDenoiser(diffusion.model), schedule.to(device), levels, shape).eval()
