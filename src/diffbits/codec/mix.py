"""A keyed bijection of 16-bit words, to mix the top of the ANS stack before a pop (docs/codec.md sec. 2.1).

ANS is last in, first out: the pop of ``q(z_i | z_i-1)`` reads what the push of ``p(z_i-2 | z_i-1)``
just wrote, each symbol's position in its model's distribution. Those bits are uniform only if the
pushed symbols follow the pushing model exactly; ``p`` is narrower than the true reverse step, so
they are not, and a pop read straight from them is no draw of ``q``. ``mix_words`` spreads that
non-uniformity over many words (Feistel rounds between two random halves), so each popped symbol
reads bits that are close to uniform. It is exactly invertible whatever the words, and moving
uniform 16-bit words on and off the stack costs exactly 16 bits each way, so mixing costs no bits.
"""
from __future__ import annotations

import numpy as np

__all__ = ["ROUNDS", "mix_words"]

ROUNDS = 3  # each word then depends on about 3^(2 * ROUNDS) others
SEED = 0x313C


def _hash(v: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """A 16-bit hash of three words of ``v`` per output word (``idx``: (3, n) positions)."""
    a, b, c = v[idx[0]], v[idx[1]], v[idx[2]]
    return ((a * 0x9E3B + b * 0x85EB + 0x6A09) ^ (c >> 3) ^ (a << 5)) & 0xFFFF


def mix_words(words: np.ndarray, key: int, inverse: bool = False) -> np.ndarray:
    """``words`` (16-bit values) through the bijection keyed by ``key`` and their number, or through
    its inverse. Both sides derive the halves and hash positions from ``key`` alone."""
    w = np.asarray(words, dtype=np.uint32).copy()
    if len(w) < 2:
        return w
    rng = np.random.default_rng([SEED, key, len(w)])
    perm = rng.permutation(len(w))
    a, b = perm[: len(w) // 2], perm[len(w) // 2:]
    rounds = [(rng.integers(0, len(b), (3, len(a))), rng.integers(0, len(a), (3, len(b)))) for _ in range(ROUNDS)]
    if not inverse:
        for ia, ib in rounds:
            w[a] ^= _hash(w[b], ia)
            w[b] ^= _hash(w[a], ib)
    else:
        for ia, ib in reversed(rounds):
            w[b] ^= _hash(w[a], ib)
            w[a] ^= _hash(w[b], ia)
    return w
