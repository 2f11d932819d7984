"""Preflight: each missing prerequisite gets a message that names it and says what to do.

These run the real checks (real sockets, real JDK folders, the real `lakehouse` command)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse.errors import PreflightError
from lakehouse.stack import doctor
from lakehouse.stack.java import SPARK_JAVA, TRINO_JAVA, find_java

LAKEHOUSE = [sys.executable, "-m", "lakehouse.cli"]


def fake_jdk(root: Path, name: str, version: str) -> Path:
    home = root / name
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("#!/bin/sh\nexit 0\n")
    (home / "bin" / "java").chmod(0o755)
    (home / "release").write_text(f'JAVA_VERSION="{version}"\n')
    return home


def test_java_too_old_for_trino_is_named(tmp_path):
    jdk17 = fake_jdk(tmp_path, "jdk17", "17.0.15")
    with pytest.raises(PreflightError, match=r"LAKEHOUSE_TRINO_JAVA_HOME=.* is Java 17; Trino 476 needs Java 24\+"):
        find_java(TRINO_JAVA, jdk17)


def test_java_too_new_for_spark_is_named(tmp_path):
    jdk25 = fake_jdk(tmp_path, "jdk25", "25.0.3")
    with pytest.raises(PreflightError, match=r"is Java 25; Spark 4.1 needs Java 17-21"):
        find_java(SPARK_JAVA, jdk25)


def test_no_java_at_configured_path(tmp_path):
    with pytest.raises(PreflightError, match=r"no bin/java there"):
        find_java(TRINO_JAVA, tmp_path / "nope")


def test_autodetect_picks_a_fitting_jdk(tmp_path, monkeypatch):
    from lakehouse.stack import java

    fake_jdk(tmp_path, "a-17", "17.0.1")
    fake_jdk(tmp_path, "b-21", "21.0.2")
    fake_jdk(tmp_path, "c-25", "25.0.3")
    monkeypatch.setattr(java, "JVM_ROOT", tmp_path)
    assert find_java(SPARK_JAVA, None).name == "b-21"
    assert find_java(TRINO_JAVA, None).name == "c-25"
    (tmp_path / "c-25" / "release").write_text('JAVA_VERSION="17"\n')
    with pytest.raises(PreflightError, match=r"no Java 24\+ found under"):
        find_java(TRINO_JAVA, None)


def test_port_in_use_names_port_variable_and_owner(settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        checks = doctor.check_ports(settings.model_copy(update={"trino_port": port}))
    (check,) = [c for c in checks if c.name == f"port {port}"]
    assert not check.ok
    assert f"port {port} (LAKEHOUSE_TRINO_PORT)" in check.detail
    assert f"pid {os.getpid()}" in check.detail
    assert "LAKEHOUSE_TRINO_PORT" in check.hint


def test_two_services_on_one_port_names_both_settings(settings):
    checks = doctor.check_ports(settings.model_copy(update={"minio_port": settings.trino_port}))
    bad = [c for c in checks if not c.ok]
    assert len(bad) == 1 and "LAKEHOUSE_MINIO_PORT" in bad[0].detail and "LAKEHOUSE_TRINO_PORT" in bad[0].detail
    assert f"are both {settings.trino_port}" in bad[0].detail


def test_up_refuses_two_services_on_one_port_before_starting_anything(tmp_path):
    proc = _run(["up", "--profile", "core"], {"LAKEHOUSE_SUPERSET_PORT": "18000", "LAKEHOUSE_AIRFLOW_PORT": "18000"},
                tmp_path)
    assert proc.returncode == 2
    assert "LAKEHOUSE_AIRFLOW_PORT and LAKEHOUSE_SUPERSET_PORT are both 18000" in proc.stderr or \
        "LAKEHOUSE_SUPERSET_PORT and LAKEHOUSE_AIRFLOW_PORT are both 18000" in proc.stderr
    assert not (Path(os.environ["LAKEHOUSE_DATA_DIR"]) / "run").exists(), "nothing may start after a failed preflight"


def test_down_when_nothing_runs_says_so_exits_0_and_touches_nothing(tmp_path):
    proc = _run(["down"], {}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"stack is not running (nothing of {os.environ['LAKEHOUSE_DATA_DIR']} to stop)" in proc.stdout
    assert not Path(os.environ["LAKEHOUSE_DATA_DIR"]).exists()


def test_disk_and_memory_thresholds(settings):
    greedy = settings.model_copy(update={"min_free_disk_gb": 10**9, "min_free_memory_gb": 10**9})
    assert not any(c.ok for c in doctor.check_disk(greedy))
    assert "need" in doctor.check_memory(greedy).detail
    assert all(c.ok for c in doctor.check_disk(settings.model_copy(update={"min_free_disk_gb": 0})))


def test_missing_go_is_named_when_minio_is_not_built(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `go` here
    checks = doctor.run_checks(settings.model_copy(update={"cache_dir": tmp_path / "empty-cache"}))
    (check,) = [c for c in checks if c.name == "go"]  # MinIO's own check, from its module
    assert not check.ok and "`go` not on PATH" in check.detail


def _run(args, env_extra, cwd):
    env = {**os.environ, **env_extra}
    return subprocess.run(LAKEHOUSE + args, capture_output=True, text=True, env=env, cwd=cwd)


def test_doctor_command_names_wrong_java_and_exits_nonzero(tmp_path):
    jdk17 = fake_jdk(tmp_path, "jdk17", "17.0.15")
    proc = _run(["doctor"], {"LAKEHOUSE_TRINO_JAVA_HOME": str(jdk17)}, tmp_path)
    assert proc.returncode == 2
    assert "[FAIL] java (Trino)" in proc.stdout
    assert "Trino 476 needs Java 24+" in proc.stdout


def test_up_refuses_a_taken_port_before_starting_anything(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = _run(["up"], {"LAKEHOUSE_TRINO_PORT": str(port),
                             "LAKEHOUSE_POSTGRES_PORT": "35433", "LAKEHOUSE_MINIO_PORT": "39000",
                             "LAKEHOUSE_MINIO_CONSOLE_PORT": "39001"}, tmp_path)
    assert proc.returncode == 2
    assert f"port {port} (LAKEHOUSE_TRINO_PORT)" in proc.stderr
    data = Path(os.environ["LAKEHOUSE_DATA_DIR"])
    assert not (data / "postgres").exists(), "nothing may be initialised after a failed preflight"


def test_clean_asks_first_and_refuses_without_a_terminal(tmp_path):
    data = Path(os.environ["LAKEHOUSE_DATA_DIR"])
    (data / "minio").mkdir(parents=True)
    (data / "minio" / "object").write_text("precious")
    proc = subprocess.run(LAKEHOUSE + ["clean"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and "refusing to delete" in proc.stderr
    assert (data / "minio" / "object").read_text() == "precious"
    proc = subprocess.run(LAKEHOUSE + ["clean", "--yes"], capture_output=True, text=True)
    assert proc.returncode == 0 and not data.exists()
