import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import diffbits
from diffbits.checkpoint import CHECKPOINT, load_checkpoint
from diffbits.cli import main
from diffbits.config import RunConfig, apply_overrides
from diffbits.data import load_dataset
from diffbits.errors import RunExists, TrainingDiverged
from diffbits.train import Trainer, train

TINY = ["model.width=8", "model.depth=1", "train.batch_size=16", "train.log_every=1", "train.sample_steps=5"]


def tiny_config(steps: int) -> RunConfig:
    cfg = apply_overrides(RunConfig(), TINY)
    cfg.train.steps = steps
    return cfg


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    train(tiny_config(6), tmp_path / "a", progress=False)
    train(tiny_config(3), tmp_path / "b", progress=False)
    train(tiny_config(6), tmp_path / "b", resume=True, progress=False)
    a, b = load_checkpoint(tmp_path / "a" / CHECKPOINT), load_checkpoint(tmp_path / "b" / CHECKPOINT)
    assert a["step"] == b["step"] == 6
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["ema"]:
        assert torch.equal(a["ema"][k], b["ema"][k]), k
    rows = [[json.loads(r)["bpd"] for r in (tmp_path / run / "metrics.jsonl").read_text().splitlines()] for run in "ab"]
    assert rows[0] == rows[1] and len(rows[0]) == 6


def test_resume_after_an_interruption_drops_rows_past_the_checkpoint(tmp_path):
    train(tiny_config(4), tmp_path / "r", progress=False)
    with (tmp_path / "r" / "metrics.jsonl").open("a") as f:  # rows written after the last checkpoint
        f.write(json.dumps({"step": 5, "bpd": 0.0}) + "\n")
    train(tiny_config(6), tmp_path / "r", resume=True, progress=False)
    steps = [json.loads(r)["step"] for r in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = tiny_config(2)
    cfg.levels, run = 0, tmp_path / "nan"
    run.mkdir()
    trainer = Trainer.create(cfg, run)
    trainer.fit(progress=False)
    with torch.no_grad():
        trainer.model.denoiser.conv_in.weight.fill_(float("nan"))
    trainer.cfg.train.steps = 4
    with pytest.raises(TrainingDiverged, match="non-finite loss.*last good checkpoint"):
        trainer.fit(progress=False)
    ck = load_checkpoint(run / CHECKPOINT)
    assert ck["step"] == 2
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


def test_existing_run_needs_resume_or_fresh(tmp_path):
    train(tiny_config(1), tmp_path / "x", progress=False)
    with pytest.raises(RunExists):
        train(tiny_config(1), tmp_path / "x", progress=False)
    train(tiny_config(1), tmp_path / "x", fresh=True, progress=False)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(tiny_config(1), tmp_path / "y", resume=True, progress=False)


def test_config_round_trip_and_override_errors(tmp_path):
    cfg = apply_overrides(RunConfig(), ["model.width=24", "train.lr=0.01", "model.fourier_octaves=[0]"])
    cfg.save(tmp_path / "c.json")
    assert RunConfig.load(tmp_path / "c.json") == cfg
    with pytest.raises(ValueError, match="unknown field 'widht'"):
        apply_overrides(cfg, ["model.widht=3"])
    with pytest.raises(ValueError, match="expected an integer"):
        apply_overrides(cfg, ["model.width=wide"])
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides(cfg, ["model.width"])


def _reject_nan(constant):
    raise ValueError(f"not strict JSON: {constant}")


def test_cli_train_eval_sample(tmp_path, capsys):
    run = tmp_path / "run"
    sets = sum((["--set", s] for s in TINY), [])
    assert main(["train", "--data", "digits", "--out", str(run), "--steps", "3", "--quiet", *sets]) == 0
    for name in ("config.json", CHECKPOINT, "metrics.jsonl", "loss.png", "samples.png"):
        assert (run / name).exists(), name
    capsys.readouterr()
    for samples in ("2", "1"):  # one draw: no Monte Carlo spread, null rather than NaN
        assert main(["eval", str(run), "--samples", samples, "--json"]) == 0
        res = json.loads(capsys.readouterr().out, parse_constant=_reject_nan)
        assert res["n"] == 297 and np.isfinite(res["bpd"]) and res["stderr"] > 0
        assert res["bpd"] == pytest.approx(res["prior_bpd"] + res["recon_bpd"] + res["diffusion_bpd"])
    assert res["mc_std_bpd"] is None
    # samples in the data's own format; a picture only when asked
    assert main(["sample", str(run), "--n", "4", "--steps", "5", "-o", str(tmp_path / "s.npy"),
                 "--preview", str(tmp_path / "p.png")]) == 0
    x = np.load(tmp_path / "s.npy")
    assert x.shape == (4, 1, 8, 8) and x.dtype == np.int64 and x.min() >= 0 and x.max() < 17
    assert (tmp_path / "p.png").exists()
    assert main(["sample", str(run), "--n", "2", "--steps", "5", "-o", str(tmp_path / "s.png")]) == 0
    from PIL import Image

    assert [np.asarray(Image.open(tmp_path / f"s_{i}.png")).max() < 17 for i in range(2)] == [True, True]
    grid = tmp_path / "g.json"
    assert main(["grid", str(run), "--method", "score-optimal", "--steps", "4", "--check",
                 "-o", str(grid), "--plot", str(tmp_path / "g.png")]) == 0
    assert "max / min" in capsys.readouterr().out and (tmp_path / "g.png").exists()
    assert main(["sample", str(run), "--n", "4", "--sampler", "dpmpp2m", "--grid", str(grid),
                 "-o", str(tmp_path / "fast.npz")]) == 0
    assert np.load(tmp_path / "fast.npz")["x"].shape == (4, 1, 8, 8)
    # score-optimal inline: estimated once for these weights, cached in the run, reused for any step count
    costs = run / "grids" / "score-optimal-corrector.costs.json"
    assert costs.exists()  # written by `diffbits grid` above
    stamp = costs.stat().st_mtime_ns
    for steps in ("3", "6"):
        assert main(["sample", str(run), "--n", "2", "--sampler", "heun", "--grid", "score-optimal", "--steps", steps,
                     "-o", str(tmp_path / "so.npy")]) == 0
        assert (run / "grids" / f"score-optimal-corrector-{steps}.json").exists()
    assert costs.stat().st_mtime_ns == stamp
    capsys.readouterr()
    assert main(["sample", str(run), "--n", "2", "--steps", "3", "--schedule", "edm", "-o", str(tmp_path / "d.npy")]) == 0
    assert "--schedule is deprecated" in capsys.readouterr().err
    assert main(["sample", str(run), "--n", "4", "--sampler", "euler", "-o", str(tmp_path / "x.npy")]) == 2
    assert main(["sample", str(run), "--n", "4", "--grid", "cosin", "-o", str(tmp_path / "x.npy")]) == 2
    assert "choose from uniform-t" in capsys.readouterr().err
    assert main(["sample", str(run), "-o", str(tmp_path / "x.txt")]) == 2
    assert "write samples as .npy" in capsys.readouterr().err


def test_interrupted_training_says_where_it_stopped_and_resumes(tmp_path, capsys, monkeypatch):
    """Ctrl-C (here: raised by the 3rd step) saves a checkpoint at the step reached, says so, and
    --resume continues from it."""
    run = tmp_path / "run"
    real = Trainer.train_step

    def step(self, progress=0.0):
        if self.step == 2:
            raise KeyboardInterrupt
        return real(self, progress)

    monkeypatch.setattr(Trainer, "train_step", step)
    sets = sum((["--set", s] for s in TINY), [])
    assert main(["train", "--out", str(run), "--steps", "5", "--quiet", *sets]) == 130
    err = capsys.readouterr().err
    assert "stopped at step 2" in err and str(run / CHECKPOINT) in err and "--resume" in err
    assert load_checkpoint(run / CHECKPOINT)["step"] == 2
    monkeypatch.setattr(Trainer, "train_step", real)
    assert main(["train", "--out", str(run), "--steps", "5", "--quiet", "--resume"]) == 0
    assert load_checkpoint(run / CHECKPOINT)["step"] == 5


def test_cli_reports_bad_data_clearly(tmp_path, capsys):
    np.save(tmp_path / "f.npy", np.random.rand(4, 8))
    code = main(["train", "--data", str(tmp_path / "f.npy"), "--out", str(tmp_path / "r"), "--steps", "1"])
    assert code == 2
    assert "f.npy: floating-point data" in capsys.readouterr().err


def test_sampling_is_deterministic_under_a_seed(tmp_path):
    train(tiny_config(2), tmp_path / "s", progress=False)
    from diffbits.runs import load_run

    _, model = load_run(tmp_path / "s")
    draw = [model.sample(3, 10, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(draw[0], draw[1])
    assert not torch.equal(draw[0], model.sample(3, 10, generator=torch.Generator().manual_seed(8)))


def test_learning_rate_warms_up_then_holds_or_decays(tmp_path):
    cfg = apply_overrides(tiny_config(1), ["train.lr=0.01", "train.warmup=10"])
    trainer = Trainer.create(cfg, tmp_path)
    assert trainer.lr_at(0) == pytest.approx(0.001) and trainer.lr_at(9) == pytest.approx(0.01)
    assert trainer.lr_at(500, progress=0.9) == pytest.approx(0.01)  # none: constant, as VDM
    trainer.cfg.train.lr_decay = "cosine"
    assert trainer.lr_at(500, progress=0.5) == pytest.approx(0.005)
    assert trainer.lr_at(500, progress=1.0) == pytest.approx(0.0, abs=1e-12)
    trainer.cfg.train.lr_decay = "step"
    with pytest.raises(ValueError, match="lr_decay"):
        trainer.lr_at(0)


def test_gamma_0_null_in_config_means_the_default_for_the_levels():
    cfg = apply_overrides(RunConfig(), ["model.gamma_0=null"])
    assert cfg.model.gamma_0 is None
    assert apply_overrides(cfg, ["model.gamma_0=-9"]).model.gamma_0 == -9.0


def test_online_score_optimal_grid_is_saved_and_resumes_exactly(tmp_path):
    grid_sets = ["train.grid_every=2", "train.grid_steps=5"]
    train(apply_overrides(tiny_config(4), grid_sets), tmp_path / "a", progress=False)
    train(apply_overrides(tiny_config(2), grid_sets), tmp_path / "b", progress=False)
    train(apply_overrides(tiny_config(4), grid_sets), tmp_path / "b", resume=True, progress=False)
    a, b = load_checkpoint(tmp_path / "a" / CHECKPOINT), load_checkpoint(tmp_path / "b" / CHECKPOINT)
    assert torch.equal(a["grid_t"], b["grid_t"])
    t = a["grid_t"]
    assert len(t) == 6 and t[0] == 1 and t[-1] == 0 and (t.diff() < 0).all()
    saved = json.loads((tmp_path / "a" / "grid.json").read_text())
    assert saved["step"] == 4 and saved["t"] == t.tolist()


def test_validation_keeps_the_ema_weights_with_the_best_held_out_bound(tmp_path):
    from diffbits.evaluate import evaluate
    from diffbits.runs import load_run
    from diffbits.train import split_validation

    data = load_dataset("digits", "train")
    a, b = split_validation(data, 100, seed=0)
    again, held = split_validation(data, 100, seed=0)
    assert len(b) == 100 and len(a) == len(data) - 100 and torch.equal(b.x, held.x) and torch.equal(a.x, again.x)
    rows = {tuple(r) for r in data.x.flatten(1).tolist()}
    assert {tuple(r) for r in a.x.flatten(1).tolist()} | {tuple(r) for r in b.x.flatten(1).tolist()} <= rows
    with pytest.raises(ValueError, match="half"):
        split_validation(data, len(data) // 2 + 1, seed=0)

    cfg = apply_overrides(RunConfig(), ["model.width=8", "model.depth=1", "train.batch_size=16", "train.sample_steps=2",
                                        "train.validation=64", "train.validations=4", "train.lr=0.01"])
    cfg.train.steps = 12
    train(cfg, tmp_path / "r", progress=False)
    val = [json.loads(r) for r in (tmp_path / "r" / "validation.jsonl").read_text().splitlines()]
    assert len(val) == 4 and [r["step"] for r in val] == sorted(r["step"] for r in val) and val[-1]["step"] == 12
    best = min(val, key=lambda r: r["val_bpd"])
    ck = load_checkpoint(tmp_path / "r" / CHECKPOINT)
    assert ck["best_step"] == best["step"] and ck["best_bpd"] == pytest.approx(best["val_bpd"])
    _, model = load_run(tmp_path / "r", "cpu")  # the kept weights, not necessarily the last
    _, held = split_validation(data, 64, seed=cfg.train.seed)
    assert evaluate(model, held, samples=1, seed=cfg.train.seed, progress=False)["bpd"] == pytest.approx(best["val_bpd"])


def test_importing_diffbits_flushes_subnormals_in_every_thread():
    """Subnormal floats slow a CPU step 1.3x on a converged network (precision.flush_denormals);
    after ``import diffbits`` they are zero, also in torch's worker threads, and without it
    they are not (so this test can fail)."""
    probe = ("import torch{imp}; torch.set_num_threads(2); "
             "print(int((torch.full((1 << 20,), 1e-39) * 1.0).count_nonzero()))")
    count = lambda imp: int(subprocess.run([sys.executable, "-c", probe.format(imp=imp)], check=True,  # noqa: E731
                                           capture_output=True, text=True).stdout)
    if not diffbits.FLUSH_DENORMALS:
        pytest.skip("this CPU has no flush-to-zero mode")
    assert count("") == 1 << 20 and count(", diffbits") == 0
