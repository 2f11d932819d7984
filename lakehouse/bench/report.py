"""Bench output: one summary line per figure, and a section in docs/benchmarks.md."""

from __future__ import annotations

import platform
import re
from datetime import datetime, timezone

import psutil

from lakehouse.settings import REPO_ROOT

BENCH_DOC = REPO_ROOT / "docs" / "benchmarks.md"


def line(name: str, value: float, unit: str, baseline: float, target: str) -> str:
    ratio = value / baseline if baseline else float("nan")
    return (f"bench {name}: {value:.2f} {unit} (baseline {baseline:.2f}, ratio {ratio:.2f}, "
            f"target {target})")


def machine() -> str:
    mem = psutil.virtual_memory().total / 2**30
    return f"{psutil.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.system()} {platform.release()}"


def write_section(bench: str, body: str) -> None:
    """Replace (or add) the `## <bench>` section of docs/benchmarks.md."""
    header = "# Benchmarks\n\nWritten by the `make bench-*` commands; each section is replaced by its latest run.\n"
    text = BENCH_DOC.read_text() if BENCH_DOC.exists() else header
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = f"## {bench}\n\nRun {stamp} on {machine()}.\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(bench)}\n.*?(?=^## |\Z)", re.M | re.S)
    text = pattern.sub(lambda _m: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    BENCH_DOC.parent.mkdir(parents=True, exist_ok=True)
    BENCH_DOC.write_text(text)
