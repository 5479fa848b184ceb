"""A diffusers UNet2DModel with its discrete schedule, through diffbits (no hub: random weights)."""
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffbits.adapters.diffusers import from_diffusers  # noqa: E402
from diffbits.score_optimal import score_optimal  # noqa: E402


@pytest.fixture(scope="module")
def unet_and_scheduler():
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(8, 16), norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D")).eval()
    return unet, diffusers.DDPMScheduler(num_train_timesteps=1000)


def test_wrapper_gives_the_unets_eps_at_its_own_timesteps(unet_and_scheduler):
    unet, sched = unet_and_scheduler
    model = from_diffusers(unet, sched)
    z = torch.randn(3, 1, 8, 8)
    for k in (0, 17, 500, 999):
        abar = sched.alphas_cumprod[k].double()
        gamma = torch.log((1 - abar) / abar).float()
        with torch.no_grad():
            direct = unet(z, torch.tensor([k] * 3)).sample
            ours = model.eps_hat(z, gamma.expand(3))
        torch.testing.assert_close(ours, direct, atol=1e-4, rtol=1e-4)
    # the schedule hits the scheduler's endpoints and is monotone
    g = model.schedule(torch.linspace(0, 1, 50))
    assert (g.diff() > 0).all()
    assert g[0].item() == pytest.approx(torch.log((1 - sched.alphas_cumprod[0]) / sched.alphas_cumprod[0]).item(), rel=1e-5)


def test_score_optimal_grid_and_samplers_on_a_diffusers_model(unet_and_scheduler):
    unet, sched = unet_and_scheduler
    model = from_diffusers(unet, sched)
    f = torch.rand(16, 1, 8, 8) * 2 - 1
    grid = score_optimal(model, f, 6, probe=20, generator=torch.Generator().manual_seed(0))
    assert grid.steps == 6 and (grid.gamma.diff() < 0).all()
    x = model.sample(2, grid=grid, sampler="dpmpp2m", generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 1, 8, 8) and x.dtype == torch.int64
