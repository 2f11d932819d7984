"""Bench output: one summary line per figure, and a section in docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import re
import sys
from datetime import datetime, timezone

import psutil

from lakehouse.settings import REPO_ROOT, load_settings

BENCH_DOC = REPO_ROOT / "docs" / "benchmarks.md"

# Benchmarks run their own stack (own data folder, env file and ports: each default moved by
# 20000, derived from the service registry), like the tests, so a developer's stack and
# tables are never touched.
BENCH_PORT_OFFSET = 20000


def bench_env() -> dict[str, str]:
    from lakehouse.stack import registry

    return {"LAKEHOUSE_DATA_DIR": str(REPO_ROOT / ".lakehouse-bench"),
            "LAKEHOUSE_ENV_FILE": str(REPO_ROOT / ".lakehouse-bench.env"),
            **registry.load().offset_ports(BENCH_PORT_OFFSET)}


def bench_settings():
    """Settings of the bench stack; also exported to the environment for child commands."""
    os.environ.update(bench_env())
    return load_settings()


def empty_bench_stack(bench: str, profile: str = "core"):
    """The bench stack, emptied and started with only `profile` (a bench that needs no
    scheduler runs without one: nothing else competes for the 2 cores), with the layer
    namespaces: figures of one run."""
    from lakehouse.catalog import ensure_namespaces
    from lakehouse.stack import manager

    settings = bench_settings()
    print(f"{bench}: own stack in {settings.data_path} (profile {profile}), emptied first", file=sys.stderr, flush=True)
    manager.clean(settings)
    manager.up(settings, profile=profile)
    ensure_namespaces(settings)
    return settings


def line(name: str, value: float, unit: str, baseline: float, target: str) -> str:
    ratio = value / baseline if baseline else float("nan")
    return (f"bench {name}: {value:.2f} {unit} (baseline {baseline:.2f}, ratio {ratio:.3g}, "
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
