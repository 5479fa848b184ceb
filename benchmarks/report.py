"""Shared by the benchmark scripts: a header naming date, machine and command, and
appending a table to ``benchmarks/RESULTS.md``."""
from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "RESULTS.md"


def header() -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cpu = platform.processor() or platform.machine()
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU only, {os.cpu_count()} cores"
    cmd = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])
    return (f"- date: {now}\n- machine: {platform.platform()}, {cpu}, {dev}, torch {torch.__version__}\n"
            f"- command: `{cmd}`\n")


def append_results(title: str, head: str, table: str) -> None:
    with RESULTS.open("a") as fh:
        fh.write(f"\n## {title}\n\n{head}\n{table}\n")
    print(f"appended to {RESULTS}")
