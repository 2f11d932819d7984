"""Preflight: every prerequisite of the native stack, each with a clear message.

Scope: reads the machine (JDKs, Go, PostgreSQL binaries, disk, memory, ports); changes
nothing. The ports and each server's own checks come from the registry. `lakehouse
doctor` prints all checks; `lakehouse up` refuses to start anything if one fails.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil

from lakehouse.errors import LakehouseError
from lakehouse.stack import registry as _registry
from lakehouse.stack.checks import port_free

if TYPE_CHECKING:  # the settings class is built from the service modules
    from lakehouse.settings import Settings


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""


def _guard(name: str, fn) -> Check:
    try:
        return Check(name, True, fn())
    except LakehouseError as exc:
        return Check(name, False, exc.message, exc.hint or "")


def port_owner_pid(port: int) -> int | None:
    """The pid listening on `port`, when the OS tells us."""
    try:
        for conn in psutil.net_connections("inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                return conn.pid
    except (psutil.Error, OSError):
        pass
    return None


def port_owner(port: int) -> str:
    """Who listens on `port`, as 'pid N (name)', when the OS tells us."""
    try:
        for conn in psutil.net_connections("inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                try:
                    return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                except psutil.Error:
                    return f"pid {conn.pid}"
    except (psutil.Error, OSError):
        pass
    return "another process"


def stack_ports(settings: Settings, names=None, reg=None) -> dict[str, int]:
    """Every port the native stack's services listen on, by the variable that sets it."""
    return (reg or _registry.load()).ports(settings, names)


def check_ports(settings: Settings, ours: set[int] = frozenset(), names=None, reg=None) -> list[Check]:
    """No two settings may name one port (across every service), and each port of the
    services to start must be free, unless our own running stack holds it."""
    reg = reg or _registry.load()
    wanted = set(stack_ports(settings, names, reg).values())
    checks = []
    seen: dict[int, str] = {}
    for var, port in stack_ports(settings, None, reg).items():
        if port in seen:
            checks.append(Check(f"port {port}", False, f"{var} and {seen[port]} are both {port}",
                                f"give {var} its own port in .env"))
            continue
        seen[port] = var
        if port not in wanted:
            continue
        if port in ours or port_free(settings.host, port):
            checks.append(Check(f"port {port}", True, f"{var} free" if port not in ours else f"{var} held by the running stack"))
        else:
            checks.append(Check(f"port {port}", False,
                                f"port {port} ({var}) on {settings.host} is already in use by {port_owner(port)}",
                                f"stop that process, or set {var} to a free port in .env"))
    return checks


def check_disk(settings: Settings) -> list[Check]:
    checks = []
    for label, path in (("data folder", settings.data_path), ("cache folder", settings.cache_path)):
        probe = path
        while not probe.exists():
            probe = probe.parent
        free_gb = shutil.disk_usage(probe).free / 2**30
        ok = free_gb >= settings.min_free_disk_gb
        checks.append(Check(f"disk ({label})", ok,
                            f"{free_gb:.1f} GiB free at {probe}" + ("" if ok else f", need {settings.min_free_disk_gb:g} GiB"),
                            "" if ok else f"free space there or move the {label} (LAKEHOUSE_{'DATA' if 'data' in label else 'CACHE'}_DIR)"))
    return checks


def check_memory(settings: Settings) -> Check:
    avail = psutil.virtual_memory().available / 2**30
    ok = avail >= settings.min_free_memory_gb
    return Check("memory", ok, f"{avail:.1f} GiB available" + ("" if ok else f", need {settings.min_free_memory_gb:g} GiB"),
                 "" if ok else "stop other programs (or lower LAKEHOUSE_TRINO_HEAP)")


def _data_folder(settings: Settings) -> str:
    probe = settings.data_path
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise LakehouseError(f"{probe} is not writable, so the data folder {settings.data_path} can't be made",
                             "set LAKEHOUSE_DATA_DIR to a folder you may write")
    return str(settings.data_path)


def run_checks(settings: Settings, ours: set[int] = frozenset(), names=None, reg=None) -> list[Check]:
    """The machine's checks, then each selected service's own, then disk, memory, ports."""
    reg = reg or _registry.load()
    names = reg.names if names is None else names
    checks = [
        _guard("data folder", lambda: _data_folder(settings)),
    ]
    for name in names:
        for label, check in reg.services[name].checks:
            checks.append(_guard(label, lambda c=check: c(settings)))
    checks += [*check_disk(settings), check_memory(settings), *check_ports(settings, ours, names, reg)]
    return checks


def format_checks(checks: list[Check]) -> str:
    out = []
    for c in checks:
        out.append(f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
        if not c.ok and c.hint:
            out.append(f"         -> {c.hint}")
    return "\n".join(out)
