"""Bits-back ANS coding over the discrete-time chain ``x -> z_0 -> z_1/T -> ... -> z_1`` (docs/codec.md eq. 3).

Bit-Swap order (Kingma et al. 2019), so only ``z_0`` of the first batch needs initial bits:

    encode:  z_0 <- q(z_0 | x);  x -> p(x | z_0)
             for i = 1..T:  z_i <- q(z_i | z_i-1);  z_i-1 -> p(z_i-1 | z_i)
             z_T -> N(0, I)
    decode:  the same steps in reverse, swapping "<-" (decode, pop) and "->" (encode, push).

The expected net code length is the negative ELBO of the T-step chain, the bound ``VDM.bound(x, T)``
(steps uniform in t), or ``VDM.bound(x, grid=chain_grid(...))`` for the rate-optimal levels of ``codec.rate_optimal``.
With ``s = t_i-1``, ``t = t_i`` and ``c = -expm1(gamma_s - gamma_t)``:
``q(z_t | z_s) = N(alpha_t/alpha_s z_s, sigma_t^2 c)``, and
``p(z_s | z_t) = N(alpha_s/alpha_t (z_t - sigma_t c eps_hat(z_t)), sigma_s^2 c)`` (docs/codec.md eq. 2; docs/samplers.md eq. 2).

Latent ``z_i`` lives on the lattice ``k * delta_i``, ``delta_i`` = (the smaller of the two standard
deviations it is coded with) / ``resolution``; both sides derive it from the schedule in float64.
Each Gaussian is coded with constriction's ``QuantizedGaussian`` as an offset from the rounded
mean, so the alphabet stays small. The encoder records its batch sizes, so the decoder calls the
network on identical tensors.

Initial bits (the first pops have nothing to take back) come from a warm start: the first few
examples are deflated and their bytes are the bottom of the ANS stack, so the chain's first pops
read real data (deflate's output looks random) instead of costing extra bits. Only what a pop takes
beyond those bytes comes from a pseudo-random prefill and is paid as initial bits.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import constriction
import numpy as np
import torch
from scipy.special import expit

from ..progress import progress
from ..bound import SOFTMAX_MAX_LEVELS, bin_centres, data_to_signal
from ..errors import CodingError, OutOfRange
from ..grids import gamma_of
from .rate_optimal import knot_gammas

__all__ = ["Chain", "BitsBackCoder", "OutOfRange", "CodingError"]

# constriction gives every symbol of an alphabet at least 2^-24. Mass leaked that way is paid on
# every push (and a pop may land in a tail bin): over T steps it adds up. So alphabets end where a
# bin's true mass falls to ~2^-20: q (sampled by pops) is truncated there (it loses < 1e-5 of its
# mass); p's alphabet is wider, by P_MARGIN standard deviations, to hold what q produced.
FLOOR_BITS = 20
P_MARGIN = 3.0
# Where p is far off (a poor model, or few steps), its alphabet widens by 4^c, c coded per call
# (c = 0 costs ~0.001 bits; each wider class ~13 bits); beyond the last, OutOfRange.
ESCAPE = np.array([1 - 7e-4] + [1e-4] * 7)
ESCAPE_MODEL = constriction.stream.model.Categorical(ESCAPE, perfect=False)
PREFILL_SEED = 0x5EED
TOP_WORD = 0xD1FFB175  # above the warm start: a non-zero top word for the ANS head


@dataclass(frozen=True)
class Chain:
    """Float64 constants of the T-step chain, derived from the schedule alone."""

    gamma: np.ndarray  # (T+1,) gamma at t_i = i / T, or at the rate-optimal knots (codec.rate_optimal)
    alpha: np.ndarray
    sigma: np.ndarray
    c: np.ndarray  # c[i] = -expm1(gamma_i-1 - gamma_i), c[0] unused
    delta: np.ndarray  # lattice width of z_i

    @classmethod
    def from_schedule(cls, schedule, T: int, resolution: float) -> "Chain":
        if T < 1:
            raise ValueError(f"T must be at least 1, got {T}")
        gamma = gamma_of(schedule, torch.arange(T + 1, dtype=torch.float64) / T).numpy()
        if not np.all(np.diff(gamma) > 0):
            raise ValueError("the schedule's gamma is not strictly increasing on the T-step grid; use a smaller T")
        return cls.from_gammas(gamma, resolution)

    @classmethod
    def from_gammas(cls, gamma: np.ndarray, resolution: float) -> "Chain":
        """The chain through the levels ``gamma`` (increasing, float64; T + 1 of them)."""
        gamma = np.asarray(gamma, dtype=np.float64)
        if len(gamma) < 2 or not np.all(np.diff(gamma) > 0):
            raise ValueError("a chain needs at least two strictly increasing levels")
        if resolution <= 0:
            raise ValueError(f"resolution must be positive, got {resolution}")
        alpha, sigma = np.sqrt(expit(-gamma)), np.sqrt(expit(gamma))
        c = np.concatenate([[np.nan], -np.expm1(gamma[:-1] - gamma[1:])])
        q_std = np.concatenate([[sigma[0]], sigma[1:] * np.sqrt(c[1:])])  # z_i decoded with q
        p_std = np.concatenate([sigma[:-1] * np.sqrt(c[1:]), [1.0]])  # z_i encoded with p (prior for z_T)
        return cls(gamma, alpha, sigma, c, np.minimum(q_std, p_std) / resolution)

    @property
    def T(self) -> int:
        return len(self.gamma) - 1


def _gauss_bits(off: np.ndarray, m, s: float) -> np.ndarray:
    """-log2 of a unit bin at ``off`` under N(m, s^2) (fine lattice: density x width)."""
    return (0.5 * ((off - m) / s) ** 2 + math.log(s * math.sqrt(2 * math.pi))) / math.log(2)


def _signal(x: np.ndarray, levels: int) -> np.ndarray:
    return data_to_signal(torch.from_numpy(x), levels, torch.float64).numpy()


@dataclass
class _Ops:
    """Gaussian and categorical coding on one ANS stack, with the ideal information content
    (bits) of every symbol accumulated per example (+ for pushes, - for pops)."""

    coder: constriction.stream.stack.AnsCoder
    n: int
    info: np.ndarray = field(init=False)
    min_words: int = field(init=False)

    def __post_init__(self):
        self.info = np.zeros(self.n)
        self.min_words = self.coder.num_words()

    @staticmethod
    def _params(mean: np.ndarray, std: float, delta: float, wide: bool):
        centre = np.round(mean / delta)
        s = std / delta
        reach = math.sqrt(2 * max(FLOOR_BITS * math.log(2) - math.log(s * math.sqrt(2 * math.pi)), 4.5))
        return centre, (mean / delta - centre).ravel(), s, int(math.ceil((reach + P_MARGIN * wide) * s)) + 1

    def _bits(self, off: np.ndarray, m: np.ndarray, s: float) -> np.ndarray:
        """Per example: the summed ``_gauss_bits`` of its symbols."""
        return _gauss_bits(off, m, s).reshape(self.n, -1).sum(1)

    def pop_gaussian(self, mean: np.ndarray, std: float, delta: float, wide: bool) -> np.ndarray:
        centre, m, s, w = self._params(mean, std, delta, wide)
        if wide:
            w *= 4 ** int(self.coder.decode(ESCAPE_MODEL, 1)[0])
        family = constriction.stream.model.QuantizedGaussian(-w, w)
        off = self.coder.decode(family, m, np.full_like(m, s)).astype(np.float64)
        self.min_words = min(self.min_words, self.coder.num_words())
        self.info -= self._bits(off, m, s)
        return (centre.ravel() + off).reshape(mean.shape)

    def push_gaussian(self, k: np.ndarray, mean: np.ndarray, std: float, delta: float, wide: bool) -> None:
        centre, m, s, w = self._params(mean, std, delta, wide)
        off = (k - centre).ravel()
        need, cls = np.abs(off).max(initial=0), 0
        if wide:  # p: the alphabet widens by 4^cls where needed; cls is pushed last, popped first
            while w * 4**cls < need and cls < len(ESCAPE) - 1:
                cls += 1
        if need > w * 4**cls:
            raise OutOfRange(f"a latent lies {need / s:.0f} standard deviations from the model's mean")
        family = constriction.stream.model.QuantizedGaussian(-w * 4**cls, w * 4**cls)
        self.coder.encode_reverse(off.astype(np.int32), family, m, np.full_like(m, s))
        self.info += self._bits(off, m, s)
        if wide:
            self.coder.encode_reverse(np.array([cls], np.int32), ESCAPE_MODEL)

    def _categorical(self, z_0: np.ndarray, chain: Chain, levels: int):
        """``p(x | z_0)`` (docs/bound.md eqs. 5, 7): softmax over bin centres, or for many levels a discretised
        Gaussian in level units."""
        mean = (z_0 / chain.alpha[0]).ravel()
        if levels <= SOFTMAX_MAX_LEVELS:
            centres = bin_centres(levels, dtype=torch.float64).numpy()
            logits = -0.5 * math.exp(-chain.gamma[0]) * (mean[:, None] - centres) ** 2
            logits -= logits.max(1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(1, keepdims=True)
            bits = lambda x: -np.log2(np.maximum(p[np.arange(len(x)), x], 2.0**-24))  # noqa: E731
            return constriction.stream.model.Categorical(perfect=False), (p,), bits
        m = (mean + 1) * levels / 2 - 0.5  # in level units: bin k is [k - 1/2, k + 1/2]
        s = math.exp(chain.gamma[0] / 2) * levels / 2
        family = constriction.stream.model.QuantizedGaussian(0, levels - 1)
        return family, (m, np.full_like(m, s)), lambda x: _gauss_bits(x, m, s)

    def pop_data(self, z_0: np.ndarray, chain: Chain, levels: int) -> np.ndarray:
        family, params, bits = self._categorical(z_0, chain, levels)
        x = self.coder.decode(family, *params).astype(np.int64)
        self.min_words = min(self.min_words, self.coder.num_words())
        self.info -= bits(x).reshape(self.n, -1).sum(1)
        return x.reshape(z_0.shape)

    def push_data(self, x: np.ndarray, z_0: np.ndarray, chain: Chain, levels: int) -> None:
        family, params, bits = self._categorical(z_0, chain, levels)
        flat = x.ravel()
        self.coder.encode_reverse(flat.astype(np.int32), family, *params)
        self.info += bits(flat).reshape(self.n, -1).sum(1)


class BitsBackCoder:
    """Codes batches of integer data ``x`` (N, *data_shape) with a ``VDM``'s T-step chain.

    ``encode(x) -> (words, report)`` and ``decode(words, report["layout"]) -> x``."""

    def __init__(self, model, T: int = 100, resolution: float = 4.0, batch: int = 64, initial_examples: int = 2,
                 progress: bool = False, knots=None):
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        self.model, self.T, self.batch, self.progress = model, int(T), int(batch), progress
        self.resolution, self.initial_examples = float(resolution), int(initial_examples)
        self.levels, self.shape = model.levels, tuple(model.data_shape)
        if knots is None:  # steps uniform in t
            self.chain = Chain.from_schedule(model.schedule, self.T, resolution)
        else:  # lattice indices from codec.rate_optimal
            self.chain = Chain.from_gammas(knot_gammas(model.schedule, knots), resolution)
            if self.chain.T != self.T:
                raise ValueError(f"{len(knots)} knots make a {self.chain.T}-step chain, not T = {self.T}")
        self.device = model.schedule.gamma_0.device
        self._gammas = torch.as_tensor(self.chain.gamma, dtype=torch.float32)

    # -- the network -------------------------------------------------------------------------------

    @torch.no_grad()
    def _eps(self, z: np.ndarray, i: int) -> np.ndarray:
        zz = torch.from_numpy(z.astype(np.float32)).to(self.device)
        out = self.model.eps_hat(zz, self._gammas[i].expand(len(z)).to(self.device))
        return out.double().cpu().numpy()

    def _p_mean(self, z_t: np.ndarray, i: int) -> np.ndarray:
        ch = self.chain
        eps = self._eps(z_t, i)
        return ch.alpha[i - 1] / ch.alpha[i] * (z_t - ch.sigma[i] * ch.c[i] * eps)

    # -- one batch ---------------------------------------------------------------------------------

    def _encode_batch(self, ops: _Ops, x: np.ndarray, bar) -> None:
        ch = self.chain
        f = _signal(x, self.levels)
        k = ops.pop_gaussian(ch.alpha[0] * f, ch.sigma[0], ch.delta[0], False)  # z_0 <- q(z_0 | x)
        z_prev = k * ch.delta[0]
        ops.push_data(x, z_prev, ch, self.levels)  # x -> p(x | z_0)
        for i in range(1, ch.T + 1):
            k_i = ops.pop_gaussian(ch.alpha[i] / ch.alpha[i - 1] * z_prev, ch.sigma[i] * math.sqrt(ch.c[i]), ch.delta[i],
                                   False)
            z_i = k_i * ch.delta[i]
            ops.push_gaussian(k, self._p_mean(z_i, i), ch.sigma[i - 1] * math.sqrt(ch.c[i]), ch.delta[i - 1], True)
            k, z_prev = k_i, z_i
            bar.update(ops.n)
        ops.push_gaussian(k, np.zeros_like(z_prev), 1.0, ch.delta[-1], True)  # z_T -> N(0, I)

    def _decode_batch(self, ops: _Ops, n: int, bar) -> np.ndarray:
        ch = self.chain
        shape = (n,) + self.shape
        k = ops.pop_gaussian(np.zeros(shape), 1.0, ch.delta[-1], True)
        for i in range(ch.T, 0, -1):
            z_i = k * ch.delta[i]
            k_prev = ops.pop_gaussian(self._p_mean(z_i, i), ch.sigma[i - 1] * math.sqrt(ch.c[i]), ch.delta[i - 1], True)
            z_prev = k_prev * ch.delta[i - 1]
            ops.push_gaussian(k, ch.alpha[i] / ch.alpha[i - 1] * z_prev, ch.sigma[i] * math.sqrt(ch.c[i]), ch.delta[i], False)
            k = k_prev
            bar.update(ops.n)
        z_0 = k * ch.delta[0]
        x = ops.pop_data(z_0, ch, self.levels)
        f = _signal(x, self.levels)
        ops.push_gaussian(k, ch.alpha[0] * f, ch.sigma[0], ch.delta[0], False)
        return x

    # -- whole streams -------------------------------------------------------------------------------

    def prefill(self, words: int) -> np.ndarray:
        """The pseudo-random initial words (both sides can regenerate them)."""
        return np.random.default_rng(PREFILL_SEED).integers(0, 2**32, words, dtype=np.uint32)

    def _need(self) -> float:
        """Bits the first pops of one example take before its pushes give any back, roughly."""
        s0 = self.chain.sigma[0] / self.chain.delta[0]
        return math.prod(self.shape) * (math.log2(4.13 * s0) + math.log2(8.26 * self.resolution))

    def _warm_bytes(self, x: np.ndarray, need: float) -> tuple[int, bytes]:
        """The fewest leading examples whose deflated bytes cover one example's first pops (``need`` bits)."""
        target, m, blob = need / 8, 0, b""
        while m < len(x) and len(blob) < target:
            m += 1
            blob = _deflate_levels(x[:m], self.levels)
        return m, blob

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, dict]:
        """Returns the stream and a report: ``layout`` (what ``decode`` needs: the batch sizes, the
        warm-start examples and bytes, the prefill and the words trimmed off its bottom),
        ``initial_words`` (prefill words the stream carries) and ``info_bits`` (ideal bits per
        chain-coded example). Batches grow from one example as the stack fills (each batch costs a
        few bits per step: fewer, larger batches are cheaper)."""
        x = np.asarray(x)
        if x.shape[1:] != self.shape:
            raise ValueError(f"expected data of shape (N, {', '.join(map(str, self.shape))}), got {x.shape}")
        if x.size and (x.min() < 0 or x.max() >= self.levels):
            raise ValueError(f"data must be integers in [0, {self.levels - 1}]")
        need = self._need()
        m, blob = self._warm_bytes(x, need)
        warm = _bytes_to_words(blob)
        n = len(x) - m
        words = int(2 * self.batch * need / 32) + 256  # generous: the words never touched are trimmed off
        for _ in range(16):
            pre = np.concatenate([self.prefill(words), warm, [TOP_WORD]]).astype(np.uint32)
            coder = constriction.stream.stack.AnsCoder(pre.copy(), seal=False)
            ops, info, batches, a, per_example, low = _Ops(coder, 1), np.zeros(n), [], 0, need, coder.num_words()
            floor = 32 * words - max(0, min(self.initial_examples, n) * need - 32 * len(warm))  # the prefill pays the rest
            with progress(total=n * self.T, desc=f"encode (T={self.T})", unit="ex-step", enabled=self.progress) as bar:
                while a < n:
                    fits = int((coder.num_bits() - floor) / (1.25 * per_example))  # what the stack above the floor pays for
                    b = a + max(1, min(self.batch, fits, n - a))
                    start = coder.num_bits()
                    ops.n, ops.info, ops.min_words = b - a, np.zeros(b - a), coder.num_words()
                    try:
                        self._encode_batch(ops, x[m + a:m + b], bar)
                    except OutOfRange as e:
                        e.rows = (m + a, m + b)
                        raise
                    if ops.min_words < 64:  # too close to the bottom for random-looking bits
                        break
                    per_example = max(per_example, (start - 32 * ops.min_words) / (b - a))
                    info[a:b], low = ops.info, min(low, ops.min_words)
                    batches.append(b - a)
                    a = b
            if a >= n:
                break
            words *= 2  # the prefill ran (nearly) dry: start again with more initial bits
        else:
            raise CodingError("could not find enough initial bits")
        trim = min(low - 2, words)  # prefill words never popped: the decoder does not need them
        out = coder.get_compressed()
        assert np.array_equal(out[:trim], pre[:trim])
        layout = {"batches": batches, "warm": m, "warm_bytes": len(blob), "prefill": words, "trim": trim}
        return out[trim:].copy(), {"layout": layout, "initial_words": words - trim + 1, "warm_words": len(warm),
                                   "info_bits": info}

    def decode(self, words: np.ndarray, layout: dict) -> np.ndarray:
        """The examples ``encode`` coded into ``words`` with this ``layout``."""
        coder = constriction.stream.stack.AnsCoder(np.asarray(words, dtype=np.uint32).copy(), seal=False)
        ops = _Ops(coder, 1)
        ends = np.cumsum([0, *layout["batches"]])
        out = np.empty((int(ends[-1]),) + self.shape, dtype=np.int64)
        with progress(total=int(ends[-1]) * self.T, desc=f"decode (T={self.T})", unit="ex-step", enabled=self.progress) as bar:
            for a, b in reversed(list(zip(ends[:-1], ends[1:]))):
                ops.n, ops.info = b - a, np.zeros(b - a)
                out[a:b] = self._decode_batch(ops, b - a, bar)
        rest = coder.get_compressed()
        pad = self.prefill(layout["prefill"])[layout["trim"]:]
        n_warm = -(-layout["warm_bytes"] // 4)
        if (len(rest) != len(pad) + n_warm + 1 or not np.array_equal(rest[:len(pad)], pad) or rest[-1] != TOP_WORD):
            raise CodingError("the decoded stream does not end in its initial bits (wrong model or corrupted data)")
        blob = rest[len(pad):-1].astype("<u4").tobytes()[:layout["warm_bytes"]]
        warm = _inflate_levels(blob, layout["warm"], self.shape, self.levels)
        return np.concatenate([warm, out])


def _level_dtype(levels: int) -> str:
    return "u1" if levels <= 256 else "<u2" if levels <= 65536 else "<u4"


def _deflate_levels(x: np.ndarray, levels: int) -> bytes:
    return zlib.compress(np.ascontiguousarray(x, dtype=_level_dtype(levels)).tobytes(), 9) if len(x) else b""


def _inflate_levels(blob: bytes, n: int, shape: tuple, levels: int) -> np.ndarray:
    if n == 0:
        return np.zeros((0,) + shape, np.int64)
    try:
        raw = zlib.decompress(blob)
    except zlib.error as e:
        raise CodingError(f"the warm-start examples do not inflate ({e})") from None
    dt = np.dtype(_level_dtype(levels))
    if len(raw) != n * math.prod(shape) * dt.itemsize:
        raise CodingError("the warm-start examples have the wrong size")
    x = np.frombuffer(raw, dt).reshape((n,) + shape).astype(np.int64)
    if x.max(initial=0) >= levels:
        raise CodingError("a warm-start example lies outside the model's levels")
    return x


def _bytes_to_words(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob + b"\0" * (-len(blob) % 4), "<u4").astype(np.uint32)
