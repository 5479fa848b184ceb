import pytest
import torch

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
