"""The README's Python blocks run as written, in order, in one namespace: a reader can paste them."""
import os
import re
from pathlib import Path

from diffbits.config import RunConfig, apply_overrides
from diffbits.train import train

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run_as_written(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2
    cfg = apply_overrides(RunConfig(), ["model.width=8", "model.depth=1", "train.batch_size=16", "train.sample_steps=3"])
    cfg.train.steps = 2
    train(cfg, tmp_path / "runs" / "demo", progress=False)  # what the blocks call `make demo`'s run
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        namespace = {}
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)
    finally:
        os.chdir(cwd)
    assert namespace["x"].shape == (16, 1, 8, 8) and namespace["terms"].bpd.shape == (16,)
