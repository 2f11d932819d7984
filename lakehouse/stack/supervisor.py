"""supervisord, rendered and driven for the native stack.

supervisord (PyPI `supervisor`) owns the server processes: it daemonizes, restarts a
server that dies unexpectedly, stops process groups cleanly and keeps the logs. Start order
and health checks are ours (lakehouse.stack.manager): supervisord starts a program only
when we ask, after the ones before it answered their health check.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

from lakehouse.errors import StackError
from lakehouse.settings import Settings
from lakehouse.stack.services import Service


def socket_path(settings: Settings) -> Path:
    return settings.run_path / "supervisor.sock"


def pid_path(settings: Settings) -> Path:
    return settings.run_path / "supervisord.pid"


def conf_path(settings: Settings) -> Path:
    return settings.run_path / "supervisord.conf"


def _q(value: str) -> str:
    return str(value).replace("%", "%%")


def render_conf(settings: Settings, services: list[Service]) -> Path:
    """Write supervisord.conf. It holds no secret: those reach the servers through the
    environment supervisord inherits from `lakehouse up`."""
    log = settings.log_path
    lines = [
        "[unix_http_server]", f"file={_q(socket_path(settings))}", "chmod=0700", "",
        "[supervisord]", f"logfile={_q(log / 'supervisord.log')}", f"pidfile={_q(pid_path(settings))}",
        "logfile_maxbytes=10MB", "logfile_backups=2", "loglevel=info", f"directory={_q(settings.data_path)}",
        "minfds=4096", "", "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
        "[supervisorctl]", f"serverurl=unix://{_q(socket_path(settings))}", "",
    ]
    for svc in services:
        lines += [
            f"[program:{svc.name}]",
            "command=" + _q(" ".join(shlex.quote(c) for c in svc.command)),
            "autostart=false", "autorestart=unexpected", "exitcodes=0", "startsecs=3", "startretries=2",
            f"stopsignal={svc.stop_signal}", f"stopwaitsecs={svc.stop_wait}",
            "stopasgroup=true", "killasgroup=true", "redirect_stderr=true",
            f"stdout_logfile={_q(log / (svc.name + '.log'))}",
            "stdout_logfile_maxbytes=20MB", "stdout_logfile_backups=3",
        ]
        if svc.user:
            lines.append(f"user={svc.user}")
        if svc.env:
            lines.append("environment=" + ",".join(
                f'{k}="{_q(v)}"' for k, v in svc.env.items()))
        lines.append("")
    path = conf_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def client(settings: Settings) -> xmlrpc.client.ServerProxy:
    transport = SupervisorTransport(None, None, f"unix://{socket_path(settings)}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def is_running(settings: Settings) -> bool:
    if not socket_path(settings).exists():
        return False
    try:
        return client(settings).supervisor.getState()["statename"] == "RUNNING"
    except (OSError, xmlrpc.client.Error):
        return False


def start_daemon(settings: Settings, env: dict[str, str]) -> None:
    """Start supervisord (it daemonizes) and wait until its socket answers."""
    conf = conf_path(settings)
    proc = subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
                          env={**os.environ, **env}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise StackError(f"supervisord failed to start: {proc.stderr.strip() or proc.stdout.strip()}",
                         f"see {settings.log_path / 'supervisord.log'}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if is_running(settings):
            return
        time.sleep(0.2)
    raise StackError("supervisord started but its control socket never answered",
                     f"see {settings.log_path / 'supervisord.log'}")


def daemon_pid(settings: Settings) -> int | None:
    try:
        return int(pid_path(settings).read_text().strip())
    except (OSError, ValueError):
        return None
