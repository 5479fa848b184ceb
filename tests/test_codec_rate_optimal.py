"""Rate-optimal chain times (diffbits.codec.rate_optimal): the dynamic programme, the consistent error
curve, and the chain through the chosen levels coding bit-exact at a lower rate."""
import itertools

import numpy as np
import pytest
import torch

from diffbits.codec import BitsBackCoder
from diffbits.codec.rate_optimal import (
    chain_grid,
    consistent_error,
    eps_error,
    knot_gammas,
    lattice,
    optimal_knots,
    rate_optimal_knots,
)
from diffbits.schedules import FixedLinear
from diffbits.vdm import VDM

from .helpers import ExactCategoricalDenoiser, sample_categorical


def _cost(gammas, m, knots):
    k = np.asarray(knots)
    return float(np.sum(np.expm1(np.diff(gammas[k])) * m[k[1:]]))


@pytest.mark.parametrize("seed", range(5))
def test_dynamic_programme_finds_the_cheapest_steps(seed):
    rng = np.random.default_rng(seed)
    gammas = np.sort(rng.uniform(-6, 4, 10))
    m = rng.uniform(0.01, 1.0, 10)
    knots = optimal_knots(gammas, m, 4)
    brute = min(_cost(gammas, m, (0, *inner, 9)) for inner in itertools.combinations(range(1, 9), 3))
    assert knots[0] == 0 and knots[-1] == 9 and len(knots) == 5
    assert _cost(gammas, m, knots) == pytest.approx(brute, rel=1e-12)


def test_a_flat_error_gives_steps_evenly_spaced_in_gamma():
    """expm1 is convex: with the same error everywhere, equal steps in gamma cost least."""
    gammas = np.linspace(-8.0, 4.0, 61)
    assert optimal_knots(gammas, np.ones(61), 6).tolist() == list(range(0, 61, 10))


def test_steps_crowd_where_the_error_is():
    """An error that is flat up to gamma = -2 and then falls as e^-gamma (the x-error stops
    growing: the data is known by then): half of the range, more than half of the steps."""
    gammas = np.linspace(-8.0, 4.0, 121)
    m = np.exp(-np.maximum(gammas + 2, 0))
    knots = optimal_knots(gammas, m, 10)
    assert (gammas[knots[1:]] <= -2).sum() >= 7


def test_consistent_error_never_lets_the_x_error_fall_as_noise_grows():
    gammas = np.linspace(-10, 5, 200)
    rng = np.random.default_rng(0)
    exact = 1 / (1 + np.exp(gammas - 1.0))  # an x-error e^gamma m that rises with gamma
    noisy = exact * np.exp(rng.normal(0, 0.2, 200))
    fitted = consistent_error(gammas, noisy)
    assert np.all(np.diff(fitted * np.exp(gammas)) >= -1e-12 * np.exp(gammas[1:]))
    assert np.allclose(consistent_error(gammas, exact), exact, rtol=1e-9)
    assert np.abs(np.log(fitted / exact)).mean() < np.abs(np.log(noisy / exact)).mean()


def test_knots_name_levels_on_the_schedules_lattice():
    schedule = FixedLinear(-9.0, 5.0)
    fine = lattice(schedule, 64)
    assert fine[0] == pytest.approx(-9.0) and fine[-1] == pytest.approx(5.0) and len(fine) == 65
    assert np.array_equal(knot_gammas(schedule, [0, 10, 64], 64), fine[[0, 10, 64]])
    for bad in ([0, 10], [1, 64], [0, 10, 10, 64]):
        with pytest.raises(ValueError, match="knots must rise"):
            knot_gammas(schedule, bad, 64)


@pytest.fixture(scope="module")
def categorical_model():
    """Independent 16-level coordinates of known probabilities and their exact denoiser."""
    weights = torch.linspace(1.0, 3.0, 16)
    probs = (weights / weights.sum()).repeat(32, 1)
    return VDM(ExactCategoricalDenoiser(probs), FixedLinear(-9.0, 5.0), levels=16, data_shape=(32,)), probs


def test_eps_error_of_an_exact_denoiser_is_at_most_one(categorical_model):
    model, probs = categorical_model
    x = sample_categorical(probs, 200, seed=1)
    m = eps_error(model, x, np.array([-9.0, -2.0, 5.0]))
    assert np.all(m >= 0) and np.all(m < 1.05) and m[-1] < m[1]  # nothing is lost at high noise


def test_rate_optimal_chain_codes_bit_exact_and_cheaper_than_uniform_steps(categorical_model):
    """Same data, same T: the chain through the rate-optimal levels has a lower bound and codes
    in fewer bits than steps uniform in t (here also uniform in gamma), and decodes exactly."""
    model, probs = categorical_model
    x = sample_categorical(probs, 300, seed=0).numpy()
    T = 12
    knots, saving = rate_optimal_knots(model, x, T)
    assert len(knots) == T + 1 and saving > 0
    grid = chain_grid(model.schedule, knots)
    bits = {}
    for name, k in (("uniform", None), ("optimal", knots)):
        coder = BitsBackCoder(model, T=T, batch=300, knots=k)
        words, rep = coder.encode(x)
        assert np.array_equal(coder.decode(words, rep["layout"], len(x)), x)
        bits[name] = float(rep["info_bits"].sum())
    t = (torch.arange(T).repeat_interleave(200) + 0.5) / T  # every step, 200 examples each
    xs = torch.as_tensor(x[:200]).repeat(T, 1)
    gen = torch.Generator().manual_seed(3)
    uniform = float(model.bound(xs, T=T, t=t, generator=gen).bpd.mean())
    optimal = float(model.bound(xs, t=t, generator=torch.Generator().manual_seed(3), grid=grid).bpd.mean())
    assert optimal < 0.97 * uniform
    assert bits["optimal"] < 0.97 * bits["uniform"]
    assert (uniform - optimal) == pytest.approx(saving, rel=0.5)  # the curve's prediction, roughly
