"""DAG integrity: every DAG in airflow_dags/ imports, without the network or Variables, has
no cycle, and carries tags, an owner, doc_md and retries >= 2 on every task."""

import socket
from datetime import timedelta

import pytest

from lakehouse.contracts import load_all
from lakehouse.orchestration.dags import URI_SCHEME
from lakehouse.stack.services.airflow import DAGS_FOLDER


@pytest.fixture
def dagbag(settings, monkeypatch, tmp_path):
    """Parse the DAG folder as the dag-processor does, with the network and Variables cut."""
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

    def no_network(*args, **kwargs):
        raise AssertionError(f"a DAG file opened a network connection at parse time: {args}")

    def no_variables(*args, **kwargs):
        raise AssertionError(f"a DAG file read an Airflow Variable at parse time: {args}")

    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import Variable

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(Variable, "get", no_variables)
    return DagBag(dag_folder=str(DAGS_FOLDER), safe_mode=False)


def test_every_dag_imports(dagbag):
    assert dagbag.import_errors == {}
    expected = {f"ingest_{c}" for c in load_all()} | {"dbt_build", "iceberg_maintenance"}
    assert set(dagbag.dag_ids) == expected


def test_no_cycles_and_the_basics(dagbag):
    for dag_id, dag in dagbag.dags.items():
        dag.check_cycle()  # raises on a cycle
        assert dag.tags, dag_id
        assert dag.doc_md and len(dag.doc_md) > 200, dag_id
        assert dag.max_active_runs == 1, dag_id
        assert dag.catchup is False, dag_id
        assert dag.tasks, dag_id
        for t in dag.tasks:
            assert t.owner and t.owner != "airflow", (dag_id, t.task_id, t.owner)
            assert t.retries >= 2, (dag_id, t.task_id, t.retries)
            assert t.retry_exponential_backoff, (dag_id, t.task_id)
            assert t.execution_timeout and t.execution_timeout > timedelta(0), (dag_id, t.task_id)


def test_ingestion_dags_follow_the_contracts_and_settings(dagbag, settings):
    from airflow.timetables.interval import CronDataIntervalTimetable

    for cid, contract in load_all().items():
        dag = dagbag.dags[f"ingest_{cid}"]
        assert dag.owner == contract.owner
        assert isinstance(dag.timetable, CronDataIntervalTimetable)
        assert dag.timetable._expression == settings.ingest_schedule == "*/5 * * * *"
        assert {t.task_id for t in dag.tasks} == {"ingest", "publish", "quality_gate"}
        ingest = dag.get_task("ingest")
        assert f"ingest --source {cid} --json" in ingest.bash_command
        # every 5 minutes: the run waits up to 4 minutes for its batch, polling every 15 s
        assert "--follow 240.0 --poll 15.0" in ingest.bash_command
        assert ingest.retry_delay == timedelta(seconds=settings.ingest_retry_delay_seconds)
        assert ingest.execution_timeout == timedelta(minutes=settings.ingest_timeout_minutes)
        assert ingest.depends_on_past is False
        assert {t.task_id for t in ingest.downstream_list} == {"publish", "quality_gate"}
        uris = {a.uri for a in dag.get_task("publish").outlets}
        assert uris == {f"{URI_SCHEME}://lakehouse/raw/{contract.table}",
                        f"{URI_SCHEME}://lakehouse/quarantine/{contract.table}"}


def test_dbt_runs_when_any_raw_or_quarantine_table_changes(dagbag):
    dbt = dagbag.dags["dbt_build"]
    published = {a.uri for cid in load_all() for a in dagbag.dags[f"ingest_{cid}"].get_task("publish").outlets}
    condition = dbt.timetable.asset_condition
    assert type(condition).__name__ == "AssetAny"  # any one change starts a run, not all of them
    assert {a.uri for a in condition.objects} == published
    task = dbt.get_task("dbt_build")
    # coalesced: a run with nothing new since the last build exits 99, and shows as skipped
    assert "lakehouse.orchestration.task marts update" in task.bash_command
    assert task.skip_on_exit_code == [99] or task.skip_on_exit_code == 99


def test_maintenance_covers_every_layer(dagbag):
    from lakehouse.catalog import NAMESPACES

    dag = dagbag.dags["iceberg_maintenance"]
    assert dag.max_active_tasks == 1
    assert {t.task_id for t in dag.tasks} == {f"maintain_{ns}" for ns in NAMESPACES} | {"check_marts"}
    for ns in NAMESPACES:
        assert f"maintain --layer {ns}" in dag.get_task(f"maintain_{ns}").bash_command
    # then the day's full check of the marts, whatever became of the layers
    check = dag.get_task("check_marts")
    assert check.upstream_task_ids == {f"maintain_{ns}" for ns in NAMESPACES}
    assert check.trigger_rule == "all_done"
    assert "marts update --force --all-rows" in check.bash_command


def test_period_schedule_gives_fixed_intervals(tmp_path, monkeypatch):
    from airflow.timetables.interval import DeltaDataIntervalTimetable

    from lakehouse.orchestration.dags import timetable

    tt = timetable("30s")
    assert isinstance(tt, DeltaDataIntervalTimetable) and tt._delta == timedelta(seconds=30)


@pytest.mark.parametrize("value, message", [
    ("every five minutes", "neither a cron expression"),
    ("*/5 * * *", "neither a cron expression"),
    ("5s", "shorter than 10s"),
])
def test_bad_schedule_is_a_clear_settings_error(monkeypatch, value, message):
    from lakehouse.errors import SettingsError
    from lakehouse.settings import load_settings

    monkeypatch.setenv("LAKEHOUSE_INGEST_SCHEDULE", value)
    with pytest.raises(SettingsError, match="LAKEHOUSE_INGEST_SCHEDULE") as err:
        load_settings()
    assert message in str(err.value)


def _result(status="committed", rows_in=100, bad=2):
    import json

    return json.dumps({"batch_id": "network_a/g1/b4/abc", "status": status, "rows_in": rows_in,
                       "rows_quarantined": bad, "rows_valid": rows_in - bad})


def test_quality_gate_task_fails_the_run_at_once_above_the_contract_limit(dagbag):
    from airflow.sdk.exceptions import AirflowFailException

    gate = dagbag.dags["ingest_network_a"].get_task("quality_gate")
    with pytest.raises(AirflowFailException, match=r"network_a/g1/b4/abc: 50 of 100 rows quarantined \(50.0%\)"):
        gate.python_callable(_result(bad=50))  # AirflowFailException: no retry
    assert "2 of 100 rows quarantined" in gate.python_callable(_result(bad=2))


def test_publish_task_announces_new_batches_only(dagbag):
    from airflow.sdk.exceptions import AirflowSkipException

    publish = dagbag.dags["ingest_network_a"].get_task("publish")
    assert publish.python_callable(_result()) == "network_a/g1/b4/abc"
    with pytest.raises(AirflowSkipException, match="already ingested"):
        publish.python_callable(_result(status="replayed"))  # skipped: no asset event, no dbt run


def test_a_scheduled_run_follows_most_of_its_interval():
    from lakehouse.orchestration.schedule import follow_window, seconds

    assert seconds("30s") == 30 and seconds("*/5 * * * *") == 300 and seconds("0 * * * *") == 3600
    assert follow_window("30s") == (24.0, 2.0)          # polls 15 times an interval
    assert follow_window("10s") == (8.0, 1.0)           # never more than once a second
    assert follow_window("*/5 * * * *") == (240.0, 15.0)  # never less than every 15 s


def test_an_airflow_command_parses_the_dags_with_the_env_file_it_read(settings):
    """`lakehouse airflow dags test ...` parses the DAG files in the airflow process, which
    must read the same env file as the command (the test stack's, not the repository's .env)."""
    import os

    from lakehouse.stack.services.airflow import airflow_env

    assert airflow_env(settings)["LAKEHOUSE_ENV_FILE"] == os.environ["LAKEHOUSE_ENV_FILE"]


def test_a_new_sources_dag_is_created_paused_until_its_endpoint_answers(settings, monkeypatch, tmp_path):
    """A contract with an endpoint of its own: its DAG is created paused, and says why,
    until a probe recorded an answer; the platform's own sources are not gated."""
    import shutil

    import yaml

    from lakehouse.contracts import CONTRACTS_DIR, load_contract
    from lakehouse.ingest import probe

    folder = tmp_path / "contracts"
    folder.mkdir()
    for path in CONTRACTS_DIR.glob("*.yaml"):
        shutil.copy(path, folder / path.name)
    doc = yaml.safe_load((CONTRACTS_DIR / "network_b.yaml").read_text())
    doc["id"] = doc["schema"][0]["name"] = doc["schema"][0]["physicalName"] = "far_away"
    doc["customProperties"][0]["value"]["base_url"] = "https://api.example.org"
    (folder / "far_away.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("LAKEHOUSE_CONTRACTS_DIR", str(folder))

    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    bag = DagBag(dag_folder=str(DAGS_FOLDER), safe_mode=False)
    assert bag.import_errors == {}
    far = bag.dags["ingest_far_away"]
    assert far.is_paused_upon_creation is True
    assert "paused until its endpoint (https://api.example.org/network-b/data) answers a health probe" \
        in far.description and "not probed yet" in far.description
    assert bag.dags["ingest_network_b"].is_paused_upon_creation is None
    probe.record(settings, load_contract(folder / "far_away.yaml"), True, "answered batch 1")
    bag = DagBag(dag_folder=str(DAGS_FOLDER), safe_mode=False)
    assert bag.dags["ingest_far_away"].is_paused_upon_creation is None
    assert "paused" not in bag.dags["ingest_far_away"].description
