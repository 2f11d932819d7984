"""Superset 6.1: the dashboards, served by gunicorn from a venv of its own.

Superset pins SQLAlchemy < 2, so it cannot share the platform's venv: this module builds
`<cache>/superset/venv-<lock hash>` from conf/superset/requirements.txt (once per lock),
creates its metadata schema in the stack's PostgreSQL (`superset db upgrade`, `superset
init`, once per version) and keeps the admin and viewer users equal to the env file. The
dashboards themselves are content, not server state: `lakehouse superset import` (run by
`lakehouse up` once the marts exist) loads them from superset_assets/. Never deletes the
metadata database.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field, SecretStr

from lakehouse.errors import DownloadError, StackError
from lakehouse.paths import CONF as _CONF
from lakehouse.stack.checks import http_ok, run_tool
from lakehouse.stack.registry import Database, Program, Service

if TYPE_CHECKING:
    from lakehouse.settings import Settings

SUPERSET_VERSION = "6.1.0"
CONF = _CONF / "superset"
REQUIREMENTS = CONF / "requirements.txt"
CONFIG_FILE = CONF / "superset_config.py"
USERS_SCRIPT = CONF / "ensure_users.py"
# What gunicorn needs: the session key and its metadata database. The admin and viewer
# passwords go only to the one-off process that sets the users (`ensure_users`).
SERVER_SECRETS = ("superset_secret_key", "superset_db_password")
# requests (inside Superset) must not let a system-wide CA bundle override the pinned
# Trino certificate its database connection passes.
CA_BUNDLE_OVERRIDE = {"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": ""}


class Config(BaseModel):
    superset_port: int = Field(8088, ge=1, le=65535)
    # Its metadata database, owned by this role.
    superset_db: str = "superset"
    superset_db_user: str = "superset"
    superset_db_password: SecretStr
    # Signs sessions and encrypts the stored Trino password.
    superset_secret_key: SecretStr
    superset_admin_user: str = "admin"
    superset_admin_password: SecretStr
    superset_viewer_user: str = "viewer"
    superset_viewer_password: SecretStr
    superset_workers: int = Field(2, ge=1, le=16)

    @property
    def superset_url(self) -> str:
        return f"http://{self.host}:{self.superset_port}"


# ---- its venv -------------------------------------------------------------------------------

def _lock_hash() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]


def venv_path(settings: Settings) -> Path:
    """Keyed by the lock file: a changed pin builds a new venv beside the old one."""
    return settings.cache_path / "superset" / f"venv-{_lock_hash()}"


def uv_executable() -> str:
    found = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    if not Path(found).exists():
        raise DownloadError("uv is not installed, and Superset's venv is built with it",
                            "run `make install` (it installs the pinned uv)")
    return found


def ensure_venv(settings: Settings, say=print) -> Path:
    """Install Superset's locked environment once per lock file (about a minute)."""
    venv = venv_path(settings)
    done = venv / ".lakehouse-complete"
    if done.exists():
        return venv
    if venv.exists():  # an interrupted install: start over
        shutil.rmtree(venv)
    say(f"- installing Superset {SUPERSET_VERSION} into {venv} (once; about a minute) ...")
    uv = uv_executable()
    for cmd in ([uv, "venv", "--quiet", "--python", "3.11", str(venv)],
                [uv, "pip", "sync", "--quiet", "--python", str(venv / "bin" / "python"),
                 "--compile-bytecode", str(REQUIREMENTS)]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
            raise DownloadError(f"building Superset's venv failed ({' '.join(cmd[:3])}):\n{tail}",
                                "check PyPI access and free disk, then run `make up` again")
    done.write_text(SUPERSET_VERSION + "\n")
    return venv


# ---- processes ------------------------------------------------------------------------------

def server_env(settings: Settings) -> dict[str, str]:
    """What Superset's processes need beyond the settings: its config file, its home."""
    return {**CA_BUNDLE_OVERRIDE, "SUPERSET_CONFIG_PATH": str(CONFIG_FILE),
            "FLASK_APP": "superset.app:create_app()",
            "SUPERSET_HOME": str(settings.data_path / "superset"), "PYTHONDONTWRITEBYTECODE": "1"}


def cli_env(settings: Settings, secrets: tuple[str, ...] = SERVER_SECRETS) -> dict[str, str]:
    """A complete environment for a one-off `superset` process run by the platform."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    return {**base, **settings.process_env(secrets), **server_env(settings)}


def run_cli(settings: Settings, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return run_tool([str(venv_path(settings) / "bin" / "superset"), *args], cli_env(settings), timeout=timeout,
                    hint="check PostgreSQL is up (`make status`) and the superset settings in .env")


def _stamp(settings: Settings) -> Path:
    return settings.data_path / "superset" / f"initialized-{SUPERSET_VERSION}"


def initialize(settings: Settings, say=print) -> None:
    """Create or migrate the metadata schema and the built-in roles, once per version."""
    stamp = _stamp(settings)
    if stamp.exists():
        return
    stamp.parent.mkdir(parents=True, exist_ok=True)
    say("- initialising Superset's metadata database (once; about a minute) ...")
    run_cli(settings, "db", "upgrade")
    run_cli(settings, "init")
    stamp.write_text("ok\n")


def ensure_users(settings: Settings, say=print) -> str:
    """Admin and viewer as the env file says (created, or their passwords reset).

    The viewer gets Gamma plus a role that reads the lakehouse database's datasets: it
    sees the dashboards, and can neither edit them nor open SQL Lab.
    """
    env = cli_env(settings, SERVER_SECRETS + ("superset_admin_password", "superset_viewer_password"))
    proc = subprocess.run([str(venv_path(settings) / "bin" / "python"), str(USERS_SCRIPT)],
                          env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise StackError(f"setting up Superset's users failed:\n{tail}",
                         "check `make logs S=superset`; the users come from LAKEHOUSE_SUPERSET_* in .env")
    return proc.stdout.strip()


def gunicorn_command(settings: Settings) -> list[str]:
    venv = venv_path(settings)
    return [str(venv / "bin" / "gunicorn"), "--workers", str(settings.superset_workers),
            "--worker-class", "gthread", "--threads", "4", "--timeout", "120",
            "--bind", f"{settings.host}:{settings.superset_port}",
            "--limit-request-line", "0", "--limit-request-field_size", "0",
            "--access-logfile", "-", "superset.app:create_app()"]


SERVICE = Service(
    name="superset",
    description="Superset 6.1: dashboards on the marts (own venv, metadata in PostgreSQL)",
    profile="bi",
    settings=Config,
    # Its metadata lives in PostgreSQL; its one database connection is Trino.
    depends_on=("postgres", "trino"),
    ports=("superset_port",),
    secrets=SERVER_SECRETS,
    databases=(Database("superset_db", "superset_db_user", "superset_db_password"),),
    prepare=lambda s, say: ensure_venv(s, say=say),
    initialize=initialize,
    provision=lambda s, say: [say("  " + line) for line in ensure_users(s).splitlines()
                              if line.startswith(("created user", "updated user"))],
    programs=(Program(
        name="superset", command=gunicorn_command, env=server_env, start_timeout=180,
        workdir=lambda s: s.data_path / "superset",
        health=lambda s: http_ok(f"{s.superset_url}/health"), url=lambda s: s.superset_url),),
)
