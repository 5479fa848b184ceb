"""Sampling benchmark: every (solver, grid) pair at a fixed number of network calls.

Models: the recipe's models on digits and MNIST (the shipped ``digits`` and ``mnist``, 60
minutes each) and on the recipe panel's RGB photo patches (``--photos-run``, trained here with
no flags for 8 minutes if missing); optionally the exact denoiser of a 2-D Gaussian mixture
(``gmm``: its density is known). For NFE in ``--nfe``, the solvers ancestral, DDIM, Heun (an odd budget's
last call an Euler step, as EDM's and the peers' Heun) and DPM-Solver++(2M) on the grids uniform-t, EDM rho = 7, score-optimal (corrector and predictor
costs) and solver-aware (deterministic solvers; fitted on other noises than the ones measured
here; its last step may be first order: for Heun an Euler step, one call unspent on an even budget, as
the peers'), beside four peers driving the same network on Karras sigmas: DPM-Solver++(2M) from
k-diffusion (``sample_dpmpp_2m``) and diffusers (``DPMSolverMultistepScheduler``), and Heun from
k-diffusion (``sample_heun``) and diffusers (``HeunDiscreteScheduler``); each solver is judged
against the peers running it.
All from the same initial noise:
- RMSE (signal space, per coordinate) to a ``--ref-steps`` DPM-Solver++(2M) reference on a
  uniform log-SNR grid (deterministic solvers only: ancestral draws fresh noise); a peer that
  ends at s = 0 (Heun's last Euler step) is held to the reference's end denoised the same way;
- Frechet distance to held-out data in the features of a small classifier trained here for a
  fixed number of seeded steps (digits: its labels; MNIST and the photo patches: rotation
  prediction); the reference's own distance is the floor an exact solver reaches, and the verdict
  says how far each cell's best rival is above it;
- Frechet distance to the reference's own samples from the same noises (the same features):
  what the solver changes in the samples, with the model's error taken out;
- for each, a paired bootstrap standard error (every method's samples start from the same
  noises, resampled with the same indices): one sample can carry a third of a method's squared
  error, so a difference means something only beside its standard error;
- on the mixture: mean exact negative log-likelihood of the samples (nats).
Each model's rows are cached (``.cache/sampling/rows-NAME.json``, keyed by its weights, the
settings and the code that makes them), so an interrupted run resumes. Prints the tables and the issue's verdict at NFE 5,
10, 20, plots RMSE and Frechet distance against NFE and appends to ``benchmarks/RESULTS.md``.

    python benchmarks/sampling.py [--models digits,mnist,photos] [--nfe 5,8,10,15,20]
"""
from __future__ import annotations

import argparse
import json
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
from diffbits.data import load_dataset  # noqa: E402
from diffbits.grids import fixed_grid  # noqa: E402
from diffbits.runs import load_run, model_fingerprint  # noqa: E402
from diffbits.samplers import SAMPLERS, get_sampler, nfe_budget  # noqa: E402
from diffbits.schedules import Cosine, alpha_sigma, signal_of  # noqa: E402
from diffbits.score_optimal import probe_costs, score_optimal  # noqa: E402
from diffbits.solver_aware import SOLVERS, solver_aware  # noqa: E402
from diffbits.tensors import randn_like  # noqa: E402

CACHE = HERE / ".cache" / "sampling"
MNIST = "/work/shared/data/mnist10k.npz"
PHOTOS = HERE / ".cache" / "recipe" / "data" / "photos"
GRIDS = ("uniform-t", "edm", "score-optimal (corrector)", "score-optimal (predictor)", "solver-aware")
VERDICT_NFE = (5, 10, 20)
# Samples per model (each walks every row and the 500-step reference). The Frechet distance of
# 64 features from 128 samples carried a standard error as large as the gaps between grids (digits
# at 256: +-6 on a floor of 62), so the verdict's held-out cells were coin flips: 4x on the
# cheap models, 2x on MNIST (its walks dominate the panel's time).
SAMPLES = {"gmm": 2000, "digits": 1024, "mnist": 256, "photos": 512}


# -- models -----------------------------------------------------------------------------------

def sources(mnist: str, photos_run: Path) -> dict:
    """name -> (run or shipped name, train spec, train split, test spec, test split, what it is)."""
    return {
        "digits": ("digits", "digits", "train", "digits", "test", "shipped `digits` (recipe, 60 min)"),
        "mnist": ("mnist", f"{mnist}[:9000]", "all", f"{mnist}[9000:]", "all", "shipped `mnist` (recipe, 60 min)"),
        "photos": (photos_run, str(PHOTOS / "train.npz"), "all", str(PHOTOS / "test.npz"), "all",
                   f"`{photos_run}` (recipe, no flags, 8 min)"),
    }


def trained(name: str, source: tuple, minutes: float):
    """(config, model, train signal, test signal) for a panel model; trains the photo run if missing."""
    run, train_spec, train_split, test_spec, test_split, _ = source
    if isinstance(run, Path) and not (run / "checkpoint.pt").exists():
        if name == "photos" and not (PHOTOS / "train.npz").exists():
            from recipe import build_photos
            build_photos(PHOTOS)
        from diffbits.cli import main as cli
        print(f"[{name}] training with no flags for {minutes} min in {run}", flush=True)
        with torch.enable_grad():  # main() turns gradients off for the sampling
            status = cli(["train", "--data", train_spec, "--minutes", str(minutes), "--out", str(run)])
        if status != 0:
            raise RuntimeError(f"training {name} failed")
    cfg, model = load_run(run, "cpu")
    sig = lambda spec, split: data_to_signal(load_dataset(spec, split, cfg.levels).x, cfg.levels, torch.float32)  # noqa: E731
    return cfg, model, sig(train_spec, train_split), sig(test_spec, test_split)


class GaussianMixture:
    """8 Gaussians on a ring (radius 0.6, std 0.05) in 2-D signal space, with its exact
    ``eps_hat`` (posterior over components, Gaussian posterior mean within each) and density."""

    data_shape = (2,)

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
    def __init__(self, channels: int, classes: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                                  nn.Flatten(), nn.Linear(512, 64), nn.ReLU())
        self.head = nn.Linear(64, classes)

    def forward(self, x):
        return self.head(self.body(x))


CLASSIFIER_STEPS = 1500  # a fixed count (not a time budget), so the features are the same on any machine


def feature_net(name: str, train_f: torch.Tensor, steps: int = CLASSIFIER_STEPS) -> nn.Module:
    """A classifier on the training data (digits: its labels; otherwise rotation by k * 90
    degrees), ``steps`` seeded Adam steps of 128 examples."""
    path = CACHE / f"classifier-{name}-{steps}.pt"
    labels = None
    if name == "digits":
        from sklearn.datasets import load_digits
        labels = torch.as_tensor(load_digits().target[:len(train_f)])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = SmallNet(train_f.shape[1], 10 if labels is not None else 4)
    if path.exists():
        net.load_state_dict(torch.load(path, weights_only=True))
        return net.eval()
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
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


BOOTSTRAP = 100  # resamples of the samples for the Frechet distance's standard error


def _frechet_from(fa: np.ndarray, fb: np.ndarray) -> float:
    ma, mb = fa.mean(0), fb.mean(0)
    ca, cb = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    covmean = linalg.sqrtm(ca @ cb).real
    return float(((ma - mb) ** 2).sum() + np.trace(ca + cb - 2 * covmean))


def _resamples(n: int) -> np.ndarray:
    """``BOOTSTRAP`` index sets over ``n`` samples; the same for every method, so resamples pair up."""
    return np.random.default_rng(0).integers(0, n, (BOOTSTRAP, n))


@torch.no_grad()
def frechet(net: nn.Module, a: torch.Tensor, b: torch.Tensor, paired: bool = False) -> tuple[float, list[float]]:
    """The Frechet distance between the features of samples ``a`` and ``b``, and its value on
    ``BOOTSTRAP`` resamples of ``a`` (``paired``: of each pair (a_i, b_i) together, for ``b`` the
    reference solver's samples from the same noises; otherwise ``b`` is held-out data, kept whole).
    Every method's sample i starts from the same noise i and the resamples are the same, so two
    methods' resamples are paired: the spread of their difference is its standard error."""
    fa, fb = net.body(a.float()).double().numpy(), net.body(b.float()).double().numpy()
    return _frechet_from(fa, fb), [_frechet_from(fa[i], fb[i] if paired else fb) for i in _resamples(len(fa))]


def _errors(x: torch.Tensor, ref: torch.Tensor) -> dict:
    """RMSE to the reference, and each sample's mean squared error (for its paired bootstrap)."""
    sq = (x - ref).double().pow(2).flatten(1).mean(1)
    return {"rmse": float(sq.mean().sqrt()), "sq_errors": sq.tolist()}


def _quality(value, key: str = "quality") -> dict:
    """A row's ``key`` fields: the value, and its bootstrap resamples where the metric has them."""
    if value is None:
        return {}
    if isinstance(value, tuple):
        return {key: value[0], f"{key}_boot": value[1]}
    return {key: value}


def _boot(row: dict, key: str) -> np.ndarray | None:
    if key == "rmse":  # the RMSE on the same bootstrap indices as the distances
        if "sq_errors" not in row:
            return None
        sq = np.asarray(row["sq_errors"])
        return np.sqrt(sq[_resamples(len(sq))].mean(1))
    return np.asarray(row[f"{key}_boot"]) if f"{key}_boot" in row else None


def margin(ours: dict, rival: dict, key: str = "quality") -> tuple[float, float] | None:
    """rival's ``key`` (rmse, quality or fidelity) minus ours, positive when ours is better (all
    are lower-is-better), and its paired bootstrap standard error."""
    a, b = _boot(ours, key), _boot(rival, key)
    if a is None or b is None:
        return None
    return rival[key] - ours[key], float((b - a).std(ddof=1))


# -- one model --------------------------------------------------------------------------------

def run_model(name, model, f_train, nfes, n, quality, ref_steps, seed=0, say=print, fidelity=lambda x, ref: None):
    """Rows ``{method, sampler, grid, nfe, rmse, sq_errors, quality, fidelity, seconds}`` for one
    model, and notes (the reference's quality, the cost of each computed grid)."""
    torch.manual_seed(seed)
    z = randn_like(torch.empty((n,) + tuple(model.data_shape)), torch.Generator().manual_seed(seed))
    eps_fn = lambda zz, g: model.eps_hat(zz, g)  # noqa: E731

    ref_grid = fixed_grid("uniform-logsnr", model.schedule, ref_steps)
    tic = time.time()
    z_ref = SAMPLERS["dpmpp2m"](eps_fn, z, ref_grid.gamma.to(z.dtype))
    ref = signal_of(z_ref, ref_grid.gamma[-1])
    alpha_lo, sigma_lo = alpha_sigma(ref_grid.gamma[-1].to(z.dtype))
    ref_x0 = (z_ref - sigma_lo * eps_fn(z_ref, ref_grid.gamma[-1].to(z.dtype).expand(len(z)))) / alpha_lo  # D at the end
    ref_quality = _quality(quality(ref))
    notes = {"reference_quality": ref_quality["quality"], "reference_quality_boot": ref_quality.get("quality_boot"),
             "reference_s": time.time() - tic, "grid_s": {}, "fit_start": {}}
    say(f"[{name}] reference: {ref_steps} steps in {notes['reference_s']:.0f} s, quality {notes['reference_quality']:.4g}")
    f_probe = f_train[torch.randperm(len(f_train), generator=torch.Generator().manual_seed(1))[:256]]
    costs = {}
    for variant in ("corrector", "predictor"):
        tic = time.time()
        costs[variant] = probe_costs(model, f_probe, 100, variant, generator=torch.Generator().manual_seed(2))
        notes["grid_s"][f"score-optimal ({variant}) costs"] = time.time() - tic
    rows = []
    for nfe in nfes:
        for sampler in SAMPLERS:
            steps, euler_last = nfe_budget(sampler, nfe)  # Heun on an odd budget: a last Euler step
            walk = get_sampler(sampler, euler_last)
            grids = {"uniform-t": fixed_grid("uniform-t", model.schedule, steps).gamma,
                     "edm": fixed_grid("edm", model.schedule, steps).gamma}
            for variant, c in costs.items():
                grids[f"score-optimal ({variant})"] = score_optimal(model, None, steps, variant=variant, costs=c).gamma
            walks = {}  # grid -> its own walk: the form (first-order last step or not) the solver-aware fit chose
            if sampler in SOLVERS:
                tic = time.time()
                seeds = {k: v for k, v in grids.items() if k.startswith("score-optimal")}
                fit = solver_aware(model, sampler, steps, seeds=seeds, generator=torch.Generator().manual_seed(1234),
                                   euler_last=euler_last)
                notes["grid_s"][f"solver-aware {sampler} NFE {nfe}"] = time.time() - tic
                notes["fit_start"][f"solver-aware {sampler} NFE {nfe}"] = fit.info["start"]
                grids["solver-aware"] = fit.gamma
                walks["solver-aware"] = get_sampler(sampler, fit.info["euler_last"])
            for grid_name, gammas in grids.items():
                gen = torch.Generator().manual_seed(seed + 1)
                tic = time.time()
                x = signal_of(walks.get(grid_name, walk)(eps_fn, z, gammas.to(z.dtype), generator=gen), gammas[-1])
                errors = _errors(x, ref) if sampler != "ancestral" else {"rmse": float("nan")}
                rows.append(dict(method=f"{sampler} / {grid_name}", sampler=sampler, grid=grid_name, nfe=nfe,
                                 **errors, **_quality(quality(x)), **_quality(fidelity(x, ref), "fidelity"),
                                 seconds=time.time() - tic))
        for peer, (solver, fn, at_zero) in PEERS.items():
            try:
                tic = time.time()
                x = fn(model, z, nfe)
            except MissingPeer as e:
                say(f"[{name}] {peer}: skipped ({e})")
                continue
            target = ref_x0 if at_zero else ref  # a peer that ends at s = 0 is held to the reference's denoised end
            rows.append(dict(method=peer, sampler="peer", grid=peer, nfe=nfe, **_errors(x, target),
                             **_quality(quality(x)), **_quality(fidelity(x, target), "fidelity"),
                             seconds=time.time() - tic))
        say(f"[{name}] NFE {nfe} done")
    return rows, notes


# -- report -----------------------------------------------------------------------------------

def table(name, desc, rows, nfes, metric, notes):
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["method"], r["nfe"]): r for r in rows}
    fits = {k: v for k, v in notes["grid_s"].items() if k.startswith("solver-aware")}
    starts = notes.get("fit_start", {})
    out = [f"**{name}** ({desc}): RMSE to the reference / {metric}"
           + (" / the same to the reference's samples" if any("fidelity" in r for r in rows) else "") + ", by NFE", "",
           f"- the reference's own {metric.split(' (')[0]}: {notes['reference_quality']:.4g} (the floor an exact solver reaches)",
           "- score-optimal probe costs (100 levels, shared by every NFE): " + ", ".join(
               f"{k.split('(')[1].split(')')[0]} {v:.1f} s" for k, v in notes["grid_s"].items() if "costs" in k),
           f"- solver-aware grids, wall seconds each (and the candidate the refinement started from): "
           f"{min(fits.values(), default=0):.0f} to {max(fits.values(), default=0):.0f} ("
           + ", ".join(f"{k.removeprefix('solver-aware ')} {v:.0f}" + (f" from {starts[k]}" if k in starts else "")
                       for k, v in fits.items()) + ")", "",
           "| solver / grid | " + " | ".join(f"NFE {k}" for k in nfes) + " |", "|---|" + "---|" * len(nfes)]
    for m in methods:
        cells = []
        for k in nfes:
            r = by.get((m, k))
            cells.append("" if r is None else _cell(r))
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _cell(r) -> str:
    """RMSE / Frechet distance to held-out data / to the reference's samples (where measured)."""
    if r is None:
        return "–"
    rmse = "–" if math.isnan(r["rmse"]) else f"{r['rmse']:.4f}"
    return " / ".join([rmse, f"{r['quality']:.3g}"] + ([f"{r['fidelity']:.3g}"] if "fidelity" in r else []))


def _margin(best: dict, rivals: list[dict], key: str) -> str:
    m = margin(best, min(rivals, key=lambda r: r[key]), key) if all(key in r for r in [best, *rivals]) else None
    return "–" if m is None else f"{m[0]:+.3g} ± {m[1]:.2g}"


def _above_floor(rivals: list[dict], notes: dict) -> tuple[float, float] | None:
    """The best rival's distance to held-out data minus the reference's own (the floor an exact
    solver reaches), with its paired standard error; ``None`` where the floor has no resamples."""
    if notes.get("reference_quality_boot") is None:
        return None
    floor = {"quality": notes["reference_quality"], "quality_boot": notes["reference_quality_boot"]}
    return margin(floor, min(rivals, key=lambda r: r["quality"]))


def verdict(name, rows, nfes, notes):
    """The issue's criterion: for Heun and DPM-Solver++(2M) at NFE 5, 10, 20, the best of our
    grids (other than EDM) against EDM rho = 7 and the peers running the same solver, in RMSE and in
    the Frechet distance to held-out data (both lower is better); the paper's corrector grid beside
    it, and each margin to the best rival with its paired bootstrap standard error. Beside it, how
    far the best rival's held-out distance is above the reference's own: a rival within one
    standard error of that floor (or below it) cannot be beaten reliably by a more accurate solve."""
    by = {(r["method"], r["nfe"]): r for r in rows}
    at_floor = []
    lines = [f"**{name}: verdict** (cells: RMSE / Frechet distance to held-out data / to the reference's samples; "
             "✓ when the best of our grids beats EDM rho = 7 and both same-solver peers in RMSE and in distance to "
             "held-out data; margins: the best rival's value minus ours, ± the paired bootstrap standard error, "
             "positive when ours is better)", "",
             "| solver | NFE | best of ours by RMSE | it | solver-aware | score-optimal (corrector) | EDM rho = 7 "
             "| k-diffusion, same solver | diffusers, same solver | RMSE margin | held-out distance margin "
             "| reference distance margin | best rival above the floor | ✓ |",
             "|---|---:|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for sampler in ("heun", "dpmpp2m"):
        for nfe in (k for k in VERDICT_NFE if k in nfes):
            ours = [by[(f"{sampler} / {g}", nfe)] for g in GRIDS if g != "edm" and (f"{sampler} / {g}", nfe) in by]
            edm = by.get((f"{sampler} / edm", nfe))
            peers = [by.get((p, nfe)) for p, (solver, *_) in PEERS.items() if solver == sampler]
            if not ours or edm is None:
                continue
            best = min(ours, key=lambda r: r["rmse"])
            rivals = [r for r in [edm, *peers] if r is not None]
            wins = all(best["rmse"] < r["rmse"] and best["quality"] < r["quality"] for r in rivals)
            floor = _above_floor(rivals, notes)
            if floor is not None and floor[0] < floor[1] and any(best["quality"] >= r["quality"] for r in rivals):
                at_floor.append(f"{sampler} {nfe}")
            lines.append(f"| {sampler} | {nfe} | {best['grid']} | {_cell(best)} "
                         f"| {_cell(by.get((f'{sampler} / solver-aware', nfe)))} "
                         f"| {_cell(by.get((f'{sampler} / score-optimal (corrector)', nfe)))} | {_cell(edm)} | "
                         + " | ".join(_cell(r) for r in peers) + " | "
                         + " | ".join(_margin(best, rivals, k) for k in ("rmse", "quality", "fidelity"))
                         + (" | –" if floor is None else f" | {floor[0]:+.3g} ± {floor[1]:.2g}")
                         + f" | {'✓' if wins else '✗'} |")
    lines += ["", f"- reference's own distance to held-out data (the floor): {notes['reference_quality']:.4g}; "
              "cells lost on held-out distance whose best rival is within one standard error of the floor or "
              f"below it (no more accurate solve wins them reliably): {', '.join(at_floor) or 'none'}"]
    return "\n".join(lines)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(results), figsize=(5 * len(results), 8), squeeze=False)
    for col, (name, rows) in enumerate(results.items()):
        for m in dict.fromkeys(r["method"] for r in rows):
            if not (m.startswith(("heun", "dpmpp2m")) or m in PEERS) or "predictor" in m or "uniform-t" in m:
                continue
            pts = sorted((r["nfe"], r["rmse"], r["quality"]) for r in rows if r["method"] == m)
            style = "-" if "solver-aware" in m else ("--" if m in PEERS else ":")
            for row, k in ((0, 1), (1, 2)):
                axes[row][col].loglog([p[0] for p in pts], [p[k] for p in pts], style, marker=".", label=m)
        axes[0][col].set(title=name, xlabel="NFE", ylabel="RMSE to reference")
        axes[1][col].set(xlabel="NFE", ylabel="quality (Frechet distance; gmm: NLL)")
        axes[0][col].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def code_fingerprint() -> str:
    """A hash of the code that makes the rows (samplers, grids, fits, peers): a change recomputes them."""
    import hashlib

    import diffbits.grids
    import diffbits.samplers
    import diffbits.score_optimal
    import diffbits.solver_aware
    import peers.samplers
    files = [m.__file__ for m in (diffbits.grids, diffbits.samplers, diffbits.score_optimal, diffbits.solver_aware,
                                  peers.samplers)]
    return hashlib.sha1(b"".join(Path(f).read_bytes() for f in files)).hexdigest()[:12]


def cached(name: str, key: dict, compute):
    path = CACHE / f"rows-{name}.json"
    try:
        body = json.loads(path.read_text())
        if body["key"] == key:
            return body["rows"], body["notes"]
    except (OSError, ValueError, KeyError):
        pass
    rows, notes = compute()
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "rows": rows, "notes": notes}))
    return rows, notes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="digits,mnist,photos", help="digits, mnist, photos, gmm")
    ap.add_argument("--nfe", default="5,8,10,15,20")
    ap.add_argument("--photos-run", type=Path, default=CACHE / "photos-run")
    ap.add_argument("--train-minutes", type=float, default=8.0, help="when the photo run must be trained")
    ap.add_argument("--n", type=int, default=0, help="samples per model (default: " + ", ".join(
        f"{k} {v}" for k, v in SAMPLES.items()) + ")")
    ap.add_argument("--ref-steps", type=int, default=500)
    ap.add_argument("--mnist", default=MNIST)
    ap.add_argument("--no-append", action="store_true", help="print the tables only (a check, not a record; its plot goes to .cache/sampling/)")
    a = ap.parse_args(argv)
    nfes = [int(k) for k in a.nfe.split(",")]
    results, texts = {}, []
    torch.set_grad_enabled(False)
    for name in a.models.split(","):
        tic = time.time()
        say = lambda s: print(s, flush=True)  # noqa: E731
        n = a.n or SAMPLES[name]
        if name == "gmm":
            gmm = GaussianMixture()
            key = dict(model="gmm", nfe=nfes, n=n, ref=a.ref_steps)
            rows, notes = cached(name, key, lambda: run_model(name, gmm, gmm.sample(4096, 0), nfes, n, gmm.nll,
                                                              a.ref_steps, say=say))
            metric, desc = "exact NLL of the samples (nats; data's own: %.3f)" % gmm.nll(gmm.sample(20000, 1).double()), \
                "8 Gaussians on a ring, exact denoiser"
        else:
            source = sources(a.mnist, a.photos_run)[name]
            cfg, model, train_f, test_f = trained(name, source, a.train_minutes)
            with torch.enable_grad():
                net = feature_net(name, train_f)
            key = dict(model=model_fingerprint(cfg, model), nfe=nfes, n=n, ref=a.ref_steps, bootstrap=BOOTSTRAP,
                       code=code_fingerprint(), classifier_steps=CLASSIFIER_STEPS)
            rows, notes = cached(name, key, lambda: run_model(
                name, model, train_f, nfes, n, lambda x: frechet(net, x, test_f), a.ref_steps, say=say,
                fidelity=lambda x, ref: frechet(net, x, ref, paired=True)))
            metric, desc = "Frechet distance to held-out data (classifier features)", source[5]
        say(f"[{name}] {time.time() - tic:.0f} s")
        results[name] = rows
        text = table(name, desc, rows, nfes, metric, notes)
        texts.append(text if name == "gmm" else text + "\n\n" + verdict(name, rows, nfes, notes))  # NLL: lower is not better
    fig = plot(results, (CACHE if a.no_append else HERE) / "sampling.png")  # a check leaves the recorded plot alone
    text = "\n\n".join(texts) + f"\n\nPlot: `{fig.relative_to(HERE.parent)}`\n"
    print(text)
    if not a.no_append:
        append_results("Sampling: solvers x step grids at fixed NFE (benchmarks/sampling.py)", header(), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
