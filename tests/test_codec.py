"""Bits-back codec: bit-exact round trips, a rate at the entropy for an exact model, and every
kind of damaged or mismatched input rejected with a clear error."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from diffbits.cli import main
from diffbits.codec import BitsBackCoder, ContainerError, compress, decompress
from diffbits.codec.files import bound_bpd
from diffbits.config import RunConfig, apply_overrides
from diffbits.schedules import FixedLinear
from diffbits.train import train
from diffbits.vdm import VDM

from .helpers import ExactCategoricalDenoiser, sample_categorical

TINY = ["model.width=8", "model.depth=1", "train.batch_size=16", "train.log_every=1", "train.sample_steps=5"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny digits run (8x8, 17 levels), trained for a few steps."""
    cfg = apply_overrides(RunConfig(), TINY)
    cfg.train.steps = 3
    path = tmp_path_factory.mktemp("codec") / "run"
    train(cfg, path, progress=False)
    return path


@pytest.fixture(scope="module")
def other_run(tmp_path_factory):
    cfg = apply_overrides(RunConfig(), TINY + ["train.seed=7"])
    cfg.train.steps = 3
    path = tmp_path_factory.mktemp("codec") / "other"
    train(cfg, path, progress=False)
    return path


def _uniform_vdm(levels=5, shape=(1, 3, 3)):
    """The exact denoiser of independent uniform levels: any input is typical for it."""
    probs = torch.full(shape + (levels,), 1.0 / levels)
    return VDM(ExactCategoricalDenoiser(probs), FixedLinear(-6.0, 5.0), levels=levels, data_shape=shape)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 9), st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_round_trip_is_bit_exact_on_random_inputs(n, T, seed):
    model = _uniform_vdm()
    x = np.random.default_rng(seed).integers(0, 5, size=(n, 1, 3, 3))
    coder = BitsBackCoder(model, T=T, batch=4)
    words, rep = coder.encode(x)
    assert np.array_equal(coder.decode(words, rep["layout"], n), x)
    assert sum(rep["batches"]) == n - rep["layout"]["warm"] and max(rep["batches"], default=1) <= 4


@pytest.mark.slow
def test_rate_meets_the_entropy_with_an_exact_denoiser():
    """Independent 16-level coordinates of known entropy, 400 items: the chain's net rate is within
    1% of their ideal code length, and the actual rate (every bit: warm start, initial bits, growing
    batches) within 1.5%. The rest is the T-step bound's own gap (~0.4% at T = 2000) and constriction's
    24-bit quantisation (a few 1e-6 bits per symbol, 2T symbols per dimension)."""
    weights = torch.linspace(1.0, 3.0, 16)
    probs = (weights / weights.sum()).repeat(32, 1)
    model = VDM(ExactCategoricalDenoiser(probs), FixedLinear(-9.0, 5.0), levels=16, data_shape=(32,))
    x = sample_categorical(probs, 400, seed=0).numpy()
    ideal = -np.log2(probs.numpy()[np.arange(32), x]).sum(1)
    coder = BitsBackCoder(model, T=2000, batch=400)
    words, rep = coder.encode(x)
    warm = rep["layout"]["warm"]
    chain_bits = 32 * (len(words) - rep["initial_words"] - rep["warm_words"])
    assert chain_bits == pytest.approx(ideal[warm:].sum(), rel=0.01)
    assert 32 * len(words) == pytest.approx(ideal.sum(), rel=0.015)
    assert 0 < warm < 10 and 32 * rep["initial_words"] < 32 * 8
    assert np.array_equal(coder.decode(words, rep["layout"], len(x)), x)
    for term, v in rep["terms"].items():  # every term moves what its information content says
        assert v["actual"] == pytest.approx(v["ideal"], rel=1e-3, abs=64), term


@pytest.mark.parametrize("resolution", [1.0, 4.0, 16.0])
def test_chain_spends_its_bound_with_few_steps_and_an_exact_denoiser(resolution):
    """At T = 20 each step's p is far narrower than the true reverse step, so the bits its pushes leave
    on the stack are far from uniform. Popped straight from them, q's draws were over-dispersed and
    the chain spent 1.04-1.14x its bound (the finer the lattice, the more); with the stack mixed before
    every pop (codec.mix) it spends the bound, here computed exactly in t (every step, 8 noises each)."""
    weights = torch.linspace(1.0, 3.0, 16)
    probs = (weights / weights.sum()).repeat(32, 1)
    model = VDM(ExactCategoricalDenoiser(probs), FixedLinear(-9.0, 5.0), levels=16, data_shape=(32,))
    x = sample_categorical(probs, 400, seed=0)
    T = 20
    bound = bound_bpd(model, x.numpy(), T, draws=8 * T)  # every step 8 times
    words, rep = BitsBackCoder(model, T=T, resolution=resolution).encode(x.numpy())
    warm = rep["layout"]["warm"]
    chain_bpd = 32 * (len(words) - rep["initial_words"] - rep["warm_words"]) / ((len(x) - warm) * 32)
    assert chain_bpd / bound[warm:].mean() == pytest.approx(1.0, abs=0.02)


def test_mixing_is_a_bijection_that_makes_skewed_words_look_uniform():
    from diffbits.codec.mix import mix_words

    rng = np.random.default_rng(0)
    for n in (2, 3, 17, 4096):
        w = rng.integers(0, 2**16, n)
        m = mix_words(w, key=n)
        assert m.max() < 2**16 and np.array_equal(mix_words(m, key=n, inverse=True), w)
    flipped = w.copy()
    flipped[5] ^= 1
    assert (mix_words(flipped, key=4096) != m).sum() > 100  # one bit reaches hundreds of words
    # positions piled in the tails (as a too-narrow p's pushes leave them) over uniform low bits
    top = np.round(rng.beta(0.3, 0.3, 4096) * 255).astype(np.int64)
    skewed = (top << 8) | rng.integers(0, 256, 4096)

    def chi2_top_nibble(v):
        h = np.bincount(v >> 12, minlength=16)
        return float(((h - 256) ** 2 / 256).sum())

    assert chi2_top_nibble(skewed) > 1000
    assert chi2_top_nibble(mix_words(skewed, key=1)) < 37.7  # 15 degrees of freedom, p = 0.001


def test_batches_grow_with_the_examples_coded_and_the_decoder_derives_them():
    from diffbits.codec.bitsback import GROWTH_UNIT, batch_sizes

    sizes = batch_sizes(500, 3, 64, GROWTH_UNIT // 4)
    assert sum(sizes) == 500 and max(sizes) == 64 and sizes[0] == 1
    assert all(b <= max(1, (3 + a) // 4) or b == 64 for b, a in zip(sizes, np.cumsum([0, *sizes[:-1]])))
    assert sizes == sorted(sizes[:-1]) + sizes[-1:]  # non-decreasing but for the remainder
    assert batch_sizes(0, 1, 64, 10) == []


def _digits(n, seed=0):
    return np.random.default_rng(seed).integers(0, 17, size=(n, 8, 8)).astype(np.uint8)


@pytest.mark.slow
def test_files_round_trip_with_their_names_in_another_process(run, tmp_path):
    a = _digits(5)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "b.npz", first=_digits(2, 1).astype(np.int16), second=_digits(1, 2)[0])
    Image.fromarray(_digits(1, 3)[0]).save(tmp_path / "c.png")
    out = tmp_path / "x.dbits"
    assert main(["compress", "--model", str(run), str(tmp_path / "a.npy"), str(tmp_path / "b.npz"),
                 str(tmp_path / "c.png"), "-o", str(out), "--T", "8", "--draws", "1", "--json"]) == 0
    code = ("import sys; from diffbits.cli import main; "
            f"sys.exit(main(['decompress', {str(out)!r}, '--model', {str(run)!r}, '-o', {str(tmp_path / 'back')!r}]))")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    back = tmp_path / "back"
    b = np.load(back / "a.npy")
    assert b.dtype == a.dtype and np.array_equal(b, a)
    with np.load(tmp_path / "b.npz") as z0, np.load(back / "b.npz") as z1:
        assert z0.files == z1.files and all(z0[k].dtype == z1[k].dtype and np.array_equal(z0[k], z1[k]) for k in z0.files)
    assert np.array_equal(np.asarray(Image.open(back / "c.png")), np.asarray(Image.open(tmp_path / "c.png")))


def test_report_gives_rates_the_bound_and_every_term(run, tmp_path, capsys, monkeypatch):
    np.save(tmp_path / "a.npy", _digits(6))
    assert main(["compress", "--model", str(run), str(tmp_path / "a.npy"), "-o", str(tmp_path / "a.dbits"), "--T", "6",
                 "--draws", "2", "--store", "model", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    item, total = rep["items"][0], rep["total"]
    assert item["name"] == "a.npy" and item["examples"] == 6 and item["stored"] == "model"
    assert total["bpd"] * total["dims"] == pytest.approx(8 * (tmp_path / "a.dbits").stat().st_size)
    assert total["net_bpd"] < total["bpd"] and np.isfinite(item["bound_bpd"])
    assert set(total["terms"]) >= {"q(z_0|x)", "p(x|z_0)", "q(z_t|z_s)", "p(z_s|z_t)", "p(z_1)"}
    assert total["container_bytes"] <= 48
    excess, se = total["chain_excess_bpd"]  # per image, paired: its mean is the chain's rate less its bound
    assert excess == pytest.approx(total["chain_bpd"] - total["chain_bound_bpd"], abs=1e-9) and se > 0


@pytest.mark.parametrize("grid,saving", [("rate-optimal", None), ("uniform-t", None), ("auto", 0.0), ("auto", 10.0)])
def test_every_grid_round_trips_and_the_file_says_which(run, tmp_path, capsys, monkeypatch, grid, saving):
    """The rate-optimal knots travel in the header; auto takes them only when their expected
    saving (here stubbed: 0 or 10 bits/dim) pays twice for their header bytes."""
    from diffbits.codec import files
    from diffbits.codec import rate_optimal as grid_module

    if saving is not None:
        def stub(model, x, T, **kw):
            return grid_module.rate_optimal_knots(model, x, T, **kw)[0], saving
        monkeypatch.setattr(files, "rate_optimal_knots", stub)
    np.save(tmp_path / "a.npy", _digits(6))
    out = tmp_path / "a.dbits"
    assert main(["compress", "--model", str(run), str(tmp_path / "a.npy"), "-o", str(out), "--T", "6", "--draws", "1",
                 "--grid", grid, "--store", "model", "--json"]) == 0
    chosen = "rate-optimal" if grid == "rate-optimal" or saving else "uniform-t"
    assert json.loads(capsys.readouterr().out)["total"]["grid"] == chosen
    assert main(["decompress", str(out), "--model", str(run), "-o", str(tmp_path / "back")]) == 0
    assert np.array_equal(np.load(tmp_path / "back" / "a.npy"), _digits(6))


def test_auto_grid_keeps_uniform_steps_beyond_the_lattice_and_rate_optimal_refuses(run, tmp_path, capsys):
    from diffbits.codec.rate_optimal import LATTICE

    np.save(tmp_path / "a.npy", _digits(1))
    args = ["compress", "--model", str(run), str(tmp_path / "a.npy"), "-o", str(tmp_path / "a.dbits"), "--T", str(LATTICE + 1),
            "--draws", "1", "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["total"]["grid"] == "uniform-t"
    assert main([*args, "--grid", "rate-optimal"]) == 2
    assert "at most 1024 steps" in capsys.readouterr().err


@pytest.fixture()
def packed(run, tmp_path):
    """A file with a bits-back stream (the model coding whatever it expects) and a classical item."""
    np.save(tmp_path / "a.npy", _digits(3))
    Image.fromarray(_digits(1, 3)[0]).save(tmp_path / "c.png")
    out = tmp_path / "a.dbits"
    rep = compress(run, [tmp_path / "a.npy", tmp_path / "c.png"], out, T=5, draws=1, store="model")
    assert rep["total"]["model_items"] == 2
    return out


def test_no_corrupted_byte_gives_a_wrong_output(run, packed, tmp_path):
    """Every byte of the header (the first 64: magic, chain, knots, item records) and a sample of
    the rest, each flipped: the file is rejected, or (a bit no decoder reads, such as a reserved bit
    in the warm start's zstd frame) restored bit-exact; never a wrong output."""
    data = packed.read_bytes()
    good = {p.name: p.read_bytes() for p in decompress(packed, run, tmp_path / "good")}
    rest = np.random.default_rng(0).choice(np.arange(64, len(data)), 24, replace=False).tolist()
    flips, rejected = list(range(min(64, len(data)))) + rest + [len(data) - 1], 0
    for i in flips:
        bad = bytearray(data)
        bad[i] ^= 0x10
        (tmp_path / "bad.dbits").write_bytes(bytes(bad))
        try:
            back = decompress(tmp_path / "bad.dbits", run, tmp_path / f"out{i}")
        except ContainerError:
            rejected += 1
            assert not (tmp_path / f"out{i}").exists() or not list((tmp_path / f"out{i}").iterdir())
            continue
        assert {p.name: p.read_bytes() for p in back} == good, f"byte {i} flipped gave a wrong output"
    assert rejected >= 0.9 * len(flips)  # nearly every flip changes something a decoder reads


def test_truncated_file_and_wrong_model_are_rejected_with_exit_code(run, other_run, packed, tmp_path, capsys):
    (tmp_path / "cut.dbits").write_bytes(packed.read_bytes()[:-7])
    assert main(["decompress", str(tmp_path / "cut.dbits"), "--model", str(run), "-o", str(tmp_path / "o")]) == 2
    assert "truncated or corrupted" in capsys.readouterr().err
    assert main(["decompress", str(packed), "--model", str(other_run), "-o", str(tmp_path / "o")]) == 2
    assert "another model" in capsys.readouterr().err
    assert main(["decompress", str(packed), "-o", str(tmp_path / "o")]) == 2
    assert "--model" in capsys.readouterr().err
    assert not list((tmp_path / "o").glob("*")) if (tmp_path / "o").exists() else True


@pytest.mark.parametrize("header, version", [(b"DBITS\x00\x02\x00", "version 2"), (b"dB\x03\x01", "version 3")])
def test_a_file_of_a_previous_format_is_refused_with_its_version(run, tmp_path, capsys, header, version):
    (tmp_path / "old.dbits").write_bytes(header + bytes(64))
    assert main(["decompress", str(tmp_path / "old.dbits"), "--model", str(run), "-o", str(tmp_path / "o")]) == 2
    assert version in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


@pytest.mark.parametrize("array, message", [(np.zeros((2, 7, 7), np.uint8), "does not match"),
                                            (np.full((2, 8, 8), 40, np.uint8), "17 levels"),
                                            (np.zeros((2, 8, 8), np.float32), "not integer")])
def test_inputs_the_model_cannot_code_are_stored_classically_and_say_why(run, tmp_path, capsys, array, message):
    np.save(tmp_path / "odd.npy", array)
    assert main(["compress", "--model", str(run), str(tmp_path / "odd.npy"), "-o", str(tmp_path / "odd.dbits"),
                 "--json"]) == 0
    item = json.loads(capsys.readouterr().out)["items"][0]
    assert item["stored"] != "model" and message in item["why"]
    assert main(["decompress", str(tmp_path / "odd.dbits"), "-o", str(tmp_path / "back")]) == 0  # no model needed
    back = np.load(tmp_path / "back" / "odd.npy")
    assert back.dtype == array.dtype and np.array_equal(back, array)


def test_items_that_fail_verification_are_stored_classically_and_still_round_trip(run, tmp_path, monkeypatch):
    """When the verifying decode disagrees (as on a machine whose kernels are not deterministic),
    every item is stored classically, says why, and the file carries no bits-back stream."""
    from diffbits.codec import files
    from diffbits.codec.container import unpack

    a = _digits(4)
    np.save(tmp_path / "a.npy", a)
    monkeypatch.setattr(files.BitsBackCoder, "decode", lambda self, words, layout, n: np.zeros((n, 1, 8, 8), np.int64))
    rep = compress(run, [tmp_path / "a.npy"], tmp_path / "a.dbits", T=4, draws=1, store="model")
    monkeypatch.undo()
    assert rep["items"][0]["stored"] != "model" and "verifying decode" in rep["items"][0]["why"]
    c = unpack((tmp_path / "a.dbits").read_bytes())
    assert c.chain is None and len(c.words) == 0
    back = decompress(tmp_path / "a.dbits", run, tmp_path / "back")
    assert np.array_equal(np.load(back[0]), a)


@pytest.mark.parametrize("n", [1, 2, 40])
def test_a_file_is_never_larger_than_its_classical_codes_plus_a_few_bytes(run, tmp_path, n):
    """Whatever the model (this one has trained for 3 steps): one image per file, a few, many."""
    from diffbits.codec import classical

    paths, floor = [], 0
    for i, img in enumerate(_digits(n, 5)):
        paths.append(tmp_path / f"digit{i:03d}.png")
        Image.fromarray(img).save(paths[-1])
        floor += min(len(b) for b in classical.encode_image(img).values())
    rep = compress(run, paths, tmp_path / "x.dbits", T=6, draws=1)
    assert rep["total"]["bytes"] <= floor + 32 * n + 8
    back = decompress(tmp_path / "x.dbits", run, tmp_path / "back")
    assert [p.name for p in back] == [p.name for p in paths]
    assert all(np.array_equal(np.asarray(Image.open(b)), np.asarray(Image.open(p))) for b, p in zip(back, paths))
