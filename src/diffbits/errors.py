"""Every error diffbits raises on purpose. Each says what is wrong and, where there is one, the
way out; the command line prints the message and exits with status 2 for any of them."""
from __future__ import annotations

__all__ = ["DiffbitsError", "DataError", "RunError", "RunExists", "TrainingDiverged", "NoiseLevelError",
           "ContainerError", "CodingError", "OutOfRange"]


class DiffbitsError(Exception):
    """The base of diffbits' own errors."""


class DataError(DiffbitsError, ValueError):
    """Bad input data; the message names the file and the problem."""


class RunError(DiffbitsError, FileNotFoundError):
    """A run directory that is missing, incomplete or not a diffbits run."""


class RunExists(DiffbitsError, FileExistsError):
    """``train`` into a directory that already holds a run, without ``--resume`` or ``--fresh``."""


class TrainingDiverged(DiffbitsError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class NoiseLevelError(DiffbitsError, ValueError):
    """The noise level lies outside the model's schedule: too little or too much noise for it."""


class ContainerError(DiffbitsError, ValueError):
    """A file that is not a valid ``.dbits`` container, or does not belong to this model."""


class CodingError(DiffbitsError, RuntimeError):
    """The chain could not be coded (a symbol fell outside its alphabet, or decoding ran dry)."""


class OutOfRange(CodingError):
    """A latent fell outside the model's alphabet; ``rows`` is the (start, stop) of its batch."""

    rows: tuple[int, int] = (0, 0)
