"""diffbits: likelihood-first diffusion models."""
from .precision import flush_denormals

FLUSH_DENORMALS = flush_denormals()  # first, before torch's thread pool starts: precision.flush_denormals

from . import bound, grids, nets, samplers, schedules, score_optimal  # noqa: E402
from .bound import BoundTerms, nats_to_bpd  # noqa: E402
from .grids import Grid  # noqa: E402
from .runs import load_run  # noqa: E402
from .vdm import VDM  # noqa: E402

__version__ = "0.1.0"
__all__ = ["VDM", "Grid", "BoundTerms", "load_run", "nats_to_bpd", "bound", "grids", "nets", "samplers", "schedules",
           "score_optimal"]
