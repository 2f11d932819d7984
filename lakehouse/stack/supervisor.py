"""supervisord, rendered from the registry and driven for the native stack.

supervisord (PyPI `supervisor`) owns the server processes: it daemonizes, restarts a
server that dies unexpectedly, stops process groups cleanly and keeps the logs. Start order
and health checks are ours (lakehouse.stack.manager): supervisord starts a program only
when we ask, after the ones it depends on answered their health checks.

Secrets: supervisord itself gets none. Each program's section carries its environment: the
non-secret settings, the secrets its service declares for it (and nothing else), and the
stack's tag (`LAKEHOUSE_STACK=<data folder>`, how `up` and `down` recognise their own
processes). The rendered file is therefore mode 0600 in the 0700 run folder.
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

from typing import TYPE_CHECKING

from lakehouse.errors import StackError
from lakehouse.stack.checks import private_dir, write_private
from lakehouse.stack.registry import Registry

if TYPE_CHECKING:
    from lakehouse.settings import Settings

# Every process of a stack carries this variable, set to the stack's data folder: a stack
# stops and cleans only processes whose value equals its own folder exactly.
STACK_VAR = "LAKEHOUSE_STACK"


def socket_path(settings: Settings) -> Path:
    return settings.run_path / "supervisor.sock"


def pid_path(settings: Settings) -> Path:
    return settings.run_path / "supervisord.pid"


def conf_path(settings: Settings) -> Path:
    return settings.run_path / "supervisord.conf"


def _q(value: str) -> str:
    return str(value).replace("%", "%%")


def _env_value(key: str, value: str) -> str:
    """A value in supervisord's `environment=`: quoted (its parser, a non-POSIX shlex, keeps
    commas inside quotes and knows no escapes), % doubled (its own interpolation)."""
    for quote in ('"', "'"):
        if quote not in value:
            return quote + _q(value) + quote
    raise StackError(f"{key} holds both kinds of quote, which supervisord cannot pass on",
                     f"change the value of {key} in .env")


def program_env(settings: Settings, registry: Registry, svc, prog) -> dict[str, str]:
    """Exactly what one program's process gets from us, on top of supervisord's own
    environment (which holds no LAKEHOUSE_* variable and no secret)."""
    from lakehouse.settings import SCOPED_VAR

    allowed = registry.program_secrets(svc, prog)
    env = {**settings.process_env(allowed), STACK_VAR: str(settings.data_path), SCOPED_VAR: "1"}
    extra = prog.env(settings) if prog.env else {}
    _refuse_undeclared(settings, svc, prog, allowed, extra)
    env.update(extra)
    return env


def _refuse_undeclared(settings: Settings, svc, prog, allowed, extra: dict[str, str]) -> None:
    """A program's own env must not smuggle in a secret its service did not declare."""
    for name in settings.secret_names():
        if name in allowed:
            continue
        secret = getattr(settings, name)
        try:
            value = secret.get_secret_value()
        except Exception:  # noqa: BLE001 - a withheld secret can't leak
            continue
        leaked = [k for k, v in extra.items() if value and value in v]
        if leaked:
            raise StackError(f"service module {svc.module}: program {prog.name} passes "
                             f"LAKEHOUSE_{name.upper()} in {', '.join(leaked)} without declaring it",
                             f"add {name!r} to the secrets of {prog.name}, or stop passing it")


def render_conf(settings: Settings, registry: Registry) -> Path:
    """Write supervisord.conf for every program of the registry (mode 0600; it holds the
    secrets each program declares), all with autostart=false: `up` starts them in order."""

    log = settings.log_path
    lines = [
        "[unix_http_server]", f"file={_q(socket_path(settings))}", "chmod=0700", "",
        "[supervisord]", f"logfile={_q(log / 'supervisord.log')}", f"pidfile={_q(pid_path(settings))}",
        "logfile_maxbytes=10MB", "logfile_backups=2", "loglevel=info", f"directory={_q(settings.data_path)}",
        "minfds=4096", "umask=077", "", "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
        "[supervisorctl]", f"serverurl=unix://{_q(socket_path(settings))}", "",
    ]
    for svc, prog in registry.programs():
        user = prog.user() if prog.user else None
        workdir = prog.workdir(settings) if prog.workdir else settings.data_path
        lines += [
            f"[program:{prog.name}]",
            "command=" + _q(" ".join(shlex.quote(c) for c in prog.command(settings))),
            f"directory={_q(workdir)}",
            "autostart=false", "autorestart=unexpected", "exitcodes=0", "startsecs=3", "startretries=2",
            f"stopsignal={prog.stop_signal}", f"stopwaitsecs={prog.stop_wait}",
            "stopasgroup=true", "killasgroup=true", "redirect_stderr=true",
            f"stdout_logfile={_q(log / (prog.name + '.log'))}",
            "stdout_logfile_maxbytes=20MB", "stdout_logfile_backups=3",
        ]
        if user:
            lines.append(f"user={user}")
        env = program_env(settings, registry, svc, prog)
        lines.append("environment=" + ",".join(f"{k}={_env_value(k, v)}" for k, v in env.items()))
        lines.append("")
    private_dir(settings.run_path)
    return write_private(conf_path(settings), "\n".join(lines))


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


def daemon_env(settings: Settings) -> dict[str, str]:
    """supervisord's own environment: ours without any LAKEHOUSE_* variable or known
    secret variable, plus the stack's tag. Programs get their settings from the conf."""
    drop = ("LAKEHOUSE_", "MINIO_ROOT_", "AIRFLOW__", "TRINO_PASSWORD", "AWS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env[STACK_VAR] = str(settings.data_path)
    # setproctitle (Airflow, gunicorn) would otherwise write the new title over the
    # process's environment, and with it the tag: keep the environment readable.
    env["SPT_NOENV"] = "1"
    return env


def start_daemon(settings: Settings) -> None:
    """Start supervisord (it daemonizes) and wait until its socket answers."""
    conf = conf_path(settings)
    proc = subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
                          env=daemon_env(settings), capture_output=True, text=True)
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
