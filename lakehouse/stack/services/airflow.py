"""Airflow 3.3: the scheduler of the platform (api-server, scheduler with the LocalExecutor,
dag-processor, triggerer), metadata in the stack's PostgreSQL.

Airflow lives in the platform's venv, so its tasks run the same `lakehouse` CLI a person
does. This module derives every `AIRFLOW__*` setting from the env file, migrates the
metadata database (once per Airflow version), writes the admin password file, and says
which secrets each component, and each kind of task, may see. Never deletes the metadata
database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import requests
from pydantic import BaseModel, Field, SecretStr

from lakehouse.paths import REPO_ROOT
from lakehouse.stack.checks import run_tool, write_private
from lakehouse.stack.registry import Database, Program, Service, empty_means_default

if TYPE_CHECKING:
    from lakehouse.settings import Settings

AIRFLOW_VERSION = "3.3.2"
DAGS_FOLDER = REPO_ROOT / "airflow_dags"
AIRFLOW_BIN = Path(sys.executable).with_name("airflow")
# supervisord program name -> the `airflow` subcommand it runs
COMPONENTS = {"airflow-api": "api-server", "airflow-scheduler": "scheduler",
              "airflow-dag-processor": "dag-processor", "airflow-triggerer": "triggerer"}
# the key of each component in /api/v2/monitor/health
HEALTH_KEYS = {"airflow-scheduler": "scheduler", "airflow-dag-processor": "dag_processor",
               "airflow-triggerer": "triggerer"}

# The keys all four components share: the metadata DB, the Fernet key of stored
# connections, the secret that signs task and log-server tokens, the API's session key.
COMPONENT_SECRETS = ("airflow_db_password", "airflow_fernet_key", "airflow_jwt_secret",
                     "airflow_api_secret_key")
# What each kind of task may see, by the `lakehouse` subcommand it runs. Tasks are children
# of the scheduler, so it holds their union; lakehouse.orchestration.task hands each task
# process only its own. Never the PostgreSQL superuser, the MinIO root, or another server's.
TASK_SECRETS = {
    # The Spark Connect server writes raw/quarantine/audit for the task (the task holds its
    # token, not its S3 key); pyiceberg reads metadata; the batch lock lives in the catalog
    # database.
    "ingest": ("spark_connect_token", "catalog_db_password", "reader_s3_secret_key"),
    # creates namespaces (pyiceberg) and empty source tables (through Spark Connect)
    "init": ("spark_connect_token", "catalog_db_password", "reader_s3_secret_key"),
    # dbt connects to Trino as `dbt`; its lock and the source checks use the catalog
    "dbt": ("trino_dbt_password", "catalog_db_password", "reader_s3_secret_key"),
    # the same, plus init's (source tables created when missing, through Spark Connect)
    "marts": ("trino_dbt_password", "catalog_db_password", "reader_s3_secret_key", "spark_connect_token"),
    # Spark Connect for raw/quarantine/audit, Trino (as `lakehouse`) for staging/intermediate/marts
    "maintain": ("spark_connect_token", "catalog_db_password", "reader_s3_secret_key",
                 "trino_lakehouse_password"),
}
# The AIRFLOW__* variable that carries each secret.
_SECRET_VARS = {"airflow_fernet_key": "AIRFLOW__CORE__FERNET_KEY",
                "airflow_api_secret_key": "AIRFLOW__API__SECRET_KEY",
                "airflow_jwt_secret": "AIRFLOW__API_AUTH__JWT_SECRET"}


class Config(BaseModel):
    # Where workers reach the api-server (its execution API); empty = LAKEHOUSE_HOST.
    airflow_host: str | None = None
    airflow_port: int = Field(8070, ge=1, le=65535)
    # Airflow serves task logs here and trigger logs on the next port.
    airflow_log_port: int = Field(8793, ge=1, le=65534)
    airflow_db: str = "airflow"
    airflow_db_user: str = "airflow"
    airflow_db_password: SecretStr
    airflow_admin_user: str = "admin"
    airflow_admin_password: SecretStr
    airflow_fernet_key: SecretStr
    airflow_jwt_secret: SecretStr
    airflow_api_secret_key: SecretStr
    airflow_parallelism: int = Field(4, ge=1, le=32)
    airflow_dags_paused: bool = False

    empty_airflow = empty_means_default("airflow_host")

    @property
    def airflow_url(self) -> str:
        """Where people and clients reach Airflow's UI and REST API."""
        return f"http://{self.host}:{self.airflow_port}"

    @property
    def airflow_execution_api_url(self) -> str:
        """Where Airflow's workers report task state: its api-server, by its service address."""
        return f"http://{self.airflow_host or self.host}:{self.airflow_port}/execution/"

    @property
    def airflow_home(self) -> Path:
        return self.data_path / "airflow"


def passwords_file(settings: Settings) -> Path:
    return settings.airflow_home / "passwords.json"


def metadata_url(settings: Settings) -> str:
    pw = settings.airflow_db_password.get_secret_value()
    return (f"postgresql+psycopg2://{settings.airflow_db_user}:{pw}"
            f"@{settings.postgres_address}:{settings.postgres_port}/{settings.airflow_db}")


def airflow_settings(settings: Settings, secrets: tuple[str, ...] = COMPONENT_SECRETS) -> dict[str, str]:
    """The `AIRFLOW__*` variables a component, task or `airflow` command needs; a secret
    is included only if named in `secrets`.

    All four components and `airflow dags test` must share the JWT secret, the API
    secret key and the Fernet key, and every worker must find the execution API at our
    port (Airflow's default, 8080, is Trino's HTTP port here).
    """
    home = settings.airflow_home
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(settings.airflow_parallelism),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(settings.airflow_dags_paused),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{settings.airflow_admin_user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file(settings)),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": settings.airflow_execution_api_url,
        # per process; scheduler, dag-processor, triggerer, api-server and tasks each hold one
        "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "2",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_MAX_OVERFLOW": "3",
        "AIRFLOW__API__HOST": settings.host,
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__BASE_URL": settings.airflow_url,
        "AIRFLOW__API__WORKERS": "1",
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
    if "airflow_db_password" in secrets:
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = metadata_url(settings)
    for field_name, var in _SECRET_VARS.items():
        if field_name in secrets:
            env[var] = getattr(settings, field_name).get_secret_value()
    return env


def airflow_env(settings: Settings) -> dict[str, str]:
    """A complete environment for an `airflow` command a person runs (`lakehouse airflow`):
    the components' keys and every task's secrets, as the scheduler has them, and the env
    file this command read, which the DAG files read when the command parses them (without
    it they would read `.env`, another stack's file, or none)."""
    from lakehouse.settings import env_file_path

    base = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    return {**base, **settings.process_env(scheduler_secrets()), **airflow_settings(settings),
            "LAKEHOUSE_ENV_FILE": str(env_file_path())}


def scheduler_secrets() -> tuple[str, ...]:
    tasks = sorted({s for names in TASK_SECRETS.values() for s in names})
    return COMPONENT_SECRETS + tuple(tasks)


def write_passwords_file(settings: Settings) -> Path:
    """The simple auth manager's password file, from the env file (it keeps what it finds)."""
    return write_private(passwords_file(settings), json.dumps(
        {settings.airflow_admin_user: settings.airflow_admin_password.get_secret_value()}))


def run_cli(settings: Settings, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return run_tool([str(AIRFLOW_BIN), *args], airflow_env(settings), timeout=timeout, cwd=REPO_ROOT,
                    hint="check PostgreSQL is up (`make status`) and the LAKEHOUSE_AIRFLOW_* settings in .env")


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


def prepare(settings: Settings, say) -> None:
    from lakehouse.stack.checks import private_dir

    private_dir(settings.airflow_home)  # task logs and the password file


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


def _program(name: str) -> Program:
    secrets = scheduler_secrets() if name == "airflow-scheduler" else COMPONENT_SECRETS
    return Program(
        name=name,
        command=lambda s: component_command(s, name),
        env=lambda s: airflow_settings(s, secrets),
        secrets=secrets,
        health=lambda s: health(s, name),
        workdir=lambda s: REPO_ROOT,
        start_timeout=180,
        # a running task gets this long to finish before it is killed with its group
        stop_wait=60 if name == "airflow-scheduler" else 30,
        # every component reports to the api-server; a task started before it fails
        after=() if name == "airflow-api" else ("airflow-api",),
        url=(lambda s: s.airflow_url) if name == "airflow-api"
        else (lambda s: f"(reported by {s.airflow_url}/api/v2/monitor/health)"))


SERVICE = Service(
    name="airflow",
    description="Airflow 3.3: ingestion every period, dbt on new batches, daily maintenance",
    profile="orchestration",
    settings=Config,
    # Its metadata lives in PostgreSQL; its tasks ingest (MinIO, the batch API) and build
    # the marts (Trino), so a scheduler without them would only fail.
    depends_on=("postgres", "minio", "trino", "spark", "simulator"),
    ports=("airflow_port", "airflow_log_port"),
    extra_ports=lambda s: {"LAKEHOUSE_AIRFLOW_LOG_PORT + 1 (trigger logs)": s.airflow_log_port + 1},
    secrets=COMPONENT_SECRETS,
    databases=(Database("airflow_db", "airflow_db_user", "airflow_db_password"),),
    prepare=prepare,
    initialize=initialize,
    programs=tuple(_program(name) for name in COMPONENTS),
)
