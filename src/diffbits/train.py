"""Training: AdamW with warmup, EMA weights, atomic checkpoints, exact resume.

A run directory holds ``config.json``, ``checkpoint.pt`` (model, EMA, optimiser, step),
``metrics.jsonl`` (one line per logged step), ``loss.png`` and ``samples.png``.
Batches and noise depend only on (seed, step), so a resumed run takes exactly the
steps an uninterrupted one would have taken.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from .bound import data_to_signal
from .build import build_model
from .checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from .config import RunConfig
from .data import Dataset, load_dataset
from .plots import plot_metrics, save_grid
from .score_optimal import blend, score_optimal
from .step_schedules import Grid, gamma_of
from .vdm import VDM

__all__ = ["train", "TrainingDiverged", "RunExists", "load_run", "pick_device", "Trainer"]

METRICS = "metrics.jsonl"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class RunExists(FileExistsError):
    pass


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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


def batch_indices(n: int, batch: int, seed: int, step: int) -> torch.Tensor:
    """Examples of a step: a fresh permutation per epoch, derived from (seed, epoch)."""
    per_epoch = max(1, n // batch)
    epoch, pos = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(_step_seed(seed, -1 - epoch)))
    if n < batch:  # tiny datasets: repeat the permutation
        perm = perm.repeat(math.ceil(batch / n))
    return perm[pos * batch:(pos + 1) * batch]


@dataclass
class Trainer:
    cfg: RunConfig
    run_dir: Path
    data: Dataset
    model: VDM
    ema: AveragedModel
    opt: torch.optim.Optimizer
    device: torch.device
    step: int = 0
    elapsed: float = 0.0  # seconds of training across all invocations
    grid_t: torch.Tensor | None = None  # online score-optimal sampling grid (times, noisiest first)

    @classmethod
    def create(cls, cfg: RunConfig, run_dir: Path, data: Dataset | None = None) -> "Trainer":
        data = data or load_dataset(cfg.data, "train", cfg.levels or None)
        cfg.levels, cfg.shape = data.levels, list(data.shape)
        device = pick_device(cfg.train.device)
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg.model, data.shape, data.levels).to(device)
        ema = AveragedModel(model, multi_avg_fn=ema_update(cfg.train.ema_decay), use_buffers=True)
        t = cfg.train
        opt = torch.optim.AdamW(_param_groups(model, t.weight_decay), lr=t.lr, betas=tuple(t.betas))
        return cls(cfg, Path(run_dir), data, model, ema, opt, device)

    # -- state ---------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "opt": self.opt.state_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            **({"grid_t": self.grid_t} if self.grid_t is not None else {}),
        }

    def save(self) -> None:
        save_checkpoint(self.state(), self.run_dir / CHECKPOINT)

    def load(self) -> None:
        ck = load_checkpoint(self.run_dir / CHECKPOINT, map_location=self.device)
        self.model.load_state_dict(ck["model"])
        self.ema.load_state_dict(ck["ema"])
        self.opt.load_state_dict(ck["opt"])
        self.step, self.elapsed = int(ck["step"]), float(ck["elapsed"])
        self.grid_t = ck.get("grid_t")

    # -- one step ------------------------------------------------------------------------
    def lr_at(self, step: int, progress: float = 0.0) -> float:
        """Linear warm-up, then constant or cosine decay; ``progress`` in [0, 1] is the
        fraction of the budget spent (steps, or this invocation's wall clock)."""
        t = self.cfg.train
        lr = t.lr * min(1.0, (step + 1) / max(1, t.warmup))
        if t.lr_decay == "cosine":
            lr *= 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        elif t.lr_decay != "none":
            raise ValueError(f"train.lr_decay must be none or cosine, got {t.lr_decay!r}")
        return lr

    def train_step(self, progress: float = 0.0) -> dict:
        t = self.cfg.train
        torch.manual_seed(_step_seed(t.seed, self.step))  # noise, times and dropout of this step
        idx = batch_indices(len(self.data), t.batch_size, t.seed, self.step)
        x = self.data.x[idx].to(self.device, non_blocking=True)
        self.model.train()
        tic = time.perf_counter()
        terms = self.model.loss_terms(x, T=t.T or None)
        loss = terms.bpd.mean()
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"non-finite loss ({loss.item()}) at step {self.step}; the last good checkpoint "
                f"({self.run_dir / CHECKPOINT}) is kept. Try a lower train.lr or train.grad_clip."
            )
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step, progress)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if t.grad_clip > 0:  # the denoiser only: the schedule interior's variance gradient is large by design
            torch.nn.utils.clip_grad_norm_(self.model.denoiser.parameters(), t.grad_clip)
        self.opt.step()
        self.ema.update_parameters(self.model)
        self.step += 1
        if t.grid_every and self.step % t.grid_every == 0:
            self.update_grid(x)
        self.elapsed += time.perf_counter() - tic
        bpd = {k: v.mean().item() for k, v in terms.bpd_terms().items()}
        return {"bpd": loss.item(), **{f"{k}_bpd": v for k, v in bpd.items()},
                "bpd_std": terms.bpd.std().item()}

    def update_grid(self, x: torch.Tensor) -> None:
        """Blend the sampling grid toward the EMA model's score-optimal one (SPEC 2, online);
        the first estimate is taken as is. Saved with the checkpoint and as grid.json."""
        t = self.cfg.train
        model = self.ema.module
        was_training = model.training
        model.eval()
        f = data_to_signal(x, self.data.levels, torch.float32)
        target = score_optimal(model, f, t.grid_steps, probe=50, variant=t.grid_variant, check=False).t
        self.grid_t = target if self.grid_t is None else blend(self.grid_t, target, t.grid_blend)
        model.train(was_training)
        grid = Grid(self.grid_t, gamma_of(model.schedule, self.grid_t), f"score-optimal ({t.grid_variant}, online)")
        grid.info.update(step=self.step, blend=t.grid_blend)
        grid.save(self.run_dir / "grid.json")

    # -- the loop ------------------------------------------------------------------------
    def fit(self, progress: bool = True) -> dict:
        t = self.cfg.train
        if not t.steps and not t.minutes:
            raise ValueError("give a budget: --steps N (total) or --minutes M")
        metrics_path = self.run_dir / METRICS
        _truncate_metrics(metrics_path, self.step)
        start, last_ckpt = time.time(), time.time()
        budget = t.minutes * 60 if t.minutes else math.inf
        total = t.steps or None
        bar = tqdm(total=total, initial=self.step, disable=not progress, desc="train", unit="step", dynamic_ncols=True)
        window_t, window_n = time.time(), 0
        try:
            with metrics_path.open("a") as log:
                while (not t.steps or self.step < t.steps) and time.time() - start < budget:
                    progress = max(self.step / t.steps if t.steps else 0.0, (time.time() - start) / budget)
                    row = self.train_step(progress)
                    window_n += t.batch_size
                    if self.step % t.log_every == 0 or self.step == t.steps:
                        now = time.time()
                        row.update(step=self.step, time=round(self.elapsed, 2),
                                   lr=self.opt.param_groups[0]["lr"], examples_per_s=window_n / (now - window_t),
                                   gamma_0=self.model.schedule.gamma_0.item(), gamma_1=self.model.schedule.gamma_1.item())
                        log.write(json.dumps(row) + "\n")
                        log.flush()
                        bar.set_postfix(bpd=f"{row['bpd']:.3f}", ex_s=f"{row['examples_per_s']:.0f}")
                        window_t, window_n = now, 0
                    bar.update(1)
                    if time.time() - last_ckpt > t.checkpoint_minutes * 60:
                        self.save()
                        last_ckpt = time.time()
        except KeyboardInterrupt:
            self.save()
            bar.close()
            raise
        bar.close()
        self.save()
        return {"step": self.step, "elapsed_s": self.elapsed}

    def finish(self, n_samples: int = 64, progress: bool = True) -> dict:
        """Loss plot and a sample grid from the EMA model."""
        out = {}
        p = plot_metrics(self.run_dir / METRICS, self.run_dir / "loss.png")
        if p:
            out["loss_plot"] = str(p)
        gen = torch.Generator().manual_seed(self.cfg.train.seed)
        x = self.ema.module.eval().sample(n_samples, self.cfg.train.sample_steps, generator=gen, progress=progress)
        out["samples"] = str(save_grid(x, self.data.levels, self.run_dir / "samples.png"))
        return out


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop logged rows after the checkpoint's step, so a resumed run continues one stream."""
    if not path.exists():
        return
    rows = [r for r in path.read_text().splitlines() if r.strip() and json.loads(r)["step"] <= step]
    path.write_text("".join(r + "\n" for r in rows))


def load_run(run_dir: Path, device: str = "auto") -> tuple[RunConfig, VDM]:
    """The EMA model of a run, ready for evaluation or sampling."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise FileNotFoundError(f"{run_dir}: not a diffbits run (no config.json)")
    cfg = RunConfig.load(run_dir / "config.json")
    dev = pick_device(device)
    ck = load_checkpoint(run_dir / CHECKPOINT, map_location=dev)
    model = build_model(cfg.model, tuple(cfg.shape), cfg.levels).to(dev)
    ema = {k[len("module."):]: v for k, v in ck["ema"].items() if k.startswith("module.")}
    model.load_state_dict(ema)
    return cfg, model.eval()


def train(cfg: RunConfig, run_dir: Path, resume: bool = False, fresh: bool = False, progress: bool = True) -> dict:
    """Train (or resume) a run; returns a summary with the paths it wrote."""
    run_dir = Path(run_dir)
    if fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    if resume:
        if not (run_dir / CHECKPOINT).exists():
            raise FileNotFoundError(f"{run_dir}: nothing to resume (no {CHECKPOINT})")
        saved = RunConfig.load(run_dir / "config.json")
        saved.train.steps, saved.train.minutes = cfg.train.steps, cfg.train.minutes
        cfg = saved
    elif (run_dir / "config.json").exists():
        raise RunExists(f"{run_dir} already holds a run; use --resume to continue it or --fresh to replace it")
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer.create(cfg, run_dir)
    cfg.save(run_dir / "config.json")
    if resume:
        trainer.load()
    summary = trainer.fit(progress=progress)
    summary.update(trainer.finish(progress=progress))
    summary["run_dir"] = str(run_dir)
    return summary
