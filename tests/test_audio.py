"""Audio end to end: WAV files as data, a 1-D model, and bit-exact WAV compression."""
import json
import shutil
import struct
import subprocess
import wave

import numpy as np
import pytest

from diffbits.audio import crops, read_wav, wav_bytes
from diffbits.cli import main
from diffbits.config import RunConfig, apply_overrides
from diffbits.data import DataError, load_dataset
from diffbits.train import train

RATE = 8000
N = 1200  # samples per test file


def signals(n: int = N) -> dict[str, np.ndarray]:
    """A tone, noise and a chirp, as int16 samples the test makes itself."""
    t = np.arange(n) / RATE
    rng = np.random.default_rng(0)
    return {
        "tone": 8000 * np.sin(2 * np.pi * 440 * t),
        "noise": rng.normal(0, 3000, n),
        "chirp": 6000 * np.sin(2 * np.pi * (200 + 1500 * t) * t),
    }


def write(path, samples: np.ndarray, width: int = 2, channels: int = 1, extra: bytes = b"") -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(RATE)
        data = samples.astype("<i2") if width == 2 else samples.astype(np.uint8)
        w.writeframes(data.tobytes())
    if extra:  # a LIST chunk after the samples, odd-sized (padded), as some editors write
        raw = bytearray(path.read_bytes()) + b"LIST" + struct.pack("<I", len(extra)) + extra + b"\0" * (len(extra) & 1)
        raw[4:8] = struct.pack("<I", len(raw) - 8)
        path.write_bytes(bytes(raw))


@pytest.fixture
def wav_folder(tmp_path):
    folder = tmp_path / "wavs"
    folder.mkdir()
    for name, s in signals().items():
        write(folder / f"{name}.wav", np.clip(s, -32768, 32767), extra=b"INFOISFT\x05\0\0\0test\0" if name == "tone" else b"")
    return folder


def test_wav_bytes_are_rebuilt_exactly_for_8_and_16_bit_mono_and_stereo(tmp_path, wav_folder):
    for p in sorted(wav_folder.glob("*.wav")):
        levels, meta = read_wav(p)
        assert levels.dtype == np.uint16 and levels.shape == (1, N)
        assert wav_bytes(levels, meta) == p.read_bytes()
    stereo = tmp_path / "s.wav"
    write(stereo, np.stack([signals()["tone"], signals()["chirp"]], 1).reshape(-1), channels=2)
    levels, meta = read_wav(stereo)
    assert levels.shape == (2, N) and wav_bytes(levels, meta) == stereo.read_bytes()
    byte = tmp_path / "b.wav"
    write(byte, (signals()["tone"] / 256 + 128), width=1)
    levels, meta = read_wav(byte)
    assert levels.dtype == np.uint8 and wav_bytes(levels, meta) == byte.read_bytes()
    (tmp_path / "bad.wav").write_bytes(b"RIFF\0\0\0\0WAVEjunk")
    with pytest.raises(DataError, match="fmt and a data chunk"):
        read_wav(tmp_path / "bad.wav")


def test_a_folder_of_wavs_is_crops_of_65536_levels(wav_folder):
    d = load_dataset(str(wav_folder), crop=512)
    assert d.levels == 65536 and d.shape == (1, 512) and len(d) == 3 * (N // 512)
    tone, _ = read_wav(wav_folder / "tone.wav")
    chirp, _ = read_wav(wav_folder / "chirp.wav")
    np.testing.assert_array_equal(d.x[:2].numpy(), crops(chirp, 512))  # files in sorted order
    assert crops(tone, 512).shape == (2, 1, 512)


@pytest.mark.parametrize("by_model", [True, False])
def test_wav_files_round_trip_bit_exact_through_compress(tmp_path, wav_folder, capsys, by_model):
    """Through the model's chain (forced: this model trained for 3 steps) and classically (FLAC)."""
    run = tmp_path / "run"
    cfg = apply_overrides(RunConfig(), ["model.width=8", "model.depth=1", "train.batch_size=8",
                                       "train.sample_steps=2", "crop=256"])
    cfg.data, cfg.train.steps = str(wav_folder), 3
    train(cfg, run, progress=False)
    assert main(["eval", str(run), "--json"]) == 0
    capsys.readouterr()
    files = sorted(wav_folder.glob("*.wav"))  # 1200 samples each: 5 pieces of 256, the last padded
    out = tmp_path / "a.dbits"
    assert main(["compress", "--model", str(run), *map(str, files), "-o", str(out), "--T", "4", "--json",
                 "--store", "model" if by_model else "auto"]) == 0
    stored = {r["stored"] for r in json.loads(capsys.readouterr().out)["items"]}
    assert stored == {"model"} if by_model else "model" not in stored
    back = tmp_path / "back"
    assert main(["decompress", str(out), "--model", str(run), "-o", str(back)]) == 0
    for p in files:
        assert (back / p.name).read_bytes() == p.read_bytes()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (the Debian package) to speak")
def test_speech_spoken_by_espeak_round_trips_bit_exact(tmp_path):
    """Real speech without a download: espeak-ng's 16-bit, 22.05 kHz WAV files as the data and
    the files to compress (a length that is no multiple of the crop: the last piece is padded)."""
    folder = tmp_path / "speech"
    folder.mkdir()
    for i, (voice, text) in enumerate([("en", "bits back coding"), ("en-us+f3", "variational diffusion")]):
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(folder / f"s{i}.wav"), text], check=True)
    levels, meta = read_wav(folder / "s0.wav")
    assert levels.dtype == np.uint16 and levels.shape[0] == 1 and meta["rate"] == 22050
    assert levels.shape[1] % 512 and int(levels.max()) - int(levels.min()) > 4096  # speech, not silence
    run = tmp_path / "run"
    cfg = apply_overrides(RunConfig(), ["model.width=8", "model.depth=1", "train.batch_size=8",
                                       "train.sample_steps=2", "crop=512"])
    cfg.data, cfg.train.steps = str(folder), 2
    train(cfg, run, progress=False)
    files = sorted(folder.glob("*.wav"))
    assert main(["compress", "--model", str(run), *map(str, files), "-o", str(tmp_path / "s.dbits"), "--T", "3"]) == 0
    assert main(["decompress", str(tmp_path / "s.dbits"), "--model", str(run), "-o", str(tmp_path / "back")]) == 0
    for p in files:
        assert (tmp_path / "back" / p.name).read_bytes() == p.read_bytes()
