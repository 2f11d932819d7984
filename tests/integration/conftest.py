"""Integration tier: a real native stack, started as a person starts it (`lakehouse up`).

The tests get their own stack: own data folder, env file and ports (each default moved by
10000, derived from the service registry), so they never touch a developer's stack. The
session wipes that state first and stops the stack at the end (KEEP=1 leaves it running).

Budget (platform.md, section 7): each module says which servers it needs with a marker per
service (`pytestmark = pytest.mark.superset`; the markers come from the registry), and
only those, with their dependencies, are started, once, when its first test runs.
Modules needing fewer servers run first, so the expensive ones start late and once. What
is expensive to build is built once per session and shared: one Spark Connect session, and one
warehouse (`make demo`'s cycle of both networks, ingested and built into the marts) that
the dbt, Superset, browser, Airflow and demo tests read. A test that needs a pristine
group takes a fresh group number, never a fresh stack.
"""

import os
import random
import subprocess
import sys

import pytest

from lakehouse.paths import REPO_ROOT
from lakehouse.stack import registry

TEST_PORT_OFFSET = 10000
TEST_ENV = {
    # .ci/run moves it when the checkout is somewhere the `postgres` OS user can't enter
    "LAKEHOUSE_DATA_DIR": os.environ.get("LAKEHOUSE_TEST_DATA_DIR", str(REPO_ROOT / ".lakehouse-test")),
    "LAKEHOUSE_ENV_FILE": str(REPO_ROOT / ".lakehouse-test.env"),
    **registry.load().offset_ports(TEST_PORT_OFFSET),
    "LAKEHOUSE_DBT_TARGET": "ci",  # dbt_project/profiles.yml's target for the test stack
    # Nothing runs on its own in the test stack: a test unpauses the DAGs it schedules.
    "LAKEHOUSE_AIRFLOW_DAGS_PAUSED": "true",
    # A schedule and retries short enough to watch failure and recovery within minutes.
    "LAKEHOUSE_INGEST_SCHEDULE": "* * * * *",
    "LAKEHOUSE_INGEST_RETRY_DELAY_SECONDS": "3",
    # The stack's simulator serves batch 1 for the whole session (the scheduled DAGs read it).
    "LAKEHOUSE_SIMULATOR_PERIOD_SECONDS": "3600",
}
os.environ.update(TEST_ENV)

LAKEHOUSE = [sys.executable, "-m", "lakehouse.cli"]


def lakehouse(*args: str, check: bool = True, timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the `lakehouse` command as a person would; its output is shown on failure."""
    proc = subprocess.run(LAKEHOUSE + list(args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"lakehouse {' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


_groups = iter(random.Random().sample(range(2000, 9000), 7000))


def fresh_group() -> int:
    """A group number no other test of this session uses (the simulator serves 0..9999;
    the warehouse is group LAKEHOUSE_GROUP_NUMBER, 1)."""
    return next(_groups)


# ---- which servers a module needs --------------------------------------------------------

def pytest_configure(config):
    for name, svc in registry.load().services.items():
        config.addinivalue_line("markers", f"{name}: needs {name} ({svc.description}); started with "
                                           "what it depends on, before the module's first test")


def module_services(node) -> list[str]:
    """The services a module's markers name, with their dependencies, in start order."""
    reg = registry.load()
    named = {m.name for m in node.iter_markers() if m.name in reg.services}
    return reg.closure(named) if named else []


def pytest_collection_modifyitems(session, config, items):
    """Every item is an integration test. Modules run in the order of what they need:
    fewer servers first, the shared warehouse last; within a module, file order. The
    order only saves starts: each module's fixtures make their own preconditions."""
    for item in items:
        item.add_marker(pytest.mark.integration)
    modules: dict = {}
    for item in items:
        modules.setdefault(item.module, []).append(item)

    def cost(mod_items):
        first = mod_items[0]
        uses_warehouse = any("warehouse" in it.fixturenames for it in mod_items)
        needs = len(registry.load().names) if uses_warehouse else len(module_services(first))
        return (needs, uses_warehouse, first.module.__name__)

    items[:] = [it for _, group in sorted(modules.items(), key=lambda kv: cost(kv[1])) for it in group]


@pytest.fixture(scope="session")
def stack():
    """The test stack's settings; its state is wiped first, and it is stopped at the end."""
    # Start from empty state: batch keys of an earlier run must not meet this run's.
    lakehouse("clean", "--yes")
    from lakehouse.settings import load_settings

    yield load_settings()
    if os.environ.get("KEEP") != "1":
        lakehouse("down")


@pytest.fixture(scope="module", autouse=True)
def _module_services(request):
    """Start what this module's markers name (idempotent: running servers are left alone)."""
    names = module_services(request.node)
    if names:
        request.getfixturevalue("stack")
        lakehouse("up", *(f"--service={n}" for n in names), timeout=1200)
        if {"postgres", "minio", "spark"} <= set(names):  # the layers and every source's tables
            lakehouse("init")
    yield


@pytest.fixture(scope="module")
def spark(stack):
    """A Spark Connect session on the test stack's server for a module's tests that drive
    Spark in-process (cheap: the server is warm; per module, since a test may restart the
    server, which ends every session it had)."""
    from lakehouse.spark import spark_session

    # session fixtures set up before the module's servers start: start the server here
    lakehouse("up", "--service=spark", timeout=1200)
    session = spark_session(stack, "lakehouse-integration-tests")
    yield session
    session.stop()


class AirflowApi:
    """Airflow's REST API as the admin (one token per session)."""

    def __init__(self, settings):
        import requests

        self.settings = settings
        self.http = requests.Session()
        self.http.trust_env = False
        resp = self.http.post(f"{settings.airflow_url}/auth/token", timeout=30, json={
            "username": settings.airflow_admin_user,
            "password": settings.airflow_admin_password.get_secret_value()})
        assert resp.status_code in (200, 201), resp.text
        self.http.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"

    def get(self, path: str, **params) -> dict:
        resp = self.http.get(f"{self.settings.airflow_url}/api/v2{path}", params=params, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def set_paused(self, dag_id: str, paused: bool) -> None:
        resp = self.http.patch(f"{self.settings.airflow_url}/api/v2/dags/{dag_id}", timeout=30,
                               json={"is_paused": paused})
        resp.raise_for_status()

    def wait_idle(self, dag_ids: list[str], timeout: float = 900) -> None:
        """Until no run of these DAGs is running (or queued while the DAG is unpaused):
        pausing a DAG stops new runs, not the one under way (a dbt_build run keeps building
        while batches commit, --keep-up)."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            busy = [(d, r["dag_run_id"]) for d in dag_ids
                    for r in self.get(f"/dags/{d}/dagRuns", state=["running"], limit=100)["dag_runs"]]
            if not busy:
                return
            assert time.monotonic() < deadline, f"DAG runs still going after {timeout:.0f} s: {busy}"
            time.sleep(5)

    def dag_ids(self, expected: int, timeout: float = 180) -> list[str]:
        """The DAGs Airflow has parsed, once there are `expected` of them."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            ids = [d["dag_id"] for d in self.get("/dags", limit=100)["dags"]]
            if len(ids) >= expected or time.monotonic() > deadline:
                return ids
            time.sleep(3)


def expected_dags() -> int:
    from lakehouse.contracts import load_all

    return len(load_all()) + 2  # ingest_<source> per contract, dbt_build, iceberg_maintenance


@pytest.fixture(scope="session")
def airflow_api(stack):
    lakehouse("up", "--service=airflow", timeout=1200)
    return AirflowApi(stack)


@pytest.fixture(scope="session")
def warehouse(stack, airflow_api):
    """`make demo` once, as a user runs it, with the scheduler running and every DAG
    unpaused (the demo must not collide with what Airflow starts): one cycle of both
    networks (group LAKEHOUSE_GROUP_NUMBER) ingested, the marts built, the dashboards
    imported. Returns the settings, the demo's output and the DAGs, paused again and idle."""
    lakehouse("up", timeout=1200)
    dag_ids = airflow_api.dag_ids(expected_dags())
    assert len(dag_ids) == expected_dags(), dag_ids
    for dag_id in dag_ids:
        airflow_api.set_paused(dag_id, False)
    try:
        demo = lakehouse("demo", timeout=1800)
    finally:
        for dag_id in dag_ids:
            airflow_api.set_paused(dag_id, True)
    # the dbt build under way when they were paused ends first, so no test's own build races
    # it (an ingestion run still under way only polls the simulator: the demo's cycle has ended)
    airflow_api.wait_idle(["dbt_build"])
    return {"settings": stack, "demo": demo, "dags": dag_ids}


@pytest.fixture(scope="session")
def marts(warehouse):
    """The warehouse, with superset_assets/ imported by `lakehouse superset import` (the
    command `make superset-import` runs): the settings of the test stack."""
    proc = lakehouse("superset", "import")
    assert "imported 1 databases, 6 datasets, 9 charts, 2 dashboards" in proc.stdout, proc.stdout
    return warehouse["settings"]


@pytest.fixture(scope="session")
def admin(marts):
    """Superset's admin, logged in once for the session (login is rate limited)."""
    from lakehouse.superset.client import SupersetClient

    return SupersetClient(marts).login()


@pytest.fixture(scope="session")
def viewer(marts):
    from lakehouse.superset.client import SupersetClient

    return SupersetClient(marts, user=marts.superset_viewer_user).login()


SCREENSHOTS: list = []


@pytest.fixture(scope="session")
def screenshot_dir():
    """Where the browser tests save their screenshots (listed at the end of the run)."""
    path = REPO_ROOT / "tests" / "artifacts" / "screenshots"  # git-ignored; outside the private data folder
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
