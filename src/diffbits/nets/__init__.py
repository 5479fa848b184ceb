"""Denoisers: any ``net(z_t, gamma_t, cond=None) -> eps_hat``."""
from .embedding import FourierFeatures, GammaEmbedding, fourier_periods
from .mlp import ResidualMLP
from .score_unet import ScoreUNet

__all__ = ["ScoreUNet", "ResidualMLP", "FourierFeatures", "GammaEmbedding", "fourier_periods"]
