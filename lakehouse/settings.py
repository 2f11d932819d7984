"""Typed settings, read from the one env file.

Scope: reads `.env` (or $LAKEHOUSE_ENV_FILE), generates it on first run from
`.env.example` with fresh random secrets (mode 0600), and derives every endpoint the
engines need from it. Nothing else in the project writes a port, a host or a credential.

`Settings` is assembled when this module loads: `CoreSettings` (what no single server
owns) joined with the settings fragment of every service module in the registry
(lakehouse/stack/services/). A new server brings its settings with it.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import stat
from functools import cached_property
from pathlib import Path
from typing import Iterable, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lakehouse.errors import SettingsError
from lakehouse.paths import REPO_ROOT
from lakehouse.stack.registry import empty_is_none

ENV_EXAMPLE = REPO_ROOT / ".env.example"
PREFIX = "LAKEHOUSE_"
_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")


class CoreSettings(BaseSettings):
    """The settings no single server owns: folders, the address every server binds, the
    shared Iceberg catalog and bucket, the client processes' S3 users, ingestion, dbt,
    schedules and preflight. Each server's own settings (ports, secrets, tunables) are a
    fragment in its service module (lakehouse/stack/services/); `Settings` joins them."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True)

    data_dir: Path = Path(".lakehouse")
    cache_dir: Path = Path("~/.cache/lakehouse")
    # The data contracts, one ODCS document per source (lakehouse.contracts.odcs reads it).
    contracts_dir: Path = Path("contracts")

    host: str = "127.0.0.1"

    catalog_name: str = "lakehouse"
    catalog_db: str = "iceberg_catalog"
    catalog_db_user: str = "iceberg"
    catalog_db_password: SecretStr
    warehouse_bucket: str = "lakehouse"
    s3_region: str = "us-east-1"

    # The S3 user of read-only client processes (pyiceberg, DuckDB). A server's own S3
    # user (Spark's, Trino's) is declared by its service module.
    reader_s3_access_key: str = "svc-reader"
    reader_s3_secret_key: SecretStr

    # Schedules (read by the DAG files when Airflow parses them).
    ingest_schedule: str = "*/5 * * * *"
    ingest_retries: int = Field(2, ge=2, le=20)
    ingest_retry_delay_seconds: float = Field(30, gt=0)
    ingest_timeout_minutes: float = Field(15, gt=0)
    maintenance_schedule: str = "0 3 * * *"
    maintenance_snapshot_retention: str = Field("7d", pattern=r"^\d+(\.\d+)?[smhd]$")
    maintenance_orphan_retention: str = Field("7d", pattern=r"^\d+(\.\d+)?[smhd]$")

    batch_api_url: str | None = None
    group_number: int = Field(1, ge=0)

    dbt_target: Literal["dev", "ci", "prod"] = "dev"
    dbt_threads: int = Field(4, ge=1, le=16)
    # the scheduler's mart builds (dbt_build DAG): how long the rest of a build (the marts not
    # tagged publish_first, the data tests) may be left to the next build while newer batches
    # wait (lakehouse/marts.py, rest_due); 0 completes every build
    dbt_defer_rest_seconds: float = Field(300, ge=0)
    # ... and how long one build task goes on building while batches keep committing
    dbt_keep_up_seconds: float = Field(300, ge=0)

    min_free_disk_gb: float = Field(5, ge=0)
    min_free_memory_gb: float = Field(4, ge=0)

    @field_validator("batch_api_url", mode="before")
    @classmethod
    def _empty_is_auto(cls, v):
        return empty_is_none(v)

    @field_validator("ingest_schedule", "maintenance_schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        from lakehouse.orchestration.schedule import check

        return check(v)

    @field_validator("*", mode="after")
    @classmethod
    def _secret_not_empty(cls, v):
        if isinstance(v, SecretStr) and not isinstance(v, Withheld) and len(v.get_secret_value()) < 8:
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
        """Sockets, pid files and rendered configs (0700): safe to delete when the stack is down."""
        return self.data_path / "run"

    @property
    def log_path(self) -> Path:
        return self.data_path / "logs"

    # ---- derived endpoints --------------------------------------------------------------
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

    def secret_names(self) -> list[str]:
        return [n for n, f in type(self).model_fields.items() if f.annotation is SecretStr]

    def process_env(self, secrets: "Iterable[str] | None" = None) -> dict[str, str]:
        """The settings as environment variables for another process: every non-secret
        setting, the derived endpoints, and only the secrets named in `secrets` (settings
        field names; None = all). Trino's `${ENV:...}`, Spark's rendered defaults, dbt's
        `env_var()` and Superset's config read these names, so the env file stays the only
        place a value is written. A withheld secret is never passed on."""
        allowed = set(self.secret_names()) if secrets is None else set(secrets)
        unknown = allowed - set(self.secret_names())
        if unknown:
            raise SettingsError(f"not secret settings: {', '.join(sorted(unknown))}",
                                "name secrets by their settings field, e.g. trino_dbt_password")
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                if name not in allowed or isinstance(value, Withheld):
                    continue
                value = value.get_secret_value()
            env[PREFIX + name.upper()] = "" if value is None else str(value)
        env[PREFIX + "DATA_DIR"] = str(self.data_path)
        env[PREFIX + "CACHE_DIR"] = str(self.cache_path)
        for cls in type(self).__mro__:  # each fragment adds the endpoints it derives
            derive = cls.__dict__.get("derived_env")
            if derive is not None:
                env.update(derive(self))
        return env

    def engine_env(self) -> dict[str, str]:
        """Every setting, every secret revealed: for what a person runs by hand."""
        return self.process_env(None)


class Withheld(SecretStr):
    """A secret this process was not given (scoped mode): using it is a clear error."""

    def __init__(self, field_name: str):
        super().__init__("")
        self._field = field_name

    def get_secret_value(self) -> str:
        raise SettingsError(
            f"{PREFIX}{self._field.upper()} was not given to this process: its service "
            "declares the secrets each of its processes may see",
            "add the setting to the `secrets` of the service (or task) that needs it, in "
            "lakehouse/stack/services/")


def _build_settings_class() -> type[CoreSettings]:
    from lakehouse.stack import registry

    return registry.load().settings_class()


Settings = _build_settings_class()


def _resolve(p: Path) -> Path:
    p = Path(os.path.expanduser(str(p)))
    return p if p.is_absolute() else (REPO_ROOT / p)


def env_example_missing(settings_class: type | None = None, example: Path | None = None) -> list[str]:
    """Variables the settings define that `.env.example` does not list (derived from the
    registry: a new service's settings must be documented there)."""
    example = example or ENV_EXAMPLE
    listed = {m.group(1) for m in map(_LINE.match, example.read_text().splitlines()) if m}
    return [PREFIX + n.upper() for n in (settings_class or Settings).model_fields if PREFIX + n.upper() not in listed]


def secret_fields() -> list[str]:
    return [n for n, f in Settings.model_fields.items() if f.annotation is SecretStr]


# Set by the native stack for every supervised process: its settings come from its
# environment only, which holds just the secrets its service declares.
SCOPED_VAR = PREFIX + "SCOPED_ENV"


def env_file_path() -> Path:
    return _resolve(Path(os.environ.get("LAKEHOUSE_ENV_FILE", ".env")))


# A source's secret (an API key the contract's endpoint.auth names) is kept in the env file
# under a name with this prefix; the settings themselves never read it.
SOURCE_SECRET_PREFIX = "LAKEHOUSE_SOURCE_"


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
        if key not in known and not key.startswith(SOURCE_SECRET_PREFIX):
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
    """Read the env file (generating it on first run) and validate every value.

    In a process the native stack started (LAKEHOUSE_SCOPED_ENV=1), the settings come from
    the environment alone, and a secret the process was not given is withheld.
    """
    if path is None and os.environ.get(SCOPED_VAR) == "1":
        return _scoped_settings()
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
    return _validated(merged, f"in {path}", f"fix the value in {path} (see {ENV_EXAMPLE.name})")


def _scoped_settings() -> Settings:
    given: dict = dict(os.environ)
    for name in secret_fields():
        given.setdefault(PREFIX + name.upper(), Withheld(name))
    return _validated(given, "in this process's environment",
                      "the stack renders them from .env; fix the value there and restart")


def _validated(variables: dict, where: str, hint: str) -> Settings:
    """Settings from LAKEHOUSE_* variables; a bad value is an error naming the variable."""
    kwargs = {k[len(PREFIX):].lower(): v for k, v in variables.items()
              if k.startswith(PREFIX) and k[len(PREFIX):].lower() in Settings.model_fields}
    try:
        return Settings(_env_file=None, **kwargs)
    except ValidationError as exc:
        problems = "; ".join(f"{PREFIX}{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                             for e in exc.errors())
        raise SettingsError(f"invalid settings {where}: {problems}", hint) from exc


def _refuse_if_state_without_env(path: Path) -> None:
    """A data folder made with other secrets can't be opened with new ones."""
    data = _resolve(Path(os.environ.get(PREFIX + "DATA_DIR", ".lakehouse")))
    if (data / "postgres" / "PG_VERSION").exists():
        raise SettingsError(
            f"env file {path} is missing, but {data} holds state created with its secrets",
            f"restore {path} from a backup, or delete the state with `make clean`")
