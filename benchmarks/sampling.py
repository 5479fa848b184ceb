"""Sampling benchmark: every (sampler, step schedule) pair at a fixed number of network calls.

Models: our VDMs trained on digits and on MNIST (runs reused from ``--digits-run`` /
``--mnist-run``, trained here if missing), and the exact denoiser of a 2-D Gaussian mixture
(its density is known). For NFE in ``--nfe``, every sampler on every grid (uniform-t,
uniform log-SNR, EDM rho = 7, cosine, score-optimal), beside two peers driving the same
network: k-diffusion's ``sample_dpmpp_2m`` + ``get_sigmas_karras`` and diffusers'
``DPMSolverMultistepScheduler(use_karras_sigmas=True)``. All from the same initial noise:
- RMSE (signal space, per coordinate) to a 1000-step DPM-Solver++(2M) reference on a
  uniform log-SNR grid (deterministic samplers only: ancestral draws fresh noise);
- Frechet distance to held-out data in the features of a small classifier trained here
  (digits: its labels; MNIST, whose file has no labels: rotation prediction);
- on the mixture: mean exact negative log-likelihood of the samples (nats).
Prints a table, plots quality against NFE and appends to ``benchmarks/RESULTS.md``.

    python benchmarks/sampling.py [--models digits,mnist,gmm] [--nfe 4,6,8,10,15,20,50]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import linalg
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers.samplers import PEERS, MissingPeer  # noqa: E402
from report import append_results, header  # noqa: E402

from diffbits.bound import data_to_signal  # noqa: E402
from diffbits.config import RunConfig  # noqa: E402
from diffbits.data import load_dataset  # noqa: E402
from diffbits.grids import FIXED, fixed_grid  # noqa: E402
from diffbits.runs import load_run  # noqa: E402
from diffbits.samplers import SAMPLERS, steps_for_nfe  # noqa: E402
from diffbits.schedules import Cosine, alpha_sigma  # noqa: E402
from diffbits.score_optimal import probe_costs, score_optimal  # noqa: E402
from diffbits.tensors import randn_like  # noqa: E402
from diffbits.train import Trainer  # noqa: E402

CACHE = HERE / ".cache" / "sampling"
MNIST = "/work/shared/data/mnist10k.npz"
SCHEDULES = [*FIXED, "score-optimal"]


# -- models -----------------------------------------------------------------------------------

def trained(name: str, run: Path | None, minutes: float, mnist: str):
    """(model, train signal, test integers, levels) for digits or MNIST; trains if needed."""
    spec = {"digits": ("digits", "digits", "test", "digits.json"),
            "mnist": (f"{mnist}[:9000]", f"{mnist}[9000:]", "all", "mnist.json")}[name]
    run = run or CACHE / f"{name}-run"
    if not (run / "checkpoint.pt").exists():
        print(f"[{name}] training a model for {minutes} min in {run}", flush=True)
        cfg = RunConfig.load(HERE.parent / "configs" / spec[3])
        cfg.data, cfg.train.minutes, cfg.train.steps = spec[0], minutes, 0
        run.mkdir(parents=True, exist_ok=True)
        tr = Trainer.create(cfg, run)
        cfg.save(run / "config.json")
        tr.fit(progress=True)
    cfg, model = load_run(run, "cpu")
    train = load_dataset(spec[0], "train", cfg.levels)
    test = load_dataset(spec[1], spec[2], cfg.levels)
    return model, data_to_signal(train.x, cfg.levels, torch.float32), test.x, cfg.levels


class GaussianMixture:
    """8 Gaussians on a ring (radius 0.6, std 0.05) in 2-D signal space, with its exact
    ``eps_hat`` (posterior over components, Gaussian posterior mean within each) and density."""

    def __init__(self, k: int = 8, radius: float = 0.6, std: float = 0.05):
        ang = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
        self.mu = radius * torch.stack([ang.cos(), ang.sin()], 1)
        self.s2 = std**2
        self.schedule = Cosine(-10.0, 8.0)

    def sample(self, n: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        k = torch.randint(len(self.mu), (n,), generator=g)
        return (self.mu[k] + math.sqrt(self.s2) * torch.randn(n, 2, generator=g, dtype=torch.float64)).float()

    def eps_hat(self, z, gamma, cond=None):
        z64 = z.double()
        alpha, sigma = alpha_sigma(gamma.double().view(-1, 1))
        var = alpha**2 * self.s2 + sigma**2  # (B, 1)
        d = z64[:, None, :] - alpha[:, None] * self.mu[None]  # (B, K, 2)
        w = torch.softmax(-(d**2).sum(-1) / (2 * var), dim=1)
        x_hat = (w[..., None] * (self.mu[None] + (alpha * self.s2 / var)[:, None] * d)).sum(1)
        return ((z64 - alpha * x_hat) / sigma).to(z.dtype)

    def nll(self, x: torch.Tensor) -> float:
        d = x.double()[:, None, :] - self.mu[None]
        logp = torch.logsumexp(-(d**2).sum(-1) / (2 * self.s2), 1) - math.log(len(self.mu)) - math.log(2 * math.pi * self.s2)
        return float(-logp.mean())


# -- features for the Frechet distance --------------------------------------------------------

class SmallNet(nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1, stride=2),
                                  nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(512, 64), nn.ReLU())
        self.head = nn.Linear(64, classes)

    def forward(self, x):
        return self.head(self.body(x))


def feature_net(name: str, train_f: torch.Tensor, seconds: float = 30.0) -> nn.Module:
    """A classifier on the training data (digits: labels; MNIST: rotation by k * 90 degrees)."""
    path = CACHE / f"classifier-{name}.pt"
    labels = None
    if name == "digits":
        from sklearn.datasets import load_digits
        labels = torch.as_tensor(load_digits().target[:1500])
    net = SmallNet(10 if labels is not None else 4)
    if path.exists():
        net.load_state_dict(torch.load(path, weights_only=True))
        return net.eval()
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    g = torch.Generator().manual_seed(0)
    start = time.time()
    while time.time() - start < seconds:
        idx = torch.randint(len(train_f), (128,), generator=g)
        x = train_f[idx]
        if labels is not None:
            y = labels[idx]
        else:
            y = torch.randint(4, (128,), generator=g)
            x = torch.stack([torch.rot90(xi, int(k), dims=(-2, -1)) for xi, k in zip(x, y)])
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return net.eval()


@torch.no_grad()
def frechet(net: nn.Module, a: torch.Tensor, b: torch.Tensor) -> float:
    fa, fb = net.body(a.float()).double().numpy(), net.body(b.float()).double().numpy()
    ma, mb = fa.mean(0), fb.mean(0)
    ca, cb = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    covmean = linalg.sqrtm(ca @ cb).real
    return float(((ma - mb) ** 2).sum() + np.trace(ca + cb - 2 * covmean))


# -- one model --------------------------------------------------------------------------------

def run_model(name, model, f_train, test_signal, nfes, n, quality, seed=0, gmm=None):
    """Rows of (method, nfe, rmse, quality) for one model, and the wall time (s) of its
    score-optimal estimate (probe costs, shared by every step count)."""
    z = randn_like(torch.empty((n,) + tuple(model.data_shape if gmm is None else (2,))),
                   torch.Generator().manual_seed(seed))
    eps_fn = lambda zz, g: model.eps_hat(zz, g)  # noqa: E731

    def finish(z0, gamma_end):
        return z0 / alpha_sigma(torch.as_tensor(gamma_end, dtype=z0.dtype))[0]

    ref_grid = fixed_grid("uniform-logsnr", model.schedule, 1000)
    tic = time.time()
    ref = finish(SAMPLERS["dpmpp2m"](eps_fn, z, ref_grid.gamma.to(z.dtype)), ref_grid.gamma[-1])
    print(f"[{name}] reference: 1000 steps in {time.time() - tic:.0f} s", flush=True)
    f_probe = f_train[torch.randperm(len(f_train), generator=torch.Generator().manual_seed(1))[:256]]
    tic = time.time()
    costs = probe_costs(model, f_probe, 100, generator=torch.Generator().manual_seed(2), progress=True)
    estimate_s = time.time() - tic
    print(f"[{name}] score-optimal estimate: {estimate_s:.1f} s", flush=True)
    rows = []
    for nfe in nfes:
        for sampler in SAMPLERS:
            steps = steps_for_nfe(sampler, nfe)
            for sched in SCHEDULES:
                grid = (score_optimal(model, f_probe, steps, costs=costs, check=False) if sched == "score-optimal"
                        else fixed_grid(sched, model.schedule, steps))
                gen = torch.Generator().manual_seed(seed + 1)
                x = finish(SAMPLERS[sampler](eps_fn, z, grid.gamma.to(z.dtype), generator=gen), grid.gamma[-1])
                rmse = float((x - ref).pow(2).mean().sqrt()) if sampler != "ancestral" else float("nan")
                rows.append((f"{sampler} / {sched}", nfe, rmse, quality(x)))
        for peer, fn in PEERS.items():
            try:
                x = fn(model, z, nfe)
            except MissingPeer as e:
                print(f"[{name}] {peer}: skipped ({e})", flush=True)
                continue
            rows.append((peer, nfe, float((x - ref).pow(2).mean().sqrt()), quality(x)))
        print(f"[{name}] NFE {nfe} done", flush=True)
    return rows, estimate_s


def table(name, rows, nfes, metric, estimate_s):
    methods = list(dict.fromkeys(r[0] for r in rows))
    by = {(r[0], r[1]): r for r in rows}
    out = [f"**{name}**: RMSE to the 1000-step reference / {metric}, by NFE", "",
           f"Score-optimal estimate (probe costs, 100 levels, shared by every NFE): {estimate_s:.1f} s wall", "",
           "| sampler / schedule | " + " | ".join(f"NFE {k}" for k in nfes) + " |",
           "|---|" + "---|" * len(nfes)]
    for m in methods:
        cells = []
        for k in nfes:
            r = by.get((m, k))
            cells.append("" if r is None else (f"{r[2]:.4f} / {r[3]:.3g}" if not math.isnan(r[2]) else f"– / {r[3]:.3g}"))
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def verdict(name, rows, nfe=10):
    """The issue's criterion at ``nfe``: best sampler on the score-optimal grid vs the same
    sampler on uniform-t and on EDM, and vs each peer (RMSE ratios; < 1 is better)."""
    by = {(r[0], r[1]): r[2] for r in rows}
    cands = [(by[(f"{s} / score-optimal", nfe)], s) for s in SAMPLERS if s != "ancestral" and (f"{s} / score-optimal", nfe) in by]
    if not cands:
        return ""
    best, s = min(cands)
    parts = [f"{name}, NFE {nfe}: best score-optimal pair {s} RMSE {best:.4f}; "
             f"÷ {s} / uniform-t {best / by[(f'{s} / uniform-t', nfe)]:.2f}, ÷ {s} / edm {best / by[(f'{s} / edm', nfe)]:.2f}"]
    for peer in PEERS:
        if (peer, nfe) in by:
            parts.append(f"÷ {peer} {best / by[(peer, nfe)]:.2f}")
    return ", ".join(parts)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for ax, (name, rows) in zip(axes[0], results.items()):
        for m in dict.fromkeys(r[0] for r in rows):
            if m.startswith(("ancestral", "ddim")) or not (m.startswith("dpmpp2m") or m.startswith("heun") or m in PEERS):
                continue
            pts = sorted((r[1], r[2]) for r in rows if r[0] == m)
            style = "-" if "score-optimal" in m else ("--" if m in PEERS else ":")
            ax.loglog(*zip(*pts), style, marker=".", label=m)
        ax.set(title=name, xlabel="NFE", ylabel="RMSE to reference")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="gmm,digits,mnist")
    ap.add_argument("--nfe", default="4,6,8,10,15,20,50")
    ap.add_argument("--digits-run", type=Path, default=None)
    ap.add_argument("--mnist-run", type=Path, default=HERE / ".cache" / "likelihood" / "mnist" / "ours")
    ap.add_argument("--train-minutes", type=float, default=4.0, help="when a run must be trained")
    ap.add_argument("--n", type=int, default=0, help="samples per model (default: gmm 2000, digits 256, mnist 48)")
    ap.add_argument("--mnist", default=MNIST)
    a = ap.parse_args(argv)
    nfes = [int(k) for k in a.nfe.split(",")]
    results, tables, verdicts = {}, [], []
    torch.set_grad_enabled(False)
    for name in a.models.split(","):
        tic = time.time()
        if name == "gmm":
            gmm = GaussianMixture()
            train_f = gmm.sample(4096, 0)
            rows, estimate_s = run_model(name, gmm, train_f, None, nfes, a.n or 2000, gmm.nll, gmm=gmm)
            metric = "exact NLL of the samples (nats; data's own: %.3f)" % gmm.nll(gmm.sample(20000, 1).double())
        else:
            run = a.digits_run if name == "digits" else a.mnist_run
            with torch.enable_grad():
                model, train_f, test_x, levels = trained(name, run, a.train_minutes, a.mnist)
                net = feature_net(name, train_f)
            test_f = data_to_signal(test_x, levels, torch.float32)
            rows, estimate_s = run_model(name, model, train_f, test_f, nfes, a.n or (256 if name == "digits" else 48),
                                         lambda x: frechet(net, x, test_f))
            metric = "Frechet distance to held-out data (classifier features)"
        print(f"[{name}] {time.time() - tic:.0f} s", flush=True)
        results[name] = rows
        tables.append(table(name, rows, nfes, metric, estimate_s))
        verdicts.append(verdict(name, rows))
    CACHE.mkdir(parents=True, exist_ok=True)
    fig = plot(results, HERE / "sampling.png")
    text = "\n\n".join(tables) + "\n\n" + "\n".join(f"- {v}" for v in verdicts if v) + f"\n\nPlot: `{fig.relative_to(HERE.parent)}`\n"
    print(text)
    append_results("Sampling: samplers x step schedules at fixed NFE (benchmarks/sampling.py)", header(), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
