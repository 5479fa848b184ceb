"""Shared test helpers: exact denoisers and data of known entropy."""

import torch

from diffbits.bound import bin_centres
from diffbits.schedules import alpha_sigma


class ExactCategoricalDenoiser:
    """The exact ``E[eps | z_t]`` for data with independent coordinates, coordinate i
    taking level k with probability ``probs[i, k]`` (float64 inside)."""

    def __init__(self, probs: torch.Tensor):
        self.log_probs = probs.double().log()
        self.levels = probs.shape[-1]

    def __call__(self, z_t, gamma_t):
        z = z_t.double()
        alpha, sigma = alpha_sigma(gamma_t.double())
        alpha, sigma = alpha.view(-1, *[1] * (z.dim() - 1)), sigma.view(-1, *[1] * (z.dim() - 1))
        f_k = bin_centres(self.levels, dtype=torch.float64)
        logw = self.log_probs - (z.unsqueeze(-1) - alpha.unsqueeze(-1) * f_k) ** 2 / (2 * sigma.unsqueeze(-1) ** 2)
        mean_f = (torch.softmax(logw, -1) * f_k).sum(-1)
        return ((z - alpha * mean_f) / sigma).to(z_t.dtype)


def entropy_bits(probs: torch.Tensor) -> float:
    """Mean entropy per coordinate in bits."""
    p = probs.double()
    return float(-(p * p.log2()).sum(-1).mean())


def sample_categorical(probs, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.multinomial(probs.repeat(n, 1), 1, replacement=True, generator=g).view(n, -1)
