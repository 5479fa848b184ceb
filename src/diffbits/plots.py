"""Pictures of a run: sample grids and the training curve."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

__all__ = ["save_grid", "plot_metrics", "plot_step_grid", "to_uint8"]


def _pyplot():
    """matplotlib.pyplot on the headless Agg backend (runs have no screen)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_uint8(x: torch.Tensor, levels: int) -> np.ndarray:
    """Integer levels -> 0..255 for display."""
    return np.round(x.cpu().numpy().astype(np.float64) * 255 / (levels - 1)).astype(np.uint8)


def save_grid(x: torch.Tensor, levels: int, path: Path, min_size: int = 64, cols: int | None = None) -> Path:
    """Tile a batch of images (N, C, H, W) with C in {1, 3}, or of vectors (N, D), into one PNG
    (``cols`` per row; default: square). Small images are enlarged (nearest neighbour) so
    that each is at least ``min_size`` px."""
    from PIL import Image

    a = to_uint8(x, levels)
    if a.ndim == 2:  # vectors: square ones as images, else one row of pixels each
        side = math.isqrt(a.shape[1])
        a = a.reshape(len(a), 1, side, side) if side * side == a.shape[1] else a[:, None, None, :]
    if a.ndim == 3:  # (N, C, L) signals: one row each
        a = a[:, :, None, :]
    if a.shape[1] not in (1, 3):
        a = a[:, :1]
    n, c, h, w = a.shape
    scale = max(1, math.ceil(min_size / max(h, w)))
    a = a.repeat(scale, axis=2).repeat(scale, axis=3)
    h, w = h * scale, w * scale
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    pad = 2
    grid = np.full((c, rows * (h + pad) + pad, cols * (w + pad) + pad), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = a[i]
    img = Image.fromarray(grid[0] if c == 1 else grid.transpose(1, 2, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def plot_metrics(metrics_path: Path, out: Path, validation_path: Path | None = None) -> Path | None:
    """Training bound (bits/dim, and its three terms; the held-out one where the run validates)
    and the schedule endpoints against step."""
    plt = _pyplot()

    rows = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    if not rows:
        return None
    step = [r["step"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(step, [r["bpd"] for r in rows], label="bound (train batch)")
    for k in ("diffusion", "recon", "prior"):
        ax1.plot(step, [r[f"{k}_bpd"] for r in rows], label=k, lw=0.8)
    if validation_path is not None and Path(validation_path).exists():
        val = [json.loads(line) for line in Path(validation_path).read_text().splitlines() if line.strip()]
        ax1.plot([r["step"] for r in val], [r["val_bpd"] for r in val], "o-", label="bound (held-out, EMA)")
    ax1.set(xlabel="step", ylabel="bits/dim", title="negative ELBO", yscale="log")
    ax1.legend()
    ax2.plot(step, [r["gamma_0"] for r in rows], label="gamma_0 = -log SNR_max")
    ax2.plot(step, [r["gamma_1"] for r in rows], label="gamma_1 = -log SNR_min")
    ax2.set(xlabel="step", title="schedule endpoints")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)


def plot_step_grid(grid, others: list, path: Path) -> Path:
    """Left: gamma at each step of ``grid`` beside the fixed grids ``others`` (same step count).
    Right, for grids with probe costs (score-optimal): the cost density along t and, when it was
    re-estimated (``length_per_step``), each chosen step's cost. Legends sit below the axes."""
    plt = _pyplot()

    has_cost = "probe_cost" in grid.info
    fig, axes = plt.subplots(1, 2 if has_cost else 1, figsize=(12 if has_cost else 6, 4.6), squeeze=False)
    ax = axes[0, 0]
    for g in others:
        ax.plot(range(g.steps + 1), g.gamma.numpy(), ".-", alpha=0.6, label=g.method)
    ax.plot(range(grid.steps + 1), grid.gamma.numpy(), "o-", color="k", label=grid.method)
    ax.set(xlabel="step", ylabel="gamma = -log SNR", title=f"{grid.steps}-step grids")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3, frameon=False)
    if has_cost:
        ax = axes[0, 1]
        t, c = np.asarray(grid.info["probe_t"]), np.asarray(grid.info["probe_cost"])
        mid, width = (t[1:] + t[:-1]) / 2, np.abs(np.diff(t))
        handles = ax.semilogy(mid, np.sqrt(np.clip(c, 1e-30, None)) / width, color="C0",
                              label="sqrt(cost) per unit t (probe grid)")
        for tg in grid.t.numpy():
            ax.axvline(tg, color="k", lw=0.6, alpha=0.4)
        handles.append(plt.Line2D([], [], color="k", lw=0.6, alpha=0.4, label="the grid's times"))
        if "length_per_step" in grid.info:
            ax2 = ax.twinx()
            tg = grid.t.numpy()
            handles.append(ax2.bar((tg[1:] + tg[:-1]) / 2, grid.info["length_per_step"], width=np.abs(np.diff(tg)),
                                   alpha=0.2, color="C1", edgecolor="C1", label="re-estimated cost of each step"))
            ax2.set(ylabel="cost (length) of each step", ylim=(0, 1.5 * max(grid.info["length_per_step"])))
            ax.set_zorder(ax2.get_zorder() + 1)
            ax.patch.set_visible(False)
        ax.set(xlabel="t", title="step cost: the grid spends it equally")
        ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
