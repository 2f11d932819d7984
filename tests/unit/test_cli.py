"""The `lakehouse` command's errors a user can cause, run as a person would."""

import os
import subprocess
import sys

LAKEHOUSE = [sys.executable, "-m", "lakehouse.cli"]


def run(*args, **env):
    return subprocess.run(LAKEHOUSE + list(args), capture_output=True, text=True,
                          env={**os.environ, **env})


def test_ingest_with_the_stack_down_says_so_and_what_to_do():
    proc = run("ingest", "-s", "network_a", LAKEHOUSE_POSTGRES_PORT="1", LAKEHOUSE_MINIO_PORT="2")
    assert proc.returncode == 2
    assert "not running: postgres at postgresql://127.0.0.1:1" in proc.stderr
    assert "make up" in proc.stderr and "Traceback" not in proc.stderr


def test_ingest_unknown_source_lists_the_known_ones():
    proc = run("ingest", "-s", "network_z")
    assert proc.returncode == 2
    assert "unknown source(s): network_z" in proc.stderr and "network_a, network_b" in proc.stderr


def test_ingest_batch_and_cycle_together_is_a_usage_error():
    proc = run("ingest", "-s", "network_a", "--batch", "2", "--cycle")
    assert proc.returncode == 2 and "give --batch or --cycle, not both" in proc.stderr


def test_help_lists_every_command():
    out = run("--help").stdout
    for cmd in ("up", "down", "status", "logs", "doctor", "clean", "sql", "init", "ingest", "demo", "bench"):
        assert f"  {cmd} " in out, cmd
