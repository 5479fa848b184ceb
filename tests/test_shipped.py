"""Shipped models: exported runs load by name, keep their fingerprint, and code real files."""
import json

import numpy as np
import pytest
import torch

from diffbits import shipped
from diffbits.cli import main
from diffbits.config import RunConfig, apply_overrides
from diffbits.runs import load_run, model_fingerprint
from diffbits.train import train

TINY = ["model.width=8", "model.depth=1", "train.batch_size=16", "train.sample_steps=2"]


def test_an_exported_run_loads_by_name_with_the_same_weights(tmp_path, monkeypatch, capsys):
    cfg = apply_overrides(RunConfig(), [*TINY, "train.validation=50"])  # weights chosen on held-out digits
    cfg.train.steps = 2
    train(cfg, tmp_path / "run", progress=False)
    monkeypatch.setattr(shipped, "SHIPPED", tmp_path / "models")
    assert main(["export", str(tmp_path / "run"), "-o", str(tmp_path / "models" / "tiny"), "--data", "digits",
                 "--command", "diffbits train --data digits --steps 2"]) == 0
    a, b = load_run(tmp_path / "run", "cpu"), load_run("tiny", "cpu")
    assert model_fingerprint(*a) == model_fingerprint(*b)
    x = torch.randn(3, 1, 8, 8)
    g = torch.full((3,), -2.0)
    assert torch.equal(a[1].eps_hat(x, g), b[1].eps_hat(x, g))
    card = json.loads((tmp_path / "models" / "tiny" / shipped.CARD).read_text())
    assert card["steps"] == 2 and card["fingerprint"] == model_fingerprint(*a)
    assert card["weights_step"] in (1, 2) and np.isfinite(card["validation_bpd"])  # the card says which weights ship
    assert f"the weights are step {card['weights_step']}'s" in (tmp_path / "models" / "tiny" / "README.md").read_text()
    capsys.readouterr()
    assert main(["models"]) == 0 and capsys.readouterr().out.startswith("tiny: digits")
    assert main(["compress", "--model", "nonesuch", str(tmp_path), "-o", str(tmp_path / "x.dbits")]) == 2
    assert "tiny" in capsys.readouterr().err  # the error lists what ships


def test_a_half_precision_export_is_what_its_card_measures(tmp_path, monkeypatch):
    """``--weights float16`` halves the network's large tensors, keeps the schedule in float32, and
    the shipped model computes exactly what the exporter fingerprinted and measured."""
    cfg = apply_overrides(RunConfig(), ["model.width=16", *TINY[1:]])
    cfg.train.steps = 2
    train(cfg, tmp_path / "run", progress=False)
    monkeypatch.setattr(shipped, "SHIPPED", tmp_path / "models")
    for w in ("float32", "float16"):
        assert main(["export", str(tmp_path / "run"), "-o", str(tmp_path / "models" / w), "--data", "digits",
                     "--command", "diffbits train", "--weights", w]) == 0
    full, half = load_run("float32", "cpu"), load_run("float16", "cpu")
    size = {w: (tmp_path / "models" / w / shipped.WEIGHTS).stat().st_size for w in ("float32", "float16")}
    assert size["float16"] < 0.6 * size["float32"]
    card = json.loads((tmp_path / "models" / "float16" / shipped.CARD).read_text())
    assert card["weights"] == "float16" and card["fingerprint"] == model_fingerprint(*half)
    assert card["fingerprint"] != model_fingerprint(*full)
    for k, v in half[1].state_dict().items():
        ref = full[1].state_dict()[k]
        assert v.dtype == ref.dtype  # computed in float32
        if k.startswith("denoiser.") and v.numel() >= 1024:
            assert torch.equal(v, ref.half().float())
        else:
            assert torch.equal(v, ref)  # the schedule and small tensors are untouched
    x, g = torch.randn(3, 1, 8, 8), torch.full((3,), -2.0)
    assert torch.allclose(half[1].eps_hat(x, g), full[1].eps_hat(x, g), atol=1e-2)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits", "mnist"])
def test_a_shipped_model_codes_its_held_out_data_below_its_classical_code(name, tmp_path, capsys):
    """A real round trip with the model as shipped: 40 held-out examples in one .npy, T = 50."""
    if name not in shipped.shipped():
        pytest.fail(f"the shipped model {name!r} is missing from {shipped.SHIPPED}")
    card = shipped.card(name)
    # held-out examples that travel with the model (MNIST itself does not ship with any dependency)
    x = np.load(shipped.find(name) / card["examples"])[:40]
    np.save(tmp_path / "held_out.npy", x)
    assert main(["compress", "--model", name, str(tmp_path / "held_out.npy"), "-o", str(tmp_path / "h.dbits"),
                 "--T", "50", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["items"][0]["stored"] == "model"
    assert rep["total"]["bytes"] < rep["total"]["classical_bytes"]
    assert main(["decompress", str(tmp_path / "h.dbits"), "--model", name, "-o", str(tmp_path / "back")]) == 0
    back = np.load(tmp_path / "back" / "held_out.npy")
    assert back.dtype == x.dtype and np.array_equal(back, x)
