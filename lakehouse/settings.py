"""Typed settings, read from the one env file.

Scope: reads `.env` (or $LAKEHOUSE_ENV_FILE), generates it on first run from
`.env.example` with fresh random secrets (mode 0600), and derives every endpoint the
engines need from it. Nothing else in the project writes a port, a host or a credential.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import stat
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lakehouse.errors import SettingsError

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV_EXAMPLE = REPO_ROOT / ".env.example"
PREFIX = "LAKEHOUSE_"
_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")


class Settings(BaseSettings):
    """Every variable of `.env.example`, typed. Field `x` is env var `LAKEHOUSE_X`."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True)

    data_dir: Path = Path(".lakehouse")
    cache_dir: Path = Path("~/.cache/lakehouse")

    host: str = "127.0.0.1"
    # Where clients reach each server; empty = `host`. Compose sets them to container names.
    postgres_host: str | None = None
    minio_host: str | None = None
    trino_host: str | None = None
    airflow_host: str | None = None
    postgres_port: int = Field(5433, ge=1, le=65535)
    minio_port: int = Field(9000, ge=1, le=65535)
    minio_console_port: int = Field(9001, ge=1, le=65535)
    trino_port: int = Field(8080, ge=1, le=65535)
    trino_https_port: int = Field(8443, ge=1, le=65535)
    superset_port: int = Field(8088, ge=1, le=65535)
    airflow_port: int = Field(8070, ge=1, le=65535)
    # Airflow serves task logs here and trigger logs on the next port.
    airflow_log_port: int = Field(8793, ge=1, le=65534)

    postgres_superuser: str = "lakehouse_admin"
    postgres_superuser_password: SecretStr

    catalog_name: str = "lakehouse"
    catalog_db: str = "iceberg_catalog"
    catalog_db_user: str = "iceberg"
    catalog_db_password: SecretStr
    warehouse_bucket: str = "lakehouse"
    s3_region: str = "us-east-1"

    minio_root_user: SecretStr
    minio_root_password: SecretStr
    spark_s3_access_key: str = "svc-spark"
    spark_s3_secret_key: SecretStr
    trino_s3_access_key: str = "svc-trino"
    trino_s3_secret_key: SecretStr
    reader_s3_access_key: str = "svc-reader"
    reader_s3_secret_key: SecretStr

    # Trino: password-file users over HTTPS (conf/trino/rules.json says what each may do).
    trino_lakehouse_password: SecretStr
    trino_dbt_password: SecretStr
    trino_superset_password: SecretStr
    trino_internal_secret: SecretStr

    # Superset: its metadata database, session key and two users (admin, viewer).
    superset_db: str = "superset"
    superset_db_user: str = "superset"
    superset_db_password: SecretStr
    superset_secret_key: SecretStr
    superset_admin_user: str = "admin"
    superset_admin_password: SecretStr
    superset_viewer_user: str = "viewer"
    superset_viewer_password: SecretStr
    superset_workers: int = Field(2, ge=1, le=16)

    # Airflow: metadata database, admin user, keys shared by its four components.
    airflow_db: str = "airflow"
    airflow_db_user: str = "airflow"
    airflow_db_password: SecretStr
    airflow_admin_user: str = "admin"
    airflow_admin_password: SecretStr
    airflow_fernet_key: SecretStr
    airflow_jwt_secret: SecretStr
    airflow_api_secret_key: SecretStr
    airflow_parallelism: int = Field(2, ge=1, le=32)
    airflow_dags_paused: bool = False

    # Schedules (read by the DAG files when Airflow parses them).
    ingest_schedule: str = "*/5 * * * *"
    ingest_retries: int = Field(2, ge=2, le=20)
    ingest_retry_delay_seconds: float = Field(30, gt=0)
    ingest_timeout_minutes: float = Field(15, gt=0)
    maintenance_schedule: str = "0 3 * * *"
    maintenance_snapshot_retention: str = Field("7d", pattern=r"^\d+(\.\d+)?[smhd]$")
    maintenance_orphan_retention: str = Field("7d", pattern=r"^\d+(\.\d+)?[smhd]$")

    trino_java_home: Path | None = None
    spark_java_home: Path | None = None
    trino_heap: str = Field("2G", pattern=r"^\d+[MG]$")
    spark_driver_memory: str = Field("2g", pattern=r"^\d+[mgMG]$")

    simulator_port: int = Field(8765, ge=1, le=65535)
    simulator_seed: int = 42
    simulator_period_seconds: float = Field(300, gt=0)
    simulator_fault_rate: float = Field(0.03, ge=0, le=1)
    simulator_rows_per_batch: int = Field(1000, ge=1)
    batch_api_url: str | None = None
    group_number: int = Field(1, ge=0)

    dbt_target: Literal["dev", "ci", "prod"] = "dev"
    dbt_threads: int = Field(2, ge=1, le=16)

    min_free_disk_gb: float = Field(5, ge=0)
    min_free_memory_gb: float = Field(4, ge=0)

    @field_validator("trino_java_home", "spark_java_home", "postgres_host", "minio_host",
                     "trino_host", "airflow_host", "batch_api_url", mode="before")
    @classmethod
    def _empty_is_auto(cls, v):
        return None if v in ("", None) else v

    @field_validator("ingest_schedule", "maintenance_schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        from lakehouse.orchestration.schedule import check

        return check(v)

    @field_validator("*", mode="after")
    @classmethod
    def _secret_not_empty(cls, v):
        if isinstance(v, SecretStr) and len(v.get_secret_value()) < 8:
            raise ValueError("must be at least 8 characters (delete it from .env to regenerate)")
        return v

    # ---- derived paths ------------------------------------------------------------------
    @cached_property
    def data_path(self) -> Path:
        return _resolve(self.data_dir)

    @cached_property
    def cache_path(self) -> Path:
        return _resolve(self.cache_dir)

    @property
    def run_path(self) -> Path:
        """Sockets, pid files and rendered configs: safe to delete when the stack is down."""
        return self.data_path / "run"

    @property
    def log_path(self) -> Path:
        return self.data_path / "logs"

    # ---- derived endpoints --------------------------------------------------------------
    @property
    def postgres_address(self) -> str:
        return self.postgres_host or self.host

    @property
    def minio_address(self) -> str:
        return self.minio_host or self.host

    @property
    def trino_address(self) -> str:
        return self.trino_host or self.host

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.minio_address}:{self.minio_port}"

    @property
    def trino_url(self) -> str:
        """Where clients connect: HTTPS with a password (the HTTP port is internal only)."""
        return f"https://{self.trino_address}:{self.trino_https_port}"

    @property
    def trino_internal_url(self) -> str:
        """The coordinator's HTTP port: node-to-node traffic and /v1/info; clients are refused."""
        return f"http://{self.trino_address}:{self.trino_port}"

    @property
    def tls_path(self) -> Path:
        return self.data_path / "tls"

    @property
    def trino_ca_file(self) -> Path:
        """The certificate clients trust for Trino's HTTPS port (self-signed, generated)."""
        return self.tls_path / "trino.crt"

    @property
    def trino_keystore_file(self) -> Path:
        return self.tls_path / "trino.pem"

    @property
    def trino_password_file(self) -> Path:
        return self.data_path / "trino-auth" / "password.db"

    @property
    def superset_url(self) -> str:
        return f"http://{self.host}:{self.superset_port}"

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

    @property
    def simulator_url(self) -> str:
        return f"http://{self.host}:{self.simulator_port}"

    @property
    def api_url(self) -> str:
        """The batch API ingestion reads: any server speaking the protocol; default ours."""
        return (self.batch_api_url or self.simulator_url).rstrip("/")

    @property
    def catalog_sqlalchemy_url(self) -> str:
        pw = self.catalog_db_password.get_secret_value()
        return (f"postgresql+psycopg://{self.catalog_db_user}:{pw}"
                f"@{self.postgres_address}:{self.postgres_port}/{self.catalog_db}")

    @property
    def warehouse_uri(self) -> str:
        return f"s3://{self.warehouse_bucket}"

    def engine_env(self) -> dict[str, str]:
        """Every setting as an environment variable, secrets revealed, for engine processes.

        Trino's `${ENV:...}` and Spark's rendered defaults read these names, so the env
        file stays the only place a value is written.
        """
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[PREFIX + name.upper()] = "" if value is None else str(value)
        env[PREFIX + "DATA_DIR"] = str(self.data_path)
        env[PREFIX + "CACHE_DIR"] = str(self.cache_path)
        env[PREFIX + "POSTGRES_HOST"] = self.postgres_address
        env[PREFIX + "MINIO_HOST"] = self.minio_address
        env[PREFIX + "TRINO_HOST"] = self.trino_address
        # Derived, not settable: the S3 endpoint engines use (compose sets its own).
        env[PREFIX + "S3_ENDPOINT"] = self.s3_endpoint
        env[PREFIX + "TRINO_CA_FILE"] = str(self.trino_ca_file)
        env[PREFIX + "TRINO_KEYSTORE_FILE"] = str(self.trino_keystore_file)
        env[PREFIX + "TRINO_AUTH_FILE"] = str(self.trino_password_file)
        env[PREFIX + "TRINO_RULES_FILE"] = str(REPO_ROOT / "conf" / "trino" / "rules.json")
        return env


def _resolve(p: Path) -> Path:
    p = Path(os.path.expanduser(str(p)))
    return p if p.is_absolute() else (REPO_ROOT / p)


def secret_fields() -> list[str]:
    return [n for n, f in Settings.model_fields.items() if f.annotation is SecretStr]


def env_file_path() -> Path:
    return _resolve(Path(os.environ.get("LAKEHOUSE_ENV_FILE", ".env")))


def read_env_file(path: Path) -> dict[str, str]:
    """Parse KEY=VALUE lines strictly, so a typo is an error that names its line."""
    if not path.exists():
        raise SettingsError(f"env file {path} does not exist",
                            "run any `lakehouse` command (or `make up`) to generate it")
    if not path.is_file():
        raise SettingsError(f"env file {path} is not a regular file",
                            "remove it; a fresh one is generated on the next run")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"env file {path} is unreadable: {exc.strerror}",
                            f"fix its permissions (chmod 600 {path}) or restore it") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SettingsError(f"env file {path} is not valid UTF-8 (byte {exc.start})",
                            "restore it from a backup or rewrite the line") from exc
    known = {PREFIX + n.upper() for n in Settings.model_fields}
    values: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _LINE.match(stripped)
        if not m:
            raise SettingsError(f"{path}:{lineno}: expected KEY=VALUE, got {stripped[:40]!r}",
                                "fix or delete that line")
        key, value = m.groups()
        if key not in known:
            raise SettingsError(f"{path}:{lineno}: unknown variable {key}",
                                f"see {ENV_EXAMPLE.name} for the variables this project reads")
        values[key] = value
    return values


def generate_env_file(path: Path, example: Path = ENV_EXAMPLE) -> Path:
    """Write `path` from `.env.example`, every secret filled with a fresh random value."""
    secrets_ = {PREFIX + n.upper() for n in secret_fields()}
    lines = []
    for line in example.read_text().splitlines():
        m = _LINE.match(line)
        if m and m.group(1) in secrets_ and not m.group(2):
            line = f"{m.group(1)}={_new_secret(m.group(1))}"
        lines.append(line)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def _new_secret(key: str) -> str:
    # user names must stay short and alphanumeric; passwords get 32 bytes of entropy
    if key.endswith("_USER"):
        return "admin" + secrets.token_hex(6)
    if key.endswith("_FERNET_KEY"):  # Fernet's format: 32 random bytes, url-safe base64
        return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    return secrets.token_urlsafe(32)


def add_missing_secrets(path: Path, values: dict[str, str]) -> list[str]:
    """An env file from an older version lacks the secrets added since: append them.

    Only secrets are added (a missing plain setting has a default); existing lines are
    never changed. Returns the keys added.
    """
    missing = [PREFIX + n.upper() for n in secret_fields()
               if PREFIX + n.upper() not in values and PREFIX + n.upper() not in os.environ]
    if missing:
        with path.open("a") as fh:
            fh.write("# secrets added by a newer version of the platform\n")
            for key in missing:
                value = _new_secret(key)
                fh.write(f"{key}={value}\n")
                values[key] = value
    return missing


def load_settings(path: Path | None = None, *, create: bool = True) -> Settings:
    """Read the env file (generating it on first run) and validate every value."""
    path = path or env_file_path()
    if not path.exists() and create:
        _refuse_if_state_without_env(path)
        generate_env_file(path)
    values = read_env_file(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SettingsError(f"env file {path} has mode {mode:o}: others can read its secrets",
                            f"run: chmod 600 {path}")
    add_missing_secrets(path, values)
    # process environment overrides the file (pydantic-settings' usual precedence)
    merged = {k: v for k, v in values.items()}
    merged.update({k: v for k, v in os.environ.items() if k.startswith(PREFIX)})
    kwargs = {k[len(PREFIX):].lower(): v for k, v in merged.items()
              if k[len(PREFIX):].lower() in Settings.model_fields}
    try:
        return Settings(_env_file=None, **kwargs)
    except ValidationError as exc:
        problems = "; ".join(f"{PREFIX}{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                             for e in exc.errors())
        raise SettingsError(f"invalid settings in {path}: {problems}",
                            f"fix the value in {path} (see {ENV_EXAMPLE.name})") from exc


def _refuse_if_state_without_env(path: Path) -> None:
    """A data folder made with other secrets can't be opened with new ones."""
    data = _resolve(Path(os.environ.get(PREFIX + "DATA_DIR", ".lakehouse")))
    if (data / "postgres" / "PG_VERSION").exists():
        raise SettingsError(
            f"env file {path} is missing, but {data} holds state created with its secrets",
            f"restore {path} from a backup, or delete the state with `make clean`")
