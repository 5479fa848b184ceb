"""Recipe benchmark: ``diffbits train`` with no flags against hand-tuned configs, two peers and codecs.

The recipe (``diffbits.recipe.configure``) derives a run's whole config from the data, the
budget and the device. For each dataset (digits, MNIST, RGB photo patches, espeak-ng speech,
bytes of Python source as 64-vectors) this trains, one run after another:
- ``recipe-<M>m``: ``RunConfig(data=...)``, ``minutes=M``, the recipe, nothing else set
  (what ``diffbits train --data X --minutes M`` does), for each M of ``--budgets``;
- ``oracle-<name>-<S>m``: hand configs (``ORACLE``, one list per data kind) at the smallest
  budget S, then the best two again at the largest budget B as ``oracle-<name>-<B>m``; the best
  of those is "the oracle";
- ``lucidrains-<B>m`` and ``addtt-<B>m``: the peers (``benchmarks/peers/``), their parameter
  count matched to ``recipe-<B>m``, trained with its batch and learning rate, scored by our bound;
- the classical codecs on the same test data (PNG, WebP, JPEG-XL; FLAC; xz, zstd).
Every model is scored by the held-out bound (4 draws per example, seed 0) and gets a learning
curve from EMA snapshots taken at log-spaced training times. Each run is cached in
``benchmarks/.cache/recipe/<dataset>/<method>/result.json``; a rerun only adds what is missing
(a failed run counts as missing). Prints one table per dataset, draws
``benchmarks/recipe-<dataset>.png`` and appends the tables to ``benchmarks/RESULTS.md``.

    python benchmarks/recipe.py                                   # everything, 2 and 8 min
    python benchmarks/recipe.py --datasets mnist,photos --phases long --long 30
    python benchmarks/recipe.py --smoke                           # 3 s per model, end to end
"""
from __future__ import annotations

import argparse
import copy
import json
import lzma
import math
import shutil
import subprocess
import sys
import sysconfig
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import likelihood  # noqa: E402  (codecs, mosaic, busy_cpu)
from peers import addtt, lucidrains  # noqa: E402
from report import append_results, header  # noqa: E402

from diffbits.config import RunConfig, apply_overrides  # noqa: E402
from diffbits.data import Dataset, load_dataset  # noqa: E402
from diffbits.distributed import pick_device  # noqa: E402
from diffbits.evaluate import evaluate  # noqa: E402
from diffbits.recipe import configure  # noqa: E402
from diffbits.train import Trainer  # noqa: E402

CACHE = HERE / ".cache"
DATA = CACHE / "recipe" / "data"  # built once, shared by full and smoke runs
MNIST = "/work/shared/data/mnist10k.npz"
ADDTT_MIRROR = "/work/.mirror/addtt+variational-diffusion-models/repo"
CURVE_MINUTES = (0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)  # EMA snapshots at these training times
SAMPLES, TEST_CAP, CURVE_TEST = 4, 2000, 512  # draws per test example; test examples; curve examples
SMOKE_MINUTES, SMOKE_TEST, SMOKE_CURVE, SMOKE_ORACLE = 0.05, 64, 16, 2
ADDTT_MEMORY = 2 << 30  # bytes its reconstruction term may take per step


# -- datasets ---------------------------------------------------------------------------------

def evenly(n: int, k: int) -> np.ndarray:
    """``min(n, k)`` indices spread evenly over ``range(n)``."""
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int))


def build_digits(root: Path) -> tuple[str, str, str]:
    return "digits", "digits", "test"


def build_mnist(root: Path) -> tuple[str, str, str]:
    return f"{MNIST}[:9000]", f"{MNIST}[9000:]", "test"


# scikit-image's bundled natural photos (its telescope, microscope and fundus images, mostly flat
# black background, are left out: they are not what "natural-image patches" means)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def build_photos(root: Path) -> tuple[str, str, str]:
    """16x16 RGB patches, non-overlapping: train from the left 80% of each photo's columns,
    test (256, evenly spaced) from the right 20%."""
    import skimage.data

    if not (root / "test.npz").exists():
        train, test, used = [], [], []
        for name in PHOTOS:
            try:
                image = np.asarray(getattr(skimage.data, name)())
            except Exception as e:  # not bundled with this scikit-image (or needs a download)
                print(f"[photos] skipping {name}: {type(e).__name__}: {e}")
                continue
            if image.ndim != 3 or image.shape[2] != 3:
                continue
            used.append(name)
            h, w, _ = image.shape
            cut = int(0.8 * w) // 16 * 16
            for part, (lo, hi) in ((train, (0, cut)), (test, (cut, w))):
                for r in range(0, h - 15, 16):
                    for c in range(lo, hi - 15, 16):
                        part.append(image[r:r + 16, c:c + 16].transpose(2, 0, 1))
        test = np.stack(test)[evenly(len(test), 256)]
        root.mkdir(parents=True, exist_ok=True)
        (root / "about.txt").write_text(f"photos used: {', '.join(used)} (scikit-image {skimage.__version__}); "
                                        f"{len(train)} training patches\n")
        np.savez_compressed(root / "train.npz", x=np.stack(train).astype(np.uint8))
        np.savez_compressed(root / "test.npz", x=test.astype(np.uint8))
    return str(root / "train.npz"), str(root / "test.npz"), "test"


def build_faces(root: Path) -> tuple[str, str, str]:
    """scikit-image's ``lfw_subset``: 200 gray 25x25 photos (faces and not), floats in [0, 1] stored
    as 8-bit levels; every fifth one held out (40), the rest train (160). Not part of the panel the
    recipe was tuned on: the issue's "bring your own gray photographs" check."""
    import skimage.data

    if not (root / "test.npz").exists():
        x = np.round(np.asarray(skimage.data.lfw_subset()) * 255).astype(np.uint8)
        held = np.arange(len(x)) % 5 == 4
        root.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(root / "train.npz", x=x[~held])
        np.savez_compressed(root / "test.npz", x=x[held])
    return str(root / "train.npz"), str(root / "test.npz"), "test"


def build_speech(root: Path) -> tuple[str, str, str]:
    """espeak-ng sentences (``benchmarks/audio.py``): clips 0-23 train, 24-29 test."""
    from audio import speak

    if not (root / "done").exists():
        if shutil.which("espeak-ng") is None:
            raise RuntimeError("speech needs espeak-ng (apt-get install -y espeak-ng)")
        for split, ids in (("train", range(24)), ("test", range(24, 30))):
            (root / split).mkdir(parents=True, exist_ok=True)
            for i in ids:
                speak(i, root / split / f"clip{i:03d}.wav")
        version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip()
        (root / "about.txt").write_text(f"{version}\n")
        (root / "done").write_text("")
    return str(root / "train"), str(root / "test"), "test"


def build_arrays(root: Path) -> tuple[str, str, str]:
    """Bytes of the standard library's .py files as 64-byte windows: modules a-m train
    (20000 windows, evenly spaced), n-z test (2000); test/ and site-packages/ left out."""
    if not (root / "test.npz").exists():
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        parts = {"train": [], "test": []}
        for path in sorted(stdlib.rglob("*.py")):
            rel = path.relative_to(stdlib)
            first = rel.parts[0][0].lower()
            if {"test", "site-packages"} & set(rel.parts[:-1]) or not ("a" <= first <= "z"):
                continue
            data = np.frombuffer(path.read_bytes(), np.uint8)
            parts["train" if first <= "m" else "test"].append(data[:len(data) // 64 * 64].reshape(-1, 64))
        root.mkdir(parents=True, exist_ok=True)
        (root / "about.txt").write_text(f"the .py files of CPython {sys.version.split()[0]}'s {stdlib}: "
                                        f"{len(parts['train'])} files a-m, {len(parts['test'])} files n-z\n")
        for split, cap in (("train", 20000), ("test", 2000)):
            x = np.concatenate(parts[split])
            np.savez_compressed(root / f"{split}.npz", x=x[evenly(len(x), cap)])
    return str(root / "train.npz"), str(root / "test.npz"), "test"


# -- classical codecs -------------------------------------------------------------------------

def rgb_codecs() -> dict:
    """name -> (encode, decode) of H x W x 3 uint8 images, the settings of ``likelihood.codecs``."""
    import imagecodecs as ic

    return {
        "PNG": (lambda a: ic.png_encode(a, level=9), ic.png_decode),
        "WebP lossless": (lambda a: ic.webp_encode(a, level=100, lossless=True, method=6), ic.webp_decode),
        "JPEG-XL lossless": (lambda a: ic.jpegxl_encode(a, lossless=True, effort=10), ic.jpegxl_decode),
    }


def image_codecs(test: Dataset, root: Path) -> list[dict]:
    """Each codec per image and tiled (one mosaic of all test images); bits ÷ test values."""
    x = test.x.numpy().astype(np.uint8)  # the integers the models see (digits: 0..16)
    if x.shape[1] == 1:
        codecs, images, tiled = likelihood.codecs(), x[:, 0], likelihood.mosaic(x[:, 0])
    else:
        codecs, images = rgb_codecs(), np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        tiled = np.stack([likelihood.mosaic(x[:, c]) for c in range(x.shape[1])], -1)
    return likelihood.checked_codec_rows(codecs, {"per image": list(images), "tiled": [tiled]}, x.size)


def flac_codec(test: Dataset, root: Path) -> list[dict]:
    """FLAC at its strongest setting on the whole test clips, bits per sample."""
    from audio import flac_bits, read_samples

    clips = [read_samples(p) for p in sorted((root / "test").glob("*.wav"))]
    samples = sum(len(s) for s, _ in clips)
    return [{"method": "FLAC, level 8, whole clips", "bpd": sum(flac_bits(s, r) for s, r in clips) / samples},
            {"method": "raw 16-bit PCM", "bpd": 16.0}]


def zstd(data: bytes) -> bytes:
    try:
        import zstandard

        code = zstandard.ZstdCompressor(level=19).compress(data)
        assert zstandard.ZstdDecompressor().decompress(code) == data
        return code
    except ImportError:
        code = subprocess.run(["zstd", "-19", "-q", "-c"], input=data, capture_output=True, check=True).stdout
        assert subprocess.run(["zstd", "-d", "-q", "-c"], input=code, capture_output=True, check=True).stdout == data
        return code


def byte_codecs(test: Dataset, root: Path) -> list[dict]:
    """xz (preset 9, extreme) and zstd -19 on the test windows' bytes, concatenated."""
    data = test.x.numpy().astype(np.uint8).tobytes()
    xz = lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)
    assert lzma.decompress(xz) == data
    return [{"method": "xz -9e, test windows concatenated", "bpd": 8 * len(xz) / len(data)},
            {"method": "zstd -19, test windows concatenated", "bpd": 8 * len(zstd(data)) / len(data)}]


@dataclass(frozen=True)
class Data:
    name: str
    kind: str  # images | signals | vectors: which hand configs
    desc: str
    build: Callable[[Path], tuple[str, str, str]]  # -> train spec, test spec, test split
    codecs: Callable[[Dataset, Path], list[dict]]
    versus: tuple[str, ...]  # codec rows the recipe is compared with (target < 1 for images)


DATASETS = {d.name: d for d in (
    Data("digits", "images", "scikit-learn digits, 8x8, 17 levels, 1500 train / 297 test",
         build_digits, image_codecs, ("JPEG-XL lossless, tiled",)),
    Data("mnist", "images", "MNIST (10k file), 28x28, 256 levels, 9000 train / 1000 test",
         build_mnist, image_codecs, ("PNG, tiled",)),
    Data("photos", "images", "16x16 RGB patches of scikit-image's natural photos (astronaut, chelsea, coffee, rocket), 256 levels; train: left 80% "
         "of each photo's columns, test: 256 patches (evenly spaced) from the right 20%",
         build_photos, image_codecs, ("JPEG-XL lossless, tiled",)),
    Data("faces", "images", "scikit-image's lfw_subset: 200 gray 25x25 photos, 256 levels; every fifth held "
         "out (160 train / 40 test); never used to tune the recipe", build_faces, image_codecs,
         ("JPEG-XL lossless, tiled",)),
    Data("speech", "signals", "espeak-ng sentences (benchmarks/audio.py), 16-bit mono 22.05 kHz, 65536 levels; "
         "24 training clips, 6 held out, crops of 8192 samples (the loader's default)",
         build_speech, flac_codec, ("FLAC, level 8, whole clips",)),
    Data("arrays", "vectors", "bytes of CPython's standard-library .py sources as 64-byte vectors, 256 levels; "
         "modules a-m train (20000 windows), n-z test (2000)",
         build_arrays, byte_codecs, ("xz -9e, test windows concatenated", "zstd -19, test windows concatenated")),
)}


PANEL = ("digits", "mnist", "photos", "speech", "arrays")  # what the recipe is judged on; faces is held out


# -- hand configs (the oracle) ----------------------------------------------------------------

# What every hand config shares: the training a careful person sets for a short budget (a short
# warm-up, a cosine decay to the end of the budget, a short EMA), attention off in VDM's U-Net
# (configs/digits.json, configs/mnist.json); the search varies the rest.
HAND_TRAINING = ["train.warmup=100", "train.lr_decay=cosine", "train.ema_decay=0.995"]


def hand(net: str, width: int, depth: int, batch: int, lr: float, head: str = "eps",
         dropout: float = 0.0, crop: int = 0) -> tuple[str, list[str]]:
    """A hand config: its name and ``apply_overrides`` strings (``crop``: recordings cut into
    examples of that many samples; 0: the loader's default)."""
    blocks = "model.res_blocks" if net == "unet" else "model.depth"
    name = f"{'sunet' if net == 'score_unet' else net}-w{width}-{'r' if net == 'unet' else 'd'}{depth}-b{batch}-lr{lr:g}"
    name += ("-cat" if head == "categorical" else "") + (f"-do{dropout:g}" if dropout else "")
    name += f"-crop{crop}" if crop else ""
    return name, [f"model.net={net}", f"model.width={width}", f"{blocks}={depth}", f"train.batch_size={batch}",
                  f"train.lr={lr}", f"model.head={head}", f"model.dropout={dropout}", *HAND_TRAINING,
                  *(["model.attention=false"] if net == "score_unet" else []), *([f"crop={crop}"] if crop else [])]


ORACLE = {
    "images": [hand("score_unet", 32, 2, 32, 2e-3), hand("score_unet", 64, 2, 128, 3e-3),
               hand("score_unet", 32, 1, 128, 3e-3), hand("score_unet", 32, 2, 32, 2e-3, dropout=0.1),
               hand("score_unet", 32, 2, 128, 3e-3, "categorical", dropout=0.1),  # configs/digits.json
               hand("score_unet", 32, 2, 32, 2e-3, "categorical"), hand("unet", 32, 1, 32, 2e-3),
               hand("unet", 32, 2, 128, 3e-3), hand("unet", 64, 1, 32, 1e-3), hand("unet", 64, 2, 32, 3e-3),
               hand("unet", 32, 2, 32, 2e-3, dropout=0.1)],
    "signals": [hand("unet", 32, 1, 8, 1e-3), hand("unet", 32, 2, 16, 1e-3), hand("unet", 64, 1, 8, 3e-3),
                hand("unet", 32, 1, 32, 2e-3, crop=1024), hand("unet", 64, 2, 32, 2e-3, crop=1024),
                hand("unet", 32, 2, 16, 1e-3, crop=2048),
                hand("score_unet", 32, 4, 32, 2e-3, crop=1024),  # the audio benchmark's config
                hand("score_unet", 32, 2, 16, 3e-3, dropout=0.1, crop=1024)],
    "vectors": [hand("mlp", 128, 2, 128, 3e-3), hand("mlp", 256, 4, 128, 1e-3), hand("mlp", 256, 2, 32, 1e-3),
                hand("mlp", 64, 4, 32, 3e-3), hand("mlp", 128, 4, 128, 1e-3), hand("mlp", 256, 4, 128, 3e-3, dropout=0.1),
                hand("mlp", 512, 2, 128, 1e-3), hand("mlp", 128, 2, 32, 1e-3, dropout=0.1),
                # convolutions along the vector (nets.SignalView), after lucidrains' U-Net on it beat every MLP
                hand("score_unet", 32, 2, 128, 3e-3), hand("score_unet", 64, 2, 128, 3e-3),
                hand("score_unet", 32, 4, 32, 2e-3), hand("unet", 32, 2, 128, 3e-3)],
}


def oracle_configs(kind: str, levels: int, smoke: bool) -> list[tuple[str, list[str]]]:
    """The hand configs for a data kind; the categorical head only for few levels."""
    out = [c for c in ORACLE[kind] if levels <= 64 or "model.head=categorical" not in c[1]]
    return out[::len(out) // SMOKE_ORACLE][:SMOKE_ORACLE] if smoke else out


# -- runs: training, snapshots, scoring -------------------------------------------------------

class Snapshots:
    """EMA weights copied to the CPU when training time first passes each of ``due`` (minutes)."""

    def __init__(self, minutes: float, smoke: bool):
        self.due = [minutes / 2] if smoke else [m for m in CURVE_MINUTES if m < minutes]
        self.taken: list[tuple[float, dict]] = []

    def maybe(self, seconds: float, module: torch.nn.Module) -> None:
        if self.due and seconds >= self.due[0] * 60:
            self.taken.append((seconds / 60, {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}))
            self.due = [m for m in self.due if m * 60 > seconds]


def score(model, rebuild: Callable[[dict], torch.nn.Module], test: Dataset, curve_test: Dataset,
          snaps: Snapshots, minutes: float) -> dict:
    """The held-out bound of ``model`` (``SAMPLES`` draws, seed 0) and its learning curve: the
    model ``rebuild(state)`` makes of each snapshot, then ``model`` itself, 1 draw on ``curve_test``."""
    final = evaluate(model.eval(), test, samples=SAMPLES, seed=0, progress=False)
    curve = [[m, evaluate(rebuild(state).eval(), curve_test, samples=1, seed=0, progress=False)["bpd"]]
             for m, state in snaps.taken]
    curve.append([minutes, evaluate(model, curve_test, samples=1, seed=0, progress=False)["bpd"]])
    keep = ("bpd", "stderr", "prior_bpd", "recon_bpd", "diffusion_bpd", "mc_std_bpd", "n", "samples")
    return {**{k: final[k] for k in keep}, "curve": curve}


def reloader(module: torch.nn.Module, wrap: Callable = lambda m: m) -> Callable[[dict], torch.nn.Module]:
    """``rebuild(state)``: a copy of ``module`` holding ``state``, as ``wrap`` presents it."""
    def rebuild(state):
        spare = copy.deepcopy(module)
        spare.load_state_dict(state)
        return wrap(spare)

    return rebuild


def params_of(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


KEEP_MINUTES = 30  # runs this long keep their checkpoint (the long MNIST run is the shipped model's candidate)


def train_ours(cfg: RunConfig, data: Dataset, run_dir: Path, snaps: Snapshots, say) -> tuple:
    """Train a diffbits run for ``cfg.train.minutes``; returns (EMA model, summary). Runs of
    ``KEEP_MINUTES`` or more keep their checkpoint in ``run_dir/run``."""
    shutil.rmtree(run_dir / "run", ignore_errors=True)
    (run_dir / "run").mkdir(parents=True)
    trainer = Trainer.create(cfg, run_dir / "run", data=data)
    cfg.save(run_dir / "run" / "config.json")
    trainer.say = say
    trainer.on_step = lambda t: snaps.maybe(t.elapsed, t.ema.module)
    tic = time.perf_counter()
    trainer.fit(progress=False)
    seconds = time.perf_counter() - tic
    for checkpoint in (run_dir / "run").glob("*.pt"):  # the result and curve are kept, not the weights
        if cfg.train.minutes < KEEP_MINUTES or checkpoint.name != "checkpoint.pt":
            checkpoint.unlink()
    model = trainer.ema.module.eval()
    return model, {"params": params_of(model.denoiser), "steps": trainer.step, "seconds": seconds,
                   "train_seconds": trainer.elapsed,
                   "batch_size": cfg.train.batch_size, "lr": cfg.train.lr,
                   "examples_per_s": trainer.step * cfg.train.batch_size / seconds, "config": asdict(cfg)}


def peer_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The peers' 2-D image for an example: images as they are; a signal or vector of n values
    folded into (c, s, s), s the largest power of 2 with s^2 <= n, c = n / s^2 consecutive values
    as channels (64 -> 1x8x8, 1024 -> 1x32x32, 8192 -> 2x64x64)."""
    if len(shape) == 3:
        return tuple(shape)
    n = math.prod(shape)
    s = 2 ** int(math.log2(math.isqrt(n)))
    if n % (s * s):
        raise ValueError(f"cannot fold {n} values into a square image")
    return n // (s * s), s, s


def fold(data: Dataset, shape: tuple[int, int, int]) -> Dataset:
    c, h, w = shape
    x = data.x if tuple(data.shape) == shape else data.x.reshape(len(data), h, w, c).permute(0, 3, 1, 2).contiguous()
    return Dataset(x, data.levels, f"{data.name} as {c}x{h}x{w}")


def epochs(n: int, batch: int, seed: int = 0):
    """Batches of example indices, a fresh permutation per epoch (as the peers' loaders)."""
    gen, order = torch.Generator().manual_seed(seed), torch.empty(0, dtype=torch.long)
    while True:
        if len(order) < batch:
            order = torch.cat([order, torch.randperm(n, generator=gen)])
        idx, order = order[:batch], order[batch:]
        yield idx


def train_lucidrains(train: Dataset, target: int, minutes: float, batch: int, lr: float, snaps: Snapshots, device):
    """lucidrains' ContinuousTimeGaussianDiffusion (learned schedule, Unet dim_mults (1, 2)), its
    Trainer's optimiser and EMA; returns (wrapped EMA model, rebuild(state) -> wrapped model, summary)."""
    dim = lucidrains.match_dim(train.shape, target)
    torch.manual_seed(0)
    diffusion = lucidrains.build(train.shape, dim).to(device)
    ema, summary = lucidrains.train(diffusion, train.x, train.levels, minutes, batch, lr,
                                    on_step=lambda step, s: snaps.maybe(s, step.ema.ema_model))
    model = lucidrains.as_vdm(ema, train.levels, train.shape)
    rebuild = reloader(ema, lambda d: lucidrains.as_vdm(d, train.levels, train.shape))
    return model, rebuild, {**summary, "params": params_of(model.denoiser), "batch_size": batch, "lr": lr,
                            "config": {"Unet dim": dim, "dim_mults": [1, 2], "noise_schedule": "learned",
                                       "learned_sinusoidal_cond": True, "adam_betas": list(lucidrains.ADAM_BETAS),
                                       "ema": [lucidrains.EMA_DECAY, lucidrains.EMA_EVERY]}}


def train_addtt(train: Dataset, target: int, minutes: float, batch: int, lr: float, snaps: Snapshots, device):
    """addtt's VDM (UNetVDM, fixed linear schedule, its AdamW, clipping and EMA), width and blocks
    chosen to match ``target`` parameters; returns as ``train_lucidrains``."""
    need = addtt.recon_bytes(train.shape, train.levels, batch)
    if need > ADDTT_MEMORY:
        raise MemoryError(f"addtt's reconstruction term materialises (batch, *shape, levels) float32 "
                          f"log-probabilities and one-hots: {need / 2**30:.1f} GiB per step at {train.levels} levels")
    width, blocks = addtt.match_size(train.shape, train.levels, target)
    torch.manual_seed(0)
    np.random.seed(0)  # its antithetic times come from numpy
    peer = addtt.AddttVDM(train.shape, train.levels, width, blocks, lr=lr)
    peer.diffusion.to(device)
    peer.ema.to(device)
    start, steps = time.perf_counter(), 0
    for idx in epochs(len(train), batch):
        if time.perf_counter() - start >= minutes * 60:
            break
        loss = peer.train_step(peer.to_input(train.x[idx].to(device)))
        if not math.isfinite(loss):
            raise RuntimeError(f"addtt: non-finite loss at step {steps}")
        steps += 1
        snaps.maybe(time.perf_counter() - start, peer.ema.ema_model)
    seconds = time.perf_counter() - start
    ema = copy.deepcopy(peer.ema.ema_model).eval()
    model = addtt.as_vdm(ema, train.levels, train.shape)
    rebuild = reloader(ema, lambda d: addtt.as_vdm(d, train.levels, train.shape))
    return model, rebuild, {"steps": steps, "seconds": seconds, "examples_per_s": steps * batch / seconds,
                            "params": params_of(model.denoiser), "batch_size": batch, "lr": lr,
                            "config": {"embedding_dim": width, "n_blocks": blocks, "commit": addtt.commit(),
                                       **{k: v for k, v in addtt.DEFAULTS.items() if k not in ("lr",)}}}


PEERS = {"lucidrains": train_lucidrains, "addtt": train_addtt}


# -- one dataset's bench: cached runs ---------------------------------------------------------

class Bench:
    def __init__(self, data: Data, root: Path, args, device):
        self.data, self.root, self.args, self.device = data, root / data.name, args, device
        self.smoke, self.force = args.smoke, args.force
        self.train_spec, test_spec, test_split = data.build(DATA / data.name)
        self.data_dir = DATA / data.name
        self.test_spec, self.test_split, self.views = test_spec, test_split, {}
        self.train, self.test, self.curve_test = self.view(0)
        self.fresh: set[str] = set()  # methods run by this invocation (--force reruns each once)

    def view(self, crop: int) -> tuple[Dataset, Dataset, Dataset]:
        """(train, test, curve test) with recordings cut into ``crop`` samples (0: the loader's default)."""
        if crop not in self.views:
            train = load_dataset(self.train_spec, "train", crop=crop or None)
            test = load_dataset(self.test_spec, self.test_split, crop=crop or None)
            cap = SMOKE_TEST if self.smoke else TEST_CAP
            test = Dataset(test.x[evenly(len(test), cap)], test.levels, test.name)
            curve_cap = SMOKE_CURVE if self.smoke else CURVE_TEST
            self.views[crop] = train, test, Dataset(test.x[evenly(len(test), curve_cap)], test.levels, test.name)
        return self.views[crop]

    def say(self, text: str) -> None:
        print(f"[{self.data.name}] {text}", flush=True)

    def minutes(self, m: float) -> float:
        return SMOKE_MINUTES if self.smoke else m

    def result(self, method: str) -> dict | None:
        path = self.root / method / "result.json"
        return json.loads(path.read_text()) if path.exists() else None

    def cached(self, method: str, run: Callable[[Path], dict]) -> dict:
        """``method``'s result from the cache, or ``run(dir)``'s, saved; a failure is recorded
        (and retried by the next invocation)."""
        old = self.result(method)
        if self.args.report:  # tables from the cache only
            return old or {"error": "not run yet"}
        if old is not None and "error" not in old and not (self.force and method not in self.fresh):
            return old
        self.fresh.add(method)
        out = self.root / method
        out.mkdir(parents=True, exist_ok=True)
        self.say(f"{method}: start")
        tic = time.perf_counter()
        try:
            r = run(out)
        except Exception as e:  # a method that cannot handle this data: record it and go on
            traceback.print_exc(limit=3)
            r = {"error": f"{type(e).__name__}: {e}"}
        r["wall_s"] = time.perf_counter() - tic
        (out / "result.json").write_text(json.dumps(r, indent=1) + "\n")
        if "error" in r:
            self.say(f"{method}: FAILED: {r['error']}")
        elif "steps" in r:
            self.say(f"{method}: {r['bpd']:.4f} ± {r['stderr']:.4f} bits/dim, {r['steps']} steps, "
                     f"{r['params']:,} params, {r['seconds']:.0f} s")
        else:
            self.say(f"{method}: done")
        return r

    def ours(self, cfg: RunConfig, minutes: float, out: Path) -> dict:
        snaps = Snapshots(minutes, self.smoke)
        train, test, curve_test = self.view(cfg.crop if self.train.crop else 0)
        model, summary = train_ours(cfg, train, out, snaps, self.say)
        return {**summary, **score(model, reloader(model), test, curve_test, snaps, summary["train_seconds"] / 60)}

    def recipe(self, m: float) -> dict:
        def run(out):
            cfg = RunConfig(data=self.train_spec)
            cfg.train.minutes = self.minutes(m)
            configure(cfg, self.train, self.device, user_fields=set(), say=self.say)
            return self.ours(cfg, cfg.train.minutes, out)

        return self.cached(f"recipe-{m:g}m", run)

    def oracle(self, name: str, overrides: list[str], m: float) -> dict:
        def run(out):
            cfg = apply_overrides(RunConfig(data=self.train_spec), overrides)
            cfg.train.minutes = self.minutes(m)
            return self.ours(cfg, cfg.train.minutes, out)

        return self.cached(f"oracle-{name}-{m:g}m", run)

    def peer(self, name: str, m: float) -> dict:
        ref = self.recipe(m)  # the peer matches recipe-<m>m's parameters, batch and learning rate
        if "error" in ref:
            return {"error": f"recipe-{m:g}m failed"}

        def run(out):
            crop = ref["config"]["crop"] if self.train.crop else 0  # the recipe's examples
            train, test, curve_test = (fold(d, peer_shape(d.shape)) for d in self.view(crop))
            shape = train.shape
            minutes, snaps = self.minutes(m), Snapshots(self.minutes(m), self.smoke)
            model, rebuild, summary = PEERS[name](train, ref["params"], minutes, ref["batch_size"], ref["lr"],
                                                  snaps, self.device)
            summary["peer_shape"] = list(shape)
            return {**summary, **score(model, rebuild, test, curve_test, snaps, summary["seconds"] / 60)}

        return self.cached(f"{name}-{m:g}m", run)

    def codecs(self) -> dict:
        return self.cached("codecs", lambda out: {"rows": self.data.codecs(self.test, self.data_dir)})


def run_phases(bench: Bench, phases: list[str], budgets: list[float], long: float | None) -> None:
    low, high = min(budgets), max(budgets)
    if "codecs" in phases:
        bench.codecs()
    if "recipe" in phases:
        for m in budgets:
            bench.recipe(m)
    if "oracle" in phases:
        configs = oracle_configs(bench.data.kind, bench.train.levels, bench.smoke)
        screened = [(bench.oracle(name, o, low).get("bpd", math.inf), name, o) for name, o in configs]
        for _, name, o in sorted(screened)[:2]:
            bench.oracle(name, o, high)
    if "peers" in phases:
        for name in PEERS:
            bench.peer(name, high)
    if "long" in phases and long:
        bench.recipe(long)


# -- report -----------------------------------------------------------------------------------

def collect(bench: Bench, budgets: list[float]) -> tuple[list[tuple[str, dict]], dict | None, list[dict]]:
    """Every cached method of the dataset in table order, the oracle's best at the largest
    budget (name, result) and the codec rows."""
    found = {p.parent.name: json.loads(p.read_text()) for p in bench.root.glob("*/result.json")}
    high = f"-{max(budgets):g}m"

    def minutes(name):
        return float(name.rsplit("-", 1)[1][:-1])

    order = sorted((k for k in found if k.startswith("recipe-")), key=minutes)
    order += sorted(k for k in found if k.startswith("oracle-") and k.endswith(high))
    order += [k for k in (f"{p}{high}" for p in PEERS) if k in found]
    order += sorted(k for k in found if k.startswith("oracle-") and k not in order)
    oracle = [(k, found[k]) for k in order if k.startswith("oracle-") and k.endswith(high) and "error" not in found[k]]
    best = min(oracle, key=lambda kv: kv[1]["bpd"]) if oracle else None
    return [(k, found[k]) for k in order], best, found.get("codecs", {}).get("rows", [])


def table(bench: Bench, budgets: list[float]) -> str:
    rows, best, codec_rows = collect(bench, budgets)
    d, top = bench.data, f"{max(budgets):g}m"
    ref = best[1]["bpd"] if best else math.nan

    def vs_oracle(bpd: float) -> str:
        return f"{bpd / ref:.3f}" if best else "–"  # no oracle for this dataset (the held-out check)
    head = f"| method | params | steps | examples/s | held-out bits/dim ± s.e. | ÷ oracle-{top} |"
    lines = [f"**{d.name}**: {d.desc}", "", head, "|---|---:|---:|---:|---:|---:|"]
    for name, r in rows:
        if "error" in r:
            lines.append(f"| {name} | | | | failed: {r['error'][:120]} | |")
            continue
        mark = " (the oracle)" if best and name == best[0] else ""
        rate = f"{r['examples_per_s']:,.0f}" if r["examples_per_s"] >= 10 else f"{r['examples_per_s']:.2f}"
        lines.append(f"| {name}{mark} | {r['params']:,} | {r['steps']:,} | {rate} "
                     f"| {r['bpd']:.4f} ± {r['stderr']:.4f} | {vs_oracle(r['bpd'])} |")
    for r in codec_rows:
        lines.append(f"| {r['method']} | | | | {r['bpd']:.4f} | {vs_oracle(r['bpd'])} |")
    lines.append("")
    recipe = dict(rows).get(f"recipe-{top}")
    if recipe and "error" not in recipe:
        x = recipe["bpd"]
        if best:
            lines.append(f"- recipe-{top} ÷ oracle-{top} ({best[0]}): **{x / ref:.3f}** (target ≤ 1.03: "
                         f"{'met' if x / ref <= 1.03 else 'missed'})")
        for p in PEERS:
            r = dict(rows).get(f"{p}-{top}")
            if r and "error" not in r:
                lines.append(f"- recipe-{top} ÷ {p}-{top}: **{x / r['bpd']:.3f}** (target < 1: "
                             f"{'met' if x < r['bpd'] else 'missed'})")
            elif r:
                lines.append(f"- {p}-{top} failed: {r['error'][:200]}")
        codecs = {r["method"]: r["bpd"] for r in codec_rows}
        for c in d.versus:
            if c in codecs:
                goal = (f" (target < 1: {'met' if x < codecs[c] else 'missed'})" if d.kind == "images" else "")
                lines.append(f"- recipe-{top} ÷ {c}: **{x / codecs[c]:.3f}**{goal}")
    if d.kind != "images":
        shape = "x".join(map(str, peer_shape(bench.train.shape)))
        lines.append(f"- the peers are image models (2-D convolutions): each example was folded into a "
                     f"{shape} image (consecutive values as channels, then row-major) for them; bits/dim are per value")
    if (bench.data_dir / "about.txt").exists():
        lines.append(f"- data: {(bench.data_dir / 'about.txt').read_text().strip()}")
    lines.append(f"- test: {len(bench.test)} examples ({SAMPLES} draws each, seed 0); figure: "
                 f"`{figure_path(bench).relative_to(HERE.parent) if not bench.smoke else figure_path(bench)}`")
    return "\n".join(lines) + "\n"


def figure_path(bench: Bench) -> Path:
    return (bench.root.parent if bench.smoke else HERE) / f"recipe-{bench.data.name}.png"


def figure(bench: Bench, budgets: list[float]) -> Path:
    """Held-out bits/dim against training minutes (log x): recipe runs, oracle runs at the
    largest budget, peers; codecs as dashed horizontal lines; legend below the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows, best, codec_rows = collect(bench, budgets)
    high = f"-{max(budgets):g}m"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    finals = []
    for name, r in rows:
        if "error" in r or not r.get("curve") or (name.startswith("oracle-") and not name.endswith(high)):
            continue
        m, b = zip(*r["curve"])
        style = "-" if name.startswith("recipe") else (":" if name.startswith("oracle") else "--")
        ax.plot(m, b, style, marker="o", ms=3, label=name + (" (oracle)" if best and name == best[0] else ""))
        finals.append(b[-1])
    greys = {}
    for r in codec_rows:  # one grey per codec; per image dashed, tiled dash-dotted
        codec = r["method"].split(",")[0]
        colour = greys.setdefault(codec, str(0.15 + 0.25 * len(greys)))
        ax.axhline(r["bpd"], ls="-." if "tiled" in r["method"] else "--", lw=0.9, color=colour, label=r["method"])
        finals.append(r["bpd"])
    if finals:
        ax.set_ylim(0.9 * min(finals), 1.3 * max(finals))
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator([0.25, 0.5, 1, 2, 4, 8, 15, 30, 60]))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("training minutes (wall clock)")
    ax.set_ylabel("held-out bits/dim (1 draw, ≤ 512 examples)")
    ax.set_title(f"{bench.data.name}: recipe vs hand configs, peers and codecs")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, fontsize=7, frameon=False)
    path = figure_path(bench)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def notes(args, budgets: list[float]) -> str:
    high = f"{max(budgets):g}"
    return "\n".join([
        f"- budgets (wall clock, one run at a time, {torch.get_num_threads()} threads): recipe at "
        f"{', '.join(f'{m:g}' for m in budgets)} min{f' and {args.long:g} min' if args.long else ''}; oracle: the hand configs "
        f"of ORACLE in benchmarks/recipe.py at {min(budgets):g} min, the best two again at {high} min; peers at {high} min",
        "- recipe: `RunConfig(data=...)`, `train.minutes`, `diffbits.recipe.configure` with no user fields "
        "(what `diffbits train --data X --minutes M` does); oracle: our defaults plus the named overrides",
        f"- peers: parameter count matched to recipe-{high}m, its batch and learning rate; lucidrains "
        f"denoising-diffusion-pytorch {likelihood.peer_version()} (ContinuousTimeGaussianDiffusion, learned schedule, "
        "Unet dim_mults (1, 2), dim matched; Adam, clip 1, EMA 0.995 every 10 steps); addtt VDM "
        f"@ {addtt.commit()[:7]} (UNetVDM, embedding_dim and n_blocks matched, its defaults otherwise: fixed linear "
        "schedule [-13.3, 5], dropout 0.1, AdamW wd 0.01, clip 1, EMA 0.9999); both wrapped as `diffbits.VDM` "
        "(same data map f = 2(x + 1/2)/K - 1) and scored by our bound",
        f"- held-out bits/dim: the continuous-time bound, {SAMPLES} draws per test example, seed 0, EMA weights; "
        f"curves: EMA snapshots at {', '.join(f'{m:g}' for m in CURVE_MINUTES)} min (up to the budget), 1 draw on "
        f"≤ {CURVE_TEST} test examples; params: the denoiser's; '÷ oracle' divides by the oracle's {high}-min figure",
        "- codecs see the same test integers; image codecs per image and tiled (one mosaic of all test images), "
        "bits ÷ test values",
        "",
    ])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=",".join(PANEL), help=f"comma-separated: {', '.join(DATASETS)} "
                    "(default: the panel; faces is the held-out check: --datasets faces --phases codecs,recipe)")
    ap.add_argument("--budgets", default="2,8", help="recipe budgets in minutes; oracle screens at the smallest, "
                                                     "reruns its best two and trains the peers at the largest")
    ap.add_argument("--phases", default="recipe,oracle,peers,codecs", help="comma-separated: recipe, oracle, peers, "
                                                                          "codecs, long (long: implied by --long)")
    ap.add_argument("--long", type=float, default=None, metavar="MIN", help="also the recipe at this budget")
    ap.add_argument("--force", action="store_true", help="rerun the selected runs even if cached")
    ap.add_argument("--smoke", action="store_true", help=f"every budget {SMOKE_MINUTES} min, {SMOKE_TEST} test "
                    f"examples, {SMOKE_ORACLE} hand configs, cache .cache/recipe-smoke; nothing appended")
    ap.add_argument("--no-append", action="store_true", help="do not append to RESULTS.md")
    ap.add_argument("--report", action="store_true", help="train nothing: tables and figures from the cache")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    phases = [p.strip() for p in args.phases.split(",") if p.strip()] + (["long"] if args.long else [])
    budgets = sorted(float(b) for b in args.budgets.split(","))
    bad = [n for n in names if n not in DATASETS] + [p for p in phases if p not in ("recipe", "oracle", "peers", "codecs", "long")]
    if bad:
        ap.error(f"unknown dataset(s) or phase(s): {bad}")

    torch.set_num_threads(2)
    device = pick_device("auto")
    if "peers" in phases:
        try:
            addtt.materialise(ADDTT_MIRROR if Path(ADDTT_MIRROR).exists() else None)
        except addtt.MissingPeer as e:
            print(f"recipe.py: warning: {e}; its runs will fail", file=sys.stderr)
    if likelihood.busy_cpu():
        print("recipe.py: warning: other processes are using the CPU; budgets buy fewer steps", file=sys.stderr)
    root = CACHE / ("recipe-smoke" if args.smoke else "recipe")
    sections = []
    for name in names:
        try:
            bench = Bench(DATASETS[name], root, args, device)
        except Exception as e:  # the data could not be built here
            traceback.print_exc(limit=3)
            print(f"[{name}] skipped: {type(e).__name__}: {e}", flush=True)
            continue
        run_phases(bench, phases, budgets, args.long)
        bench.say(f"figure: {figure(bench, budgets)}")
        sections.append(table(bench, budgets))
    text = "\n".join(sections)
    print("\n" + notes(args, budgets) + "\n" + text)
    if args.smoke or args.no_append:
        print("(not appended to RESULTS.md)")
    elif sections:
        append_results("Recipe: `diffbits train` with no flags vs hand configs, peers and codecs (benchmarks/recipe.py)",
                       header() + notes(args, budgets), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
