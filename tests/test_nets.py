import pytest
import torch
from torch import nn

from diffbits.nets import FourierFeatures, ResidualMLP, ScoreUNet, fourier_periods


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 7, 5), (2, 9, 12)])
def test_score_unet_any_image_size_and_channels(shape):
    net = ScoreUNet(channels=shape[0], width=16, depth=1, fourier_periods=fourier_periods(256, [0, 1]))
    z = torch.randn(2, *shape)
    out = net(z, torch.tensor([-5.0, 2.0]))
    assert out.shape == z.shape
    # zero-initialised output layer: eps_hat starts as z_t (VDM's base measure)
    torch.testing.assert_close(out, z)


def test_score_unet_one_dimensional_signals():
    net = ScoreUNet(channels=1, width=16, depth=1, dims=1)
    assert net(torch.randn(3, 1, 33), torch.zeros(3)).shape == (3, 1, 33)


def _perturb(net):
    """Move every weight off its initialisation (zero-initialised layers hide the conditioning)."""
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


def test_nets_depend_on_gamma():
    net = _perturb(ScoreUNet(channels=1, width=16, depth=1))
    z = torch.randn(1, 1, 6, 6)
    assert not torch.allclose(net(z, torch.tensor([-10.0])), net(z, torch.tensor([3.0])))


def test_mlp_flattens_any_shape():
    net = ResidualMLP((1, 4, 4), width=32, depth=2, fourier_periods=[0.5])
    z = torch.randn(5, 1, 4, 4)
    assert net(z, torch.zeros(5)).shape == z.shape


def test_fourier_features_periods():
    assert fourier_periods(256, [0, 1]) == [2 / 256, 1 / 256]  # VDM: frequencies 2^7, 2^8
    ff = FourierFeatures([0.5])
    z = torch.tensor([[0.125, 0.25]])
    out = ff(z)
    assert out.shape == (1, 6) and ff.out_channels(2) == 6
    torch.testing.assert_close(out[0, 2:4], torch.sin(4 * torch.pi * z[0]))


def test_class_conditioning_changes_the_output():
    net = _perturb(ScoreUNet(channels=1, width=16, depth=1, num_classes=3))
    z, g = torch.randn(2, 1, 5, 5), torch.zeros(2)
    assert not torch.allclose(net(z, g, cond=torch.tensor([0, 0])), net(z, g, cond=torch.tensor([1, 2])))


def test_categorical_head_with_true_logits_is_the_exact_denoiser(categorical):
    from diffbits.nets.heads import categorical_eps
    from tests.helpers import ExactCategoricalDenoiser

    levels = categorical.shape[-1]  # 64 coordinates as one 8x8 image
    z, g = torch.randn(3, 64, dtype=torch.float64), torch.tensor([-6.0, 0.0, 4.0], dtype=torch.float64)
    logits = categorical.double().log().T.reshape(1, levels, 8, 8).expand(3, -1, -1, -1)
    eps_hat = categorical_eps(z.view(3, 1, 8, 8), g, logits, levels)
    torch.testing.assert_close(eps_hat.view(3, 64), ExactCategoricalDenoiser(categorical)(z, g))


def test_score_unet_categorical_head_shapes_and_start():
    net = ScoreUNet(channels=3, width=8, depth=1, levels=5)
    assert net.conv_out.out_channels == 15
    z = torch.randn(2, 3, 4, 4)
    out = net(z, torch.tensor([-4.0, 1.0]))
    assert out.shape == z.shape and torch.isfinite(out).all()


# -- the DDPM U-Net and the ContinuousUNet (docs/networks.md section 5) ----------------------------------------------

from diffbits.nets import ContinuousUNet, UNet, cost  # noqa: E402
from diffbits.nets.ode import ODEBlock  # noqa: E402


@pytest.mark.parametrize("cls", [UNet, ContinuousUNet])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 7, 7), (3, 28, 28), (2, 13, 10), (3, 32, 32)])
def test_unets_keep_any_image_size_odd_or_even(cls, shape):
    net = cls(channels=shape[0], width=16, size=min(shape[1:]), fourier_periods=fourier_periods(256, [0]))
    z = torch.randn(2, *shape)
    out = net(z, torch.tensor([-5.0, 2.0]))
    assert out.shape == z.shape
    torch.testing.assert_close(out, z)  # zero-initialised output: eps_hat starts at z_t
    assert _perturb(net)(z, torch.tensor([-5.0, 2.0])).shape == z.shape


@pytest.mark.parametrize("cls", [UNet, ContinuousUNet])
def test_unets_on_one_dimensional_signals(cls):
    net = _perturb(cls(channels=1, width=16, dims=1, size=33))
    assert net(torch.randn(3, 1, 33), torch.zeros(3)).shape == (3, 1, 33)


def test_the_noise_level_reaches_every_ode_block():
    """Each ODE block's output moves with gamma (inputs held fixed), and the loss has a gradient
    through every block's own embedding projection."""
    net = _perturb(ContinuousUNet(channels=1, width=16, size=8))
    blocks = [m for m in net.modules() if isinstance(m, ODEBlock)]
    assert len(blocks) == 2 * 2 + 2  # down and up at two levels, two in the middle
    for block in blocks:
        c = block.stem.in_channels
        h = torch.randn(2, c, 4, 4)
        emb = [net.embed(torch.full((2,), g)) for g in (-8.0, 3.0)]
        assert not torch.allclose(block(h, emb[0]), block(h, emb[1]))
    net.zero_grad()
    net(torch.randn(4, 1, 8, 8), torch.tensor([-9.0, -2.0, 0.5, 4.0])).square().sum().backward()
    for block in blocks:
        assert block.emb.weight.grad is not None and block.emb.weight.grad.abs().sum() > 0


def test_ode_block_with_one_rk4_step_is_the_hand_computed_update():
    torch.manual_seed(0)
    block = _perturb(ODEBlock(dims=2, channels=4, emb_dim=8, steps=1, solver="rk4"))
    h, emb = torch.randn(1, 4, 3, 3), torch.randn(1, 8)
    scale, shift = block.emb(emb).view(1, -1, 1, 1).chunk(2, dim=1)

    def accel(x, v):  # dv/ds = f(x, v, emb), written out without the block's helpers
        a = block.norm1(block.mix(torch.cat([x, v], 1))) * (1 + scale) + shift
        return block.out(torch.nn.functional.silu(block.norm2(block.conv(torch.nn.functional.silu(a)))))

    x0, v0 = h, block.stem(h)
    k1x, k1v = v0, accel(x0, v0)
    k2x, k2v = v0 + k1v / 2, accel(x0 + k1x / 2, v0 + k1v / 2)
    k3x, k3v = v0 + k2v / 2, accel(x0 + k2x / 2, v0 + k2v / 2)
    k4x = v0 + k3v
    expected = x0 + (k1x + 2 * k2x + 2 * k3x + k4x) / 6
    torch.testing.assert_close(block(h, emb), expected)
    # more steps converge: the two-step answer is closer to a fine (64-step) solution than the one-step
    fine = ODEBlock(dims=2, channels=4, emb_dim=8, steps=64)
    fine.load_state_dict(block.state_dict())
    two = ODEBlock(dims=2, channels=4, emb_dim=8, steps=2)
    two.load_state_dict(block.state_dict())
    ref = fine(h, emb)
    assert (two(h, emb) - ref).abs().max() < (block(h, emb) - ref).abs().max()


def test_continuous_unet_is_light_at_cifar_size():
    """The paper's claim (Calvo-Ordonez et al. 2023; docs/networks.md section 5) at 32x32x3 and one base width: at most 30% of the DDPM U-Net's parameters and FLOPs."""
    periods = fourier_periods(256, [0, 1])
    light = cost(ContinuousUNet(channels=3, width=64, size=32, fourier_periods=periods), (3, 32, 32))
    ddpm = cost(UNet(channels=3, width=64, size=32, fourier_periods=periods), (3, 32, 32))
    assert light["params"] <= 0.3 * ddpm["params"] and light["flops"] <= 0.3 * ddpm["flops"]
    assert 0 < light["flops"] < ddpm["flops"]


@pytest.mark.parametrize("net", ["unet", "continuous_unet"])
def test_config_builds_each_network_into_a_trainable_vdm(net):
    from diffbits.build import build_model
    from diffbits.config import ModelConfig

    model = build_model(ModelConfig(net=net, width=16), (1, 8, 8), 17)
    loss = model.loss_terms(torch.randint(0, 17, (4, 1, 8, 8))).bpd.mean()
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_nets_cli_prints_params_and_flops_as_json(capsys):
    import json

    from diffbits.cli import main

    assert main(["nets", "--size", "16", "--channels", "1", "--width", "16", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"ScoreUNet", "UNet", "ContinuousUNet"}
    assert all(v["params"] > 0 and v["flops"] > 0 for v in out.values())
    assert out["ContinuousUNet"]["flops"] < out["UNet"]["flops"]


def test_cpu_dropout_keeps_the_rate_and_the_mean_and_repeats_under_a_seed():
    from diffbits.nets.blocks import Dropout

    drop, x = Dropout(0.1), torch.ones(64, 32, 8, 8)
    torch.manual_seed(0)
    y = drop(x)
    kept = (y != 0).float().mean().item()
    n = x.numel()
    assert abs(kept - 0.9) < 5 * (0.09 / n) ** 0.5  # binomial: 5 standard deviations
    assert y.mean().item() == pytest.approx(1.0, abs=5 * (0.1 / 0.9 / n) ** 0.5)
    torch.manual_seed(0)
    assert torch.equal(drop(x), y)
    x.requires_grad_(True)
    torch.manual_seed(1)
    out = drop(x)
    out.sum().backward()
    assert torch.equal(x.grad, (out != 0).float() / 0.9)  # gradient through the kept ones only
    assert torch.equal(drop.eval()(x), x)


def test_resnet_block_folds_the_norm_affine_into_the_scale_and_shift():
    from torch.nn import functional as F

    from diffbits.nets.blocks import ResnetBlock

    torch.manual_seed(0)
    block = ResnetBlock(2, 8, 16, emb_dim=12)
    for p in block.parameters():
        nn.init.normal_(p, std=0.3)  # non-trivial norm weight and bias, non-zero conv2
    x, emb = torch.randn(3, 8, 5, 5), torch.randn(3, 12)
    h = block.conv1(F.silu(block.norm1(x)))
    scale, shift = block.emb(emb).view(3, 32, 1, 1).chunk(2, dim=1)
    h = block.norm2(h) * (1 + scale) + shift  # the unfolded form
    expected = block.skip(x) + block.conv2(F.silu(h))
    torch.testing.assert_close(block(x, emb), expected, rtol=1e-5, atol=1e-5)
