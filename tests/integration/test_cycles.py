"""Cycles against two batch APIs: our simulator, which names the cycle in a header, and a
second API written apart from it (tests/integration/other_api.py: rows as arrays, no cycle
anywhere, a restart that serves new data), whose cycles ingestion infers. Every bad input
the protocol allows ends in a clear error naming source, group, cycle and batch, and
nothing is lost: each batch is committed, quarantined whole, or recorded as missed."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import requests

from lakehouse.contracts.model import CycleSource, Restart
from lakehouse.simulator.server import SteppedSimulator
from lakehouse.trino import query
from spark_jobs.ingest import Ingestor, ingest_cycles
from tests.integration.conftest import fresh_group
from tests.integration.other_api import PATH, OtherApi

pytestmark = [pytest.mark.trino, pytest.mark.spark]
PER_CYCLE = 4


@pytest.fixture(scope="module")
def contracts():
    from lakehouse.contracts import load_all

    return load_all()


@pytest.fixture
def api():
    server = OtherApi(rows=50)
    yield server
    server.stop()


def other(stack, spark, contracts, api, **source):
    """An ingestor of network B's table reading the other API, cycle inferred."""
    base = contracts["network_b"]
    spec = base.source.model_copy(update={"path": PATH, "batches_per_cycle": PER_CYCLE, "cycle": CycleSource(),
                                          **source})
    ing = Ingestor(stack.model_copy(update={"batch_api_url": api.url}), base.model_copy(update={"source": spec}),
                   spark, timeout=5, attempts=2, backoff=0.05)
    ing.ensure_tables()
    return ing


def audit(stack, source, group):
    return query(stack, "SELECT cycle, batch_number, status, cycle_source FROM audit.ingestion_log "
                        f"WHERE source = '{source}' AND group_number = {group} ORDER BY finished_at, batch_id")


def raw_rows(stack, table, batch_id):
    return query(stack, f"SELECT count(*), min(_cycle), max(_cycle) FROM raw.{table} WHERE _batch_id = '{batch_id}'")[0]


def test_inferred_cycles_follow_an_api_that_restarts_with_new_data(stack, spark, contracts, api):
    ing, group = other(stack, spark, contracts, api), fresh_group()
    for b in range(1, PER_CYCLE + 1):
        r = ing.ingest(group)
        assert (r.status, r.cycle, r.batch_number) == ("committed", 1, b), r.line()
        if b < PER_CYCLE:
            api.advance(group)
    assert ing.ingest(group).status == "replayed"        # the API keeps serving the last batch
    api.reserialise(group)                                # other key order and whitespace, same data
    again = ing.ingest(group)
    assert again.status == "replayed" and again.cycle == 1, again.line()
    api.restart(group)
    new = ing.ingest(group)
    assert (new.status, new.cycle, new.batch_number, new.cycle_source) == ("committed", 2, 1, "inferred")
    assert f"network_b/g{group}/c2/b1/" in new.batch_id and "the API started cycle 2" in new.message
    assert raw_rows(stack, "network_b", new.batch_id) == (50, 2, 2)
    assert audit(stack, "network_b", group) == [(1, b, "committed", "inferred") for b in range(1, 5)] + [
        (2, 1, "committed", "inferred")]


def test_our_simulator_names_the_cycle_and_a_restarted_cycle_is_ingested(stack, spark, contracts, tmp_path):
    sim = SteppedSimulator(tmp_path / "state.json", seed=3, rows_per_batch=100, fault_rate=0.0)
    try:
        ing = Ingestor(stack.model_copy(update={"batch_api_url": sim.url}), contracts["network_a"], spark)
        group = fresh_group()
        first = ing.ingest(group)
        requests.get(f"{sim.url}/restart_data_generation", params={"group_number": group},
                     timeout=5).raise_for_status()
        second = ing.ingest(group)
    finally:
        sim.stop()
    assert (first.status, first.cycle, first.cycle_source) == ("committed", 1, "declared")
    # before cycles, this batch was "already ingested with another payload" and quarantined whole
    assert (second.status, second.cycle, second.batch_number, second.cycle_source) == (
        "committed", 2, 1, "declared"), second.line()
    assert raw_rows(stack, "network_a", second.batch_id)[1:] == (2, 2)


def test_a_restart_in_the_middle_of_a_fetch_files_the_batch_under_its_own_cycle(stack, spark, contracts, api):
    ing, group = other(stack, spark, contracts, api), fresh_group()
    assert ing.ingest(group).status == "committed"
    api.advance(group)
    fetched = ing.fetch(group)      # cycle 1, batch 2 is in flight ...
    api.restart(group)              # ... when the API starts cycle 2
    during = ing.ingest(group, fetched)
    after = ing.ingest(group)
    assert (during.cycle, during.batch_number, during.status) == (1, 2, "committed")
    assert (after.cycle, after.batch_number, after.status) == (2, 1, "committed")


def test_a_jump_records_the_missed_batches_and_the_command_fails_naming_them(stack, tmp_path):
    sim = SteppedSimulator(tmp_path / "state.json", seed=4, rows_per_batch=100, fault_rate=0.0)
    group = fresh_group()
    cmd = [sys.executable, "-m", "lakehouse.cli", "ingest", "-s", "network_a", "-g", str(group)]
    env = {**os.environ, "LAKEHOUSE_BATCH_API_URL": sim.url}
    try:
        assert subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300).returncode == 0
        sim.next_batch()
        sim.next_batch()
        sim.next_batch()               # batches 2 and 3 come and go unseen
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        report = subprocess.run(cmd + ["--on-missed", "report", "--json"], env=env, capture_output=True, text=True,
                                timeout=300)
    finally:
        sim.stop()
    assert proc.returncode != 0
    assert f"2 batch(es) missed: network_a/g{group}/b2/missed, network_a/g{group}/b3/missed" in proc.stderr
    assert "committed" in proc.stdout  # batch 4 itself is in
    assert audit(stack, "network_a", group) == [(1, 1, "committed", "declared"), (1, 2, "missed", "declared"),
                                                (1, 3, "missed", "declared"), (1, 4, "committed", "declared")]
    assert report.returncode == 0 and '"status": "replayed"' in report.stdout  # nothing new, nothing missed


def test_a_run_started_before_the_publication_waits_for_it_and_ends_when_it_commits(stack, tmp_path):
    """`lakehouse ingest --follow` (what each scheduled run does): the batch served at the
    start was already ingested, so the run polls; the API publishes the next one 3 s later,
    and the run ingests it and ends at once, well before its window."""
    sim = SteppedSimulator(tmp_path / "state.json", seed=6, rows_per_batch=100, fault_rate=0.0)
    group = fresh_group()
    cmd = [sys.executable, "-m", "lakehouse.cli", "ingest", "-s", "network_a", "-g", str(group), "--json"]
    env = {**os.environ, "LAKEHOUSE_BATCH_API_URL": sim.url}
    try:
        subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=True)
        t0 = time.monotonic()
        run = subprocess.Popen(cmd + ["--follow", "120", "--poll", "0.5"], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(3)
        assert run.poll() is None, run.communicate()  # still waiting: batch 1 is a replay
        sim.next_batch()
        out, err = run.communicate(timeout=300)
        elapsed = time.monotonic() - t0
        # with nothing new inside the window, the run ends with the replay
        idle = subprocess.run(cmd + ["--follow", "2", "--poll", "0.5"], env=env, capture_output=True, text=True,
                              timeout=300)
    finally:
        sim.stop()
    assert run.returncode == 0, err
    last = json.loads(out.strip().splitlines()[-1])
    assert (last["status"], last["batch_number"], last["missed"]) == ("committed", 2, []), last
    assert elapsed < 60, elapsed  # it ended at the commit, not at the end of its 120 s window
    assert idle.returncode == 0 and json.loads(idle.stdout.strip().splitlines()[-1])["status"] == "replayed"
    assert audit(stack, "network_a", group) == [(1, 1, "committed", "declared"), (1, 2, "committed", "declared")]


@pytest.mark.parametrize("number, reason", [
    (PER_CYCLE + 1, f"batch_number {PER_CYCLE + 1} is outside the cycle's 1..{PER_CYCLE}"),
    (-2, "batch_number -2 is not positive"),
])
def test_a_batch_number_beyond_the_cycle_or_negative_is_rejected_and_kept(stack, spark, contracts, api,
                                                                         number, reason):
    ing, group = other(stack, spark, contracts, api), fresh_group()
    api.serve(group, number)
    r = ing.ingest(group)
    assert r.status == "rejected" and reason in r.message, r.line()
    assert f"network_b group {group}" in r.message
    kept = query(stack, f"SELECT count(*) FROM quarantine.network_b WHERE _batch_id = '{r.batch_id}' "
                        "AND _row_index IS NULL")[0][0]
    assert kept == 1  # the whole payload, as it arrived
    assert [row[2] for row in audit(stack, "network_b", group)] == ["rejected"]


def test_the_same_batch_twice_in_a_cycle_with_other_data_is_reported_and_kept(stack, spark, contracts, api):
    ing, group = other(stack, spark, contracts, api), fresh_group()
    api.advance(group)
    first = ing.ingest(group)
    api.change_data(group)
    changed = ing.ingest(group)
    assert (first.status, changed.status) == ("committed", "rejected")
    assert f"network_b group {group} cycle 1 batch 2: batch 2 of cycle 1 was already ingested with another " \
           "payload" in changed.message and first.batch_id in changed.message
    assert query(stack, f"SELECT count(*) FROM quarantine.network_b WHERE _batch_id = '{changed.batch_id}' "
                        "AND _row_index IS NULL")[0][0] == 1
    assert raw_rows(stack, "network_b", first.batch_id)[0] == 50  # the first payload's rows stay as they were


def test_ingestion_restarts_the_api_itself_and_goes_on_to_the_next_cycle(stack, spark, contracts, api):
    ing = other(stack, spark, contracts, api, restart=Restart(when_cycle_ends=True))
    group = fresh_group()
    stop = threading.Event()

    def publish():  # once polled, the API publishes a batch every 3 s, up to the cycle's last
        while not stop.wait(3):
            state = api.state.get(group)
            if state and state["batch"] < PER_CYCLE:
                api.advance(group)

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    try:
        t0 = time.monotonic()
        results = ingest_cycles([ing], group, cycles=2, poll=0.1, timeout=120, report=lambda _: None)
    finally:
        stop.set()
        publisher.join()
    committed = [(r.cycle, r.batch_number) for r in results if r.status == "committed"]
    assert committed[-PER_CYCLE:] == [(2, b) for b in range(1, PER_CYCLE + 1)], committed
    assert api.restarts == 1 and time.monotonic() - t0 < 120
    missed = [m for r in results for m in r.missed]
    assert all(r.status in ("committed", "replayed") for r in results), [r.line() for r in results]
    # polled faster than the API publishes: nothing missed, or each miss recorded
    assert len(committed) + len(missed) == 2 * PER_CYCLE
