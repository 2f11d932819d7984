"""`make bench-cpu`: the CPU the whole platform uses per publication period, at the seed's
cadence (two sources, a batch every 5 minutes), against the same stack with the scheduler
stopped.

The bench stack is emptied and started with the orchestration profile (every server the
scheduled chain uses), the simulator publishing every `period` seconds and both ingestion
DAGs scheduled at the same period. CPU is read from the kernel's accounting of the stack's
process tree: supervisord and every process under it, each with the CPU of its children
that have ended (a task's `lakehouse ingest`, dbt, and their subprocesses are counted when
they exit). Nothing outside the stack is counted, this bench's own process included.

1. Baseline: `airflow-scheduler` stopped, the simulator publishing: what the platform costs
   while it waits (JVMs idle, PostgreSQL, Airflow's other components).
2. Ours: the scheduler started, the ingestion DAGs and dbt_build unpaused, the bench
   group's cycle restarted: the same windows with every batch ingested and built.
Each run measures `periods` consecutive windows of one period; the medians are reported,
with the share of the machine's cores they are.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict

import psutil

from lakehouse.bench.dbt import say
from lakehouse.bench.report import empty_bench_stack, line, write_section

PERIOD = 300  # the seed's cadence: a batch every 5 minutes
SCHEDULER = "airflow-scheduler"
DAGS = ("ingest_network_a", "ingest_network_b", "dbt_build")


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "lakehouse.cli", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"lakehouse {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def tree_cpu(settings) -> dict[str, float]:
    """CPU seconds used so far by each supervised program's process tree, and by supervisord
    itself (which holds the CPU of programs that ended, as their parent)."""
    from lakehouse.stack.supervisor import client, daemon_pid

    root = psutil.Process(daemon_pid(settings))
    programs = {info["pid"]: info["name"] for info in client(settings).supervisor.getAllProcessInfo() if info["pid"]}
    out: dict[str, float] = defaultdict(float)
    out["supervisord"] = _cpu(root)
    for child in root.children():
        name = programs.get(child.pid, "other")
        try:
            out[name] += _cpu(child) + sum(_cpu(p) for p in child.children(recursive=True))
        except psutil.NoSuchProcess:  # ended meanwhile: its CPU moves to supervisord's children
            continue
    return dict(out)


def _windows(settings, periods: int, period: float) -> list[dict[str, float]]:
    """CPU seconds per program in each of `periods` consecutive windows of `period` seconds."""
    out = []
    before = tree_cpu(settings)
    for k in range(periods):
        time.sleep(period)
        after = tree_cpu(settings)
        used = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in set(after) | set(before)}
        out.append(used)
        say(f"  window {k + 1}/{periods}: {sum(used.values()):.1f} CPU-s")
        before = after
    return out


def run(periods: int = 3, period: float = PERIOD) -> list[str]:
    from lakehouse.bench.airflow import _restart_cycle, bench_airflow_env
    from lakehouse.stack.supervisor import client

    group = 6000 + int(time.time()) % 1000
    os.environ.update({**bench_airflow_env(period), "LAKEHOUSE_GROUP_NUMBER": str(group)})
    settings = empty_bench_stack("bench-cpu", profile="orchestration")
    _cli("init")  # every source's tables, as after `make demo`
    rpc = client(settings)
    cores = psutil.cpu_count()

    say(f"- baseline: {SCHEDULER} stopped, the simulator publishing every {period:g} s, "
        f"{periods} window(s) of {period:g} s")
    rpc.supervisor.stopProcess(SCHEDULER, True)
    _restart_cycle(settings, group)
    idle = _windows(settings, periods, period)

    # the DAGs ingest the group of the stack's environment: restart its cycle again, so the
    # batches the baseline published unread are not recorded as missed in these windows
    say(f"- ours: {SCHEDULER} started, {', '.join(DAGS)} unpaused, the cycle of group {group} restarted")
    rpc.supervisor.startProcess(SCHEDULER, True)
    for dag in DAGS:
        _cli("airflow", "dags", "unpause", dag)
    since = _restart_cycle(settings, group)
    busy = _windows(settings, periods, period)
    for dag in DAGS:
        _cli("airflow", "dags", "pause", dag, check=False)
    from lakehouse.bench.airflow import _committed

    batches = sum(1 for at in _committed(settings, group).values() if at >= since)

    ours = statistics.median(sum(w.values()) for w in busy)
    base = statistics.median(sum(w.values()) for w in idle)
    lines = [
        line("cpu_per_period", ours, "CPU-s", base, "-"),
        line("cpu_share_of_machine", 100 * ours / (period * cores), "%", 100 * base / (period * cores), "-"),
    ]
    programs = sorted(set().union(*busy, *idle), key=lambda n: -statistics.median(w.get(n, 0.0) for w in busy))
    rows = [f"| {name} | {statistics.median(w.get(name, 0.0) for w in busy):.1f} | "
            f"{statistics.median(w.get(name, 0.0) for w in idle):.1f} |" for name in programs]
    body = "\n".join([
        f"`make bench-cpu`: the CPU the whole platform used per publication period at the seed's cadence (two "
        f"sources, a batch every {period:g} s, both ingestion DAGs scheduled at that period, dbt_build on their "
        f"assets), against the same stack with `{SCHEDULER}` stopped while the simulator kept publishing. CPU is the "
        "kernel's accounting of the stack's process tree (supervisord, every server, every task process and what "
        f"it started). Medians of {periods} consecutive windows of one period each; {cores} cores; "
        f"batches committed during the scheduled windows (both sources): {batches}.",
        "",
        "| program | CPU-s per period, scheduled | CPU-s per period, scheduler stopped |",
        "|---|---|---|",
        *rows,
        "",
        "```",
        *lines,
        "```",
    ])
    write_section("bench-cpu", body)
    for text in lines:
        print(text, flush=True)
    return lines
