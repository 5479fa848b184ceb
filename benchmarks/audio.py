"""Audio: bits per sample of our 1-D VDM (bound and real bits-back files) against FLAC.

No audio corpus ships with our dependencies and nothing is downloaded, so the clips are made
here, deterministic and varied. ``--source synthetic``: plucked strings (Karplus-Strong),
harmonic notes with vibrato and decay, chirps, each with a little noise; 16-bit mono at 16 kHz.
``--source speech``: sentences spoken by espeak-ng (the Debian package) in several voices,
pitches and speeds; 16-bit mono at 22.05 kHz, whole utterances. The model trains
on crops of the training clips for a wall-clock budget; on the held-out clips we report the
test bound (bits per sample), the size of ``diffbits compress`` output (every byte), and
FLAC at its strongest setting (libsndfile through ``soundfile``).

    python benchmarks/audio.py [--source synthetic|speech] [--minutes 4] [--clips 24] [--seconds 1.0]
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from report import append_results, header  # noqa: E402

from diffbits.cli import main as cli  # noqa: E402
from diffbits.config import RunConfig, apply_overrides  # noqa: E402
from diffbits.train import train  # noqa: E402

RATE = 16000
CACHE = HERE / ".cache" / "audio"


def pluck(rng, n):
    period = int(RATE / rng.uniform(110, 660))
    buf, out = rng.uniform(-1, 1, period), np.empty(n)
    for i in range(n):  # Karplus-Strong: a delay line with a two-tap average
        out[i] = buf[i % period]
        buf[i % period] = 0.996 * 0.5 * (buf[i % period] + buf[(i + 1) % period])
    return out


def note(rng, n):
    t = np.arange(n) / RATE
    f0 = rng.uniform(110, 880) * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    return sum(np.sin(k * phase) / k**1.5 for k in range(1, 7)) * np.exp(-t * rng.uniform(0.5, 3))


def chirp(rng, n):
    t = np.arange(n) / RATE
    f0, f1 = rng.uniform(100, 400), rng.uniform(800, 3000)
    return np.sin(2 * np.pi * (f0 + (f1 - f0) * t / t[-1] / 2) * t)


def clip(i: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    s = (pluck, note, chirp)[i % 3](rng, n) + rng.normal(0, 0.003, n)
    return np.clip(np.round(s / np.abs(s).max() * rng.uniform(4000, 20000)), -32768, 32767).astype("<i2")


WORDS = ("the model learns a schedule of noise and codes every file with bits back so that "
         "nothing is lost when the data comes back exactly as it was written on the first day of "
         "a long winter in a small town by the sea where seven quiet people read numbers aloud").split()
VOICES = ("en", "en-us", "en+f3", "en+m3", "en-us+f2", "en+m7")


def speak(i: int, path: Path) -> None:
    """Sentence ``i``: 6-12 words in one of the voices, pitch and speed drawn from ``i``."""
    rng = np.random.default_rng(1000 + i)
    words = " ".join(rng.choice(WORDS, rng.integers(6, 13)))
    subprocess.run(["espeak-ng", "-v", VOICES[i % len(VOICES)], "-p", str(rng.integers(25, 75)),
                    "-s", str(rng.integers(130, 190)), "-w", str(path), words], check=True)


def read_samples(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2"), w.getframerate()


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())


def flac_bits(samples: np.ndarray, rate: int) -> int:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="FLAC", subtype="PCM_16", compression_level=1.0)
    return 8 * len(buf.getvalue())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", choices=("synthetic", "speech"), default="synthetic")
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--clips", type=int, default=24, help="training clips (held out: a quarter as many more)")
    ap.add_argument("--seconds", type=float, default=1.0, help="length of each synthetic clip")
    ap.add_argument("--crop", type=int, default=1024)
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--grids", default="rate-optimal,uniform-t", help="compress once per chain grid (--grid of compress)")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--no-append", action="store_true")
    a = ap.parse_args(argv)
    if a.source == "speech" and shutil.which("espeak-ng") is None:
        raise SystemExit("--source speech needs espeak-ng (apt-get install espeak-ng)")
    shutil.rmtree(CACHE, ignore_errors=True)
    n, test_clips = int(a.seconds * RATE), max(2, a.clips // 4)
    for split, ids in (("train", range(a.clips)), ("test", range(a.clips, a.clips + test_clips))):
        (CACHE / split).mkdir(parents=True)
        for i in ids:
            path = CACHE / split / f"clip{i:03d}.wav"
            if a.source == "speech":
                speak(i, path)
            else:
                write_wav(path, clip(i, n))
    cfg = apply_overrides(RunConfig(), [f"crop={a.crop}", f"model.width={a.width}", "model.depth=4",
                                        "train.batch_size=32", "train.lr=1e-3", "train.sample_steps=50"])
    cfg.data, cfg.train.minutes = str(CACHE / "train"), a.minutes
    run = CACHE / "run"
    summary = train(cfg, run, progress=False)
    out = io.StringIO()
    sys.stdout, saved = out, sys.stdout
    try:
        cli(["eval", str(run), "--data", str(CACHE / "test"), "--samples", "4", "--json"])
        bound = json.loads(out.getvalue().strip().splitlines()[-1])
        out.truncate(0), out.seek(0)
        files = sorted((CACHE / "test").glob("*.wav"))
        reports = {}
        for grid in a.grids.split(","):
            out.truncate(0), out.seek(0)
            cli(["compress", str(run), *map(str, files), "-o", str(CACHE / f"test-{grid}.dbits"), "--T", str(a.T),
                 "--grid", grid, "--json"])
            reports[grid] = json.loads(out.getvalue().strip().splitlines()[-1])
    finally:
        sys.stdout = saved
    audio = [read_samples(p) for p in files]
    samples, rate = sum(len(x) for x, _ in audio), audio[0][1]
    flac = sum(flac_bits(x, r) for x, r in audio)
    rows = ["| | bits per sample | ÷ FLAC |", "|---|---|---|",
            f"| ours, test bound (continuous time, 4 draws) | {bound['bpd']:.3f} | {bound['bpd'] * samples / flac:.3f} |"]
    for grid, report in reports.items():
        ours, t = 8 * (CACHE / f"test-{grid}.dbits").stat().st_size, report["total"]
        rows += [f"| ours, bound of the T = {a.T} chain, {t['grid']} steps | {t['bound_bpd']:.3f} | "
                 f"{t['bound_bpd'] * samples / flac:.3f} |",
                 f"| ours, compressed file (T = {a.T}, {t['grid']} steps, every byte) | {ours / samples:.3f} | "
                 f"{ours / flac:.3f} |"]
    rows += [f"| FLAC, compression level 8 (every byte) | {flac / samples:.3f} | 1 |", "| raw 16-bit PCM | 16.000 | |"]
    what = (f"of {a.seconds} s (synthesised: plucked strings, harmonic notes, chirps, light noise)"
            if a.source == "synthetic" else f"(espeak-ng sentences, {len(VOICES)} voices; {samples / rate:.1f} s held out)")
    notes = (f"\n- {a.clips} training clips and {len(files)} held-out clips {what}, 16-bit mono, {rate} Hz; "
             f"1-D ScoreUNet width {a.width}, "
             f"depth 4, crops of {a.crop} samples, {summary['step']} steps in {a.minutes} min; compress reported net "
             + ", ".join(f"{r['total']['net_bpd']:.3f} ({g})" for g, r in reports.items())
             + "; encode s " + ", ".join(f"{r['total']['encode_s']:.0f} ({g})" for g, r in reports.items()))
    text = "\n".join(rows) + "\n" + notes
    print(text)
    if not a.no_append:
        append_results(f"Audio ({a.source}): bits per sample against FLAC (benchmarks/audio.py)", header(), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
