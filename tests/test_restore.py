"""Denoising and inpainting with a trained model (diffbits.denoise, diffbits.inpaint, the CLI)."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from diffbits import VDM
from diffbits.bound import data_to_signal
from diffbits.build import default_gamma_0
from diffbits.cli import main
from diffbits.data import load_dataset
from diffbits.denoise import (
    NoiseLevelError,
    add_noise,
    grid_from,
    noise_gamma,
    posterior_mean,
    posterior_samples,
    psnr,
)
from diffbits.grids import fixed_grid
from diffbits.inpaint import inpaint, renoise
from diffbits.samplers import SAMPLERS
from diffbits.schedules import FixedLinear, alpha_sigma
from diffbits.train import train

from .helpers import ExactCategoricalDenoiser
from .test_train import tiny_config

K = 17  # digits


class ExactMixtureDenoiser:
    """The exact ``E[eps | z_t]`` for data uniform over a few known examples."""

    def __init__(self, examples: torch.Tensor, levels: int):
        self.f = data_to_signal(examples, levels, torch.float64).flatten(1)  # (M, D)

    def __call__(self, z_t, gamma_t):
        z = z_t.double().flatten(1)
        alpha, sigma = (v[:, None] for v in alpha_sigma(gamma_t.double()))
        d2 = (z[:, None, :] - alpha[..., None] * self.f).square().sum(-1)  # (B, M)
        mean_f = torch.softmax(-d2 / (2 * sigma**2), -1) @ self.f
        return ((z - alpha * mean_f) / sigma).view_as(z_t).to(z_t.dtype)


class ExactClassDenoiser:
    """The exact ``E[eps | z_t, y]`` when class y is one known image; label ``len(images)`` (no
    label) gives the mixture of them all, as a conditional network's "no label" class does."""

    def __init__(self, images: torch.Tensor, levels: int):
        self.per_class = [ExactMixtureDenoiser(im[None], levels) for im in images]
        self.mixture = ExactMixtureDenoiser(images, levels)

    def __call__(self, z_t, gamma_t, cond=None):
        fns = [*self.per_class, self.mixture]
        labels = [len(self.per_class)] * len(z_t) if cond is None else cond.tolist()
        return torch.cat([fns[y](z_t[i:i + 1], gamma_t.expand(len(z_t))[i:i + 1]) for i, y in enumerate(labels)])


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train").x, load_dataset("digits", "test").x


@pytest.fixture(scope="module")
def marginal_model(digits):
    """Exact denoiser for independent pixels with the training digits' per-pixel histograms:
    its posterior mean is the best estimate of each pixel from its own noisy value."""
    counts = torch.nn.functional.one_hot(digits[0], K).sum(0).double() + 0.5  # (1, 8, 8, K)
    probs = counts / counts.sum(-1, keepdim=True)
    model = VDM(ExactCategoricalDenoiser(probs), FixedLinear(default_gamma_0(K), 5.0), K, (1, 8, 8))
    model.probs = probs
    return model


@pytest.mark.parametrize("noise_sigma", [1.0, 2.0, 4.0])
def test_denoising_raises_psnr_on_held_out_digits(marginal_model, digits, noise_sigma):
    x = digits[1]
    y = add_noise(x, noise_sigma, torch.Generator().manual_seed(0))
    mean, rounded = posterior_mean(marginal_model, y, noise_sigma)
    noisy, denoised = psnr(y, x, K), psnr(mean, x, K)
    assert denoised > noisy + 1.0, (noisy, denoised)
    assert psnr(rounded, x, K) > noisy + 0.5
    assert rounded.dtype == torch.long and 0 <= rounded.min() and rounded.max() < K
    assert torch.equal(rounded, torch.round(mean).long())


def test_posterior_mean_is_the_bayes_estimate_of_the_matched_noise(marginal_model, digits):
    """The noise of std s levels is the path's level gamma = 2 log(2 s / K): with the exact
    denoiser, the one-call posterior mean is E[x | y] under Gaussian noise of std s."""
    s = 1.5
    x = digits[1][:32]
    y = add_noise(x, s, torch.Generator().manual_seed(1))
    mean, _ = posterior_mean(marginal_model, y, s)
    k = torch.arange(K, dtype=torch.float64)
    logw = marginal_model.probs.log() - (y.unsqueeze(-1) - k) ** 2 / (2 * s**2)
    exact = (torch.softmax(logw, -1) * k).sum(-1)
    assert torch.allclose(mean.double(), exact, atol=2e-3)
    assert noise_gamma(marginal_model, s) == pytest.approx(2 * math.log(2 * s / K))


def test_noise_outside_the_schedule_is_refused(marginal_model):
    lo = K / 2 * math.exp(default_gamma_0(K) / 2)  # 0.165 levels
    hi = K / 2 * math.exp(5.0 / 2)
    for s in (0.0, lo * 0.9):
        with pytest.raises(NoiseLevelError, match="too little noise for this model"):
            noise_gamma(marginal_model, s)
    with pytest.raises(NoiseLevelError, match="too much noise for this model"):
        posterior_mean(marginal_model, torch.zeros(1, 1, 8, 8), hi * 1.1)
    with pytest.raises(NoiseLevelError, match="non-negative"):
        noise_gamma(marginal_model, -1.0)
    assert noise_gamma(marginal_model, lo * 1.01) > default_gamma_0(K)


def test_grid_from_starts_at_the_matched_level(marginal_model):
    sched = marginal_model.schedule
    full = fixed_grid("uniform-t", sched, 20)
    for gamma in (-3.0, float(full.gamma[5]), float(full.gamma[5]) + 1e-6, 4.99, default_gamma_0(K) + 0.01):
        g = grid_from(sched, gamma, "uniform-t", 20)
        assert float(g.gamma[0]) == gamma and float(g.gamma[-1]) == pytest.approx(default_gamma_0(K))
        assert (g.gamma.diff() < 0).all() and (g.t.diff() < 0).all()
        rest = g.gamma[1:]
        assert torch.equal(rest, full.gamma[full.gamma < gamma][-len(rest):])  # the fixed grid below it
        if len(rest) > 1:  # no first step shorter than half the step it cuts
            assert gamma - float(rest[0]) >= 0.5 * float(full.gamma[-len(rest) - 1] - rest[0]) - 1e-9
    assert float(grid_from(sched, -3.0, "edm", 10).t[0]) == pytest.approx((-3.0 - default_gamma_0(K)) / (5 - default_gamma_0(K)), abs=1e-6)


def test_posterior_samples_average_to_the_posterior_mean(marginal_model, digits):
    s, n = 2.0, 400
    y = add_noise(digits[1][:1], s, torch.Generator().manual_seed(2))
    mean, _ = posterior_mean(marginal_model, y, s)
    draws = posterior_samples(marginal_model, y.repeat(n, 1, 1, 1), s, steps=25,
                              generator=torch.Generator().manual_seed(0))
    assert draws.shape == (n, 1, 8, 8) and draws.dtype == torch.long
    assert (draws.double().mean(0) - mean[0]).abs().mean() < 0.12
    for name in SAMPLERS:  # every sampler runs from the matched level
        x = posterior_samples(marginal_model, y, s, sampler=name, grid="edm", steps=8)
        assert x.shape == (1, 1, 8, 8) and 0 <= x.min() and x.max() < K


@pytest.mark.parametrize("sampler", ["ancestral", "ddim", "dpmpp2m"])
@pytest.mark.parametrize("resample", [0, 2])
def test_inpainting_never_changes_known_pixels(marginal_model, digits, sampler, resample):
    x = digits[1][:6].to(torch.uint8)
    mask = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(3)) < 0.5
    out = inpaint(marginal_model, x, mask, sampler=sampler, steps=8, resample=resample,
                  generator=torch.Generator().manual_seed(0))
    assert out.dtype == x.dtype and out.shape == x.shape
    assert torch.equal(out[~mask], x[~mask])
    assert out.max() < K
    spatial = torch.zeros(8, 8, dtype=torch.bool)
    spatial[:, :3] = True  # one (H, W) mask for every example and channel
    out = inpaint(marginal_model, x.long(), spatial, sampler=sampler, steps=4, resample=resample)
    assert torch.equal(out[..., 3:], x.long()[..., 3:])


def test_renoise_is_the_forward_transition():
    z_s = torch.full((20000,), 0.3)
    g_s, g_t = torch.tensor(-2.0), torch.tensor(1.0)
    z_t = renoise(z_s, g_s, g_t, torch.Generator().manual_seed(0))
    (a_t, s_t), (a_s, s_s) = alpha_sigma(g_t), alpha_sigma(g_s)
    assert float(z_t.mean()) == pytest.approx(float(a_t / a_s * 0.3), abs=0.02)
    # q(z_t | x) = q(z_t | z_s) q(z_s | x): variances add up to sigma_t^2
    assert float(z_t.var()) + float((a_t / a_s * s_s) ** 2) == pytest.approx(float(s_t**2), rel=0.03)


@pytest.mark.parametrize("sampler,resample", [("ancestral", 0), ("ancestral", 2), ("ddim", 2)])
def test_inpainting_recovers_a_known_image_from_the_rest_of_it(digits, sampler, resample):
    """Data uniform over 8 digits: the top six rows tell them apart, so the bottom two are
    determined. (With half of each image masked, RePaint commits to a wrong image in about
    15% of draws without resampling and 6% with resample=2 here: the generated half is as
    informative as the known one by the time the known one decides.)"""
    images = digits[1][:8]
    model = VDM(ExactMixtureDenoiser(images, K), FixedLinear(-10.0, 5.0), K, (1, 8, 8))
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[:, 6:] = True
    x = images.repeat(4, 1, 1, 1)
    out = inpaint(model, x, mask, sampler=sampler, steps=25, resample=resample,
                  generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, x)


def test_the_label_decides_what_a_noisy_image_is_restored_to(digits):
    """Two classes, one image each: at heavy noise the posterior mean given a label is that
    class's image, whatever the noisy input; with no label, the image it came from; inpainting
    given a label fills in that class's pixels; guidance 1 is the conditional model."""
    images = digits[1][:2]
    model = VDM(ExactClassDenoiser(images, K), FixedLinear(-10.0, 5.0), K, (1, 8, 8), num_classes=2)
    y = add_noise(images[[0, 0, 1, 1]], 3.0, torch.Generator().manual_seed(0))
    cond = torch.tensor([0, 1, 0, 1])
    _, x = posterior_mean(model, y, 3.0, cond)
    assert torch.equal(x, images[cond])
    _, x = posterior_mean(model, y, 3.0, cond, guidance=1.0)
    assert torch.equal(x, images[cond])
    _, x = posterior_mean(model, y, 3.0)  # no label: the noise alone tells the two images apart
    assert torch.equal(x, images[[0, 0, 1, 1]])
    drawn = posterior_samples(model, y, 3.0, steps=10, generator=torch.Generator().manual_seed(1), cond=cond)
    assert torch.equal(drawn, images[cond])
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[:, 2:] = True  # two known rows of the other image, six filled from the label
    out = inpaint(model, images[[1, 0]], mask, steps=10, generator=torch.Generator().manual_seed(2),
                  cond=torch.tensor([0, 1]))
    assert torch.equal(out[:, :, 2:], images[:, :, 2:]) and torch.equal(out[:, :, :2], images[[1, 0], :, :2])
    with pytest.raises(ValueError, match="3 labels for 4 examples"):
        posterior_mean(model, y, 3.0, torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="guidance needs class labels"):
        posterior_mean(model, y, 3.0, guidance=2.0)


def test_filled_pixels_of_independent_coordinates_follow_their_marginals(categorical):
    """Independent coordinates: the known ones say nothing of the rest, which must come out
    distributed as the model's marginals (jumps back included)."""
    probs = categorical.view(1, 8, 8, 4)
    model = VDM(ExactCategoricalDenoiser(probs), FixedLinear(-9.0, 5.0), 4, (1, 8, 8))
    x = torch.randint(0, 4, (1000, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:, ::2] = True
    out = inpaint(model, x, mask, steps=20, resample=2, generator=torch.Generator().manual_seed(1))
    freq = torch.nn.functional.one_hot(out[..., ::2], 4).double().mean(0)
    # 0.02 here, as plain sampling with 20 steps; jumps back without noise: 0.07
    assert (freq - probs[..., ::2, :]).abs().mean() < 0.03


def test_inpainting_rejects_bad_input(marginal_model):
    with pytest.raises(TypeError, match="integer levels"):
        inpaint(marginal_model, torch.zeros(1, 1, 8, 8), torch.ones(8, 8), steps=2)
    with pytest.raises(ValueError, match="outside the model's 17 levels"):
        inpaint(marginal_model, torch.full((1, 1, 8, 8), 17), torch.ones(8, 8), steps=2)
    with pytest.raises(ValueError, match="does not fit"):
        inpaint(marginal_model, torch.zeros(1, 1, 8, 8, dtype=torch.long), torch.ones(7, 8), steps=2)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("restore") / "run"
    train(tiny_config(2), run, progress=False)
    return run


def test_cli_denoise(tiny_run, digits, tmp_path, capsys):
    x = digits[1][:3].numpy()
    np.save(tmp_path / "x.npy", x)
    y = add_noise(torch.from_numpy(x), 2.0, torch.Generator().manual_seed(0)).numpy()
    np.save(tmp_path / "y.npy", y)
    args = ["denoise", str(tiny_run), str(tmp_path / "y.npy"), "--noise-sigma", "2"]
    assert main([*args, "-o", str(tmp_path / "d.npy"), "--reference", str(tmp_path / "x.npy")]) == 0
    out = capsys.readouterr().out
    assert "PSNR: noisy" in out and "posterior mean" in out
    d = np.load(tmp_path / "d.npy")  # the input's dtype and shape, holding levels
    assert d.shape == y.shape and d.dtype == y.dtype and (d == np.round(d)).all() and 0 <= d.min() and d.max() < K
    assert main([*args, "--samples", "2", "--steps", "6", "--sampler", "ddim", "-o", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (2, *y.shape)  # a leading draw axis
    capsys.readouterr()
    assert main([*args, "-o", str(tmp_path / "d.png")]) == 2  # an array in, an array out
    assert "written as .npy" in capsys.readouterr().err and not (tmp_path / "d.png").exists()
    assert main([*args[:-1], "1000", "-o", str(tmp_path / "e.npy")]) == 2
    assert "too much noise for this model" in capsys.readouterr().err
    np.save(tmp_path / "bad.npy", np.zeros((2, 7, 7)))
    assert main([*args[:2], str(tmp_path / "bad.npy"), "--noise-sigma", "2", "-o", str(tmp_path / "e.npy")]) == 2
    assert "does not match the model's examples" in capsys.readouterr().err


def test_cli_inpaint(tiny_run, digits, tmp_path, capsys):
    x = digits[1][:2].numpy()
    np.save(tmp_path / "x.npy", x)
    mask = np.zeros((8, 8), np.uint8)
    mask[4:] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    np.save(tmp_path / "m.npy", mask > 0)
    args = ["inpaint", str(tiny_run), str(tmp_path / "x.npy"), "--steps", "4"]
    assert main([*args, "--mask", str(tmp_path / "m.png"), "--n", "3", "--resample", "1", "-o",
                 str(tmp_path / "o.npy")]) == 0
    o = np.load(tmp_path / "o.npy")
    assert o.shape == (3, *x.shape) and o.dtype == x.dtype and (o[..., :4, :] == x[..., :4, :]).all()
    for sampler in ("heun", "dpmpp2m"):
        assert main([*args, "--mask", str(tmp_path / "m.npy"), "--sampler", sampler, "-o", str(tmp_path / "o.npy")]) == 0
        assert np.load(tmp_path / "o.npy").shape == x.shape
    capsys.readouterr()
    assert main([*args, "--mask", str(tmp_path / "m.npy"), "--class", "3", "-o", str(tmp_path / "o.npy")]) == 2
    assert "need a run trained with --labels" in capsys.readouterr().err
    np.save(tmp_path / "bad.npy", x + K)  # out of range for 17 levels
    assert main([*args[:2], str(tmp_path / "bad.npy"), "--mask", str(tmp_path / "m.npy"), "-o",
                 str(tmp_path / "e.npy")]) == 2
    assert "the model codes 17 levels" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".png", ".npy"])
def test_restored_files_come_back_in_the_inputs_format(tiny_run, digits, tmp_path, suffix):
    """An 8x8 digit (levels 0..16) in a PNG or an .npy: inpaint and denoise write the same kind of
    file, same size and dtype, unmasked pixels unchanged, every value one of the run's levels."""
    x = digits[1][5, 0].numpy().astype(np.uint8)  # (8, 8)
    src, mask = tmp_path / f"x{suffix}", np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    Image.fromarray(x).save(src) if suffix == ".png" else np.save(src, x)
    np.save(tmp_path / "m.npy", mask)
    read = (lambda p: np.asarray(Image.open(p))) if suffix == ".png" else np.load
    out = tmp_path / f"y{suffix}"
    assert main(["inpaint", str(tiny_run), str(src), "--mask", str(tmp_path / "m.npy"), "--steps", "5",
                 "-o", str(out)]) == 0
    y = read(out)
    assert y.shape == (8, 8) and y.dtype == np.uint8 and y.max() < K
    assert (y[~mask] == x[~mask]).all()
    assert main(["denoise", str(tiny_run), str(src), "--noise-sigma", "1", "-o", str(out)]) == 0
    d = read(out)
    assert d.shape == (8, 8) and d.dtype == np.uint8 and d.max() < K
    if suffix == ".png":  # several draws of an image: one file each
        assert main(["inpaint", str(tiny_run), str(src), "--mask", str(tmp_path / "m.npy"), "--steps", "3",
                     "--n", "2", "-o", str(out), "--preview", str(tmp_path / "p.png")]) == 0
        assert [read(tmp_path / f"y_{i}.png").shape for i in range(2)] == [(8, 8)] * 2
        assert read(tmp_path / "p.png").shape[0] > 8  # the preview is a picture to look at, not the data


def test_cli_png_round_trip_for_a_256_level_run(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "data.npy", rng.integers(0, 256, (16, 8, 8), dtype=np.uint8))
    cfg = tiny_config(1)
    cfg.data = str(tmp_path / "data.npy")
    train(cfg, tmp_path / "r", progress=False)
    img = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "in.png")
    mask = np.zeros((8, 8), np.uint8)
    mask[:, :4] = 1
    Image.fromarray(mask).save(tmp_path / "m.png")
    assert main(["inpaint", str(tmp_path / "r"), str(tmp_path / "in.png"), "--mask", str(tmp_path / "m.png"),
                 "--steps", "3", "-o", str(tmp_path / "out.png")]) == 0
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (8, 8) and (out[:, 4:] == img[:, 4:]).all()
    assert main(["denoise", str(tmp_path / "r"), str(tmp_path / "in.png"), "--noise-sigma", "10",
                 "-o", str(tmp_path / "d.png")]) == 0
    assert np.asarray(Image.open(tmp_path / "d.png")).shape == (8, 8)
