"""Superset's own venv, its first-start initialisation, and how the stack runs it.

Scope: builds `<cache>/superset/venv-<lock hash>` from conf/superset/requirements.txt
(Superset pins SQLAlchemy < 2, so it cannot share the platform's venv); creates its
metadata schema in the stack's PostgreSQL (`superset db upgrade`, `superset init`); keeps
the admin and viewer users equal to the env file. Never deletes the metadata database.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from lakehouse.errors import DownloadError, StackError
from lakehouse.settings import REPO_ROOT, Settings
from lakehouse.trino import CA_BUNDLE_OVERRIDE

SUPERSET_VERSION = "6.1.0"
CONF = REPO_ROOT / "conf" / "superset"
REQUIREMENTS = CONF / "requirements.txt"
CONFIG_FILE = CONF / "superset_config.py"
USERS_SCRIPT = CONF / "ensure_users.py"


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


def superset_env(settings: Settings) -> dict[str, str]:
    """What Superset's processes see: the settings, its config file, no system CA override."""
    return {**os.environ, **settings.engine_env(), **CA_BUNDLE_OVERRIDE,
            "SUPERSET_CONFIG_PATH": str(CONFIG_FILE), "FLASK_APP": "superset.app:create_app()",
            "SUPERSET_HOME": str(settings.data_path / "superset"),
            "PYTHONDONTWRITEBYTECODE": "1"}


def run_cli(settings: Settings, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    cmd = [str(venv_path(settings) / "bin" / "superset"), *args]
    proc = subprocess.run(cmd, env=superset_env(settings), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise StackError(f"`superset {' '.join(args)}` failed:\n{tail}",
                         "check PostgreSQL is up (`make status`) and the superset settings in .env")
    return proc


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


def ensure_users(settings: Settings) -> str:
    """Admin and viewer as the env file says (created, or their passwords reset).

    The viewer gets Gamma plus a role that reads the lakehouse database's datasets: it
    sees the dashboards, and can neither edit them nor open SQL Lab.
    """
    proc = subprocess.run([str(venv_path(settings) / "bin" / "python"), str(USERS_SCRIPT)],
                          env=superset_env(settings), capture_output=True, text=True, timeout=300)
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
