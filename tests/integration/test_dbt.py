"""dbt on the real Trino, on the session's warehouse (`make demo`'s cycle of both networks,
group LAKEHOUSE_GROUP_NUMBER, built once). The rows it checks are known from the
generator's fault manifest, with the demo's seed, size and fault rate.

Incremental builds are proven on top of it: two more batches of a fresh group, `lakehouse
dbt build` after each, then the same marts from one full refresh. Every comparison runs as
SQL on the real tables.
"""

import json
import shutil
import subprocess
from datetime import datetime, timezone

import pytest

from lakehouse import dbt
from lakehouse.contracts import load_all
from lakehouse.errors import LakehouseError
from lakehouse.simulator import generate_batch
from lakehouse.simulator.server import SteppedSimulator
from lakehouse.trino import query
from spark_jobs.ingest import MAX_BATCH, Ingestor
from tests.integration.conftest import LAKEHOUSE, fresh_group, lakehouse

pytestmark = [pytest.mark.superset, pytest.mark.airflow]
SEED, PERIOD, ROWS, FAULTS, BATCHES = 11, 60.0, 300, 0.06, 2
NETWORK = {"network_a": "network-a", "network_b": "network-b"}
MARTS = ("fct_observations", "fct_observations_hourly", "dim_stations", "fct_daily_state_indicators",
         "mart_data_quality", "mart_quarantine_reasons")


def run_results() -> dict:
    return json.loads((dbt.latest_target() / "run_results.json").read_text())


def dbt_runs() -> set:
    return set((dbt.DBT_PROJECT / "target" / "runs").iterdir())


def results_since(before: set) -> dict:
    """The results of every dbt invocation since `before` (dbt_runs()), as one run: a mart
    build is two (the models, then their data tests)."""
    done = sorted((p / "run_results.json" for p in dbt_runs() - before if (p / "run_results.json").exists()),
                  key=lambda f: f.stat().st_mtime)
    runs = [json.loads(f.read_text()) for f in done]
    assert runs, "no dbt invocation since the update started"
    return {"results": [r for run in runs for r in run["results"]], "runs": runs}


@pytest.fixture(scope="module")
def cycle(warehouse, spark, tmp_path_factory):
    """The warehouse's batches (as the generator made them), then BATCHES more batches of
    a fresh group for both networks with `lakehouse dbt build` after each; the
    incrementally built marts copied aside, then rebuilt with --full-refresh."""
    stack = warehouse["settings"]
    group = fresh_group()
    sim = SteppedSimulator(tmp_path_factory.mktemp("dbt-sim") / "state.json", seed=SEED,
                           rows_per_batch=ROWS, fault_rate=FAULTS, period_seconds=PERIOD)
    contracts = load_all()
    ingestors = [Ingestor(stack.model_copy(update={"batch_api_url": sim.url}), contracts[s], spark)
                 for s in NETWORK]
    builds, updates = [], []
    try:
        for batch in range(1, BATCHES + 1):
            for ing in ingestors:
                result = ing.ingest(group)
                assert result.status == "committed" and result.batch_number == batch, result.line()
            # as the dbt_build DAG does it; after the last batch, two at once (as two queued
            # runs would): one builds, the other waits for the dbt lock and then has nothing to do
            before = dbt_runs()
            twins = [subprocess.Popen(LAKEHOUSE + ["marts", "update", "--settle", "0"], text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                     for _ in range(2 if batch == BATCHES else 1)]
            outs = [(p.wait(timeout=1200), *p.communicate()) for p in twins]
            assert sorted(rc for rc, _, _ in outs) == ([0, 99] if len(outs) == 2 else [0]), outs
            built = next(o for o in outs if o[0] == 0)
            assert "Completed successfully" in built[1], built[1][-3000:]
            builds.append(results_since(before))
            updates.append(outs)
            sim.next_batch()
    finally:
        sim.stop()
    for mart in MARTS:
        query(stack, f"DROP TABLE IF EXISTS intermediate.{mart}_incremental")
        query(stack, f"CREATE TABLE intermediate.{mart}_incremental AS SELECT * FROM marts.{mart}")
    lakehouse("dbt", "build", "--full-refresh", timeout=1200)
    full = run_results()
    demo = stack.group_number
    batches = {(src, b): generate_batch(NETWORK[src], demo, 1, b, seed=stack.simulator_seed,
                                        rows=stack.simulator_rows_per_batch, fault_rate=stack.simulator_fault_rate)
               for src in NETWORK for b in range(1, MAX_BATCH + 1)}
    return {"stack": stack, "group": demo, "rows": stack.simulator_rows_per_batch, "builds": builds,
            "full": full, "batches": batches, "updates": updates}


def test_marts_update_builds_once_per_change_and_skips_the_rest(cycle):
    """The scheduler's build (`lakehouse marts update`): each batch's build names the source
    tables that changed; of two updates started at once, the second finds the first's build
    covered everything and exits 99 (skipped) without running dbt; nothing new since, so a
    third skips too. The ledger (`lakehouse marts log`) shows it."""
    first, second = cycle["updates"][-2], cycle["updates"][-1]
    assert all(f"raw.{s}" in first[0][2] for s in NETWORK), first[0][2]
    twin_skip = next(o for o in second if o[0] == 99)
    assert "nothing changed since the build" in twin_skip[2] and "dbt build" not in twin_skip[1], twin_skip
    # the --full-refresh after the cycle went around the ledger; the sources did not change
    proc = lakehouse("marts", "update", "--settle", "0", check=False)
    assert proc.returncode == 99 and "nothing changed since the build" in proc.stderr, proc.stderr
    # each build: the hourly mart and what it reads, the other models, then every data test;
    # the seeds load only when the project is new to the ledger (at most the first build)
    for i, build in enumerate(cycle["builds"]):
        first, other, tests = build["runs"]
        kinds = [{r["unique_id"].split(".")[0] for r in run["results"]} for run in (first, other, tests)]
        assert kinds[0] | kinds[1] <= {"model", "seed", "unit_test"} and "model" in kinds[0], kinds
        assert "model.lakehouse.fct_observations_hourly" in {r["unique_id"] for r in first["results"]}
        assert kinds[2] == {"test"} and len(tests["results"]) > 20, kinds
        assert i == 0 or "seed" not in kinds[0] | kinds[1], (i, kinds)
    log = lakehouse("marts", "log", "-n", "2").stdout.splitlines()
    assert len(log) == 2 and all(" success " in line for line in log), log
    assert "raw.network_a" in log[0] and "raw.network_b" in log[0], log


def _comparable(settings, table: str) -> str:
    """SELECT list of `table` with doubles rounded: parallel sums may differ in the last bits."""
    schema, name = table.split(".")
    cols = query(settings, "SELECT column_name, data_type FROM information_schema.columns "
                           f"WHERE table_schema = '{schema}' AND table_name = '{name}' ORDER BY ordinal_position")
    assert cols, f"{table} has no columns"
    return ", ".join(f"round({c}, 9) AS {c}" if t in ("double", "real") else c for c, t in cols)


@pytest.mark.parametrize("mart", MARTS)
def test_a_build_after_every_batch_equals_one_full_refresh(stack, cycle, mart):
    a = f"intermediate.{mart}_incremental"
    b = f"marts.{mart}"
    select_a, select_b = _comparable(stack, a), _comparable(stack, b)
    assert select_a == select_b
    n_a = query(stack, f"SELECT count(*) FROM {a}")[0][0]
    n_b = query(stack, f"SELECT count(*) FROM {b}")[0][0]
    only_a = query(stack, f"SELECT count(*) FROM (SELECT {select_a} FROM {a} EXCEPT SELECT {select_b} FROM {b})")[0][0]
    only_b = query(stack, f"SELECT count(*) FROM (SELECT {select_b} FROM {b} EXCEPT SELECT {select_a} FROM {a})")[0][0]
    assert n_b > 0
    assert (n_a, only_a, only_b) == (n_b, 0, 0)


def _node(run: dict, unique_id: str) -> dict:
    return next(r for r in run["results"] if r["unique_id"] == unique_id)


def test_fct_observations_was_merged_by_the_per_batch_builds_and_created_by_the_full_refresh(cycle):
    """What dbt executed, not what it says: the statement it ran for the model."""
    manifest = json.loads((dbt.latest_target() / "manifest.json").read_text())
    assert manifest["nodes"]["model.lakehouse.fct_observations"]["config"]["materialized"] == "incremental"
    target = '"lakehouse"."marts"."fct_observations"'
    for build in cycle["builds"]:
        node = _node(build, "model.lakehouse.fct_observations")
        response = node["adapter_response"]
        assert node["status"] == "success"
        assert f"merge into {target}" in response["query"].lower(), response["query"][:500]
        assert response["_message"].startswith("MERGE"), response
    full = _node(cycle["full"], "model.lakehouse.fct_observations")["adapter_response"]
    # a full refresh builds the table whole, replacing it in one commit (readers never miss it)
    assert f"create or replace table {target}" in full["query"].lower() and "merge into" not in full["query"].lower()
    assert full["_message"].startswith("CREATE TABLE"), full


def test_every_test_passed_in_the_full_build_including_reconciliation(cycle):
    results = cycle["full"]["results"]
    by_status = {}
    for r in results:
        by_status.setdefault(r["status"], []).append(r["unique_id"])
    assert set(by_status) <= {"success", "pass"}, {k: v for k, v in by_status.items() if k not in ("success", "pass")}
    ids = {r["unique_id"] for r in results}
    assert "test.lakehouse.assert_raw_reconciles_to_marts" in ids
    unit_tests = [i for i in ids if i.startswith("unit_test.")]
    assert len(unit_tests) >= 7, unit_tests


def _utc(row: dict, source: str) -> datetime:
    if source == "network_a":
        return datetime.fromisoformat(row["timestamp"]).astimezone(timezone.utc).replace(tzinfo=None)
    return datetime.fromtimestamp(row[1] / 1000, tz=timezone.utc).replace(tzinfo=None)


def test_late_and_out_of_order_rows_land_in_their_hour(stack, cycle):
    """Every late or out-of-order row of network A (the source that wins shared keys) is in
    fct_observations at its UTC instant and counted in the hourly row of that hour."""
    checked = 0
    for (src, _), batch in cycle["batches"].items():
        if src != "network_a":
            continue
        for i in batch.indices("late") + batch.indices("out_of_order"):
            row = batch.data[i]
            if row.get("pm25") is None:
                continue
            when = _utc(row, src)
            got = query(stack, f"""
                SELECT o.value, h.hour_utc, h.value_min, h.value_max, h.n_observations
                FROM marts.fct_observations o
                JOIN marts.fct_observations_hourly h
                  ON h.station_id = o.station_id AND h.metric = o.metric
                 AND h.hour_utc = date_trunc('hour', o.event_time_utc)
                WHERE o.source = 'network_a' AND o.source_station_code = '{row["station_code"]}'
                  AND o.metric = 'pm25' AND o.event_time_utc = TIMESTAMP '{when:%Y-%m-%d %H:%M:%S}'""")
            assert len(got) == 1, (row, got)
            value, hour, lo, hi, n = got[0]
            assert hour == when.replace(minute=0, second=0, microsecond=0)
            assert value == pytest.approx(row["pm25"]) and lo <= value <= hi and n >= 1
            checked += 1
    assert checked >= 5, "too few late/out-of-order rows in the cycle to prove anything"


def test_unknown_stations_show_up_in_dim_stations_and_data_quality(stack, cycle):
    group = cycle["group"]
    for (src, b), batch in cycle["batches"].items():
        unknown = batch.indices("unknown_station")
        if not unknown:
            continue
        code_field = "station_code" if src == "network_a" else 0
        codes = {batch.data[i][code_field] for i in unknown}
        keys = {(batch.data[i][code_field], _utc(batch.data[i], src)) for i in unknown}
        ids = {f"unknown:{src}:{c}" for c in codes}
        rows = query(stack, "SELECT station_id, is_known_station, state_code FROM marts.dim_stations WHERE station_id IN ("
                     + ", ".join(f"'{i}'" for i in ids) + ")")
        assert {r[0] for r in rows} == ids and all(r[1] is False and r[2] is None for r in rows), rows
        dq = query(stack, "SELECT rows_unknown_station, unknown_station_codes FROM marts.mart_data_quality "
                          f"WHERE source = '{src}' AND group_number = {group} AND batch_number = {b} "
                          "AND status = 'committed'")
        assert len(dq) == 1
        assert dq[0][0] == len(keys), (src, b, dq, keys)
        assert set(dq[0][1].split(", ")) == codes


def test_data_quality_counts_match_the_generator(stack, cycle):
    """Per batch: rows in, quarantined, and quarantine reasons by kind, as the manifest says."""
    group = cycle["group"]
    for (src, b), batch in cycle["batches"].items():
        rows = query(stack, "SELECT rows_in, rows_valid, rows_quarantined, quarantine_reasons FROM marts.mart_data_quality "
                            f"WHERE source = '{src}' AND group_number = {group} AND batch_number = {b}")
        assert len(rows) == 1
        rows_in, valid, quarantined, reasons = rows[0]
        assert (rows_in, valid + quarantined) == (cycle["rows"], cycle["rows"])
        assert quarantined == len(batch.quarantine_indices)
        if quarantined:
            counted = sum(int(part.rsplit(": ", 1)[1]) for part in reasons.split(" | "))
            assert counted >= quarantined  # a row may carry several reasons
            # the same reasons, one row each, in mart_quarantine_reasons
            by_kind = dict(query(stack, "SELECT reason_kind, rows_with_reason FROM marts.mart_quarantine_reasons "
                                        f"WHERE source = '{src}' AND group_number = {group} AND batch_number = {b}"))
            assert by_kind == {part.rsplit(": ", 1)[0]: int(part.rsplit(": ", 1)[1]) for part in reasons.split(" | ")}


def test_source_freshness_passes_after_ingesting(cycle):
    proc = lakehouse("dbt", "source", "freshness")
    assert "PASS" in proc.stdout and "ERROR STALE" not in proc.stdout, proc.stdout[-2000:]


def test_docs_generate(cycle):
    lakehouse("dbt", "docs", "generate")
    catalog = json.loads((dbt.latest_target() / "catalog.json").read_text())
    nodes = set(catalog["nodes"])
    assert {f"model.lakehouse.{m}" for m in MARTS} <= nodes


def test_out_of_range_conversion_fails_a_test_naming_the_rows(stack, cycle, tmp_path):
    """A broken ppm->ppb conversion (x 1e6 instead of x 1e3): the unit test catches it before
    the model is built; and on real data (unit tests left out) o3_ppb's range test fails and
    the error lists the offending rows (device, event time, batch, value)."""
    project = tmp_path / "dbt_project"
    shutil.copytree(dbt.DBT_PROJECT, project, ignore=shutil.ignore_patterns("target", "logs"))
    macro = project / "macros" / "conversions.sql"
    macro.write_text(macro.read_text().replace("{{ column }} * 1000.0", "{{ column }} * 1000000.0"))
    with pytest.raises(LakehouseError) as err:
        dbt.run(stack, ["build", "--select", "stg_network_b__observations"], project=project, capture=True)
    assert "unit_test.lakehouse.stg_network_b__observations.network_b_converts_units_and_epoch_ms: fail" \
        in err.value.message, err.value.message
    try:
        with pytest.raises(LakehouseError) as err:
            dbt.run(stack, ["build", "--select", "stg_network_b__observations",
                            "--exclude-resource-type", "unit_test"], project=project, capture=True)
        text = err.value.message
        assert "value_between_stg_network_b__observations_o3_ppb" in text, text
        assert "offending rows" in text and "source_station_code='iot-" in text and "offending_value=" in text, text
    finally:
        dbt.run(stack, ["run", "--select", "stg_network_b__observations"], capture=True)
    # the real view is back: its range test passes again
    dbt.run(stack, ["test", "--select", "stg_network_b__observations"], capture=True)


def test_a_missing_source_table_is_a_clear_error(stack, cycle):
    query(stack, "ALTER TABLE raw.network_b RENAME TO raw.network_b_parked")
    try:
        proc = lakehouse("dbt", "build", check=False)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "raw.network_b" in proc.stderr and "lakehouse ingest" in proc.stderr, proc.stderr
    finally:
        query(stack, "ALTER TABLE raw.network_b_parked RENAME TO raw.network_b")
    assert dbt.missing_sources(stack) == []


def test_sqlfluff_passes_on_the_models(cycle):
    proc = lakehouse("lint-sql", check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "All Finished" in proc.stdout


def test_the_schedulers_build_defers_its_rest_and_builds_again_while_newer_batches_wait(stack, cycle, spark):
    """`marts update --defer-rest --keep-up`, as the dbt_build DAG runs it: a commit to a
    source table during a build's first step (the hourly time series) leaves the other marts
    and the data tests to the next build, which the same run starts at once for that commit,
    and which completes (nothing newer waits then). The ledger says which build was complete.
    A metadata commit (a table property, set by Spark, which owns raw) stands in for a batch:
    the build reads table states, and a real batch would only make the models slower."""
    touches = iter(range(1, 100))

    def touch() -> None:
        spark.sql(f"ALTER TABLE {stack.catalog_name}.raw.network_a "
                  f"SET TBLPROPERTIES ('lakehouse.it-touch'='{next(touches)}')")

    # a build with nothing newer waiting is complete, even when it may defer its rest
    touch()
    proc = lakehouse("marts", "update", "--settle", "0", "--defer-rest", "300", "--keep-up", "120")
    assert proc.stderr.count("dbt phase data tests: done") == 1, proc.stderr[-3000:]
    assert "dbt phase other models: done" in proc.stderr and "building again" not in proc.stderr
    assert "rest done" in lakehouse("marts", "log", "-n", "1").stdout

    touch()
    proc = subprocess.Popen(LAKEHOUSE + ["marts", "update", "--settle", "0", "--defer-rest", "300",
                                         "--keep-up", "120"],
                            text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err, touched = [], False
    for line in proc.stderr:
        err.append(line)
        if line.startswith("changed since the last build") and not touched:
            touch()  # a batch commits while the first build runs (its state was read just before)
            touched = True
    assert proc.wait(timeout=900) == 0, "".join(err)[-3000:]
    said = "".join(err)
    first, _, second = said.partition("building again")
    assert "the rest (other models and data tests) is left to the next build" in first, said[-3000:]
    assert "dbt phase other models: left out" in first and "dbt phase data tests: left out" in first
    assert "committed during the build: raw.network_a" in first, said[-3000:]
    assert "changed since the last build: raw.network_a" in second, said[-3000:]
    assert "dbt phase other models: done" in second and "dbt phase data tests: done" in second
    log = lakehouse("marts", "log", "-n", "2").stdout.splitlines()
    assert "rest done" in log[0] and "rest deferred" in log[1], log

    # deferring for as long as the lookback (or longer) would leave rows untested: refused
    proc = lakehouse("marts", "update", "--settle", "0", "--defer-rest", "3600", check=False)
    assert proc.returncode != 0 and "less than the incremental lookback (60 min)" in proc.stderr, proc.stderr


def test_the_schedulers_reconciliation_covers_its_window_and_the_nightly_check_everything(stack, cycle, spark):
    """The scheduler's build reconciles only the batches of its window (var tests_since):
    - a row appended to raw outside ingestion, copied from the newest batch, is inside the
      window and fails check 1, named;
    - the same row dated long ago is outside it: the scheduler's build passes, and the
      nightly full check (`marts update --force --all-rows`) fails, naming it.
    The table is rolled back after each."""
    from pyspark.sql import functions as F

    table = f"{stack.catalog_name}.raw.network_a"
    before = spark.sql(f"SELECT snapshot_id FROM {table}.history WHERE is_current_ancestor "
                       "ORDER BY made_current_at DESC LIMIT 1").collect()[0][0]
    newest = spark.table(table).where(F.col("_ingested_at") == spark.table(table).agg(F.max("_ingested_at")).first()[0])
    rollback = f"CALL {stack.catalog_name}.system.rollback_to_snapshot('raw.network_a', {before})"

    def failed_check_1(proc) -> bool:
        assert proc.returncode != 0, proc.stderr[-3000:]
        assert "their data tests failed" in proc.stderr and "assert_raw_reconciles_to_marts" in proc.stderr
        assert "network_b: valid rows logged" not in proc.stderr  # the other source still reconciles
        return "network_a: valid rows logged = raw rows" in proc.stderr

    newest.limit(1).writeTo(table).append()
    try:
        proc = lakehouse("marts", "update", "--settle", "0", check=False)
        assert failed_check_1(proc), proc.stderr[-3000:]
    finally:
        spark.sql(rollback)
    newest.limit(1).withColumn("_ingested_at", F.lit("2000-01-01 00:00:00").cast("timestamp")).writeTo(table).append()
    try:
        lakehouse("marts", "update", "--settle", "0")  # outside the window
        proc = lakehouse("marts", "update", "--settle", "0", "--force", "--all-rows", check=False)
        assert failed_check_1(proc), proc.stderr[-3000:]
    finally:
        spark.sql(rollback)
    lakehouse("marts", "update", "--settle", "0")  # and the next build passes again


def test_a_held_batch_stays_out_of_the_marts_until_released_and_a_rejected_one_never_enters(stack, cycle, spark,
                                                                                           tmp_path):
    """Two batches above the contract's quarantine limit are held: staged on raw under a
    branch each, their quarantined rows published, their valid rows in neither raw nor the
    marts. One is released (its rows reach raw and the marts), the other rejected (they
    never do); each decision is an audit row naming who made it. The reconciliation holds
    throughout, and the nightly full check after."""
    group = fresh_group()
    sim = SteppedSimulator(tmp_path / "state.json", seed=SEED, rows_per_batch=ROWS, fault_rate=0.4,
                           period_seconds=PERIOD)
    ing = Ingestor(stack.model_copy(update={"batch_api_url": sim.url}), load_all()["network_b"], spark)
    held = []
    try:
        for _ in range(2):
            result = ing.ingest(group)
            assert result.status == "held", result.line()
            assert result.message.startswith("held by the quality gate: quarantine rate ")
            held.append(result)
            sim.next_batch()
    finally:
        sim.stop()
    release, reject = held

    def counts(batch_id):
        staged = query(stack, f"SELECT count(*) FROM staging.stg_network_b__observations WHERE _batch_id = '{batch_id}'",
                       user="dbt")[0][0]
        marts = query(stack, f"SELECT count(*) FROM marts.fct_observations WHERE _batch_id = '{batch_id}'")[0][0]
        quarantined = query(stack, f"SELECT count(*) FROM quarantine.network_b WHERE _batch_id = '{batch_id}'")[0][0]
        return staged, marts, quarantined

    def quality(batch_id):
        return [tuple(r) for r in query(stack, "SELECT status, decided_by FROM marts.mart_data_quality "
                                               f"WHERE batch_id = '{batch_id}'")]

    refs = {r[0] for r in query(stack, 'SELECT name FROM raw."network_b$refs"')}
    assert {f"held-{b.batch_id.replace('/', '-')}" for b in held} <= refs
    listed = lakehouse("batches", "held").stdout
    assert release.batch_id in listed and reject.batch_id in listed, listed
    assert lakehouse("marts", "update", "--settle", "0", check=False).returncode in (0, 99)
    for b in held:
        assert counts(b.batch_id) == (0, 0, b.rows_quarantined)
        assert quality(b.batch_id) == [("held", None)]

    out = lakehouse("batches", "release", release.batch_id, "--by", "reviewer-1", "--reason", "checked by hand").stdout
    assert out.startswith(f"{release.batch_id}: network_b group {group} cycle 1 batch 1: released: ")
    assert "released by reviewer-1: checked by hand" in out, out
    lakehouse("batches", "reject", reject.batch_id, "--by", "reviewer-2")
    again = lakehouse("batches", "release", release.batch_id, check=False)
    assert again.returncode != 0 and "was released already, by reviewer-1" in again.stderr, again.stderr
    assert release.batch_id not in lakehouse("batches", "held").stdout
    lakehouse("marts", "update", "--settle", "0")
    staged, marts, quarantined = counts(release.batch_id)
    assert (staged, quarantined) == (release.rows_valid, release.rows_quarantined) and marts > 0
    assert counts(reject.batch_id) == (0, 0, reject.rows_quarantined)
    assert quality(release.batch_id) == [("released", "reviewer-1")]
    assert quality(reject.batch_id) == [("rejected", "reviewer-2")]
    decisions = query(stack, "SELECT batch_id, status, decided_by, rows_valid FROM audit.ingestion_log "
                             f"WHERE batch_id IN ('{release.batch_id}', '{reject.batch_id}') ORDER BY finished_at")
    assert [tuple(d) for d in decisions] == [(release.batch_id, "held", None, release.rows_valid),
                                             (reject.batch_id, "held", None, reject.rows_valid),
                                             (release.batch_id, "released", "reviewer-1", release.rows_valid),
                                             (reject.batch_id, "rejected", "reviewer-2", reject.rows_valid)]
    refs = {r[0] for r in query(stack, 'SELECT name FROM raw."network_b$refs"')}
    assert not {f"held-{b.batch_id.replace('/', '-')}" for b in held} & refs
    # row conservation across held, released and rejected batches: every row, every check
    lakehouse("marts", "update", "--settle", "0", "--force", "--all-rows")
