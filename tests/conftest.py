import pytest
import torch


@pytest.fixture
def categorical():
    """Probabilities of 4 levels for each of 64 independent coordinates."""
    g = torch.Generator().manual_seed(0)
    return torch.softmax(2 * torch.randn(64, 4, generator=g), -1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
