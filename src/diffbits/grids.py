"""Grids: which noise levels a sampler visits (docs/samplers.md section 3).

A ``Grid`` is a decreasing sequence of times ``t_N = 1 > ... > t_0 = 0`` with the model's
``gamma`` at each. The fixed schedules here place the grid in the model's own gamma range
``[gamma(0), gamma(1)]``; the score-optimal one lives in ``score_optimal.py``. Every
schedule maps to times through the model's ``gamma(t)``, inverted by monotone (PCHIP)
interpolation on a dense grid, so that any monotone schedule, learned or discrete, works.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from scipy.interpolate import PchipInterpolator
from torch import Tensor

__all__ = ["Grid", "FIXED", "fixed_grid", "from_gammas", "gamma_of", "gamma_to_t", "uniform_t", "uniform_logsnr", "edm", "cosine"]

DENSE = 4097  # points of the dense gamma(t) table used for inversion


@dataclass
class Grid:
    """Decreasing times and their gammas (noisiest first); ``info`` holds method metadata."""

    t: Tensor
    gamma: Tensor
    method: str
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.t, self.gamma = torch.as_tensor(self.t, dtype=torch.float64), torch.as_tensor(self.gamma, dtype=torch.float64)
        if self.t.shape != self.gamma.shape or self.t.dim() != 1 or len(self.t) < 2:
            raise ValueError("a grid needs at least two times, and one gamma per time")
        if not (torch.diff(self.t) < 0).all() or not (torch.diff(self.gamma) < 0).all():
            raise ValueError(f"{self.method} grid is not strictly decreasing in t and gamma")

    @property
    def steps(self) -> int:
        return len(self.t) - 1

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"method": self.method, "steps": self.steps, "t": self.t.tolist(), "gamma": self.gamma.tolist(), **self.info}
        path.write_text(json.dumps(body, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Grid":
        try:
            body = json.loads(Path(path).read_text())
            info = {k: v for k, v in body.items() if k not in ("method", "steps", "t", "gamma")}
            f64 = torch.float64
            return cls(torch.tensor(body["t"], dtype=f64), torch.tensor(body["gamma"], dtype=f64), body["method"], info)
        except (OSError, json.JSONDecodeError, KeyError) as e:
            raise ValueError(f"{path}: not a grid file ({e})") from None


def gamma_of(schedule, t: Tensor) -> Tensor:
    """``schedule(t)`` as float64 on the CPU, whatever the schedule's device and dtype."""
    ref = schedule.gamma_0
    with torch.no_grad():
        return schedule(torch.as_tensor(t).to(ref.device, ref.dtype)).double().cpu()


def _dense(schedule) -> tuple[np.ndarray, np.ndarray]:
    t = torch.linspace(0.0, 1.0, DENSE, dtype=torch.float64)
    g = np.maximum.accumulate(gamma_of(schedule, t).numpy())  # guard against round-off plateaus
    return t.numpy(), g


def gamma_to_t(schedule, gammas: Tensor) -> Tensor:
    """Times at which the monotone ``schedule`` reaches ``gammas`` (PCHIP inverse)."""
    t, g = _dense(schedule)
    keep = np.concatenate([[True], np.diff(g) > 0])
    inv = PchipInterpolator(g[keep], t[keep])
    out = inv(np.clip(gammas.double().cpu().numpy(), g[0], g[-1]))
    return torch.from_numpy(np.clip(out, 0.0, 1.0))


def _endpoints(schedule) -> tuple[float, float]:
    g = gamma_of(schedule, torch.tensor([0.0, 1.0]))
    return float(g[0]), float(g[1])


def from_gammas(schedule, gammas: Tensor, method: str) -> Grid:
    """The grid through ``gammas`` (decreasing, from about gamma(1) to gamma(0)), its ends pinned to
    the schedule's endpoints, its times by the schedule's inverse."""
    t = gamma_to_t(schedule, gammas)
    t[0], t[-1] = 1.0, 0.0
    g0, g1 = _endpoints(schedule)
    gammas = gammas.double().clone()
    gammas[0], gammas[-1] = g1, g0
    return Grid(t, gammas, method)


def uniform_t(schedule, steps: int) -> Grid:
    """Equal steps in t (VDM's sampler)."""
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return Grid(t, gamma_of(schedule, t), "uniform-t")


def uniform_logsnr(schedule, steps: int) -> Grid:
    """Equal steps in log-SNR (DPM-Solver's default)."""
    g0, g1 = _endpoints(schedule)
    return from_gammas(schedule, torch.linspace(g1, g0, steps + 1, dtype=torch.float64), "uniform-logsnr")


def edm(schedule, steps: int, rho: float = 7.0) -> Grid:
    """EDM (Karras et al. 2022, eq. 5): ``s_i = (s_max^(1/rho) + i/N (s_min^(1/rho) - s_max^(1/rho)))^rho``
    with ``s = sigma / alpha = exp(gamma / 2)`` between the model's own endpoints."""
    g0, g1 = _endpoints(schedule)
    i = torch.arange(steps + 1, dtype=torch.float64) / steps
    smax, smin = math.exp(g1 / 2 / rho), math.exp(g0 / 2 / rho)  # already to the power 1/rho
    s = (smax + i * (smin - smax)) ** rho
    grid = from_gammas(schedule, 2 * s.log(), "edm")
    grid.info["rho"] = rho
    return grid


def cosine(schedule, steps: int) -> Grid:
    """Equal steps in the angle ``phi = atan(sigma / alpha)`` (the cosine schedule of
    Nichol & Dhariwal 2021, ``alpha = cos phi``), between the model's endpoints."""
    g0, g1 = _endpoints(schedule)
    phi = torch.linspace(math.atan(math.exp(g1 / 2)), math.atan(math.exp(g0 / 2)), steps + 1, dtype=torch.float64)
    return from_gammas(schedule, 2 * torch.log(torch.tan(phi)), "cosine")


FIXED: dict[str, Callable[..., Grid]] = {
    "uniform-t": uniform_t, "uniform-logsnr": uniform_logsnr, "edm": edm, "cosine": cosine,
}


def fixed_grid(name: str, schedule, steps: int) -> Grid:
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if name not in FIXED:
        raise ValueError(f"unknown step schedule {name!r}; choose from {', '.join(FIXED)}, score-optimal or a GRID.json")
    return FIXED[name](schedule, steps)
