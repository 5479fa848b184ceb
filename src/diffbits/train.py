"""Training: AdamW with warmup, EMA weights, atomic checkpoints, exact resume.

A run directory holds ``config.json``, ``checkpoint.pt`` (model, EMA, optimiser, step),
``metrics.jsonl`` (one line per logged step), ``loss.png`` and ``samples.png``.
Batches and noise depend only on (seed, step), so a resumed run takes exactly the
steps an uninterrupted one would have taken.
"""
from __future__ import annotations

import functools
import json
import math
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel

from . import bound as B
from . import distributed
from .build import build_model
from .checkpoint import CHECKPOINT, CHECKPOINT_STABLE, load_checkpoint, save_checkpoint
from .config import RunConfig
from .data import Dataset, load_dataset
from .distributed import World, all_sum, from_main, micro_slices, pick_device
from .errors import RunError, RunExists, TrainingDiverged
from .grids import Grid, gamma_of
from .plots import plot_metrics, save_grid
from .progress import progress as progress_bar
from .precision import NetCall, resolve_precision
from .runs import CONFIG, METRICS, VALIDATION
from .score_optimal import blend, score_optimal
from .vdm import VDM

__all__ = ["train", "Trainer"]

MEASURE_STEPS, MEASURE_S = 2, 10.0  # the step rate is measured after this many steps and seconds (or 2% of the budget)



def _param_groups(model: VDM, weight_decay: float) -> list[dict]:
    """Weight decay on the denoiser's matrices only, never on the schedule, biases or norms."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and not name.startswith("schedule.") else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def ema_update(decay: float):
    """EMA with warm-up: the decay after n updates is ``min(decay, (1 + n) / (10 + n))``,
    so that short runs are not dominated by their initial weights."""

    def update(ema_params, params, num_averaged):
        n = float(num_averaged)
        torch._foreach_lerp_(ema_params, params, 1.0 - min(decay, (1 + n) / (10 + n)))

    return update


def _step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % (2**63 - 1)


@functools.lru_cache(maxsize=2)
def _epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(_step_seed(seed, -1 - epoch)))


def batch_indices(n: int, batch: int, seed: int, step: int) -> Tensor:
    """Examples of a step's global batch: a fresh permutation per epoch, from (seed, epoch)."""
    per_epoch = max(1, n // batch)
    epoch, pos = divmod(step, per_epoch)
    perm = _epoch_permutation(n, seed, epoch)
    if n < batch:  # tiny datasets: repeat the permutation
        perm = perm.repeat(math.ceil(batch / n))
    return perm[pos * batch:(pos + 1) * batch]


class _Loss(nn.Module):
    """The training loss as a module's forward, the form DistributedDataParallel wraps:
    per-example (prior, recon, diffusion) in nats for given times and noise."""

    def __init__(self, model: nn.Module, T: int | None):
        super().__init__()
        self.model, self.T = model, T

    def forward(self, x: Tensor, t: Tensor, eps: Tensor, eps_0: Tensor, cond: Tensor | None = None):
        terms = self.model.loss_terms(x, T=self.T, t=t, eps=eps, eps_0=eps_0, cond=cond)
        return terms.prior, terms.recon, terms.diffusion


@dataclass
class Trainer:
    cfg: RunConfig
    run_dir: Path
    data: Dataset
    model: VDM
    ema: AveragedModel
    opt: torch.optim.Optimizer
    device: torch.device
    world: World = World()
    loss_fn: nn.Module | None = None  # _Loss, inside DistributedDataParallel when there are several processes
    step: int = 0
    elapsed: float = 0.0  # seconds of training across all invocations
    grid_t: Tensor | None = None  # online score-optimal sampling grid (times, noisiest first)
    clock: Callable[[], float] = time.monotonic  # wall clock of the budget (a fake one in tests)
    say: Callable[[str], None] | None = None  # where decisions taken during training are reported
    on_step: Callable[["Trainer"], None] | None = None  # called after every step (benchmarks take snapshots)
    val: Dataset | None = None  # training examples held out to pick the EMA weights (train.validation)
    best: dict | None = None  # the EMA state with the best bound on ``val`` so far
    best_bpd: float = math.inf
    best_step: int = 0

    @classmethod
    def create(cls, cfg: RunConfig, run_dir: Path, data: Dataset | None = None, world: World | None = None,
               device: torch.device | None = None) -> "Trainer":
        data = data or load_dataset(cfg.data, "train", cfg.levels or None, cfg.labels or None, cfg.crop or None)
        cfg.levels, cfg.shape, cfg.dtype = data.levels, list(data.shape), data.dtype
        if cfg.labels:
            if data.y is None:
                raise ValueError(f"labels={cfg.labels!r}, but the data {data.name} came without labels")
            cfg.classes = data.classes or [str(i) for i in range(int(data.y.max()) + 1)]
            cfg.model.num_classes = len(cfg.classes)
        t = cfg.train
        world = world or World()
        device = device or pick_device(t.device)
        micro_slices(t.batch_size, t.micro_batch, world)  # fail early on a batch that does not split
        torch.manual_seed(t.seed)
        model = build_model(cfg.model, data.shape, data.levels).to(device)
        images = len(data.shape) == 3
        if t.channels_last and images:
            model.denoiser.to(memory_format=torch.channels_last)
        model.net_call = NetCall(resolve_precision(t.precision, device), t.channels_last and images)
        ema = AveragedModel(model, multi_avg_fn=ema_update(t.ema_decay), use_buffers=True)
        if t.compile:
            model.denoiser.compile()  # in place: parameter names and checkpoints unchanged
        opt = torch.optim.AdamW(_param_groups(model, t.weight_decay), lr=t.lr, betas=tuple(t.betas), fused=True)
        loss_fn = _Loss(model, t.T or None)
        if world.distributed:
            loss_fn = DistributedDataParallel(loss_fn, device_ids=[device] if device.type == "cuda" else None,
                                              gradient_as_bucket_view=True)
        data, val = split_validation(data, t.validation, t.seed)
        return cls(cfg, Path(run_dir), data, model, ema, opt, device, world, loss_fn, val=val)

    # -- state ---------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "opt": self.opt.state_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            **({"grid_t": self.grid_t} if self.grid_t is not None else {}),
            **({"ema_best": self.best, "best_bpd": self.best_bpd, "best_step": self.best_step} if self.best else {}),
        }

    def save(self) -> None:
        save_checkpoint(self.state(), self.run_dir / CHECKPOINT)

    def load(self, name: str = CHECKPOINT) -> None:
        ck = load_checkpoint(self.run_dir / name, map_location=self.device)
        self.model.load_state_dict(ck["model"])
        self.ema.load_state_dict(ck["ema"])
        self.opt.load_state_dict(ck["opt"])
        self.step, self.elapsed = int(ck["step"]), float(ck["elapsed"])
        self.grid_t = ck.get("grid_t")
        self.best, self.best_bpd, self.best_step = ck.get("ema_best"), float(ck.get("best_bpd", math.inf)), int(ck.get("best_step", 0))

    # -- one step ------------------------------------------------------------------------
    def lr_at(self, step: int, progress: float = 0.0) -> float:
        """Linear warm-up over ``train.warmup`` steps, then constant (``none``), a cosine decay
        to 0 (``cosine``), or constant and a cosine decay over the last ``decay_fraction`` of the
        budget (``wsd``: warm-up, stable, decay); ``progress`` in [0, 1] is the fraction of the
        budget spent (steps of the run, or this invocation's wall clock)."""
        t = self.cfg.train
        lr = t.lr * min(1.0, (step + 1) / max(1, t.warmup))
        progress = min(1.0, progress)
        if t.lr_decay == "cosine":
            lr *= 0.5 * (1 + math.cos(math.pi * progress))
        elif t.lr_decay == "wsd":
            start = 1.0 - t.decay_fraction
            if progress > start:
                lr *= 0.5 * (1 + math.cos(math.pi * (progress - start) / t.decay_fraction))
        elif t.lr_decay != "none":
            raise ValueError(f"train.lr_decay must be none, cosine or wsd, got {t.lr_decay!r}")
        return lr

    def decaying(self, progress: float) -> bool:
        """Whether a ``wsd`` run has entered its final decay."""
        t = self.cfg.train
        return t.lr_decay == "wsd" and progress > 1.0 - t.decay_fraction

    def measure_warmup(self, steps_done: int, seconds: float, budget_s: float) -> None:
        """Size the warm-up to ``warmup_fraction`` of the steps that fit the wall clock, from the
        step rate measured so far (a fresh run under ``--minutes``, once)."""
        t = self.cfg.train
        planned = self.step + steps_done / seconds * max(0.0, budget_s - seconds)
        t.warmup = max(1, round(t.warmup_fraction * planned))
        reason = (f"{steps_done} steps in the first {seconds:.1f} s: about {planned:,.0f} fit in {t.minutes:g} min, "
                  f"warm up over {t.warmup_fraction:.0%} of them")
        self.cfg.recipe.append({"field": "train.warmup", "value": t.warmup, "reason": reason})
        if self.world.is_main:
            self.cfg.save(self.run_dir / CONFIG)
            if self.say:
                self.say(f"recipe: train.warmup = {t.warmup}: {reason}")

    def step_noise(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Times (antithetic over the global batch), diffusion noise, z_0 noise and the
        label-dropout draws of the whole global batch of this step; every process draws the
        same and takes its slices."""
        t = self.cfg.train
        gen = torch.Generator(self.device).manual_seed(_step_seed(t.seed, self.step))
        shape = (t.batch_size, *self.data.shape)
        times = B.antithetic_times(t.batch_size, generator=gen, device=self.device)
        eps = torch.randn(shape, generator=gen, device=self.device)
        eps_0 = torch.randn(shape, generator=gen, device=self.device)
        drop = torch.rand(t.batch_size, generator=gen, device=self.device) < self.cfg.model.label_dropout
        return times, eps, eps_0, drop

    def labels(self, idx: Tensor, drop: Tensor) -> Tensor | None:
        """Class labels of the global batch, some replaced by "no label" (classifier-free guidance)."""
        if not self.cfg.model.num_classes:
            return None
        y = self.data.y[idx].to(self.device)
        return torch.where(drop, torch.full_like(y, self.cfg.model.num_classes), y)

    def train_step(self, progress: float = 0.0) -> Tensor:
        """One optimiser step on the global batch. Returns this process's sums over its
        examples of (bpd, bpd^2, prior, recon, diffusion bpd), on the device, unsynchronised."""
        t = self.cfg.train
        torch.manual_seed(_step_seed(t.seed, self.step) + self.world.rank)  # dropout of this process
        idx = batch_indices(len(self.data), t.batch_size, t.seed, self.step)
        times, eps, eps_0, drop = self.step_noise()
        cond = self.labels(idx, drop)
        parts = micro_slices(t.batch_size, t.micro_batch, self.world)
        self.model.train()
        tic = time.perf_counter()
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step, progress)
        self.opt.zero_grad(set_to_none=True)
        sums = torch.zeros(5, device=self.device)
        for i, part in enumerate(parts):
            x = self.data.x[idx[part]].to(self.device, non_blocking=True)
            last = i == len(parts) - 1
            with nullcontext() if last or not self.world.distributed else self.loss_fn.no_sync():
                y = None if cond is None else cond[part]
                terms = B.BoundTerms(*self.loss_fn(x, times[part], eps[part], eps_0[part], y), dims=self.model.dims)
                bpd = terms.bpd
                (bpd.mean() / len(parts)).backward()  # DDP averages over processes: the global mean
            with torch.no_grad():
                sums += torch.stack([bpd.sum(), (bpd**2).sum(), *(v.sum() for v in terms.bpd_terms().values())])
        if t.grad_clip > 0:  # the denoiser only: the schedule interior's variance gradient is large by design
            torch.nn.utils.clip_grad_norm_(self.model.denoiser.parameters(), t.grad_clip)
        self.opt.step()
        if self.world.is_main:  # only the main process saves, so only it keeps the average
            self.ema.update_parameters(self.model)
        self.step += 1
        if t.grid_every and self.step % t.grid_every == 0 and self.world.is_main:
            self.update_grid(self.data.x[idx[:256]].to(self.device))
        self.elapsed += time.perf_counter() - tic
        return sums.detach()

    def update_grid(self, x: Tensor) -> None:
        """Blend the sampling grid toward the EMA model's score-optimal one (SPEC 2, online);
        the first estimate is taken as is. Saved with the checkpoint and as grid.json."""
        t = self.cfg.train
        model = self.ema.module
        was_training = model.training
        model.eval()
        f = B.data_to_signal(x, self.data.levels, torch.float32)
        target = score_optimal(model, f, t.grid_steps, probe=50, variant=t.grid_variant, check=False).t
        self.grid_t = target if self.grid_t is None else blend(self.grid_t, target, t.grid_blend)
        model.train(was_training)
        grid = Grid(self.grid_t, gamma_of(model.schedule, self.grid_t), f"score-optimal ({t.grid_variant}, online)")
        grid.info.update(step=self.step, blend=t.grid_blend)
        grid.save(self.run_dir / "grid.json")

    def _row(self, sums: Tensor) -> dict:
        """Metrics of one step over the global batch (summed across processes)."""
        n = self.cfg.train.batch_size
        s = all_sum(sums.clone(), self.world).tolist()
        mean = s[0] / n
        row = {"bpd": mean, "prior_bpd": s[2] / n, "recon_bpd": s[3] / n, "diffusion_bpd": s[4] / n,
               "bpd_std": math.sqrt(max(0.0, s[1] - n * mean**2) / max(1, n - 1))}
        if not math.isfinite(mean):
            raise TrainingDiverged(
                f"non-finite loss ({mean}) at step {self.step}; the last good checkpoint "
                f"({self.run_dir / CHECKPOINT}) is kept. Try a lower train.lr or train.grad_clip.")
        return row

    # -- the loop ------------------------------------------------------------------------
    def validate(self) -> float:
        """The EMA model's bound on the held-out training examples (one draw each, the same draws
        every time: common random numbers), logged to ``validation.jsonl``; the best weights are kept."""
        from .evaluate import evaluate

        module = self.ema.module
        mode = module.training
        bpd = evaluate(module, self.val, samples=1, seed=self.cfg.train.seed, progress=False)["bpd"]
        module.train(mode)
        better = bpd < self.best_bpd
        if better:
            self.best = {k: v.detach().clone() for k, v in self.ema.state_dict().items()}
            self.best_bpd, self.best_step = bpd, self.step
        with (self.run_dir / VALIDATION).open("a") as fh:
            fh.write(json.dumps({"step": self.step, "time": round(self.elapsed, 2), "val_bpd": bpd, "best": better}) + "\n")
        return bpd

    def validation_points(self) -> list[float]:
        """Shares of the run at which ``validate`` runs inside the loop: with the one at its end,
        ``train.validations`` points evenly over the last 70% (overfitting shows late)."""
        k = self.cfg.train.validations
        return [0.3 + 0.7 * (i + 1) / k for i in range(k - 1)] if self.val is not None else []

    def fit(self, progress: bool = True) -> dict:
        """Train until the step or wall-clock budget. Every process runs this; the main one
        logs, draws the progress bar and saves. Checkpoints are taken only after a logged
        (hence checked finite) step or an in-between step whose loss is checked first. A ``wsd``
        run also keeps ``checkpoint-stable.pt``, its state when the decay began, so that a later
        ``--resume`` extends the run from there instead of warming a decayed run up again."""
        t, main = self.cfg.train, self.world.is_main
        if not t.steps and not t.minutes:
            raise ValueError("give a budget: --steps N (total) or --minutes M")
        metrics_path = self.run_dir / METRICS
        if main:
            _truncate_metrics(metrics_path, self.step)
        if t.warmup_fraction and t.steps and not self.step:
            t.warmup = max(1, round(t.warmup_fraction * t.steps))
        measure = bool(t.warmup_fraction and t.minutes and not self.step)  # size the warm-up from the step rate
        start = last_ckpt = self.clock()
        budget = t.minutes * 60 if t.minutes else math.inf
        bar = progress_bar(total=t.steps or None, initial=self.step, enabled=progress and main, desc="train",
                           unit="step")
        window_t, window_n, first, stable_saved = self.clock(), 0, self.step, False
        points = self.validation_points()
        if main and self.val is not None:
            _truncate_metrics(self.run_dir / VALIDATION, self.step)
        log = metrics_path.open("a") if main else None
        try:
            while True:
                now = self.clock()
                done = bool(t.steps and self.step >= t.steps) or now - start >= budget
                frac = max(self.step / t.steps if t.steps else 0.0, (now - start) / budget)
                if t.minutes and self.world.distributed:  # wall clock differs: the main process decides
                    done, frac = from_main([float(done), frac], self.world, self.device)
                if done:
                    break
                if measure and self.step - first >= MEASURE_STEPS and now - start >= min(MEASURE_S, 0.02 * budget):
                    self.measure_warmup(self.step - first, now - start, budget)
                    measure = False
                while points and frac >= points[0]:
                    points.pop(0)
                    if main:
                        self.validate()
                if main and not stable_saved and self.decaying(frac):
                    save_checkpoint(self.state(), self.run_dir / CHECKPOINT_STABLE)
                    stable_saved = True
                sums = self.train_step(frac)
                if self.on_step is not None:
                    self.on_step(self)
                window_n += t.batch_size
                logged = self.step % t.log_every == 0 or self.step == t.steps
                if logged:
                    row = self._row(sums)
                    now = self.clock()
                    row.update(step=self.step, time=round(self.elapsed, 2), lr=self.opt.param_groups[0]["lr"],
                               examples_per_s=window_n / max(now - window_t, 1e-9),
                               gamma_0=self.model.schedule.gamma_0.item(), gamma_1=self.model.schedule.gamma_1.item())
                    if main:
                        log.write(json.dumps(row) + "\n")
                        log.flush()
                        bar.set_postfix(bpd=f"{row['bpd']:.3f}", ex_s=f"{row['examples_per_s']:.0f}")
                    window_t, window_n = now, 0
                bar.update(1)
                due = (t.checkpoint_every and self.step % t.checkpoint_every == 0) or \
                    self.clock() - last_ckpt > t.checkpoint_minutes * 60
                if main and due:
                    if not logged and not torch.isfinite(sums[0]):
                        self._row(sums)  # raises: never checkpoint a diverged model
                    self.save()
                    last_ckpt = self.clock()
        except KeyboardInterrupt:
            if not main:
                raise
            self.save()
            raise KeyboardInterrupt(f"stopped at step {self.step}; checkpoint saved to {self.run_dir / CHECKPOINT}; "
                                    f"continue with: diffbits train --out {self.run_dir} --resume") from None
        finally:
            bar.close()
            if log:
                log.close()
        summary = {"step": self.step, "elapsed_s": self.elapsed}
        if main and self.val is not None:
            self.validate()  # the end of this invocation
            summary.update(val_bpd=self.best_bpd, best_step=self.best_step)
            if self.say:
                self.say(f"validation: the EMA weights of step {self.best_step:,} (of {self.step:,}) have the best bound on "
                         f"the {len(self.val):,} held-out training examples, {self.best_bpd:.4f} bits/dim: kept")
        if main:
            self.save()
        return summary

    def finish(self, n_samples: int = 64, progress: bool = True) -> dict:
        """Loss plot and a sample grid from the EMA model."""
        out = {}
        p = plot_metrics(self.run_dir / METRICS, self.run_dir / "loss.png", self.run_dir / VALIDATION)
        if p:
            out["loss_plot"] = str(p)
        gen = torch.Generator().manual_seed(self.cfg.train.seed)
        k, cols, cond = self.cfg.model.num_classes, None, None
        if k:  # conditional: one row of 8 per class
            n_samples, cols = 8 * k, 8
            cond = torch.arange(n_samples, device=self.device) // cols
        x = self.ema.module.eval().sample(n_samples, self.cfg.train.sample_steps, cond=cond, generator=gen,
                                          progress=progress)
        out["samples"] = str(save_grid(x, self.data.levels, self.run_dir / "samples.png", cols=cols))
        return out


def split_validation(data: Dataset, n: int, seed: int) -> tuple[Dataset, Dataset | None]:
    """``(train, validation)``: ``n`` examples, drawn once from ``seed``, held out (none for n = 0)."""
    if n <= 0:
        return data, None
    if 2 * n > len(data):
        raise ValueError(f"train.validation = {n} would hold out more than half of the {len(data):,} training examples")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed + 7919))
    pick = lambda idx: replace(data, x=data.x[idx], y=None if data.y is None else data.y[idx])  # noqa: E731
    return pick(order[n:].sort().values), pick(order[:n].sort().values)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop logged rows after the checkpoint's step (and a row cut short by a kill), so a
    resumed run continues one stream."""
    if not path.exists():
        return
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row["step"] <= step:
            rows.append(line)
    path.write_text("".join(r + "\n" for r in rows))


# How an invocation runs, not what it trains: a resumed run takes these from the command line.
PER_INVOCATION = ("steps", "minutes", "micro_batch", "device", "compile", "channels_last",
                  "checkpoint_every", "checkpoint_minutes")


def train(cfg: RunConfig, run_dir: Path, resume: bool = False, fresh: bool = False, progress: bool = True,
          recipe: str = "none", user_fields: set[str] | None = None, say: Callable[[str], None] | None = None,
          clock: Callable[[], float] = time.monotonic) -> dict:
    """Train (or resume) a run; returns a summary with the paths it wrote. Under torchrun
    every process calls this; the main one writes the run directory and returns the paths.

    ``recipe="auto"`` derives every field the user did not set (``user_fields``; None: the
    fields that differ from their defaults) from the data, the budget and the device
    (``diffbits.recipe``) and reports each decision through ``say``. A resumed ``wsd`` run whose
    last invocation reached its decay continues from ``checkpoint-stable.pt`` (its state before
    the decay), so a new budget extends the constant phase and decays again at its own end.
    ``clock`` is the wall clock of ``--minutes`` budgets (tests pass a fake one)."""
    if recipe not in ("auto", "none"):
        raise ValueError(f"recipe must be auto or none, got {recipe!r}")
    run_dir = Path(run_dir)
    owned = not torch.distributed.is_initialized()
    world, device = distributed.init(cfg.train.device)
    try:
        start_from = CHECKPOINT
        if resume:
            if not (run_dir / CHECKPOINT).exists():
                raise RunError(f"{run_dir}: nothing to resume (no {CHECKPOINT})")
            saved = RunConfig.load(run_dir / CONFIG)
            for name in PER_INVOCATION:
                setattr(saved.train, name, getattr(cfg.train, name))
            cfg = saved
            if cfg.train.lr_decay == "wsd" and (run_dir / CHECKPOINT_STABLE).exists():
                start_from = CHECKPOINT_STABLE
        elif (run_dir / CONFIG).exists() and not fresh:
            raise RunExists(f"{run_dir} already holds a run; use --resume to continue it or --fresh to replace it")
        data = None
        if recipe == "auto" and not resume:
            data = load_dataset(cfg.data, "train", cfg.levels or None, cfg.labels or None, cfg.crop or None)
            from .recipe import configure

            configure(cfg, data, device, world.size, user_fields, say if world.is_main else None)
            if data.crop and cfg.crop != data.crop:  # the recipe cut the recordings anew
                data = load_dataset(cfg.data, "train", cfg.levels or None, cfg.labels or None, cfg.crop)
        distributed.barrier(world)  # every process has looked before the main one writes
        trainer = Trainer.create(cfg, run_dir, data=data, world=world, device=device)
        trainer.say, trainer.clock = (say if world.is_main else None), clock
        if world.is_main:
            if fresh and run_dir.exists() and not resume:
                shutil.rmtree(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            cfg.save(run_dir / CONFIG)
        distributed.barrier(world)
        if resume:
            trainer.load(start_from)
        if start_from == CHECKPOINT_STABLE:
            distributed.barrier(world)  # every process has read it
            if world.is_main:
                trainer.save()  # the run continues from here: the decayed state is left behind
                (run_dir / CHECKPOINT_STABLE).unlink()
                if say:
                    say(f"resuming from step {trainer.step}, where the last learning-rate decay began")
        summary = trainer.fit(progress=progress)
        if world.is_main:
            summary.update(trainer.finish(progress=progress))
        summary.update(run_dir=str(run_dir), processes=world.size)
        distributed.barrier(world)  # leave together: the main process may still be sampling
        return summary
    finally:
        if owned:
            distributed.shutdown()
