"""Lossless compression with a trained model: bits-back ANS coding (docs/codec.md) in a checked container."""
from .bitsback import BitsBackCoder, Chain, CodingError, OutOfRange
from .container import ContainerError
from .files import compress, decompress

__all__ = ["BitsBackCoder", "Chain", "CodingError", "OutOfRange", "ContainerError", "compress", "decompress"]
