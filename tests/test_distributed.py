"""Several processes (torchrun, gloo on CPU) train exactly what one process trains."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from diffbits.checkpoint import CHECKPOINT, load_checkpoint
from diffbits.config import RunConfig, apply_overrides
from diffbits.distributed import World, micro_slices
from diffbits.train import Trainer

# learned_linear: every parameter gets an O(1) gradient, so Adam does not magnify float noise
# (on a parameter whose gradient is ~1e-12, Adam's step is +-lr whatever its sign).
SMALL = ["model.width=16", "model.depth=1", "model.schedule=learned_linear", "train.batch_size=16",
         "train.log_every=1", "train.sample_steps=4", "train.warmup=1", "train.lr=1e-3"]


def cli(out: Path, steps: int, *extra: str, processes: int = 1, resume: bool = False) -> list[str]:
    # --standalone: the rendezvous takes a free port from the OS, so two test runs never collide
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] \
        if processes > 1 else [sys.executable]
    # --recipe none: the recipe sizes dropout, EMA and the decay from the budget, and the killed run's
    # budget (10**6 steps) is not the whole run's; equivalence across process counts is the point here
    args = ["-m", "diffbits", "train", "--data", "digits", "--steps", str(steps), "--out", str(out), "--quiet",
            "--recipe", "none"]
    for s in [*SMALL, *extra]:
        args += ["--set", s]
    return launcher + args + (["--resume"] if resume else [])


def run(cmd: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


def assert_same_params(a: Path, b: Path, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    pa, pb = load_checkpoint(a / CHECKPOINT)["model"], load_checkpoint(b / CHECKPOINT)["model"]
    for k in pa:
        torch.testing.assert_close(pa[k], pb[k], rtol=rtol, atol=atol, msg=lambda m: f"{k}: {m}")


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(r) for r in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("world_size,micro", [(1, 0), (2, 0), (2, 4), (4, 2)])
def test_ranks_share_out_the_global_batch_exactly_once(world_size, micro):
    parts = [micro_slices(16, micro, World(r, world_size)) for r in range(world_size)]
    taken = sorted(i for rank in parts for s in rank for i in range(16)[s])
    assert taken == list(range(16))
    assert len({s.stop - s.start for rank in parts for s in rank}) == 1  # equal micro-batches


def test_a_batch_that_does_not_split_is_refused():
    with pytest.raises(ValueError, match="multiple of processes"):
        micro_slices(16, 3, World(0, 2))


def test_accumulated_micro_batches_equal_one_full_batch(tmp_path):
    cfgs = [apply_overrides(RunConfig(), [*SMALL, f"train.micro_batch={m}"]) for m in (0, 4)]
    trainers = [Trainer.create(c, tmp_path / str(i)) for i, c in enumerate(cfgs)]
    for tr in trainers:
        for _ in range(3):
            tr.train_step()
    for (k, a), b in zip(trainers[0].model.state_dict().items(), trainers[1].model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m: f"{k}: {m}")


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    run(cli(tmp_path / "one", 5))
    run(cli(tmp_path / "two", 5, processes=2))
    assert_same_params(tmp_path / "one", tmp_path / "two")
    one, two = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert [r["step"] for r in two] == [1, 2, 3, 4, 5]
    for a, b in zip(one, two):  # the per-example bound, averaged over both processes
        assert b["bpd"] == pytest.approx(a["bpd"], rel=1e-5)
        assert b["bpd_std"] == pytest.approx(a["bpd_std"], rel=1e-4)


@pytest.mark.slow
def test_a_killed_run_resumes_on_another_process_count(tmp_path):
    """SIGKILL at whatever step a run has reached (its budget is far away, so it cannot end first):
    it loses at most the steps since its last checkpoint, and resumed on 2 processes to a step past
    everything it had logged, it matches one uninterrupted process and continues one metrics stream."""
    every = 5
    extra = ["model.width=32", "model.depth=2", f"train.checkpoint_every={every}"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cli(killed, 10**6, *extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 240
        while not (killed / CHECKPOINT).exists() or load_checkpoint(killed / CHECKPOINT)["step"] < every:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "no checkpoint after 240 s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    logged = max(json.loads(r)["step"] for r in (killed / "metrics.jsonl").read_text().splitlines() if r.endswith("}"))
    saved = load_checkpoint(killed / CHECKPOINT)["step"]
    assert 0 <= logged - saved <= every  # lost at most the steps since the checkpoint

    steps = logged + 3  # past every row it logged: the resume drops the rows after its checkpoint
    run(cli(tmp_path / "whole", steps, *extra))
    run(cli(killed, steps, *extra, processes=2, resume=True))
    assert [r["step"] for r in metrics(killed)] == list(range(1, steps + 1))  # one stream, no gap or repeat
    assert_same_params(tmp_path / "whole", killed)
    for a, b in zip(metrics(tmp_path / "whole"), metrics(killed)):
        assert b["bpd"] == pytest.approx(a["bpd"], rel=1e-4)


def test_bf16_runs_only_the_network_in_bf16(tmp_path):
    cfg = apply_overrides(RunConfig(), [*SMALL, "train.precision=bf16"])
    trainer = Trainer.create(cfg, tmp_path / "r")
    model = trainer.model
    for _ in range(3):  # the output layers start at zero: train them away from it
        trainer.train_step()
    seen = []
    convs = [m for m in model.denoiser.modules() if isinstance(m, torch.nn.Conv2d)]
    for c in convs:
        c.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    x = trainer.data.x[:8]
    terms = model.loss_terms(x)
    assert convs and set(seen) == {torch.bfloat16}  # the network's layers run under autocast
    assert {v.dtype for v in (terms.prior, terms.recon, terms.diffusion)} == {torch.float32}
    assert model.schedule.gamma_0.dtype == torch.float32
    assert model.eps_hat(torch.randn(2, *model.data_shape), torch.zeros(2)).dtype == torch.float32
    model.net_call.dtype = None  # the same draw in float32: close, not equal
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    full = model.bound(x, generator=gen()).bpd
    model.net_call.dtype = torch.bfloat16
    half = model.bound(x, generator=gen()).bpd
    assert not torch.equal(full, half)
    torch.testing.assert_close(half, full, rtol=0.05, atol=0.05)
