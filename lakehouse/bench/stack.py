"""`make bench-stack`: warm start to healthy (`all` and `core`), peak RSS per service, and
idle CPU, each against the same servers started bare.

Ours: `lakehouse up --profile <p>` (preflight, supervisord, dependency-ordered starts with
health gates, provisioning). Baseline, in the same run: the same programs with the same
commands and environments (rendered from the registry, as supervisord gets them), started
all at once with Popen and timed until the same health checks pass. The ratio is what
supervision, start order and provisioning cost over the floor.

Peak RSS: every service's process trees, sampled every 0.25 s during the same Trino
workload (1M rows written to Iceberg on MinIO, then aggregated). Idle CPU: the CPU time
of every process of the stack over 60 s when no batch is due and no DAG runs (the bench
stack's DAGs stay paused), as a share of the machine's cores, after 30 s to settle.

Runs on its own data folder and ports (like the tests), so a developer's stack is untouched.
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
from lakehouse.stack import manager, registry, supervisor
from lakehouse.trino import query

WARM_START_TARGET_S = 60
RSS_TARGET_GIB = 6
IDLE_CPU_TARGET = 0.10  # share of all cores
IDLE_SETTLE_S = 30
IDLE_WINDOW_S = 60


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


class RssSampler:
    """Peak resident memory of each service (all its programs' process trees), every 0.25 s."""

    def __init__(self, pids: dict[str, list[int]]):
        self.pids = pids
        self.peak = {name: 0 for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self, pids: list[int]) -> int:
        total = 0
        for pid in pids:
            for p in _tree(pid):
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pids in self.pids.items():
                self.peak[name] = max(self.peak[name], self._rss(pids))
            self._stop.wait(0.25)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def cpu_seconds(roots: list[int]) -> float:
    """CPU time used so far by these process trees: every live member's own time plus what
    its finished children used (so short-lived helpers, such as Airflow's parse processes,
    are counted once they are reaped)."""
    total = 0.0
    for pid in roots:
        for p in _tree(pid):
            try:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                pass
    return total


def idle_cpu(roots: list[int], window: float = IDLE_WINDOW_S) -> float:
    """Share of all cores these trees used over `window` seconds."""
    before, t0 = cpu_seconds(roots), time.monotonic()
    time.sleep(window)
    return (cpu_seconds(roots) - before) / ((time.monotonic() - t0) * (psutil.cpu_count() or 1))


def workload(settings: Settings) -> None:
    """The same Trino work in every round: 1M rows into Iceberg on MinIO, then aggregated."""
    query(settings, "DROP TABLE IF EXISTS marts.bench_stack_rss")
    query(settings, "CREATE TABLE marts.bench_stack_rss AS SELECT a * 1000 + b AS id, "
                    "cast(a AS double) / (b + 1) AS v FROM UNNEST(sequence(1, 1000)) t(a) "
                    "CROSS JOIN UNNEST(sequence(1, 1000)) u(b)")
    query(settings, "SELECT id % 997, count(*), avg(v), max(v) FROM marts.bench_stack_rss GROUP BY 1")
    query(settings, "DROP TABLE marts.bench_stack_rss")


def _service_pids(settings: Settings, names: list[str]) -> dict[str, list[int]]:
    reg = registry.load()
    info = {p["name"]: p["pid"] for p in supervisor.client(settings).supervisor.getAllProcessInfo() if p["pid"]}
    return {n: [info[p.name] for p in reg.services[n].programs if p.name in info] for n in names}


def round_ours(settings: Settings, profile: str, measure: bool) -> dict:
    names = registry.load().profile(profile)
    t0 = time.monotonic()
    manager.up(settings, profile=profile)
    out = {"start": time.monotonic() - t0}
    if measure:
        pids = _service_pids(settings, names)
        with RssSampler(pids) as sampler:
            workload(settings)
        out["rss"] = sampler.peak
        time.sleep(IDLE_SETTLE_S)
        out["idle"] = idle_cpu([supervisor.daemon_pid(settings)])  # supervisord and every server
    manager.down(settings)
    return out


def round_bare(settings: Settings, profile: str, measure: bool) -> dict:
    """The floor: the same programs started at once, no supervisor, no provisioning wait."""
    reg = registry.load()
    names = reg.profile(profile)
    base = supervisor.daemon_env(settings)
    procs: dict[str, tuple[str, subprocess.Popen]] = {}
    logs = []
    t0 = time.monotonic()
    for svc, prog in reg.programs(names):
        log = open(settings.log_path / f"bench-bare-{prog.name}.log", "w")
        logs.append(log)
        env = {**base, **supervisor.program_env(settings, reg, svc, prog)}
        cwd = prog.workdir(settings) if prog.workdir else settings.data_path
        procs[prog.name] = (svc.name, subprocess.Popen(
            prog.command(settings), env=env, cwd=cwd, user=prog.user() if prog.user else None,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    out: dict = {}
    try:
        pending = {prog.name: prog for _, prog in reg.programs(names)}
        while pending:
            for name in list(pending):
                if procs[name][1].poll() is not None:
                    raise RuntimeError(f"bare {name} exited; see {settings.log_path}/bench-bare-{name}.log")
                if pending[name].health(settings)[0]:
                    del pending[name]
            if time.monotonic() - t0 > 300:
                raise RuntimeError(f"bare start not healthy after 300 s: {sorted(pending)}")
            time.sleep(0.1)
        out["start"] = time.monotonic() - t0
        if measure:
            pids = {n: [p.pid for s, p in procs.values() if s == n] for n in names}
            with RssSampler(pids) as sampler:
                workload(settings)
            out["rss"] = sampler.peak
            time.sleep(IDLE_SETTLE_S)
            out["idle"] = idle_cpu([p.pid for _, p in procs.values()])
    finally:
        for wave in manager._stop_order(reg):
            for name in wave:
                if name not in procs:
                    continue
                p = procs[name][1]
                stop = manager._prog(reg, name).stop_signal
                p.send_signal(2 if stop == "INT" else 15)
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, 9)
                    p.wait()
        for log in logs:
            log.close()
    return out


def run(_dev_settings: Settings, runs: int) -> list[str]:
    os.environ["LAKEHOUSE_AIRFLOW_DAGS_PAUSED"] = "true"  # "no DAG is running" while idle
    settings = bench_settings()
    reg = registry.load()
    say(f"bench-stack: own stack in {settings.data_path}; {runs} round(s) each")
    say("- first start (initialises state; not timed) ...")
    manager.up(settings, profile="all")
    ensure_namespaces(settings)
    manager.down(settings)
    results: dict[tuple[str, str], list[dict]] = {}
    try:
        for i in range(runs):
            # alternate, so drift on a shared machine hits both sides alike
            for profile, measure in (("all", True), ("core", False)):
                for side, fn in (("ours", round_ours), ("bare", round_bare)):
                    say(f"- round {i + 1}/{runs}: {side}, profile {profile}")
                    r = fn(settings, profile, measure)
                    results.setdefault((side, profile), []).append(r)
                    say(f"  start {r['start']:.1f}s" + (f", idle CPU {100 * r['idle']:.1f}% of "
                                                          f"{psutil.cpu_count()} cores" if measure else ""))
    finally:
        manager.down(settings)
    med = statistics.median
    gib = 2**30
    lines, rows = [], []

    def add(name, label, ours, bare, unit, target, fmt="{:.1f}"):
        lines.append(line(name, ours, unit, bare, target))
        rows.append(f"| {label} | {fmt.format(ours)} {unit} | {fmt.format(bare)} {unit} | "
                    f"{ours / bare if bare else float('nan'):.2f} | {target} |")

    for profile in ("all", "core"):
        ours = med(r["start"] for r in results[("ours", profile)])
        bare = med(r["start"] for r in results[("bare", profile)])
        add(f"stack_warm_start_{profile}", f"warm start of `{profile}` to healthy", ours, bare, "s",
            f"< {WARM_START_TARGET_S} s")
    total_o = total_b = 0.0
    for name in reg.profile("all"):
        o = med(r["rss"][name] for r in results[("ours", "all")]) / gib
        b = med(r["rss"][name] for r in results[("bare", "all")]) / gib
        total_o, total_b = total_o + o, total_b + b
        add(f"stack_peak_rss_{name}", f"peak RSS {name}", o, b, "GiB", "-", "{:.2f}")
    add("stack_peak_rss_total", "peak RSS, whole stack", total_o, total_b, "GiB", f"< {RSS_TARGET_GIB} GiB", "{:.2f}")
    idle_o = 100 * med(r["idle"] for r in results[("ours", "all")])
    idle_b = 100 * med(r["idle"] for r in results[("bare", "all")])
    add("stack_idle_cpu", f"idle CPU, `all`, share of {psutil.cpu_count()} cores", idle_o, idle_b, "%",
        f"< {100 * IDLE_CPU_TARGET:.0f} %")
    body = "\n".join([
        f"`make bench-stack`, median of {runs} rounds, alternating ours and the baseline. Ours: "
        "`lakehouse up --profile <p>` (preflight, supervisord, dependency-ordered starts with health "
        "gates, provisioning). Baseline: the same programs, commands and environments started "
        "bare and all at once, timed until the same health checks pass. Peak RSS: each service's "
        "process trees, sampled every 0.25 s during the same Trino workload (1M rows written to "
        f"Iceberg on MinIO, then aggregated). Idle CPU: {IDLE_WINDOW_S} s after {IDLE_SETTLE_S} s "
        "to settle, DAGs paused (no batch due, no DAG running), CPU time of every process of the "
        f"stack over the machine's {psutil.cpu_count()} cores. Trino heap: -Xmx{settings.trino_heap}.",
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
