"""Output heads: how a network's last layer becomes ``eps_hat``."""
from __future__ import annotations

import torch
from torch import Tensor

from ..bound import bin_centres
from ..schedules import alpha_sigma
from ..tensors import append_dims


def categorical_eps(z_t: Tensor, gamma_t: Tensor, logits: Tensor, levels: int) -> Tensor:
    """``eps_hat`` from a categorical posterior over the K levels of each coordinate.

    ``logits`` (B, C*K, ...) are the network's prior logits for x given the context; the
    posterior adds the exact Gaussian likelihood of z_t per level,
    ``log p(k | z_t) = logits_k - (z_t - alpha f_k)^2 / (2 sigma^2) + const``, and
    ``eps_hat = (z_t - alpha E[f | z_t]) / sigma``. This is the exact denoiser when the
    logits are the true conditionals; at low noise the likelihood term pins the level.
    """
    b, c = z_t.shape[:2]
    logits = logits.view(b, c, levels, *z_t.shape[2:]).movedim(2, -1)  # (B, C, ..., K)
    alpha, sigma = alpha_sigma(gamma_t.to(z_t.dtype))
    alpha, sigma = append_dims(alpha.expand(b), z_t.dim()), append_dims(sigma.expand(b), z_t.dim())
    f_k = bin_centres(levels, device=z_t.device, dtype=z_t.dtype)
    log_lik = -((z_t.unsqueeze(-1) - alpha.unsqueeze(-1) * f_k) ** 2) / (2 * sigma.unsqueeze(-1) ** 2)
    mean_f = (torch.softmax(logits + log_lik, dim=-1) * f_k).sum(-1)
    return (z_t - alpha * mean_f) / sigma


def eps_output(out: Tensor, z_t: Tensor, gamma_t: Tensor, levels: int) -> Tensor:
    """A network's last layer as ``eps_hat``: ``out + z_t`` (VDM's base measure), or with
    ``levels`` = K > 0 the categorical head (``out`` holds K logits per coordinate)."""
    if levels:
        return categorical_eps(z_t, gamma_t.expand(z_t.shape[0]), out, levels)
    return out + z_t
