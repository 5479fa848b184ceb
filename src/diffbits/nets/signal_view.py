"""A (C, L) network over (D,) vectors: each vector read as one channel of D samples, so a
convolution runs along the vector (neighbouring values share structure, as in byte strings and
other sequences) instead of an MLP mixing every coordinate with every other."""
from __future__ import annotations

from torch import Tensor, nn


class SignalView(nn.Module):
    """``net`` built for ``(1, D)`` signals, called on ``(B, D)`` vectors; returns ``eps_hat`` (B, D)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, z_t: Tensor, gamma_t: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.net(z_t.unsqueeze(1), gamma_t, cond).squeeze(1)
