"""Progress of long work: a bar on a terminal, a plain line every so often anywhere else (a log
file or a pipe gets a readable record, not thousands of carriage returns)."""
from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm

__all__ = ["progress", "LOG_EVERY_S"]

LOG_EVERY_S = 30.0  # seconds between lines when stderr is not a terminal


def progress(iterable=None, *, total: int | None = None, desc: str = "", enabled: bool = True, unit: str = "it",
             initial: int = 0):
    """``tqdm(iterable)`` when ``enabled`` and stderr is a terminal; when it is not, an object with the
    same use (iteration, ``update``, ``set_postfix``, ``close``, ``with``) that writes one line every
    ``LOG_EVERY_S`` seconds; nothing at all when not ``enabled``."""
    if enabled and sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=False, dynamic_ncols=True)
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    return _Lines(iterable, total, desc, unit, initial, enabled)


class _Lines:
    def __init__(self, iterable, total, desc, unit, initial, enabled):
        self.iterable, self.total, self.desc, self.unit, self.n = iterable, total, desc, unit, initial
        self.enabled, self.postfix = enabled, ""
        self.start = self.last = time.monotonic()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if self.enabled and now - self.last >= LOG_EVERY_S:
            self.last = now
            self._line(now)

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def _line(self, now: float) -> None:
        of = f"/{self.total}" if self.total else ""
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}{of} {self.unit}{pct}, {now - self.start:.0f} s{extra}", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass
