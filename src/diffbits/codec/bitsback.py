"""Bits-back ANS coding over the discrete-time chain ``x -> z_0 -> z_1/T -> ... -> z_1`` (docs/codec.md eq. 3).

Bit-Swap order (Kingma et al. 2019), so only ``z_0`` of the first batch needs initial bits:

    encode:  z_0 <- q(z_0 | x);  x -> p(x | z_0)
             for i = 1..T:  mix;  z_i <- q(z_i | z_i-1);  z_i-1 -> p(z_i-1 | z_i)
             z_T -> N(0, I)
    decode:  the same steps in reverse, swapping "<-" (decode, pop) and "->" (encode, push), and
             undoing each mix after the push of z_i.

"mix" passes the top of the stack through a keyed bijection (``codec.mix``), so that the pop of
``q`` does not read straight from the bits the last push of ``p`` left: those are not uniform, and
a pop that reads them is not a draw of ``q`` (the chain spent up to 1.10x its bound without it).

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
examples are coded by the best classical codec for their kind (``codec.classical``: JPEG-XL or
PNG for images, FLAC for signals, xz, zstd or zlib for anything) and those bytes are the bottom
of the ANS stack, so the chain's first pops read real data (a good codec's output looks random)
instead of costing extra bits. Only what a pop takes beyond those bytes comes from a
pseudo-random prefill and is paid as initial bits.

Batches grow with the stack: batch k holds ``floor(growth / 64 * (examples so far))`` examples
(at least 1, at most ``batch``), the examples so far counting the warm start (``batch_sizes``),
so the decoder derives every batch size from one number. Every coding operation is booked to
its term of the bound (``TERMS``) with its actual cost on the stack beside its ideal information
content, so any gap between the two is visible term by term.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import constriction
import numpy as np
import torch
from scipy.special import expit

from ..progress import progress
from ..bound import SOFTMAX_MAX_LEVELS, bin_centres, data_to_signal
from ..errors import CodingError, ContainerError, OutOfRange
from ..grids import gamma_of
from .classical import best, decode_examples, encode_examples
from .mix import mix_words
from .rate_optimal import knot_gammas

__all__ = ["Chain", "BitsBackCoder", "OutOfRange", "CodingError", "batch_sizes", "TERMS"]

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
TERMS = ("q(z_0|x)", "p(x|z_0)", "q(z_t|z_s)", "p(z_s|z_t)", "p(z_1)")  # pops of q, pushes of p
GROWTH_UNIT = 64  # batch growth is stored in 64ths of an example per example coded
PREFILL_SEED = 0x5EED
UNIFORM16 = constriction.stream.model.Uniform(2**16)  # the words mix_words permutes
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
    (bits) of every symbol accumulated per example (+ for pushes, - for pops), and per term of
    the bound (``TERMS``) the bits each operation really moved on the stack beside its ideal."""

    coder: constriction.stream.stack.AnsCoder
    n: int
    info: np.ndarray = field(init=False)
    min_words: int = field(init=False)
    actual: dict = field(init=False)
    ideal: dict = field(init=False)

    def __post_init__(self):
        self.info = np.zeros(self.n)
        self.min_words = self.coder.num_words()
        self.actual = dict.fromkeys(TERMS, 0.0)
        self.actual["escape"] = 0.0
        self.ideal = dict(self.actual)

    def _book(self, term: str, before: float, ideal: float) -> None:
        self.actual[term] += abs(self.coder.num_valid_bits() - before)
        self.ideal[term] += ideal

    @staticmethod
    def _params(mean: np.ndarray, std: float, delta: float, wide: bool):
        centre = np.round(mean / delta)
        s = std / delta
        reach = math.sqrt(2 * max(FLOOR_BITS * math.log(2) - math.log(s * math.sqrt(2 * math.pi)), 4.5))
        return centre, (mean / delta - centre).ravel(), s, int(math.ceil((reach + P_MARGIN * wide) * s)) + 1

    def _bits(self, off: np.ndarray, m: np.ndarray, s: float) -> np.ndarray:
        """Per example: the summed ``_gauss_bits`` of its symbols."""
        return _gauss_bits(off, m, s).reshape(self.n, -1).sum(1)

    def pop_gaussian(self, mean: np.ndarray, std: float, delta: float, wide: bool, term: str) -> np.ndarray:
        centre, m, s, w = self._params(mean, std, delta, wide)
        if wide:
            before = self.coder.num_valid_bits()
            cls = int(self.coder.decode(ESCAPE_MODEL, 1)[0])
            self._book("escape", before, -math.log2(ESCAPE[cls]))
            w *= 4 ** cls
        family = constriction.stream.model.QuantizedGaussian(-w, w)
        before = self.coder.num_valid_bits()
        off = self.coder.decode(family, m, np.full_like(m, s)).astype(np.float64)
        self.min_words = min(self.min_words, self.coder.num_words())
        bits = self._bits(off, m, s)
        self._book(term, before, bits.sum())
        self.info -= bits
        return (centre.ravel() + off).reshape(mean.shape)

    def mix(self, bits: float, key: int, inverse: bool = False) -> None:
        """Pass about the top ``bits`` of the stack through ``mix_words`` (or its inverse): popped and
        pushed back as uniform 16-bit words, which costs exactly nothing (docs/codec.md sec. 2.1)."""
        n = int(math.ceil(bits / 16))
        if n < 2:
            return
        u = self.coder.decode(UNIFORM16, n)
        self.min_words = min(self.min_words, self.coder.num_words())
        self.coder.encode_reverse(mix_words(u, key, inverse).astype(np.int32), UNIFORM16)

    def push_gaussian(self, k: np.ndarray, mean: np.ndarray, std: float, delta: float, wide: bool, term: str) -> None:
        centre, m, s, w = self._params(mean, std, delta, wide)
        off = (k - centre).ravel()
        need, cls = np.abs(off).max(initial=0), 0
        if wide:  # p: the alphabet widens by 4^cls where needed; cls is pushed last, popped first
            while w * 4**cls < need and cls < len(ESCAPE) - 1:
                cls += 1
        if need > w * 4**cls:
            raise OutOfRange(f"a latent lies {need / s:.0f} standard deviations from the model's mean")
        family = constriction.stream.model.QuantizedGaussian(-w * 4**cls, w * 4**cls)
        before = self.coder.num_valid_bits()
        self.coder.encode_reverse(off.astype(np.int32), family, m, np.full_like(m, s))
        bits = self._bits(off, m, s)
        self._book(term, before, bits.sum())
        self.info += bits
        if wide:
            before = self.coder.num_valid_bits()
            self.coder.encode_reverse(np.array([cls], np.int32), ESCAPE_MODEL)
            self._book("escape", before, -math.log2(ESCAPE[cls]))

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
        before = self.coder.num_valid_bits()
        x = self.coder.decode(family, *params).astype(np.int64)
        self.min_words = min(self.min_words, self.coder.num_words())
        b = bits(x).reshape(self.n, -1).sum(1)
        self._book("p(x|z_0)", before, b.sum())
        self.info -= b
        return x.reshape(z_0.shape)

    def push_data(self, x: np.ndarray, z_0: np.ndarray, chain: Chain, levels: int) -> None:
        family, params, bits = self._categorical(z_0, chain, levels)
        flat = x.ravel()
        before = self.coder.num_valid_bits()
        self.coder.encode_reverse(flat.astype(np.int32), family, *params)
        b = bits(flat).reshape(self.n, -1).sum(1)
        self._book("p(x|z_0)", before, b.sum())
        self.info += b


class BitsBackCoder:
    """Codes batches of integer data ``x`` (N, *data_shape) with a ``VDM``'s T-step chain.

    ``encode(x) -> (words, report)`` and ``decode(words, report["layout"], len(x)) -> x``."""

    def __init__(self, model, T: int = 100, resolution: float = 4.0, batch: int = 64, progress: bool = False,
                 knots=None, mix: bool = True):
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        self.model, self.T, self.batch, self.progress = model, int(T), int(batch), progress
        self.resolution = float(resolution)
        self.mix = mix  # False only to measure what mixing buys (benchmarks/chain_mixing.py); files always mix
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

    def _q_bits(self, i: int, n: int) -> float:
        """About the bits the pop of ``q(z_i | z_i-1)`` takes from the stack for ``n`` examples."""
        s = self.chain.sigma[i] * math.sqrt(self.chain.c[i]) / self.chain.delta[i]
        return n * math.prod(self.shape) * math.log2(4.13 * s)

    def _p_mean(self, z_t: np.ndarray, i: int) -> np.ndarray:
        ch = self.chain
        eps = self._eps(z_t, i)
        return ch.alpha[i - 1] / ch.alpha[i] * (z_t - ch.sigma[i] * ch.c[i] * eps)

    # -- one batch ---------------------------------------------------------------------------------

    def _encode_batch(self, ops: _Ops, x: np.ndarray, bar) -> None:
        ch = self.chain
        f = _signal(x, self.levels)
        k = ops.pop_gaussian(ch.alpha[0] * f, ch.sigma[0], ch.delta[0], False, "q(z_0|x)")  # z_0 <- q(z_0 | x)
        z_prev = k * ch.delta[0]
        ops.push_data(x, z_prev, ch, self.levels)  # x -> p(x | z_0)
        for i in range(1, ch.T + 1):
            if self.mix:
                ops.mix(self._q_bits(i, ops.n), i)
            k_i = ops.pop_gaussian(ch.alpha[i] / ch.alpha[i - 1] * z_prev, ch.sigma[i] * math.sqrt(ch.c[i]), ch.delta[i],
                                   False, "q(z_t|z_s)")
            z_i = k_i * ch.delta[i]
            ops.push_gaussian(k, self._p_mean(z_i, i), ch.sigma[i - 1] * math.sqrt(ch.c[i]), ch.delta[i - 1], True,
                              "p(z_s|z_t)")
            k, z_prev = k_i, z_i
            bar.update(ops.n)
        ops.push_gaussian(k, np.zeros_like(z_prev), 1.0, ch.delta[-1], True, "p(z_1)")  # z_T -> N(0, I)

    def _decode_batch(self, ops: _Ops, n: int, bar) -> np.ndarray:
        ch = self.chain
        shape = (n,) + self.shape
        k = ops.pop_gaussian(np.zeros(shape), 1.0, ch.delta[-1], True, "p(z_1)")
        for i in range(ch.T, 0, -1):
            z_i = k * ch.delta[i]
            k_prev = ops.pop_gaussian(self._p_mean(z_i, i), ch.sigma[i - 1] * math.sqrt(ch.c[i]), ch.delta[i - 1], True,
                                      "p(z_s|z_t)")
            z_prev = k_prev * ch.delta[i - 1]
            ops.push_gaussian(k, ch.alpha[i] / ch.alpha[i - 1] * z_prev, ch.sigma[i] * math.sqrt(ch.c[i]), ch.delta[i], False,
                              "q(z_t|z_s)")
            if self.mix:
                ops.mix(self._q_bits(i, ops.n), i, inverse=True)
            k = k_prev
            bar.update(ops.n)
        z_0 = k * ch.delta[0]
        x = ops.pop_data(z_0, ch, self.levels)
        f = _signal(x, self.levels)
        ops.push_gaussian(k, ch.alpha[0] * f, ch.sigma[0], ch.delta[0], False, "q(z_0|x)")
        return x

    # -- whole streams -------------------------------------------------------------------------------

    def prefill(self, words: int) -> np.ndarray:
        """The pseudo-random initial words (both sides can regenerate them)."""
        return np.random.default_rng(PREFILL_SEED).integers(0, 2**32, words, dtype=np.uint32)

    def _need(self) -> float:
        """Bits the first pops of one example take before its pushes give any back, roughly."""
        s0 = self.chain.sigma[0] / self.chain.delta[0]
        return math.prod(self.shape) * (math.log2(4.13 * s0) + math.log2(8.26 * self.resolution))

    def _warm_start(self, x: np.ndarray, need: float) -> tuple[int, str, bytes]:
        """The fewest leading examples whose classical bytes cover one example's first pops
        (``need`` bits), their codec and bytes. The warm start costs its examples' classical rate
        instead of the model's, about ``need * (1 - model rate / classical rate)`` bits more in all,
        so the best classical codec is also the cheapest warm start."""
        target, m, codec, blob = need / 8, 0, "raw", b""
        while m < len(x) and len(blob) < target:
            m += 1
            codec, blob = best(encode_examples(x[:m], self.levels))
        return m, codec, blob

    def growth_for(self, bits_per_example: float) -> int:
        """Batch growth (``batch_sizes``) at which the stack should always hold a batch's first
        pops: examples coded so far pay ``bits_per_example`` each, a batch takes ``1.25 * need``."""
        return int(np.clip(GROWTH_UNIT * bits_per_example / (1.25 * self._need()), 1, 255))

    def encode(self, x: np.ndarray, bits_per_example: float | None = None) -> tuple[np.ndarray, dict]:
        """Returns the stream and a report: ``layout`` (what ``decode`` needs besides the number of
        examples: the warm start's examples, codec and bytes, the prefill and the words trimmed
        off its bottom, the batch growth), ``initial_words`` (prefill words the stream carries),
        ``warm_words``, ``info_bits`` (ideal bits per chain-coded example) and ``terms``: per
        term of the bound, ``{"actual": bits moved on the stack, "ideal": information content}``.
        ``bits_per_example``: the expected net cost of an example (the model's bound), which sets
        how fast batches grow (default: half the warm start's classical cost)."""
        x = np.asarray(x)
        if x.shape[1:] != self.shape:
            raise ValueError(f"expected data of shape (N, {', '.join(map(str, self.shape))}), got {x.shape}")
        if x.size and (x.min() < 0 or x.max() >= self.levels):
            raise ValueError(f"data must be integers in [0, {self.levels - 1}]")
        need = self._need()
        m, codec, blob = self._warm_start(x, need)
        warm = _bytes_to_words(blob)
        n = len(x) - m
        if bits_per_example is None:
            bits_per_example = 4 * len(blob) / max(m, 1)
        growth = self.growth_for(bits_per_example)
        words = int(2 * need / 32) + 256  # generous: the words never touched are trimmed off
        for _ in range(24):
            pre = np.concatenate([self.prefill(words), warm, [TOP_WORD]]).astype(np.uint32)
            coder = constriction.stream.stack.AnsCoder(pre.copy(), seal=False)
            ops, info, a, low = _Ops(coder, 1), np.zeros(n), 0, coder.num_words()  # terms accumulate per attempt
            sizes = batch_sizes(n, m, self.batch, growth)
            with progress(total=n * self.T, desc=f"encode (T={self.T})", unit="ex-step", enabled=self.progress) as bar:
                for b in sizes:
                    ops.n, ops.info, ops.min_words = b, np.zeros(b), coder.num_words()
                    try:
                        self._encode_batch(ops, x[m + a:m + a + b], bar)
                    except OutOfRange as e:
                        e.rows = (m + a, m + a + b)
                        raise
                    if ops.min_words < 64:  # too close to the bottom for random-looking bits
                        break
                    info[a:a + b], low = ops.info, min(low, ops.min_words)
                    a += b
            if a >= n:
                break
            if growth > 1:  # batches outgrew the stack: let them grow more slowly
                growth = max(1, growth * 3 // 4)
            else:  # the prefill ran (nearly) dry: start again with more initial bits
                words *= 2
        else:
            raise CodingError("could not find enough initial bits")
        trim = min(low - 2, words)  # prefill words never popped: the decoder does not need them
        out = coder.get_compressed()
        assert np.array_equal(out[:trim], pre[:trim])
        layout = {"warm": m, "warm_codec": codec, "warm_bytes": len(blob), "prefill": words, "trim": trim,
                  "growth": growth}
        terms = {t: {"actual": ops.actual[t], "ideal": ops.ideal[t]} for t in ops.actual}
        return out[trim:].copy(), {"layout": layout, "initial_words": words - trim + 1, "warm_words": len(warm),
                                   "info_bits": info, "terms": terms, "batches": sizes}

    def decode(self, words: np.ndarray, layout: dict, examples: int) -> np.ndarray:
        """The ``examples`` examples ``encode`` coded into ``words`` with this ``layout``."""
        if not 0 < layout["warm"] <= examples:
            raise CodingError("the warm start does not fit the number of examples")
        coder = constriction.stream.stack.AnsCoder(np.asarray(words, dtype=np.uint32).copy(), seal=False)
        ops = _Ops(coder, 1)
        n = examples - layout["warm"]
        ends = np.cumsum([0, *batch_sizes(n, layout["warm"], self.batch, layout["growth"])])
        out = np.empty((n,) + self.shape, dtype=np.int64)
        with progress(total=n * self.T, desc=f"decode (T={self.T})", unit="ex-step", enabled=self.progress) as bar:
            for a, b in reversed(list(zip(ends[:-1], ends[1:]))):
                ops.n, ops.info = b - a, np.zeros(b - a)
                out[a:b] = self._decode_batch(ops, b - a, bar)
        rest = coder.get_compressed()
        pad = self.prefill(layout["prefill"])[layout["trim"]:]
        n_warm = -(-layout["warm_bytes"] // 4)
        if (len(rest) != len(pad) + n_warm + 1 or not np.array_equal(rest[:len(pad)], pad) or rest[-1] != TOP_WORD):
            raise CodingError("the decoded stream does not end in its initial bits (wrong model or corrupted data)")
        blob = rest[len(pad):-1].astype("<u4").tobytes()[:layout["warm_bytes"]]
        try:
            warm = decode_examples(layout["warm_codec"], blob, layout["warm"], self.shape, self.levels)
        except ContainerError as e:
            raise CodingError(f"the warm start does not decode ({e})") from None
        return np.concatenate([warm, out])


def batch_sizes(n: int, warm: int, batch: int, growth: int) -> list[int]:
    """The batches ``n`` chain-coded examples are coded in, after ``warm`` warm-start examples:
    each ``growth / GROWTH_UNIT`` times the examples so far (at least 1, at most ``batch``)."""
    sizes, a = [], 0
    while a < n:
        b = max(1, min(batch, n - a, growth * (warm + a) // GROWTH_UNIT))
        sizes.append(b)
        a += b
    return sizes


def _bytes_to_words(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob + b"\0" * (-len(blob) % 4), "<u4").astype(np.uint32)
