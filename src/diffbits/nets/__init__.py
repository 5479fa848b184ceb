"""Denoisers: any ``net(z_t, gamma_t, cond=None) -> eps_hat``."""
from .continuous_unet import ContinuousUNet
from .cost import cost
from .embedding import FourierFeatures, GammaEmbedding, fourier_periods
from .mlp import ResidualMLP
from .score_unet import ScoreUNet
from .signal_view import SignalView
from .unet import UNet

__all__ = ["ScoreUNet", "UNet", "ContinuousUNet", "ResidualMLP", "SignalView", "cost", "FourierFeatures", "GammaEmbedding", "fourier_periods"]
