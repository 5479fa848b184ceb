"""Score-optimal grids (Williams et al. 2024; docs/score_optimal.md): the fast estimate against
the thorough one and against the closed form, for Gaussian data with its exact denoiser."""
import math
from itertools import pairwise

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from diffbits.samplers import ddim
from diffbits.schedules import alpha_sigma
from diffbits.score_optimal import EXAMPLES, probe_costs, score_optimal, step_costs

from .test_sampling import S_DATA, SCHED, GaussianModel

MODEL = GaussianModel(SCHED)
F = S_DATA * torch.randn(4096, 16, generator=torch.Generator().manual_seed(0))
# Grid tolerance in gamma, from 20 seeds of each estimate (10 steps, this F): the thorough one
# (4096 examples, fresh noise per probe level) has a seed-to-seed std of at most 0.0016 per grid
# point; the fast one (EXAMPLES = 64 examples, one shared draw) about 15x more, 0.024, the most
# of 20 seeds 0.06 from the thorough mean. 0.1 is 4 fast std, 7% of a step (about 1.4 in gamma).
TOL = 0.1


def gen(seed):
    return torch.Generator().manual_seed(seed)


def thorough(variant, seed=0, steps=10):
    """Every example, fresh noise and one network call per probe level (the original estimate)."""
    return score_optimal(MODEL, F, steps, variant=variant, generator=gen(seed), examples=None,
                         common_noise=False, batch=len(F))


@pytest.mark.parametrize("variant", ["corrector", "predictor"])
def test_fast_grid_matches_the_thorough_estimate(variant):
    slow = thorough(variant)
    fast = score_optimal(MODEL, F, 10, variant=variant, generator=gen(1))
    assert (fast.gamma - slow.gamma).abs().max() < TOL
    assert len(fast.info["probe_cost"]) == 99 and EXAMPLES < len(F)


def test_common_random_numbers_make_the_cost_curve_smooth():
    """Second differences of log cost over the probe levels (5 seeds: 0.015 shared, 0.22-0.37 fresh)."""
    def roughness(**kw):
        return probe_costs(MODEL, F, generator=gen(0), **kw)[1].log().diff(n=2).abs().max().item()
    assert roughness() < 0.03 and roughness(common_noise=False) > 0.1


def looped_costs(f, gammas, variant, generator):
    """The per-step loop the batched costs replace: noise afresh, two calls per probe level."""
    out = []
    for g_a, g_b in pairwise(gammas):
        (a_a, a_b), (s_a, _) = alpha_sigma(torch.stack([g_a, g_b]))
        z = a_a * f + s_a * torch.randn(f.shape, generator=generator)
        eps_a = MODEL.eps_hat(z, g_a.expand(len(f)))
        if variant == "corrector":
            diff = (g_b / 2 - g_a / 2).exp() * eps_a - MODEL.eps_hat(a_b / a_a * z, g_b.expand(len(f)))
        else:
            diff = MODEL.eps_hat(ddim(lambda *_, e=eps_a: e, z, torch.stack([g_a, g_b])), g_b.expand(len(f))) - eps_a
        out.append(diff.double().pow(2).mean())
    return torch.stack(out)


@pytest.mark.parametrize("variant", ["corrector", "predictor"])
def test_batched_costs_equal_the_per_step_loop(variant):
    t = torch.linspace(1, 0, 13, dtype=torch.float64)
    batched = step_costs(MODEL, F[:64], t, variant, gen(5), common_noise=False)
    looped = looped_costs(F[:64], SCHED(t.float()), variant, gen(5))
    torch.testing.assert_close(batched, looped, rtol=2e-3, atol=0)  # float32 round-off


def test_fast_estimate_is_deterministic_and_batch_independent():
    a = probe_costs(MODEL, F, variant="predictor", generator=gen(3))
    b = probe_costs(MODEL, F, variant="predictor", generator=gen(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    one_step_per_call = probe_costs(MODEL, F, variant="predictor", generator=gen(3), batch=1)
    torch.testing.assert_close(one_step_per_call[1], a[1], rtol=1e-5, atol=0)
    other = probe_costs(MODEL, F, variant="predictor", generator=gen(4))
    assert not torch.equal(other[1], a[1])
    # fresh noise: the same numbers whether the probe levels share calls or not
    t = a[0][:12]
    torch.testing.assert_close(step_costs(MODEL, F[:32], t, generator=gen(5), common_noise=False, batch=1),
                               step_costs(MODEL, F[:32], t, generator=gen(5), common_noise=False), rtol=1e-5, atol=0)


def test_probe_costs_once_give_every_step_count_its_own_grid():
    costs = probe_costs(MODEL, F, generator=gen(2))
    for steps in (5, 10, 20):
        shared = score_optimal(MODEL, None, steps, costs=costs)
        alone = score_optimal(MODEL, F, steps, generator=gen(2))
        assert shared.steps == steps and torch.equal(shared.t, alone.t) and torch.equal(shared.gamma, alone.gamma)
        assert "length_per_step" not in alone.info  # the re-check is off by default


def closed_form_length(gamma, s=S_DATA):
    """Corrector length for N(0, s^2) data on the VE path ``x = f + r eta``, ``r = exp(gamma/2)``:
    the score is ``-x / (s^2 + r^2)``, so ``L(r, r + d) ~ 4 r^4 d^2 / (s^2 + r^2)^3`` and
    ``dLambda = 2 r^2 / (s^2 + r^2)^(3/2) dr``; with ``r = s sinh(u)`` it integrates to
    ``2 (asinh v - v / sqrt(1 + v^2))``, ``v = r / s``."""
    v = math.exp(gamma / 2) / s
    return 2 * (math.asinh(v) - v / math.sqrt(1 + v**2))


def test_score_optimal_grid_for_a_gaussian_matches_its_closed_form():
    steps = 12
    grid = score_optimal(MODEL, F, steps, probe=200, generator=gen(1), check=True)
    lo, hi = closed_form_length(-8.0), closed_form_length(6.0)
    expected = [brentq(lambda g, k=k: closed_form_length(g) - (lo + (hi - lo) * k / steps), -8.0, 6.0)
                for k in range(steps, -1, -1)]
    np.testing.assert_allclose(grid.gamma.numpy(), expected, atol=0.1)
    length = np.asarray(grid.info["length_per_step"])  # re-estimated, fresh noise: equal per step
    assert length.max() / length.min() < 1.15
    assert length.sum() == pytest.approx(hi - lo, rel=0.03)  # the closed-form total length
