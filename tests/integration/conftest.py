"""Integration tier: a real native stack (PostgreSQL, MinIO, Trino) plus local Spark.

The tests get their own stack: own data folder, own env file, own ports, so they never
touch a developer's running stack or its tables. The session wipes that test state, starts
the stack with the same `lakehouse up` a person runs, and stops it at the end (KEEP=1
leaves it running for a look).
"""

import os
import subprocess
import sys

import pytest

from lakehouse.settings import REPO_ROOT, load_settings

TEST_ENV = {
    # .ci/run moves it when the checkout is somewhere the `postgres` OS user can't enter
    "LAKEHOUSE_DATA_DIR": os.environ.get("LAKEHOUSE_TEST_DATA_DIR", str(REPO_ROOT / ".lakehouse-test")),
    "LAKEHOUSE_ENV_FILE": str(REPO_ROOT / ".lakehouse-test.env"),
    "LAKEHOUSE_POSTGRES_PORT": "15433",
    "LAKEHOUSE_MINIO_PORT": "19000",
    "LAKEHOUSE_MINIO_CONSOLE_PORT": "19001",
    "LAKEHOUSE_TRINO_PORT": "18080",
    "LAKEHOUSE_TRINO_HTTPS_PORT": "18443",
    "LAKEHOUSE_SUPERSET_PORT": "18088",
    "LAKEHOUSE_AIRFLOW_PORT": "18070",
    "LAKEHOUSE_AIRFLOW_LOG_PORT": "18793",
    "LAKEHOUSE_SIMULATOR_PORT": "18765",
    "LAKEHOUSE_DBT_TARGET": "ci",  # dbt_project/profiles.yml's target for the test stack
    # Nothing runs on its own in the test stack: a test unpauses the DAG it schedules.
    "LAKEHOUSE_AIRFLOW_DAGS_PAUSED": "true",
    # A schedule and retries short enough to watch failure and recovery within minutes.
    "LAKEHOUSE_INGEST_SCHEDULE": "* * * * *",
    "LAKEHOUSE_INGEST_RETRY_DELAY_SECONDS": "3",
    # The stack's simulator (only test_airflow reads it) serves batch 1 for the whole session.
    "LAKEHOUSE_SIMULATOR_PERIOD_SECONDS": "3600",
}
os.environ.update(TEST_ENV)

LAKEHOUSE = [sys.executable, "-m", "lakehouse.cli"]


def lakehouse(*args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the `lakehouse` command as a person would; its output is shown on failure."""
    proc = subprocess.run(LAKEHOUSE + list(args), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"lakehouse {' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


SCREENSHOTS: list = []


@pytest.fixture(scope="session")
def screenshot_dir():
    """Where the browser tests save their screenshots (listed at the end of the run)."""
    from pathlib import Path

    path = Path(TEST_ENV["LAKEHOUSE_DATA_DIR"]) / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    SCREENSHOTS.append(path)
    return path


def pytest_terminal_summary(terminalreporter):
    for folder in SCREENSHOTS:
        shots = sorted(folder.glob("*.png"))
        if shots:
            terminalreporter.write_line(f"dashboard screenshots ({len(shots)}) in {folder}:")
            for shot in shots:
                terminalreporter.write_line(f"  {shot}")


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack():
    # Start from empty state: batch keys of an earlier run must not meet this run's.
    lakehouse("clean", "--yes")
    lakehouse("up")
    lakehouse("init")
    yield load_settings()
    if os.environ.get("KEEP") != "1":
        lakehouse("down")


@pytest.fixture(scope="module")
def spark(stack):
    from lakehouse.spark import spark_session

    session = spark_session(stack, "lakehouse-integration-tests")
    yield session
    session.stop()
