"""The training recipe: derived from the data, the budget and the device; deterministic; never
overriding what the user set; a wall-clock run warms up early and decays at its end."""
import json

import pytest

from diffbits import recipe
from diffbits.build import attention_level
from diffbits.checkpoint import CHECKPOINT, CHECKPOINT_STABLE, load_checkpoint
from diffbits.cli import main
from diffbits.config import RunConfig, apply_overrides
from diffbits.train import train

CPU = recipe.profile_of("cpu", 2)
PANEL = {  # one of each kind of data
    "digits": recipe.Facts((1, 8, 8), 17, 1500, minutes=8, device=CPU),
    "mnist": recipe.Facts((1, 28, 28), 256, 9000, minutes=8, device=CPU),
    "photos": recipe.Facts((3, 16, 16), 256, 3600, minutes=2, device=CPU),
    "speech": recipe.Facts((1, 8192), 65536, 500, minutes=8, device=CPU),
    "arrays": recipe.Facts((64,), 256, 20000, minutes=8, device=CPU),
    "blur": recipe.Facts((1, 8, 8), 17, 1500, steps=500, device=CPU, process="blur"),
    "gpu": recipe.Facts((3, 32, 32), 256, 50000, minutes=60, device=recipe.profile_of("cuda", 16)),
}


def values(decisions) -> dict:
    return {d.field: d.value for d in decisions}


@pytest.mark.parametrize("name", PANEL)
def test_the_recipe_is_a_function_of_data_budget_and_device(name):
    facts = PANEL[name]
    first, again = recipe.decide(facts), recipe.decide(facts)
    assert first == again
    v = values(first)
    assert all(d.reason for d in first) and len(v) == len(first)  # one decision per field, each with a reason
    cfg, _ = recipe.apply(RunConfig(), first, set())
    RunConfig.from_dict(json.loads(cfg.to_json()))  # every decided value is a valid config value
    assert 0 < v["train.warmup_fraction"] < 0.1 and v["train.lr_decay"] == "wsd"
    convolved = len(facts.shape) > 1 or facts.shape[0] >= recipe.VECTOR_CONV_MIN
    assert v["model.head"] == ("categorical" if facts.levels <= 64 and facts.process == "gaussian"
                               and convolved else "eps")


def test_the_recipe_follows_the_data_and_the_budget():
    v = {k: values(recipe.decide(f)) for k, f in PANEL.items()}
    assert v["digits"]["model.net"] == v["mnist"]["model.net"] == v["photos"]["model.net"] == "score_unet"
    assert v["gpu"]["model.net"] == "unet"  # 32x32 and larger: downsampled
    assert v["arrays"]["model.net"] == "score_unet" and v["speech"]["model.net"] == "unet"  # 64-vectors: 1-D conv
    assert values(recipe.decide(recipe.Facts((13,), 256, 5000, minutes=8, device=CPU)))["model.net"] == "mlp"
    assert attention_level((3, 32, 32), 4) == (1,)  # DDPM's 16x16 level
    assert attention_level((1, 8192), 6) == (5,) and attention_level((1, 8192), 3) == ()  # never at 4096 positions
    assert v["digits"]["train.batch_size"] > v["mnist"]["train.batch_size"] > v["speech"]["train.batch_size"]
    longer = values(recipe.decide(recipe.Facts((1, 28, 28), 256, 9000, minutes=120, device=CPU)))
    size = lambda d: (d["model.width"], d.get("model.res_blocks", d.get("model.depth")))  # noqa: E731
    assert size(longer) >= size(v["mnist"])  # more time buys at least as large a network
    assert longer["train.ema_decay"] >= v["mnist"]["train.ema_decay"]  # and a longer EMA horizon
    assert size(v["gpu"]) > size(values(recipe.decide(recipe.Facts((3, 32, 32), 256, 50000, minutes=60, device=CPU))))
    tiny = values(recipe.decide(recipe.Facts((1, 8, 8), 17, 200, minutes=8, device=CPU)))
    assert tiny["model.dropout"] > 0 and tiny["train.batch_size"] <= 64  # few examples: regularise


def test_many_passes_over_enough_examples_hold_some_out_for_early_stopping():
    hour = values(recipe.decide(recipe.Facts((1, 8, 8), 17, 1500, minutes=60, device=CPU)))
    assert hour["train.validation"] == 150  # hundreds of passes over 1,500 digits: 10% held out
    big = values(recipe.decide(recipe.Facts((1, 8, 8), 17, 60000, minutes=60, device=CPU)))
    assert big["train.validation"] in (0, recipe.VALIDATION_MAX)  # capped, when it holds any out
    few = values(recipe.decide(recipe.Facts((1, 8, 8), 17, 200, minutes=60, device=CPU)))
    assert few["train.validation"] == 0  # 20 examples would be too noisy to choose by
    short = values(recipe.decide(recipe.Facts((1, 28, 28), 256, 9000, minutes=2, device=CPU)))
    assert short["train.validation"] == 0  # a few passes: the last weights are the best


def test_a_field_the_user_set_is_never_overridden():
    decisions = recipe.decide(PANEL["mnist"])
    cfg = apply_overrides(RunConfig(), ["model.width=40", "train.lr=0.0005", "model.head=eps", "train.lr_decay=none"])
    user = {"model.width", "train.lr", "model.head", "train.lr_decay"}
    cfg, applied = recipe.apply(cfg, decisions, user)
    assert (cfg.model.width, cfg.train.lr, cfg.model.head, cfg.train.lr_decay) == (40, 0.0005, "eps", "none")
    assert not user & {d.field for d in applied}
    assert {d["field"] for d in cfg.recipe} == {d.field for d in applied}  # what ran is saved with the run
    # the library's default: a field that differs from its default counts as set by the user
    assert recipe.changed_fields(apply_overrides(RunConfig(), ["model.width=40", "train.lr=0.0005"])) == \
        {"model.width", "train.lr"}


def test_the_command_line_prints_each_decision_and_keeps_what_was_set(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "--data", "digits[:64]", "-o", str(run), "--steps", "4", "--quiet",
                 "--set", "model.width=8", "--set", "train.sample_steps=3"]) == 0
    out = capsys.readouterr().out
    saved = RunConfig.load(run / "config.json")
    assert saved.model.width == 8 and "model.width" not in {d["field"] for d in saved.recipe}
    assert saved.recipe and all(f"recipe: {d['field']} = " in out for d in saved.recipe)
    assert saved.model.head == "categorical" and saved.train.lr_decay == "wsd"
    assert main(["train", "--data", "digits[:64]", "-o", str(tmp_path / "plain"), "--steps", "2", "--quiet",
                 "--recipe", "none", "--set", "model.width=8", "--set", "train.sample_steps=3"]) == 0
    plain = RunConfig.load(tmp_path / "plain" / "config.json")
    assert not plain.recipe and plain.model.head == RunConfig().model.head


def test_a_warm_up_set_in_steps_is_not_resized(tmp_path):
    run = tmp_path / "r"
    assert main(["train", "--data", "digits[:64]", "-o", str(run), "--steps", "4", "--quiet", "--set", "model.width=8",
                 "--set", "train.sample_steps=2", "--set", "train.log_every=1", "--set", "train.warmup=7"]) == 0
    saved = RunConfig.load(run / "config.json")
    assert saved.train.warmup == 7 and not saved.train.warmup_fraction
    assert learning_rates(run)[0] == pytest.approx(saved.train.lr / 7)


class TickClock:
    """A fake wall clock: every reading moves it on by ``tick`` seconds, so a run's length in
    steps is fixed by its budget whatever the machine's speed."""

    def __init__(self, tick: float):
        self.now, self.tick = 1000.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def tiny(minutes: float = 0.0, steps: int = 0, **train) -> RunConfig:
    cfg = apply_overrides(RunConfig(data="digits[:64]"), [
        "model.width=8", "model.depth=1", "train.batch_size=8", "train.log_every=1", "train.sample_steps=2",
        "train.checkpoint_minutes=1000"])
    cfg.train.minutes, cfg.train.steps = minutes, steps
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def learning_rates(run) -> list[float]:
    return [json.loads(r)["lr"] for r in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("tick,provisional", [(0.2, 500), (0.2, 1), (0.6, 100)])
def test_a_wall_clock_run_finishes_its_warm_up_within_the_first_tenth_of_its_steps(tmp_path, tick, provisional):
    """Whatever warm-up the recipe predicted (``provisional``), the step rate measured in the first
    seconds sizes it to 5% of the steps that fit: full learning rate within the first 10% of the
    steps, and the decay ends at the end of the budget."""
    cfg = tiny(minutes=1.0, warmup=provisional, warmup_fraction=0.05, lr_decay="wsd")
    train(cfg, tmp_path / "r", progress=False, clock=TickClock(tick))
    lrs = learning_rates(tmp_path / "r")
    n, peak = len(lrs), max(lrs)
    assert n > 20
    assert peak == pytest.approx(cfg.train.lr)
    assert next(i for i, lr in enumerate(lrs) if lr >= peak * (1 - 1e-9)) < 0.1 * n
    assert lrs[-1] < 0.05 * peak
    assert RunConfig.load(tmp_path / "r" / "config.json").recipe[-1]["field"] == "train.warmup"  # saved with the run


def test_wsd_holds_then_decays_and_resume_extends_the_run_without_a_spike(tmp_path):
    """A wsd run keeps its state from when the decay began; --resume with a new budget continues
    from there at the full learning rate (never from the decayed state) and decays at its own end."""
    run = tmp_path / "r"
    cfg = tiny(minutes=1.0, warmup=2, lr_decay="wsd", decay_fraction=0.25)
    train(cfg, run, progress=False, clock=TickClock(0.25))
    lrs = learning_rates(run)
    stable = load_checkpoint(run / CHECKPOINT_STABLE)["step"]
    assert 0.7 * len(lrs) < stable < 0.8 * len(lrs)
    assert lrs[2:stable] == [pytest.approx(cfg.train.lr)] * (stable - 2)  # constant: the stable phase
    assert all(a >= b for a, b in zip(lrs[stable:], lrs[stable + 1:])) and lrs[-1] < 0.05 * cfg.train.lr

    said = []
    train(tiny(minutes=0.5), run, resume=True, progress=False, clock=TickClock(0.25), say=said.append)
    assert any(f"resuming from step {stable}" in s for s in said)
    after = learning_rates(run)
    assert after[:stable] == lrs[:stable]  # one metrics stream: the decayed rows were dropped
    resumed = after[stable:]
    assert resumed[0] == pytest.approx(cfg.train.lr)  # no jump up from a decayed rate: it goes on where it held
    assert max(resumed) <= cfg.train.lr * (1 + 1e-9) and resumed[-1] < 0.05 * cfg.train.lr
    assert load_checkpoint(run / CHECKPOINT)["step"] == len(after)
    assert load_checkpoint(run / CHECKPOINT_STABLE)["step"] > stable  # this invocation's own decay point


def test_what_the_user_set_shapes_the_other_decisions():
    """A network, batch or head the user chose is the one the recipe sizes and tunes around."""
    base = values(recipe.decide(PANEL["mnist"]))
    mine = values(recipe.decide(PANEL["mnist"], {"model.net": "score_unet", "train.batch_size": 128,
                                                 "model.width": 24}))
    assert not {"model.net", "train.batch_size", "model.width"} & set(mine)
    assert "model.channel_mult" not in mine and "model.depth" in mine  # a score_unet's depth, not a unet's blocks
    assert mine["train.lr"] == 3e-3 != base["train.lr"]  # the learning rate follows the user's batch
    assert mine["train.warmup"] < base["train.warmup"]  # bigger batches at full resolution: fewer steps fit


@pytest.mark.parametrize("extra", [["--process", "blur"], ["--labels", "target"], ["--set", "model.net=continuous_unet"]])
def test_the_recipe_trains_every_process_and_network(tmp_path, extra):
    """Blur models, class-conditional models and a network the user chose all take the recipe."""
    run = tmp_path / "r"
    assert main(["train", "--data", "digits[:64]", "-o", str(run), "--steps", "2", "--quiet",
                 "--set", "train.sample_steps=2", *extra]) == 0
    saved = RunConfig.load(run / "config.json")
    fields = {d["field"] for d in saved.recipe}
    assert "model.width" in fields and "train.lr" in fields
    if "--process" in extra:
        assert saved.model.head == "eps"  # the blur model predicts x_0 through v: no categorical head
    if "model.net=continuous_unet" in extra:
        assert saved.model.net == "continuous_unet" and "model.net" not in fields


def test_recordings_are_cut_into_the_recipes_examples(tmp_path):
    """A folder of WAV files: the recipe cuts it into short examples and trains on those."""
    import wave

    import numpy as np

    (tmp_path / "wavs").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        with wave.open(str(tmp_path / "wavs" / f"{i}.wav"), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
            w.writeframes((rng.normal(0, 2000, 20000)).astype("<i2").tobytes())
    run = tmp_path / "r"
    assert main(["train", "--data", str(tmp_path / "wavs"), "-o", str(run), "--steps", "2", "--quiet",
                 "--set", "train.sample_steps=2"]) == 0
    saved = RunConfig.load(run / "config.json")
    assert saved.crop == recipe.SIGNAL_CROP and saved.shape == [1, recipe.SIGNAL_CROP]
    assert saved.model.net == "score_unet" and not saved.model.attention  # 1024 positions: no attention


def test_long_vectors_train_as_one_channel_signals(tmp_path):
    """The recipe convolves along 64-vectors (nets.SignalView): the same network as on a (1, 64)
    signal, trained, evaluated and sampled with the vectors' own shape."""
    import numpy as np
    import torch

    from diffbits.build import build_denoiser
    from diffbits.config import ModelConfig
    from diffbits.nets import SignalView

    net = build_denoiser(ModelConfig(net="score_unet", width=8, depth=1), (64,), 256)
    assert isinstance(net, SignalView)
    z, g = torch.randn(3, 64), torch.full((3,), -1.0)
    assert torch.equal(net(z, g), net.net(z[:, None], g)[:, 0])
    np.save(tmp_path / "v.npy", np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    run = tmp_path / "r"
    assert main(["train", "--data", str(tmp_path / "v.npy"), "-o", str(run), "--steps", "2", "--quiet",
                 "--set", "train.sample_steps=2"]) == 0
    assert RunConfig.load(run / "config.json").model.net == "score_unet" and (run / "samples.png").exists()
    assert main(["eval", str(run), "--data", str(tmp_path / "v.npy"), "--json"]) == 0
