"""Small checks and helpers the service modules share: HTTP health, free ports, a
service's private state folder. No service-specific code lives here."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import requests

from lakehouse.errors import StackError


def http_ok(url: str, timeout: float = 5) -> tuple[bool, str]:
    """(True, "HTTP 200") when `url` answers 200; never raises."""
    try:
        resp = requests.get(url, timeout=timeout)
    except requests.RequestException as exc:
        return False, type(exc).__name__
    return resp.status_code == 200, f"HTTP {resp.status_code}"


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def private_dir(path: Path) -> Path:
    """A folder only its owner can enter (0700), created if missing, tightened if not."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, text: str) -> Path:
    """Write a file that holds a secret: 0600 from its first byte, replaced atomically,
    inside a 0700 folder."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return path


def run_tool(cmd: list[str], env: dict[str, str], hint: str, timeout: int = 900,
             cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a server's own command-line tool (a migration, an init); on failure, an error
    with its last output lines and what to check."""
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise StackError(f"`{Path(cmd[0]).name} {' '.join(cmd[1:])}` failed:\n{tail}", hint)
    return proc
