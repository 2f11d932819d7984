"""Preflight: every prerequisite of the native stack, each with a clear message.

Scope: reads the machine (JDKs, Go, PostgreSQL binaries, disk, memory, ports); changes
nothing. `lakehouse doctor` prints all checks; `lakehouse up` stops at the first failure.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
import psutil

from lakehouse.errors import LakehouseError
from lakehouse.settings import Settings
from lakehouse.stack import artifacts
from lakehouse.stack.java import SPARK_JAVA, TRINO_JAVA, find_java
from lakehouse.stack.services import check_traversable, port_free, postgres_bindir, postgres_os_user


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


def stack_ports(settings: Settings) -> dict[str, int]:
    """Every port the native stack listens on, by the variable that sets it."""
    return {
        "LAKEHOUSE_POSTGRES_PORT": settings.postgres_port,
        "LAKEHOUSE_MINIO_PORT": settings.minio_port,
        "LAKEHOUSE_MINIO_CONSOLE_PORT": settings.minio_console_port,
        "LAKEHOUSE_TRINO_PORT": settings.trino_port,
        "LAKEHOUSE_TRINO_HTTPS_PORT": settings.trino_https_port,
        "LAKEHOUSE_SIMULATOR_PORT": settings.simulator_port,
        "LAKEHOUSE_SUPERSET_PORT": settings.superset_port,
        "LAKEHOUSE_AIRFLOW_PORT": settings.airflow_port,
        "LAKEHOUSE_AIRFLOW_LOG_PORT": settings.airflow_log_port,
        "LAKEHOUSE_AIRFLOW_LOG_PORT + 1 (trigger logs)": settings.airflow_log_port + 1,
    }


def check_ports(settings: Settings, ours: set[int] = frozenset()) -> list[Check]:
    """Each configured port must be free, unless our own running stack holds it."""
    ports = stack_ports(settings)
    checks = []
    seen: dict[int, str] = {}
    for var, port in ports.items():
        if port in seen:
            checks.append(Check(f"port {port}", False, f"{var} and {seen[port]} are both {port}",
                                f"give {var} its own port in .env"))
            continue
        seen[port] = var
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


def check_go(settings: Settings) -> Check:
    cached = settings.cache_path / "bin" / f"minio-{artifacts.MINIO_VERSION}"
    if cached.is_file():
        return Check("go", True, f"not needed: MinIO already built ({cached.name})")
    go = shutil.which("go")
    if go is None:
        return Check("go", False, "`go` not on PATH; MinIO is built with `go install` on first run",
                     "install Go 1.24+ (apt-get install golang-go, or go.dev/dl)")
    return Check("go", True, go)


def _postgres() -> str:
    bindir = postgres_bindir()
    user = postgres_os_user()
    return f"{bindir}" + (f" (runs as OS user {user})" if user else "")


def _pg_reach(settings: Settings) -> str:
    user = postgres_os_user()
    if user:
        check_traversable(settings.data_path, user)
        return f"`{user}` can reach {settings.data_path}"
    return "not root: PostgreSQL runs as the current user"


def run_checks(settings: Settings, ours: set[int] = frozenset()) -> list[Check]:
    checks = [
        _guard("java (Trino)", lambda: str(find_java(TRINO_JAVA, settings.trino_java_home))),
        _guard("java (Spark)", lambda: str(find_java(SPARK_JAVA, settings.spark_java_home))),
        check_go(settings),
        _guard("postgresql", _postgres),
        _guard("data folder access", lambda: _pg_reach(settings)),
        *check_disk(settings),
        check_memory(settings),
        *check_ports(settings, ours),
    ]
    return checks


def format_checks(checks: list[Check]) -> str:
    out = []
    for c in checks:
        out.append(f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
        if not c.ok and c.hint:
            out.append(f"         -> {c.hint}")
    return "\n".join(out)
