"""Samplers and step schedules, against closed forms for Gaussian data (score-optimal grids:
test_score_optimal.py)."""
import math

import pytest
import torch

from diffbits import VDM
from diffbits.grids import FIXED, Grid, fixed_grid
from diffbits.samplers import SAMPLERS, sampler_for_nfe, steps_for_nfe
from diffbits.schedules import FixedLinear, MonotoneNet, alpha_sigma

S_DATA = 0.5  # data ~ N(0, S_DATA^2) per coordinate, in signal space


class GaussianModel:
    """The exact denoiser of N(0, S_DATA^2) data: ``eps_hat = sigma z / (alpha^2 s^2 + sigma^2)``."""

    def __init__(self, schedule):
        self.schedule = schedule

    def eps_hat(self, z, gamma, cond=None):
        alpha, sigma = alpha_sigma(gamma.double())
        shape = (-1,) + (1,) * (z.dim() - 1)
        alpha, sigma = alpha.view(shape), sigma.view(shape)
        return (sigma * z / (alpha**2 * S_DATA**2 + sigma**2)).to(z.dtype)


def exact_flow(z1, gamma_1, gamma_0):
    """Probability-flow ODE solution for Gaussian data: in ``x = z / alpha``, ``s = exp(gamma/2)``,
    ``x(s) = x(s1) sqrt((S^2 + s^2) / (S^2 + s1^2))``."""
    s1, s0 = math.exp(gamma_1 / 2), math.exp(gamma_0 / 2)
    a1, a0 = (alpha_sigma(torch.tensor(g, dtype=torch.float64))[0].item() for g in (gamma_1, gamma_0))
    return a0 * (z1 / a1) * math.sqrt((S_DATA**2 + s0**2) / (S_DATA**2 + s1**2))


SCHED = FixedLinear(-8.0, 6.0)


@pytest.mark.parametrize("name", ["ddim", "heun", "dpmpp2m"])
def test_deterministic_samplers_converge_to_the_exact_flow(name):
    model = GaussianModel(SCHED)
    z1 = torch.randn(256, 8, dtype=torch.float64)
    target = exact_flow(z1, 6.0, -8.0)
    errors = []
    for steps in (4, 16, 64):
        grid = fixed_grid("uniform-logsnr", SCHED, steps)
        z0 = SAMPLERS[name](lambda z, g: model.eps_hat(z, g), z1, grid.gamma)
        errors.append((z0 - target).pow(2).mean().sqrt().item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.03 * target.std().item()  # first order (DDIM): ~4x less per 4x steps
    if name != "ddim":  # second order: error falls at least ~4x per 4x steps beyond the first
        assert errors[1] / errors[2] > 6


def test_ancestral_sampler_converges_in_distribution():
    model = GaussianModel(SCHED)
    a0, s0 = alpha_sigma(torch.tensor(-8.0, dtype=torch.float64))
    var = (a0**2 * S_DATA**2 + s0**2).item()  # the marginal at t = 0
    z1 = torch.randn(20000, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    gaps = []
    for steps in (10, 100, 1000):  # the posterior-mean step under-disperses by O(1 / steps)
        grid = fixed_grid("uniform-logsnr", SCHED, steps)
        z0 = SAMPLERS["ancestral"](lambda z, g: model.eps_hat(z, g), z1, grid.gamma,
                                   generator=torch.Generator().manual_seed(2))
        gaps.append(abs(z0.var().item() / var - 1))
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.03


def test_vdm_sample_same_seed_same_initial_noise_for_any_grid():
    vdm = VDM(lambda z, g: GaussianModel(SCHED).eps_hat(z, g), SCHED, levels=256, data_shape=(6,))
    outs = {steps: vdm.sample(32, steps, generator=torch.Generator().manual_seed(5), sampler="heun",
                              grid="edm", decode=False) for steps in (50, 100)}
    torch.testing.assert_close(outs[50], outs[100], atol=1e-2, rtol=0)  # other noise: O(1) apart
    again = vdm.sample(32, 50, generator=torch.Generator().manual_seed(5), sampler="heun", grid="edm", decode=False)
    assert torch.equal(outs[50], again)
    x = vdm.sample(8, 10, generator=torch.Generator().manual_seed(5), sampler="dpmpp2m", grid="cosine")
    assert x.dtype == torch.int64 and x.min() >= 0 and x.max() < 256


@pytest.mark.parametrize("method", list(FIXED))
def test_fixed_grids_are_strictly_monotone_inside_the_model_range(method):
    sched = MonotoneNet(-9.0, 4.0)
    with torch.no_grad():  # a curved interior
        sched.w3.mul_(500)
    grid = fixed_grid(method, sched, 12)
    g = sched(torch.tensor([0.0, 1.0])).double()
    assert grid.steps == 12 and (grid.t.diff() < 0).all() and (grid.gamma.diff() < 0).all()
    assert grid.t[0] == 1 and grid.t[-1] == 0
    assert grid.gamma[0].item() == pytest.approx(g[1].item(), abs=1e-5)
    assert grid.gamma[-1].item() == pytest.approx(g[0].item(), abs=1e-5)
    # the gammas are the schedule's at the grid's times
    torch.testing.assert_close(sched(grid.t.float()).double(), grid.gamma, atol=2e-3, rtol=0)


def test_edm_grid_follows_its_formula():
    grid = fixed_grid("edm", SCHED, 10)
    s = (grid.gamma / 2).exp()
    i = torch.arange(11) / 10
    expected = (math.exp(3.0 / 7) + i * (math.exp(-4.0 / 7) - math.exp(3.0 / 7))) ** 7
    torch.testing.assert_close(s, expected.double(), rtol=1e-6, atol=0)


def test_grid_files_round_trip_and_reject_bad_grids(tmp_path):
    grid = fixed_grid("cosine", SCHED, 5)
    back = Grid.load(grid.save(tmp_path / "g.json"))
    assert torch.equal(back.t, grid.t) and torch.equal(back.gamma, grid.gamma) and back.method == "cosine"
    with pytest.raises(ValueError, match="not strictly decreasing"):
        Grid(torch.tensor([1.0, 0.5, 0.6, 0.0]), torch.tensor([3.0, 1.0, 2.0, -1.0]), "bad")
    with pytest.raises(ValueError, match="unknown step schedule"):
        fixed_grid("karras", SCHED, 5)
    assert steps_for_nfe("heun", 10) == 5 and steps_for_nfe("dpmpp2m", 10) == 10


@pytest.mark.parametrize("name,nfe,steps", [("heun", 5, 3), ("heun", 10, 5), ("heun", 3, 2), ("dpmpp2m", 7, 7),
                                            ("ddim", 4, 4)])
def test_a_call_budget_is_spent_exactly(name, nfe, steps):
    """``sampler_for_nfe`` spends every call: an odd budget gives Heun a last Euler step, which is
    exactly DDIM's step over the same interval."""
    model, calls = GaussianModel(SCHED), []

    def counted(z, gamma):
        calls.append(1)
        return model.eps_hat(z, gamma)
    sampler, n = sampler_for_nfe(name, nfe)
    gammas = fixed_grid("edm", SCHED, n).gamma
    z = torch.randn(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    z_end = sampler(counted, z, gammas)
    assert n == steps and len(calls) == nfe
    if name == "heun" and nfe % 2:
        before = SAMPLERS["heun"](model.eps_hat, z, gammas[:-1])
        assert torch.allclose(z_end, SAMPLERS["ddim"](model.eps_hat, before, gammas[-2:]), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="at least"):
        sampler_for_nfe(name, 1 if name == "heun" else 0)


def test_a_first_order_last_step_is_a_ddim_step_at_the_same_calls():
    """``get_sampler("dpmpp2m", euler_last=True)``: the steps before the last as usual, then DDIM's step
    (DPM-Solver-1) from where they end; one call per step still. Samplers whose steps are all first
    order refuse it."""
    from diffbits.samplers import get_sampler

    model, calls = GaussianModel(SCHED), []

    def counted(z, gamma):
        calls.append(1)
        return model.eps_hat(z, gamma)
    gammas = fixed_grid("edm", SCHED, 5).gamma
    z = torch.randn(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    z_end = get_sampler("dpmpp2m", euler_last=True)(counted, z, gammas)
    before = SAMPLERS["dpmpp2m"](model.eps_hat, z, gammas[:-1])
    assert len(calls) == 5
    assert torch.allclose(z_end, SAMPLERS["ddim"](model.eps_hat, before, gammas[-2:]), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(z_end, SAMPLERS["dpmpp2m"](model.eps_hat, z, gammas), rtol=1e-6, atol=1e-9)
    for name in ("ddim", "ancestral"):
        with pytest.raises(ValueError, match="first order"):
            get_sampler(name, euler_last=True)
