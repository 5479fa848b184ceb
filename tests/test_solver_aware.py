"""Solver-aware grids (solver_aware.py): the closed-form local errors are the samplers' own steps,
the dynamic programme is exact, and on Gaussian data (exact denoiser, exact flow) the fitted
grid is no worse than the score-optimal one on fresh noise."""
import itertools

import numpy as np
import pytest
import torch

from diffbits.grids import FIXED, fixed_grid
from diffbits.samplers import SAMPLERS, dpmpp_2m
from diffbits.score_optimal import score_optimal
from diffbits.solver_aware import (DP_EULER_LAST, DP_PATH, best_path, choose_start, global_error, local_errors,
                                   path_cost, reference, solver_aware)

from .test_sampling import S_DATA, SCHED, GaussianModel, exact_flow

G_HI, G_LO = float(SCHED.gamma_1), float(SCHED.gamma_0)


class Gaussian16(GaussianModel):
    data_shape = (16,)

    def __init__(self):
        super().__init__(SCHED)


MODEL = Gaussian16()
EPS = MODEL.eps_hat


def rms(v):
    return float(v.double().pow(2).mean().sqrt())


@pytest.fixture(scope="module")
def ref():
    z = torch.randn(8, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    return reference(EPS, G_HI, G_LO, z, levels=9, substeps=4)


def test_the_reference_converges_to_the_flow_at_second_order(ref):
    alpha_lo = float(torch.sigmoid(torch.tensor(-G_LO, dtype=torch.float64)).sqrt())
    target = exact_flow(ref.z[0], G_HI, G_LO) / alpha_lo
    fine = reference(EPS, G_HI, G_LO, ref.z[0], levels=9, substeps=16)
    coarse_err, fine_err = rms(ref.x_end - target), rms(fine.x_end - target)
    assert fine_err < coarse_err / 10 and fine_err < 5e-4 * rms(target)  # 4x the steps: about 16x less error
    for level, g in enumerate(fine.gamma.tolist()):  # every kept state lies on the flow
        assert rms(fine.z[level] - exact_flow(ref.z[0], G_HI, g)) < 5e-4


@pytest.mark.parametrize("solver", ["ddim", "heun"])
def test_single_step_errors_are_the_samplers_own_steps(ref, solver):
    E = local_errors(ref, solver, EPS)
    for i, j in [(0, 1), (0, 8), (2, 5), (7, 8)]:
        z = SAMPLERS[solver](EPS, ref.z[i], ref.gamma[[i, j]])
        assert E[i, j] == pytest.approx(rms(z - ref.z[j]), rel=1e-6, abs=1e-12)
    assert np.isinf(E[3, 3]) and np.isinf(E[5, 2])


def test_multistep_errors_are_dpmpp_2m_steps_from_the_reference(ref):
    """DPM-Solver++(2M)'s second step from the reference state, its history from the one before."""
    E = local_errors(ref, "dpmpp2m")
    for p, i, j in [(0, 1, 2), (0, 3, 8), (2, 4, 5), (1, 6, 8)]:
        back_on_reference = lambda k, z, i=i: ref.z[i] if k == 0 else None  # noqa: E731
        z = dpmpp_2m(EPS, ref.z[p], ref.gamma[[p, i, j]], callback=back_on_reference)
        assert E[p, i, j] == pytest.approx(rms(z - ref.z[j]), rel=1e-6, abs=1e-12)
    assert np.isinf(E[2, 1, 5]) and np.isinf(E[1, 4, 4])


@pytest.mark.parametrize("kind", ["single-step", "multistep", "euler-last", "multistep, euler-last"])
def test_the_dynamic_programme_equals_brute_force(kind):
    L, rng = 8, np.random.default_rng(3)
    first = np.triu(rng.random((L, L)), 1)
    first[first == 0] = np.inf
    multistep = kind.startswith("multistep")
    E = rng.random((L, L, L)) if multistep else first
    last = 3 * np.triu(rng.random((L, L)), 1) if kind.endswith("euler-last") else None  # a first-order last step
    for steps in range(1, L):
        paths = [[0, *mid, L - 1] for mid in itertools.combinations(range(1, L - 1), steps - 1)]
        brute = min(path_cost(p, E, first, last) for p in paths)
        path, value = best_path(E, steps, first if multistep else None, last)
        assert len(path) == steps + 1 and path[0] == 0 and path[-1] == L - 1 and sorted(set(path)) == path
        assert value == pytest.approx(brute, rel=1e-12)
        assert path_cost(path, E, first, last) == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("solver,steps", [("dpmpp2m", 5), ("heun", 3), ("ddim", 6)])
def test_on_gaussian_data_it_is_no_worse_than_score_optimal_on_fresh_noise(solver, steps):
    f = S_DATA * torch.randn(4096, 16, generator=torch.Generator().manual_seed(1))
    score = score_optimal(MODEL, f, steps, generator=torch.Generator().manual_seed(2)).gamma
    grid = solver_aware(MODEL, solver, steps, seeds={"score-optimal": score}, levels=33,
                        generator=torch.Generator().manual_seed(3))
    assert grid.steps == steps and grid.gamma[0] == G_HI and grid.gamma[-1] == G_LO
    assert grid.info["error"] <= grid.info["candidate_errors"][grid.info["start"]]
    z1 = torch.randn(2048, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))  # fresh noise
    target = exact_flow(z1, G_HI, G_LO)

    def error(gammas, euler_last=False):
        return rms(SAMPLERS[solver](EPS, z1, gammas, **({"euler_last": True} if euler_last else {})) - target)
    fitted = error(grid.gamma, grid.info["euler_last"])  # the form the fit chose
    assert fitted <= 1.001 * error(score)
    assert fitted <= 1.001 * min(error(fixed_grid(name, SCHED, steps).gamma) for name in FIXED)


def test_an_odd_budget_fits_heun_with_a_last_euler_step():
    """Heun at NFE 5: two Heun steps and a last Euler step; the fit walks that sampler, and its
    grid is no worse on fresh noise than the fixed grids walked the same way."""
    grid = solver_aware(MODEL, "heun", 3, levels=17, euler_last=True, generator=torch.Generator().manual_seed(3))
    assert grid.info["euler_last"] and grid.info["error"] <= grid.info["candidate_errors"][grid.info["start"]]
    z1 = torch.randn(2048, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    target = exact_flow(z1, G_HI, G_LO)

    def error(gammas):
        return rms(SAMPLERS["heun"](EPS, z1, gammas, euler_last=True) - target)
    assert error(grid.gamma) <= 1.001 * min(error(fixed_grid(name, SCHED, 3).gamma) for name in FIXED)
    with pytest.raises(ValueError, match="first order"):
        solver_aware(MODEL, "ddim", 3, euler_last=True)


def test_an_even_heun_budget_also_tries_a_last_euler_step():
    """Heun's corrector evaluates the network at the grid's last, almost noiseless level. Where the
    network is wrong there (a trained one can be), the fit takes its DP path whose last step is an
    Euler step (one call unspent) and says so; without that candidate it cannot, and is worse."""
    def wrong_at_the_end(z, gamma):
        return EPS(z, gamma) + (gamma - G_LO).abs().lt(1e-6).to(z.dtype).view(-1, 1)

    kw = dict(levels=17, eps_fn=wrong_at_the_end, generator=torch.Generator().manual_seed(3))
    grid, full = solver_aware(MODEL, "heun", 4, **kw), solver_aware(MODEL, "heun", 4, try_euler_last=False, **kw)
    info = grid.info
    assert info["candidate_euler_last"] == {name: name == DP_EULER_LAST for name in info["candidates"]}
    assert info["start"] == DP_EULER_LAST and info["euler_last"] is True
    assert DP_EULER_LAST not in full.info["candidates"] and full.info["euler_last"] is False
    z1 = torch.randn(2048, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    target = exact_flow(z1, G_HI, G_LO)

    def error(g):
        return rms(SAMPLERS["heun"](wrong_at_the_end, z1, g.gamma, euler_last=g.info["euler_last"]) - target)
    assert error(grid) < 0.5 * error(full)
    assert grid.info["error"] < 0.5 * full.info["error"]


def test_the_fit_starts_from_the_dp_path_unless_another_candidate_wins_broadly():
    errors = {DP_PATH: 0.10, "edm": 0.09, "cosine": 0.095}
    versus_dp = {"edm": (-0.002, 0.003), "cosine": (-0.001, 0.0002)}  # (mean change of MSE, its standard error)
    assert choose_start(errors, versus_dp, test=1.0) == "cosine"  # edm is lower, but within its noise
    assert choose_start(errors, versus_dp, test=0.0) == "edm"  # any decrease: the least
    assert choose_start(errors, versus_dp, test=6.0) == DP_PATH
    grid = solver_aware(MODEL, "dpmpp2m", 4, levels=17, generator=torch.Generator().manual_seed(3))
    info = grid.info
    assert set(info["candidates"]) == set(info["candidate_errors"]) == set(info["candidate_versus_dp"]) | {DP_PATH}
    assert info["start"] == choose_start(info["candidate_errors"], info["candidate_versus_dp"])
    assert info["candidate_euler_last"] == {name: name == DP_EULER_LAST for name in info["candidates"]}
    assert info["euler_last"] == info["candidate_euler_last"][info["start"]]
    assert all(len(g) == 5 for g in info["candidates"].values())


def test_global_error_is_the_final_signal_error(ref):
    grid = fixed_grid("edm", SCHED, 4).gamma
    z = SAMPLERS["heun"](EPS, ref.z[0], grid)
    alpha_end = float(torch.sigmoid(torch.tensor(-G_LO, dtype=torch.float64)).sqrt())
    assert global_error(EPS, ref, "heun", grid) == pytest.approx(rms(z / alpha_end - ref.x_end), rel=1e-9)


def test_an_ancestral_sampler_is_refused():
    with pytest.raises(ValueError, match="deterministic"):
        solver_aware(MODEL, "ancestral", 4)


def test_cli_fits_caches_and_samples_on_a_solver_aware_grid(tmp_path, monkeypatch, capsys):
    import json

    from diffbits import solver_aware as module
    from diffbits.cli import main
    from diffbits.config import RunConfig, apply_overrides
    from diffbits.train import train

    cfg = apply_overrides(RunConfig(), ["model.width=8", "model.depth=1", "train.batch_size=16", "train.sample_steps=2"])
    cfg.train.steps = 2
    run = tmp_path / "run"
    train(cfg, run, progress=False)
    assert main(["grid", str(run), "--method", "solver-aware", "--sampler", "dpmpp2m", "--steps", "3",
                 "-o", str(tmp_path / "g.json")]) == 0
    body = json.loads((tmp_path / "g.json").read_text())
    assert body["steps"] == 3 and body["sampler"] == "dpmpp2m" and "score-optimal" not in body["candidate_errors"]
    assert (run / "grids" / "solver-aware-dpmpp2m-3.json").exists()
    # once the run has the score-optimal probe, it seeds the fit too
    assert main(["grid", str(run), "--method", "score-optimal", "--steps", "3", "-o", str(tmp_path / "s.json")]) == 0
    assert main(["grid", str(run), "--method", "solver-aware", "--sampler", "ddim", "--steps", "3",
                 "-o", str(tmp_path / "h.json")]) == 0
    assert "score-optimal" in json.loads((tmp_path / "h.json").read_text())["candidate_errors"]
    # a call budget: 5 calls are 2 Heun steps and a last Euler step, fitted so and walked so
    assert main(["grid", str(run), "--method", "solver-aware", "--sampler", "heun", "--nfe", "5",
                 "-o", str(tmp_path / "e.json")]) == 0
    body = json.loads((tmp_path / "e.json").read_text())
    assert body["steps"] == 3 and body["euler_last"] is True
    assert (run / "grids" / "solver-aware-heun-3-euler-last.json").exists()
    from diffbits.vdm import VDM

    calls, eps_hat = [], VDM.eps_hat
    monkeypatch.setattr(VDM, "eps_hat", lambda self, *a, **k: calls.append(1) or eps_hat(self, *a, **k))
    for args in (["--nfe", "5"], ["--grid", str(tmp_path / "e.json")], ["--grid", "solver-aware", "--nfe", "5"]):
        calls.clear()
        assert main(["sample", str(run), "--sampler", "heun", *args, "--n", "2", "-o", str(tmp_path / "z.npy")]) == 0
        assert len(calls) == 5, args
    for bad, says in ((["--nfe", "5", "--steps", "3"], "not both"), (["--nfe", "4", "--grid", str(tmp_path / "e.json")],
                                                                     "the grid has 3")):
        capsys.readouterr()
        assert main(["sample", str(run), "--sampler", "heun", *bad, "-o", str(tmp_path / "z.npy")]) == 2
        assert says in capsys.readouterr().err
    assert main(["grid", str(run), "--method", "edm", "--nfe", "5", "-o", str(tmp_path / "f.json")]) == 2
    assert "--sampler" in capsys.readouterr().err
    monkeypatch.setattr(module, "solver_aware", lambda *a, **k: pytest.fail("the cached grid was not reused"))
    assert main(["sample", str(run), "--grid", "solver-aware", "--sampler", "dpmpp2m", "--steps", "3", "--n", "2",
                 "-o", str(tmp_path / "x.npy")]) == 0
    assert np.load(tmp_path / "x.npy").shape[0] == 2
    capsys.readouterr()
    assert main(["sample", str(run), "--grid", "solver-aware", "--steps", "3", "-o", str(tmp_path / "y.npy")]) == 2
    assert "--sampler" in capsys.readouterr().err
