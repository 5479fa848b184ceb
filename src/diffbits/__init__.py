"""diffbits: likelihood-first diffusion models."""
from . import bound, grids, nets, samplers, schedules, score_optimal
from .bound import BoundTerms, nats_to_bpd
from .vdm import VDM

__version__ = "0.1.0"
__all__ = ["VDM", "BoundTerms", "nats_to_bpd", "bound", "nets", "samplers", "schedules", "score_optimal", "grids"]
