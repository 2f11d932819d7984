"""How the native stack runs Airflow: its environment, first-start setup and components.

Scope: derives every `AIRFLOW__*` setting from the env file; migrates the metadata
database in the stack's PostgreSQL (once per Airflow version); writes the admin password
file; builds the four components' commands (api-server, scheduler, dag-processor,
triggerer). Airflow lives in the platform's venv, so tasks run the same `lakehouse` CLI a
person does. Never deletes the metadata database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import requests

from lakehouse.errors import StackError
from lakehouse.settings import REPO_ROOT, Settings

AIRFLOW_VERSION = "3.3.2"
DAGS_FOLDER = REPO_ROOT / "airflow_dags"
AIRFLOW_BIN = Path(sys.executable).with_name("airflow")
# supervisord program name -> the `airflow` subcommand it runs
COMPONENTS = {"airflow-api": "api-server", "airflow-scheduler": "scheduler",
              "airflow-dag-processor": "dag-processor", "airflow-triggerer": "triggerer"}
# the key of each component in /api/v2/monitor/health
HEALTH_KEYS = {"airflow-scheduler": "scheduler", "airflow-dag-processor": "dag_processor",
               "airflow-triggerer": "triggerer"}


def passwords_file(settings: Settings) -> Path:
    return settings.airflow_home / "passwords.json"


def metadata_url(settings: Settings) -> str:
    pw = settings.airflow_db_password.get_secret_value()
    return (f"postgresql+psycopg2://{settings.airflow_db_user}:{pw}"
            f"@{settings.postgres_address}:{settings.postgres_port}/{settings.airflow_db}")


def airflow_settings(settings: Settings) -> dict[str, str]:
    """The `AIRFLOW__*` variables every component, task and `airflow` command needs.

    All four components and `airflow dags test` must share the JWT secret, the API
    secret key and the Fernet key, and every worker must find the execution API at our
    port (Airflow's default, 8080, is Trino's HTTP port here).
    """
    home = settings.airflow_home
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(settings.airflow_parallelism),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(settings.airflow_dags_paused),
        "AIRFLOW__CORE__FERNET_KEY": settings.airflow_fernet_key.get_secret_value(),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{settings.airflow_admin_user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file(settings)),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": settings.airflow_execution_api_url,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url(settings),
        # per process; scheduler, dag-processor, triggerer, api-server and tasks each hold one
        "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "2",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_MAX_OVERFLOW": "3",
        "AIRFLOW__API__HOST": settings.host,
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__BASE_URL": settings.airflow_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": settings.airflow_api_secret_key.get_secret_value(),
        "AIRFLOW__API_AUTH__JWT_SECRET": settings.airflow_jwt_secret.get_secret_value(),
        # dbt builds and maintenance can outlast the 10-minute default (apache/airflow#67939)
        "AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME": "3600",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(settings.airflow_log_port),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(settings.airflow_log_port + 1),
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        # a new DAG file shows up within 30 s (default 5 min); listing one folder is cheap
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        # never pause a DAG because runs failed: the next batch must still be fetched
        "AIRFLOW__CORE__MAX_CONSECUTIVE_FAILED_DAG_RUNS_PER_DAG": "0",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "60",
        "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "120",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def airflow_env(settings: Settings) -> dict[str, str]:
    """A complete environment for an `airflow` process: ours, the settings, Airflow's."""
    return {**os.environ, **settings.engine_env(), **airflow_settings(settings)}


def write_passwords_file(settings: Settings) -> Path:
    """The simple auth manager's password file, from the env file (it keeps what it finds)."""
    path = passwords_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({settings.airflow_admin_user: settings.airflow_admin_password.get_secret_value()}, fh)
    os.chmod(path, 0o600)
    return path


def run_cli(settings: Settings, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(AIRFLOW_BIN), *args], env=airflow_env(settings), capture_output=True,
                          text=True, timeout=timeout, cwd=REPO_ROOT)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise StackError(f"`airflow {' '.join(args)}` failed:\n{tail}",
                         "check PostgreSQL is up (`make status`) and the LAKEHOUSE_AIRFLOW_* settings in .env")
    return proc


def _stamp(settings: Settings) -> Path:
    return settings.airflow_home / f"migrated-{AIRFLOW_VERSION}"


def initialize(settings: Settings, say=print) -> None:
    """Password file always; the metadata schema once per Airflow version."""
    write_passwords_file(settings)
    stamp = _stamp(settings)
    if stamp.exists():
        return
    say(f"- migrating Airflow {AIRFLOW_VERSION}'s metadata database (once; about a minute) ...")
    run_cli(settings, "db", "migrate")
    stamp.write_text("ok\n")


def component_command(settings: Settings, name: str) -> list[str]:
    sub = COMPONENTS[name]
    cmd = [str(AIRFLOW_BIN), sub, "--pid", str(settings.run_path / f"{name}.pid")]
    if sub == "api-server":
        cmd += ["--host", settings.host, "--port", str(settings.airflow_port), "--workers", "1"]
    if sub == "triggerer":
        cmd += ["--capacity", "100"]
    return cmd


def monitor(settings: Settings) -> dict:
    """/api/v2/monitor/health: every component's last heartbeat (always HTTP 200)."""
    resp = requests.get(f"{settings.airflow_url}/api/v2/monitor/health", timeout=5)
    resp.raise_for_status()
    return resp.json()


def health(settings: Settings, name: str) -> tuple[bool, str]:
    try:
        doc = monitor(settings)
    except (requests.RequestException, ValueError) as exc:
        return False, type(exc).__name__
    if name == "airflow-api":
        ok = doc.get("metadatabase", {}).get("status") == "healthy"
        return ok, "metadata DB " + ("reachable" if ok else "unreachable")
    status = (doc.get(HEALTH_KEYS[name]) or {}).get("status") or "no heartbeat yet"
    return status == "healthy", status
