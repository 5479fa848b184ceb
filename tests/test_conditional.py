"""Class-conditional models: labels from the data, label dropout, classifier-free guidance."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from diffbits.cli import main
from diffbits.config import RunConfig, apply_overrides
from diffbits.data import DataError, load_dataset
from diffbits.runs import load_run
from diffbits.train import Trainer, train

SMALL = ["model.width=16", "model.depth=1", "train.batch_size=32", "train.log_every=1", "train.sample_steps=3",
         "train.warmup=1"]


def conditional_trainer(tmp_path, steps: int = 4) -> Trainer:
    cfg = apply_overrides(RunConfig(), [*SMALL, "labels=target"])
    trainer = Trainer.create(cfg, tmp_path / "r")
    for _ in range(steps):  # the output layers start at zero: move them
        trainer.train_step()
    return trainer


def test_labels_come_from_digits_an_npz_key_and_class_folders(tmp_path):
    d = load_dataset("digits", "test", labels="target")
    assert d.y.shape == (297,) and d.classes == [str(i) for i in range(10)]
    assert load_dataset("digits", "test").y is None
    x = np.random.default_rng(0).integers(0, 4, (6, 5, 5))
    np.savez(tmp_path / "a.npz", images=x, y=np.array([0, 1, 2, 0, 1, 2]))
    a = load_dataset(str(tmp_path / "a.npz:images") + "[1:4]", labels="y")
    assert a.y.tolist() == [1, 2, 0] and torch.equal(a.x[:, 0], torch.from_numpy(x[1:4]))
    with pytest.raises(DataError, match="one per example"):
        np.savez(tmp_path / "b.npz", images=x, y=np.zeros(5, int))
        load_dataset(str(tmp_path / "b.npz:images"), labels="y")
    for name, n in (("cat", 2), ("ant", 3)):
        (tmp_path / "f" / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((4, 4), 10 * i, np.uint8)).save(tmp_path / "f" / name / f"{i}.png")
    f = load_dataset(str(tmp_path / "f"), labels="folders")
    assert f.classes == ["ant", "cat"] and f.y.tolist() == [0, 0, 0, 1, 1]


def test_label_dropout_replaces_the_given_share_by_no_label(tmp_path):
    trainer = conditional_trainer(tmp_path, steps=0)
    k = trainer.cfg.model.num_classes
    assert k == 10
    drops = []
    for step in range(40):
        trainer.step = step
        *_, drop = trainer.step_noise()
        y = trainer.labels(torch.arange(32), drop)
        drops.append((y == k).float().mean().item())
        assert torch.equal(y[y != k], trainer.data.y[:32][y != k])
    assert np.mean(drops) == pytest.approx(0.1, abs=0.03)


def test_guidance_zero_is_the_unconditional_model_and_one_the_conditional(tmp_path):
    model = conditional_trainer(tmp_path).model.eval()
    y = torch.arange(6) % 10

    def draw(cond, guidance):
        return model.sample(6, 4, cond=cond, guidance=guidance, generator=torch.Generator().manual_seed(3),
                            decode=False)

    assert torch.equal(draw(y, 0.0), draw(None, 1.0))
    z, g = torch.randn(6, 1, 8, 8), torch.full((6,), -2.0)
    assert torch.equal(model.guided_eps(y, 1.0)(z, g), model.eps_hat(z, g, y))
    eps_c, eps_u = model.eps_hat(z, g, y), model.eps_hat(z, g)
    for w in (0.5, 3.0):  # one batched call of both halves; only batch-size rounding may differ
        torch.testing.assert_close(model.guided_eps(y, w)(z, g), eps_u + w * (eps_c - eps_u), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(draw(y, 3.0), draw(y, 1.0))


def test_the_bound_of_a_conditional_model_uses_the_labels(tmp_path):
    model = conditional_trainer(tmp_path, steps=8).model.eval()
    x = load_dataset("digits", "test").x[:16]
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    with torch.no_grad():
        right = model.bound(x, cond=load_dataset("digits", "test", labels="target").y[:16], generator=gen()).bpd
        none = model.bound(x, generator=gen()).bpd
    assert not torch.equal(right, none)


def test_conditional_run_through_the_cli(tmp_path, capsys):
    run = tmp_path / "c"
    cfg = apply_overrides(RunConfig(), SMALL)
    cfg.train.steps, cfg.labels = 3, "target"
    train(cfg, run, progress=False)
    saved, model = load_run(run)
    assert saved.model.num_classes == 10 and saved.classes[3] == "3" and model.num_classes == 10
    assert main(["eval", str(run), "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "conditional" in res and np.isfinite(res["bpd"])
    out = tmp_path / "g.png"
    assert main(["sample", str(run), "--class", "3", "--class", "7", "--n", "4", "--steps", "3",
                 "--guidance", "2", "--preview", str(out), "-o", str(tmp_path / "g.npy")]) == 0
    assert out.exists() and np.load(tmp_path / "g.npy").shape == (8, 1, 8, 8)
    capsys.readouterr()
    assert main(["sample", str(run), "--class", "12", "--preview", str(out)]) == 2
    assert "unknown class" in capsys.readouterr().err

    x = load_dataset("digits", "test").x[:2].numpy()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", x + np.random.default_rng(0).normal(0, 2, x.shape))
    np.save(tmp_path / "m.npy", np.arange(64).reshape(8, 8) >= 32)
    restore = {"denoise": ["--noise-sigma", "2", "--samples", "2"], "inpaint": ["--mask", str(tmp_path / "m.npy")]}
    for cmd, extra in restore.items():
        data = str(tmp_path / ("y.npy" if cmd == "denoise" else "x.npy"))
        args = [cmd, str(run), data, *extra, "--steps", "3", "-o", str(tmp_path / f"{cmd}.npy")]
        assert main([*args, "--class", "3", "--guidance", "2"]) == 0  # one class for every input
        assert main([*args, "--class", "3", "--class", "7"]) == 0  # one per input
        assert np.load(tmp_path / f"{cmd}.npy").shape == ((2, 2, 1, 8, 8) if cmd == "denoise" else (2, 1, 8, 8))
        capsys.readouterr()
        assert main([*args, "--class", "1", "--class", "2", "--class", "3"]) == 2
        assert "3 --class values for 2 inputs" in capsys.readouterr().err
        assert main([*args, "--guidance", "3"]) == 2
        assert "--guidance needs --class" in capsys.readouterr().err
