"""Two platform commands started at once: both succeed, or one waits for the other; none
fails because of the other, and nothing is corrupted (lakehouse.locks)."""

import os
import subprocess

import pytest

from lakehouse import dbt
from lakehouse.simulator.server import SteppedSimulator
from lakehouse.trino import query
from tests.integration.conftest import LAKEHOUSE, fresh_group

pytestmark = [pytest.mark.trino, pytest.mark.spark]
# A selection with views, an ephemeral model, a mart and data tests that store their
# failures in `intermediate`: the relations two unserialised builds broke on.
SELECTION = "+mart_data_quality"


def _start(*args, env=None):
    return subprocess.Popen(LAKEHOUSE + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def test_two_dbt_builds_started_together_both_succeed_one_after_the_other(stack):
    runs_before = set((dbt.DBT_PROJECT / "target" / "runs").glob("*")) if (dbt.DBT_PROJECT / "target" / "runs").exists() else set()
    procs = [_start("dbt", "build", "--select", SELECTION, "--indirect-selection", "cautious") for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out[-3000:] + err[-2000:]
        assert "Completed successfully" in out
    waited = [err for _, err in outs if "waiting for the dbt lock, held by lakehouse dbt build" in err]
    assert len(waited) == 1, [e[-500:] for _, e in outs]  # the second waited for the first
    # each had a target folder of its own, with its own results
    new = set((dbt.DBT_PROJECT / "target" / "runs").glob("*")) - runs_before
    results = [d / "run_results.json" for d in new if (d / "run_results.json").exists()]
    assert len(results) == 2, new


def test_maintenance_and_ingestion_of_one_table_at_once_both_succeed(stack, tmp_path):
    sim = SteppedSimulator(tmp_path / "state.json", seed=3, rows_per_batch=500, fault_rate=0.02)
    group = fresh_group()
    env = {"LAKEHOUSE_BATCH_API_URL": sim.url}
    try:
        before = query(stack, "SELECT count(*) FROM raw.network_a")[0][0]
        procs = {"maintain": _start("maintain", "--layer", "raw", "--table", "network_a"),
                 "ingest": _start("ingest", "-s", "network_a", "-g", str(group), env=env)}
        outs = {k: p.communicate(timeout=900) for k, p in procs.items()}
    finally:
        sim.stop()
    for name, p in procs.items():
        assert p.returncode == 0, (name, outs[name][0][-2000:], outs[name][1][-3000:])
    assert "committed" in outs["ingest"][0]
    assert "raw.network_a (spark): data files" in outs["maintain"][0]
    valid = query(stack, "SELECT rows_valid FROM audit.ingestion_log WHERE source = 'network_a' "
                         f"AND group_number = {group} AND status = 'committed'")
    assert len(valid) == 1
    assert query(stack, f"SELECT count(*) FROM raw.network_a WHERE _group_number = {group}")[0][0] == valid[0][0]
    assert query(stack, "SELECT count(*) FROM raw.network_a")[0][0] == before + valid[0][0]
