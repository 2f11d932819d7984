"""The coalescing rules of `lakehouse marts update` that need no server: which tables count,
when the sources have settled, and what makes the dbt project "changed". The build and skip
themselves run against the real stack in tests/integration/test_dbt.py."""

import itertools
import time

from lakehouse import marts
from lakehouse.contracts import load_all


def test_the_sources_are_every_contracts_raw_and_quarantine_table_and_the_audit_log():
    tables = marts.source_tables(load_all().values())
    assert tables[-1] == "audit.ingestion_log"
    for contract in load_all().values():
        assert {f"raw.{contract.table}", f"quarantine.{contract.table}"} <= set(tables)
    assert len(tables) == len(set(tables)) == 2 * len(load_all()) + 1


def test_settle_returns_once_the_state_stops_changing(monkeypatch):
    clock = itertools.count(0.0, 0.5)
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(time, "sleep", lambda s: None)
    states = iter([{"t": 1}, {"t": 2}, {"t": 3}] + [{"t": 3}] * 100)
    said = []
    got = marts.settle(lambda: next(states), quiet=2.0, limit=60.0, say=said.append)
    assert got == {"t": 3} and not said
    assert next(states) == {"t": 3}  # it stopped reading once quiet, not at the limit


def test_settle_returns_at_once_when_the_last_commit_is_older_than_the_quiet_time(monkeypatch):
    clock = itertools.count(0.0, 0.5)
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(time, "sleep", lambda s: None)
    reads = []
    got = marts.settle(lambda: reads.append(1) or {"t": 1}, quiet=5.0, limit=60.0, say=print, quiet_for=12.0)
    assert got == {"t": 1} and len(reads) == 1
    # a commit 3 s ago: 2 s more of quiet are needed, not 5
    reads.clear()
    marts.settle(lambda: reads.append(1) or {"t": 1}, quiet=5.0, limit=60.0, say=print, quiet_for=3.0)
    assert 1 < len(reads) <= 4


def test_settle_gives_up_at_its_limit_and_says_so(monkeypatch):
    clock = itertools.count(0.0, 0.5)
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(time, "sleep", lambda s: None)
    counter = itertools.count()
    said = []
    got = marts.settle(lambda: {"t": next(counter)}, quiet=2.0, limit=5.0, say=said.append)
    assert got["t"] >= 1 and said == ["sources still changing after 5s; building what is there now"]


def test_changed_tables_names_what_differs_including_a_new_table():
    before = {"raw.a": "s3://m/1.json", "raw.b": "s3://m/2.json", "dbt_project": "h1"}
    now = {"raw.a": "s3://m/1.json", "raw.b": "s3://m/3.json", "raw.c": "s3://m/4.json", "dbt_project": "h1"}
    assert marts.changed_tables(now, before) == ["raw.b", "raw.c"]
    assert marts.changed_tables(before, before) == []


def test_the_project_hash_follows_the_models(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "dbt_project.yml").write_text("name: x\n")
    (tmp_path / "models" / "m.sql").write_text("select 1")
    first = marts.project_hash(tmp_path)
    assert marts.project_hash(tmp_path) == first
    (tmp_path / "models" / "m.sql").write_text("select 2")
    assert marts.project_hash(tmp_path) != first
    (tmp_path / "target").mkdir()  # dbt's own output is not the project
    (tmp_path / "target" / "run_results.json").write_text("{}")
    second = marts.project_hash(tmp_path)
    (tmp_path / "target" / "run_results.json").write_text("{\"x\": 1}")
    assert marts.project_hash(tmp_path) == second



def test_the_snapshot_pins_are_merged_into_the_users_vars():
    import json

    import pytest

    from lakehouse.errors import LakehouseError

    pins = {"source_snapshots": {"raw.network_a": 7}}
    assert marts.with_vars(["--exclude", "x"], pins) == ["--exclude", "x", "--vars", json.dumps(pins)]
    merged = marts.with_vars(["--vars", "{aq_thresholds: {pm25: 25}}", "-s", "m"], pins)
    assert merged[:2] == ["-s", "m"] and json.loads(merged[3]) == {"aq_thresholds": {"pm25": 25}, **pins}
    with pytest.raises(LakehouseError, match="is not a mapping"):
        marts.with_vars(["--vars", "[1, 2]"], pins)


def test_the_lookback_is_the_one_the_build_will_use():
    assert marts.lookback_minutes([]) == 60.0  # dbt_project.yml
    assert marts.lookback_minutes(["--vars", "{incremental_lookback_minutes: 15}"]) == 15.0
    assert marts.lookback_minutes(["--vars", "{aq_thresholds: {pm25: 25}}"]) == 60.0


def test_a_build_publishes_the_first_models_then_the_others_then_runs_the_data_tests():
    args = ["--exclude", "resource_type:unit_test", "--vars", '{"source_snapshots": {"raw.a": 1}}']
    phases = marts.build_phases(args)
    assert [name for name, _ in phases] == ["models first", "other models", "data tests"]
    first, other, tests = (a for _, a in phases)
    assert first == [*args, "--select", "+tag:publish_first", "--exclude-resource-type", "test"]
    assert other == [*args, "--exclude", "+tag:publish_first", "--exclude-resource-type", "test"]
    assert tests == [*args, "--resource-type", "test"]
    assert marts.parse_args(args) == ["--vars", '{"source_snapshots": {"raw.a": 1}}']


def test_a_users_selection_is_built_in_one_models_phase():
    for args in (["--select", "fct_observations"], ["-s", "dim_stations"], ["--select=dim_stations"]):
        phases = marts.build_phases(args)
        assert [name for name, _ in phases] == ["models", "data tests"], args
        assert phases[0][1] == [*args, "--exclude-resource-type", "test"]


def test_the_gate_keeps_one_build_in_dbts_order():
    assert marts.build_phases(["--select", "fct_observations"], gate=True) == [
        ("build", ["--select", "fct_observations"])]


def test_seeds_load_only_when_the_project_changed_or_nothing_was_built():
    state = {"raw.a": "s3://m/1.json", "dbt_project": "abc"}
    assert marts.seeds_changed(state, None)
    assert not marts.seeds_changed(state, (None, {"raw.a": "s3://m/0.json", "dbt_project": "abc"}))
    assert marts.seeds_changed(state, (None, {"raw.a": "s3://m/1.json", "dbt_project": "old"}))
    phases = marts.build_phases([], seeds=False)
    assert all(a[-2:] == ["--exclude-resource-type", "seed"] for _, a in phases[:2])
    assert marts.build_phases([], gate=True, seeds=False) == [("build", ["--exclude-resource-type", "seed"])]


def test_the_publish_first_tag_selects_the_hourly_mart():
    import yaml

    doc = yaml.safe_load((marts.DBT_PROJECT / "models" / "marts" / "fct_observations_hourly.yml").read_text())
    assert marts.FIRST.removeprefix("tag:") in doc["models"][0]["config"]["tags"]


def test_data_tests_are_deferred_only_while_newer_batches_wait_and_the_last_complete_build_is_recent():
    # a newer batch waits, and tests passed 100 s ago: the next build tests both
    assert not marts.rest_due(True, 100.0, 300.0)
    # nothing newer: this build is the last for now, so it completes
    assert marts.rest_due(False, 100.0, 300.0)
    # the last complete build is too old, there is none yet, or a build failed since (None)
    assert marts.rest_due(True, 300.0, 300.0) and marts.rest_due(True, None, 300.0)
    # deferral switched off
    assert marts.rest_due(True, 1.0, 0.0)


def test_deferring_tests_for_the_lookback_or_longer_is_refused_before_anything_runs(monkeypatch):
    import pytest

    from lakehouse.errors import LakehouseError

    monkeypatch.setattr(marts, "_connect", lambda s: pytest.fail("no connection should be opened"))
    with pytest.raises(LakehouseError, match="less than the incremental lookback"):
        marts.update(None, ["--vars", "{incremental_lookback_minutes: 5}"], defer_rest=300)
    with pytest.raises(LakehouseError, match="without --gate"):
        marts.update(None, [], defer_rest=60, gate=True)


def _fake_update(monkeypatch, table_states: list[dict], builds_return: list):
    """update() with the catalog, the ledger and the build replaced: what it reads is
    `table_states` in turn (the last one repeats), what each build returns is `builds_return`."""
    from contextlib import nullcontext

    reads = iter(table_states + [table_states[-1]] * 100)
    results = iter(builds_return)
    built = []
    monkeypatch.setattr(marts, "_connect", lambda s: nullcontext(object()))
    monkeypatch.setattr(marts, "ensure_ledger", lambda conn: None)
    monkeypatch.setattr(marts, "table_state", lambda conn, s, tables: next(reads))
    monkeypatch.setattr(marts, "project_hash", lambda: "h")

    def build(settings, conn, read, *args, **kwargs):
        state = read()
        built.append(state)
        result = next(results)
        return state if result == "built" else None

    monkeypatch.setattr(marts, "_build", build)
    return built


def test_keep_up_builds_again_while_commits_arrive_during_builds_and_stops_once_none_did(monkeypatch):
    # read at build 1, after it (a new commit), at build 2, after it (no new commit)
    built = _fake_update(monkeypatch, [{"raw.a": 1}, {"raw.a": 2}, {"raw.a": 2}], ["built", "built"])
    said = []
    assert marts.update(None, [], settle_seconds=0, keep_up=60, say=said.append) == 0
    assert [s["raw.a"] for s in built] == [1, 2]
    assert any("committed during the build: raw.a; building again" in m for m in said), said


def test_without_keep_up_one_build_leaves_later_commits_to_the_next_run(monkeypatch):
    built = _fake_update(monkeypatch, [{"raw.a": 1}, {"raw.a": 2}], ["built", "built"])
    assert marts.update(None, [], settle_seconds=0, keep_up=0, say=print) == 0
    assert len(built) == 1


def test_a_run_with_nothing_to_build_is_skipped_even_when_it_may_keep_up(monkeypatch):
    built = _fake_update(monkeypatch, [{"raw.a": 1}], ["skipped"])
    assert marts.update(None, [], settle_seconds=0, keep_up=60, say=print) == marts.SKIPPED
    assert len(built) == 1
