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

# Benchmarks run their own stack (own data folder, env file and ports), like the tests, so
# a developer's stack and tables are never touched.
BENCH_ENV = {
    "LAKEHOUSE_DATA_DIR": str(REPO_ROOT / ".lakehouse-bench"),
    "LAKEHOUSE_ENV_FILE": str(REPO_ROOT / ".lakehouse-bench.env"),
    "LAKEHOUSE_POSTGRES_PORT": "25433",
    "LAKEHOUSE_MINIO_PORT": "29000",
    "LAKEHOUSE_MINIO_CONSOLE_PORT": "29001",
    "LAKEHOUSE_TRINO_PORT": "28080",
    "LAKEHOUSE_TRINO_HTTPS_PORT": "28443",
    "LAKEHOUSE_SUPERSET_PORT": "28088",
    "LAKEHOUSE_AIRFLOW_PORT": "28070",
    "LAKEHOUSE_AIRFLOW_LOG_PORT": "28793",
    "LAKEHOUSE_SIMULATOR_PORT": "28765",
}


def bench_settings():
    """Settings of the bench stack; also exported to the environment for child commands."""
    os.environ.update(BENCH_ENV)
    return load_settings()


def empty_bench_stack(bench: str):
    """The bench stack, emptied and started, with the layer namespaces: figures of one run."""
    from lakehouse.catalog import ensure_namespaces
    from lakehouse.stack import manager

    settings = bench_settings()
    print(f"{bench}: own stack in {settings.data_path}, emptied first", file=sys.stderr, flush=True)
    manager.clean(settings)
    manager.up(settings)
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
