"""`make bench-follow`: does ingestion keep up with a fast API while dbt builds run?

Issue 13's goal: zero missed batches for two sources of 1,000 rows each at a 10 s
publication period over three cycles, while dbt builds run.

On the bench stack (profile core: no scheduler), emptied first, the simulator publishes a
batch every `period` seconds. One `lakehouse ingest --cycles 3`-style follower
(`ingest_cycles`) polls both sources every second, and restarts the API's cycle itself when
a cycle has ended (the contracts' `endpoint.restart.when_cycle_ends`, switched on here), while
a second thread runs the scheduler's mart build (`lakehouse marts update`) back to back for
the whole time: both compete for the 2 cores, as on a busy platform.

Figures: batches missed (published and withdrawn unseen, recorded as `missed`), and the lag
from publication (the simulator's cycle start + (k-1) x period, read from its control
endpoint) to the audit commit, p50 and p95. Baseline, in the same run: the same follower for
one cycle with no dbt build running.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from datetime import datetime, timezone

import requests

from lakehouse.bench.dbt import pct
from lakehouse.bench.report import empty_bench_stack, line, write_section

ROWS = 1000


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class _CycleStarts(threading.Thread):
    """Polls the simulator's control endpoint: every (cycle -> started_at) of one group."""

    def __init__(self, url: str, group: int):
        super().__init__(daemon=True)
        self.url, self.group, self.starts, self.stop = url, group, {}, threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                state = requests.get(f"{self.url}/_control/state", timeout=5).json()["groups"].get(str(self.group))
                if state:
                    started = datetime.fromisoformat(state["started_at"].replace("Z", "+00:00")).timestamp()
                    self.starts.setdefault(int(state["cycle"]), started)
            except (requests.RequestException, ValueError, KeyError):
                pass
            self.stop.wait(0.5)


class _Builds(threading.Thread):
    """The scheduler's mart build, back to back, until stopped."""

    def __init__(self, settings):
        super().__init__(daemon=True)
        self.settings, self.stop, self.built, self.skipped, self.errors = settings, threading.Event(), 0, 0, []

    def run(self):
        from lakehouse import marts
        from lakehouse.bench.dbt import PER_BATCH_BUILD

        while not self.stop.is_set():
            try:
                rc = marts.update(self.settings, PER_BATCH_BUILD, settle_seconds=0, say=lambda m: None)
                self.built += rc == 0
                self.skipped += rc == marts.SKIPPED
                if rc == marts.SKIPPED:
                    self.stop.wait(1)
            except Exception as exc:  # noqa: BLE001 - reported with the figures
                self.errors.append(str(exc)[:300])
                self.stop.wait(5)


def _follow(settings, group: int, cycles: int, period: float, with_dbt: bool) -> dict:
    from lakehouse.contracts import load_all
    from spark_jobs.ingest import close_ingestors, ingest_cycles, open_ingestors

    contracts = [c.model_copy(update={"source": c.source.model_copy(update={
        "restart": c.source.restart.model_copy(update={"when_cycle_ends": True})})})
        for c in load_all().values()]
    starts = _CycleStarts(settings.simulator_url, group)
    starts.start()
    builds = _Builds(settings) if with_dbt else None
    if builds:
        builds.start()
    ingestors = open_ingestors(settings, contracts)
    t0 = time.time()
    try:
        results = ingest_cycles(ingestors, group, cycles=cycles, poll=1.0,
                                timeout=cycles * 10 * period + 600, report=say)
    finally:
        close_ingestors(ingestors)
        starts.stop.set()
        if builds:
            builds.stop.set()
            builds.join(timeout=600)
    lags = []
    for r in results:
        if r.status == "committed" and r.cycle in starts.starts:
            published = starts.starts[r.cycle] + (r.batch_number - 1) * period
            lags.append(_finished(settings, r.batch_id) - published)
    missed = [m for r in results for m in r.missed]
    committed = [r for r in results if r.status == "committed"]
    return {"missed": missed, "committed": len(committed), "lags": lags, "seconds": time.time() - t0,
            "builds": (builds.built, builds.skipped, builds.errors) if builds else None,
            "bad": [r.line() for r in results if r.status not in ("committed", "replayed")]}


def _finished(settings, batch_id: str) -> float:
    from lakehouse.trino import query

    rows = query(settings, f"SELECT max(finished_at) FROM audit.ingestion_log WHERE batch_id = '{batch_id}'")
    return rows[0][0].replace(tzinfo=timezone.utc).timestamp()


def run(period: float = 10.0, cycles: int = 3) -> list[str]:
    os.environ.update({"LAKEHOUSE_SIMULATOR_PERIOD_SECONDS": f"{period:g}",
                       "LAKEHOUSE_SIMULATOR_ROWS_PER_BATCH": str(ROWS)})
    settings = empty_bench_stack("bench-follow", profile="core")
    from lakehouse.demo import init_source_tables

    init_source_tables(settings)
    base_group = 6000 + int(time.time()) % 1000
    say(f"- baseline: one cycle of group {base_group + 500}, no dbt build running")
    baseline = _follow(settings, base_group + 500, 1, period, with_dbt=False)
    say(f"- {cycles} cycles of group {base_group} while `lakehouse marts update` runs back to back")
    ours = _follow(settings, base_group, cycles, period, with_dbt=True)
    from lakehouse.stack import manager

    manager.down(settings)
    expected = cycles * 10 * 2
    built, skipped, errors = ours["builds"]
    lines = [
        line("follow_missed_batches", len(ours["missed"]), "batches", len(baseline["missed"]), "0"),
        line("follow_publication_to_commit_p50", pct(ours["lags"], 0.5), "s", pct(baseline["lags"], 0.5), "-"),
        line("follow_publication_to_commit_p95", pct(ours["lags"], 0.95), "s", pct(baseline["lags"], 0.95),
             f"< {period:g} s (the period)"),
    ]
    for text in lines:
        print(text, flush=True)
    body = "\n".join([
        f"`make bench-follow`: two sources of {ROWS} rows per batch, a batch every {period:g} s, "
        f"{cycles} cycles (the follower restarts the API's cycle itself), one follower process polling "
        "both every second, while `lakehouse marts update` (the dbt_build DAG's command) runs back to "
        "back. Lag: publication (the simulator's cycle start + (k-1) x period) -> audit commit. Baseline: "
        "the same follower for one cycle with no dbt build running.",
        "",
        f"- committed: {ours['committed']} of {expected} batches in {ours['seconds']:.0f} s; missed: "
        f"{ours['missed'] or 'none'}; rejected or failed: {ours['bad'] or 'none'}",
        f"- dbt builds during the run: {built} built, {skipped} found nothing new"
        + (f"; errors: {errors}" if errors else ""),
        f"- baseline: committed {baseline['committed']} of 20, missed {baseline['missed'] or 'none'}",
        "",
        "```",
        *lines,
        "```",
    ])
    write_section("bench-follow", body)
    return lines
