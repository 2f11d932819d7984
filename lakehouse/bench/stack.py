"""`make bench-stack`: warm start to all healthy, and peak RSS per service.

Ours: `lakehouse up` (preflight, supervisord, ordered health-gated starts, provisioning).
Baseline, in the same run: the same server commands with the same config, started
bare and all at once with Popen, timed until the same health checks pass. The ratio is
what supervision, start order and provisioning cost over the floor.

Runs on its own data folder and ports (like the tests), so a developer's stack is untouched.
Each round runs the same Trino workload (write 1M rows to an Iceberg table, aggregate them)
while RSS is sampled for every service's process tree.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time

import psutil

from lakehouse.bench.report import bench_settings, line, write_section
from lakehouse.catalog import ensure_namespaces
from lakehouse.settings import Settings
from lakehouse.stack import manager, supervisor
from lakehouse.stack.services import ORDER, all_services
from lakehouse.trino import query

WARM_START_TARGET_S = 60
RSS_TARGET_GIB = 6


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class RssSampler:
    """Peak resident memory of each service's whole process tree, sampled every 0.25 s."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self.peak = {name: 0 for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree_rss(self, pid: int) -> int:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], self._tree_rss(pid))
            self._stop.wait(0.25)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def workload(settings: Settings) -> None:
    """The same Trino work in every round: 1M rows into Iceberg on MinIO, then aggregated."""
    query(settings, "DROP TABLE IF EXISTS marts.bench_stack_rss")
    query(settings, "CREATE TABLE marts.bench_stack_rss AS SELECT a * 1000 + b AS id, "
                    "cast(a AS double) / (b + 1) AS v FROM UNNEST(sequence(1, 1000)) t(a) "
                    "CROSS JOIN UNNEST(sequence(1, 1000)) u(b)")
    query(settings, "SELECT id % 997, count(*), avg(v), max(v) FROM marts.bench_stack_rss GROUP BY 1")
    query(settings, "DROP TABLE marts.bench_stack_rss")


def _supervised_pids(settings: Settings) -> dict[str, int]:
    info = supervisor.client(settings).supervisor.getAllProcessInfo()
    return {p["name"]: p["pid"] for p in info if p["pid"]}


def round_ours(settings: Settings) -> tuple[float, dict[str, int]]:
    t0 = time.monotonic()
    manager.up(settings)
    elapsed = time.monotonic() - t0
    with RssSampler(_supervised_pids(settings)) as sampler:
        workload(settings)
    manager.down(settings)
    return elapsed, sampler.peak


def round_bare(settings: Settings) -> tuple[float, dict[str, int]]:
    """The floor: the same commands started at once, no supervisor, no provisioning wait."""
    services = all_services(settings)
    env = {**os.environ, **manager._stack_env(settings)}
    procs: dict[str, subprocess.Popen] = {}
    logs = []
    t0 = time.monotonic()
    for svc in services:
        log = open(settings.log_path / f"bench-bare-{svc.name}.log", "w")
        logs.append(log)
        procs[svc.name] = subprocess.Popen(svc.command, env={**env, **svc.env}, user=svc.user,
                                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        pending = {s.name: s for s in services}
        while pending:
            for name in list(pending):
                if procs[name].poll() is not None:
                    raise RuntimeError(f"bare {name} exited; see {settings.log_path}/bench-bare-{name}.log")
                if pending[name].health()[0]:
                    del pending[name]
            if time.monotonic() - t0 > 300:
                raise RuntimeError(f"bare start not healthy after 300 s: {sorted(pending)}")
            time.sleep(0.1)
        elapsed = time.monotonic() - t0
        with RssSampler({n: p.pid for n, p in procs.items()}) as sampler:
            workload(settings)
    finally:
        for name in reversed(ORDER):
            p = procs[name]
            p.send_signal(2 if name == "postgres" else 15)
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in logs:
            log.close()
    return elapsed, sampler.peak


def run(_dev_settings: Settings, runs: int) -> list[str]:
    settings = bench_settings()
    say(f"bench-stack: own stack in {settings.data_path} (ports {settings.postgres_port}, "
        f"{settings.minio_port}, {settings.trino_port}); {runs} round(s) each")
    say("- first start (initialises state; not timed) ...")
    manager.up(settings)
    ensure_namespaces(settings)
    manager.down(settings)
    ours, bare = [], []
    try:
        for i in range(runs):
            # alternate, so drift on a shared machine hits both sides alike
            say(f"- round {i + 1}/{runs}: lakehouse up")
            ours.append(round_ours(settings))
            say(f"  warm start {ours[-1][0]:.1f}s")
            say(f"- round {i + 1}/{runs}: bare start")
            bare.append(round_bare(settings))
            say(f"  bare start {bare[-1][0]:.1f}s")
    finally:
        manager.down(settings)
    med = statistics.median
    start_ours, start_bare = med(t for t, _ in ours), med(t for t, _ in bare)
    gib = 2**30
    lines = [line("stack_warm_start", start_ours, "s", start_bare, f"< {WARM_START_TARGET_S} s")]
    rows = [f"| warm start to all healthy | {start_ours:.1f} s | {start_bare:.1f} s | "
            f"{start_ours / start_bare:.2f} | < {WARM_START_TARGET_S} s |"]
    total_ours = total_bare = 0.0
    for name in ORDER:
        o = med(peak[name] for _, peak in ours) / gib
        b = med(peak[name] for _, peak in bare) / gib
        total_ours += o
        total_bare += b
        lines.append(line(f"stack_peak_rss_{name}", o, "GiB", b, "-"))
        rows.append(f"| peak RSS {name} | {o:.2f} GiB | {b:.2f} GiB | {o / b:.2f} | - |")
    lines.append(line("stack_peak_rss_total", total_ours, "GiB", total_bare, f"< {RSS_TARGET_GIB} GiB"))
    rows.append(f"| peak RSS, whole core stack | {total_ours:.2f} GiB | {total_bare:.2f} GiB | "
                f"{total_ours / total_bare:.2f} | < {RSS_TARGET_GIB} GiB |")
    body = "\n".join([
        f"`make bench-stack`, median of {runs} rounds. Ours: `lakehouse up` (preflight, supervisord, "
        "start order with health gates, provisioning). Baseline: the same server commands "
        "and configs started bare and all at once, timed until the same health checks pass. "
        "Peak RSS: each service's process tree, sampled every 0.25 s during the same Trino "
        "workload (1M rows written to Iceberg on MinIO, then aggregated). Trino heap: "
        f"-Xmx{settings.trino_heap}.",
        "",
        "| figure | ours | baseline | ratio | target |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "```",
        *lines,
        "```",
    ])
    write_section("bench-stack", body)
    for out in lines:
        print(out)
    return lines
