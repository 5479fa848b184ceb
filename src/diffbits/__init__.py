"""diffbits: likelihood-first diffusion models."""
from . import bound, grids, nets, samplers, schedules, score_optimal
from .bound import BoundTerms, nats_to_bpd
from .grids import Grid
from .runs import load_run
from .vdm import VDM

__version__ = "0.1.0"
__all__ = ["VDM", "Grid", "BoundTerms", "load_run", "nats_to_bpd", "bound", "grids", "nets", "samplers", "schedules",
           "score_optimal"]
