"""Large batches reach the Spark Connect server as Parquet files in a staging folder
(spark_jobs/ingest.py, staged_parquet). Pure file handling: no server here; the integration
test in test_ingest.py sends such files through the real server."""

import os
import stat
import time
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from spark_jobs import ingest as job


def _rows(n: int) -> pa.Table:
    return pa.table({"station_code": [f"MEX-{i % 1000:03d}" for i in range(n)],
                     "_event_time": pa.array(range(n), pa.timestamp("us", tz="UTC"))})


def test_rows_are_staged_privately_one_file_per_core_and_removed_afterwards(tmp_path, monkeypatch):
    monkeypatch.setattr(job, "STAGE_FROM_ROWS", 10)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    old = os.umask(0o022)  # what a client's shell usually has
    try:
        folder = tmp_path / "data" / "spark" / "staging"
        with job.staged_parquet(folder, _rows(100), "network_a/g1/c2/b3/0123abcd") as urls:
            files = [Path(urlparse(u).path) for u in urls]
            assert len(files) == 2 and all(u.startswith("file://") for u in urls)
            assert sum(pq.read_table(f).num_rows for f in files) == 100
            assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
            for d in (files[0].parent, folder, folder.parent, tmp_path / "data"):
                assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
        assert list(folder.iterdir()) == []
    finally:
        os.umask(old)


def test_no_folder_means_no_files(tmp_path):
    with job.staged_parquet(None, _rows(5), "x") as urls:
        assert urls == []


def test_a_folder_left_by_a_killed_client_is_swept_a_day_later(tmp_path):
    folder = tmp_path / "staging"
    stale, fresh = folder / "network_a_g1_b1_old.1", folder / "network_a_g1_b2_running.2"
    for d in (stale, fresh):
        d.mkdir(parents=True)
        (d / "part-0.parquet").write_bytes(b"PAR1")
    day_ago = time.time() - job.STAGED_KEPT_SECONDS - 60
    os.utime(stale, (day_ago, day_ago))
    with job.staged_parquet(folder, _rows(5), "network_a/g1/b3/ff") as urls:
        assert len(urls) == 1
        assert not stale.exists() and fresh.exists(), "only the day-old folder goes"
    assert sorted(p.name for p in folder.iterdir()) == [fresh.name]
