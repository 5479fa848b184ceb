import pytest
import torch

from diffbits import schedules as S

ALL = [S.FixedLinear, S.LearnedLinear, S.Cosine, S.MonotoneNet]


@pytest.mark.parametrize("cls", ALL)
def test_monotone_and_hits_endpoints(cls):
    sched = cls(gamma_0=-12.0, gamma_1=6.0)
    t = torch.linspace(0, 1, 2001)
    with torch.no_grad():
        g, dg = sched.gamma_and_derivative(t)
    assert torch.all(g[1:] > g[:-1])
    assert torch.all(dg > 0)
    assert g[0].item() == pytest.approx(-12.0, abs=1e-4)
    assert g[-1].item() == pytest.approx(6.0, abs=1e-4)


@pytest.mark.parametrize("cls", ALL)
def test_derivative_matches_finite_differences(cls):
    sched = cls(gamma_0=-10.0, gamma_1=7.0).double()
    t = torch.linspace(0.01, 0.99, 97, dtype=torch.float64)
    h = 1e-6
    with torch.no_grad():
        _, dg = sched.gamma_and_derivative(t)
        fd = (sched(t + h) - sched(t - h)) / (2 * h)
    torch.testing.assert_close(dg, fd, rtol=1e-5, atol=1e-5)


def test_monotone_net_stays_monotone_for_random_parameters():
    torch.manual_seed(1)
    sched = S.MonotoneNet(-13.3, 5.0)
    with torch.no_grad():
        for p in (sched.w1, sched.b1, sched.w2, sched.b2, sched.w3):
            p.copy_(torch.randn_like(p) * 3)
        g, dg = sched.gamma_and_derivative(torch.linspace(0, 1, 1001))
    assert torch.all(g[1:] >= g[:-1]) and torch.all(dg >= 0)
    assert g[0].item() == pytest.approx(-13.3, abs=1e-4) and g[-1].item() == pytest.approx(5.0, abs=1e-4)


def test_alpha_sigma_variance_preserving():
    g = torch.linspace(-15, 15, 101, dtype=torch.float64)
    a, s = S.alpha_sigma(g)
    torch.testing.assert_close(a**2 + s**2, torch.ones_like(g))
    torch.testing.assert_close(-torch.log(a**2 / s**2), g)


def test_unknown_schedule_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown schedule"):
        S.build_schedule("linearish", -10, 5)


def test_default_gamma_0_keeps_sigma_0_a_fixed_fraction_of_a_bin():
    from diffbits.build import default_gamma_0

    assert default_gamma_0(256) == pytest.approx(-13.3)
    ratio = [S.alpha_sigma(torch.tensor(default_gamma_0(k)))[1].item() / (2 / k) for k in (17, 256, 65536)]
    assert max(ratio) / min(ratio) == pytest.approx(1.0, abs=1e-2)
