"""The command line: ``diffbits COMMAND ...``; ``diffbits COMMAND --help`` for each command."""
from __future__ import annotations

import argparse
import sys

from .. import __version__
from . import codec, nets, restore, sample, train

__all__ = ["main"]

DESCRIPTION = """Likelihood-first diffusion models: train a variational diffusion model on images,
audio or integer arrays, read off its bound in bits per dimension, compress files losslessly
with it, sample from it fast, denoise and inpaint with it. Every command that writes takes
-o/--out; every error exits with status 2 and a message that names the problem."""

COMMANDS = (train, sample, restore, codec, nets)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffbits", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"diffbits {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..errors import DiffbitsError

    a = build_parser().parse_args(argv)
    try:
        return a.handler(a)
    except KeyboardInterrupt as e:
        print(f"diffbits {a.cmd}: interrupted{': ' + str(e) if str(e) else ''}", file=sys.stderr)
        return 130
    except (DiffbitsError, FileNotFoundError, ValueError, TypeError) as e:
        print(f"diffbits {a.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
