"""What each server of the native stack runs, and how we know it is healthy.

Scope: builds commands and health checks from the settings; prepares each server's data
folder on first start. Never deletes state (that is `lakehouse clean`).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import requests

from lakehouse.errors import PreflightError, StackError
from lakehouse.settings import REPO_ROOT, Settings
from lakehouse.stack import artifacts, trino_security
from lakehouse.orchestration.runtime import COMPONENTS
from lakehouse.stack.java import TRINO_JAVA, find_java

CONF = REPO_ROOT / "conf"


@dataclass
class Service:
    name: str
    command: list[str]
    health: Callable[[], tuple[bool, str]]
    url: str
    user: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    stop_signal: str = "TERM"
    stop_wait: int = 30
    start_timeout: int = 120


# ---- PostgreSQL ---------------------------------------------------------------------------

def postgres_bindir() -> Path:
    """Newest PostgreSQL server binaries: Debian's /usr/lib/postgresql/N/bin, else PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    raise PreflightError("PostgreSQL server binaries (postgres, initdb) not found",
                         "install them: apt-get install -y postgresql")


def postgres_os_user() -> str | None:
    """PostgreSQL refuses to run as root: as root we run it as the `postgres` account."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PreflightError("running as root, but there is no `postgres` OS user to run PostgreSQL",
                             "install Debian's postgresql package (it creates the user), or run as a normal user") from None
    return "postgres"


def check_traversable(path: Path, user: str) -> None:
    """The postgres account must reach its data folder through every parent."""
    info = pwd.getpwnam(user)
    p = path
    while True:
        if p.exists():
            st = p.stat()
            ok = (st.st_mode & 0o001) or (st.st_uid == info.pw_uid and st.st_mode & 0o100) \
                or (st.st_gid == info.pw_gid and st.st_mode & 0o010)
            if not ok:
                raise PreflightError(
                    f"the `{user}` OS user cannot enter {p}, so PostgreSQL cannot reach {path}",
                    "set LAKEHOUSE_DATA_DIR to a folder outside it (e.g. /var/lib/lakehouse)")
        if p.parent == p:
            return
        p = p.parent


def pg_data(settings: Settings) -> Path:
    return settings.data_path / "postgres"


def init_postgres(settings: Settings) -> None:
    """initdb once, with the superuser password from the env file and scram auth."""
    data = pg_data(settings)
    if (data / "PG_VERSION").exists():
        return
    user = postgres_os_user()
    data.mkdir(parents=True, exist_ok=True)
    if user:
        check_traversable(data, user)
        shutil.chown(data, user, user)
    os.chmod(data, 0o700)
    bindir = postgres_bindir()
    with tempfile.NamedTemporaryFile("w", dir=settings.run_path, delete=False) as pw:
        pw.write(settings.postgres_superuser_password.get_secret_value() + "\n")
    try:
        if user:
            shutil.chown(pw.name, user, user)
        cmd = [str(bindir / "initdb"), "-D", str(data), "-U", settings.postgres_superuser,
               f"--pwfile={pw.name}", "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C"]
        proc = subprocess.run(cmd, capture_output=True, text=True, user=user)
    finally:
        os.unlink(pw.name)
    if proc.returncode != 0:
        raise StackError(f"initdb failed for {data}:\n{proc.stderr.strip()[-2000:]}",
                         "check free disk and permissions, then run `make up` again")


def postgres_service(settings: Settings) -> Service:
    bindir = postgres_bindir()
    data = pg_data(settings)

    return Service(
        name="postgres",
        command=[str(bindir / "postgres"), "-D", str(data),
                 "-c", f"listen_addresses={settings.host}", "-c", f"port={settings.postgres_port}",
                 "-c", "unix_socket_directories=", "-c", "max_connections=100",
                 "-c", "shared_buffers=128MB", "-c", "logging_collector=off"],
        health=lambda: postgres_health(settings), url=service_url(settings, "postgres"),
        user=postgres_os_user(), stop_signal="INT", stop_wait=60, start_timeout=60)


# ---- MinIO --------------------------------------------------------------------------------

def minio_service(settings: Settings) -> Service:
    data = settings.data_path / "minio"

    return Service(
        name="minio",
        command=[str(artifacts.minio_binary(settings)), "server", str(data),
                 "--address", f"{settings.host}:{settings.minio_port}",
                 "--console-address", f"{settings.host}:{settings.minio_console_port}", "--quiet"],
        health=lambda: minio_health(settings), url=service_url(settings, "minio"),
        env={"MINIO_ROOT_USER": settings.minio_root_user.get_secret_value(),
             "MINIO_ROOT_PASSWORD": settings.minio_root_password.get_secret_value(),
             "MINIO_BROWSER_REDIRECT": "false", "MINIO_UPDATE": "off"},
        start_timeout=60)


# ---- Trino --------------------------------------------------------------------------------

def trino_etc(settings: Settings) -> Path:
    """Trino's etc folder: the repo's config files linked in, heap and node id rendered."""
    etc = settings.run_path / "trino-etc"
    etc.mkdir(parents=True, exist_ok=True)
    for name in ("config.properties", "catalog", "password-authenticator.properties",
                 "access-control.properties"):
        link = etc / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(CONF / "trino" / name)
    jvm = [(f"-Xmx{settings.trino_heap}" if line.startswith("-Xmx") else line)
           for line in (CONF / "trino" / "jvm.config").read_text().splitlines()]
    (etc / "jvm.config").write_text("\n".join(jvm) + "\n")
    node_id_file = settings.data_path / "trino" / "node-id"
    node_id_file.parent.mkdir(parents=True, exist_ok=True)
    if not node_id_file.exists():
        node_id_file.write_text(str(uuid.uuid4()))
    (etc / "node.properties").write_text(
        "node.environment=lakehouse\n"
        f"node.id={node_id_file.read_text().strip()}\n"
        f"node.data-dir={settings.data_path / 'trino'}\n")
    trino_security.ensure_certificate(settings)
    trino_security.write_password_file(settings)
    return etc


def trino_service(settings: Settings) -> Service:
    home = artifacts.trino_home(settings)
    java = find_java(TRINO_JAVA, settings.trino_java_home)

    etc = trino_etc(settings)
    return Service(
        name="trino",
        command=[str(home / "bin" / "launcher"), "run", f"--etc-dir={etc}",
                 f"--data-dir={settings.data_path / 'trino'}"],
        health=lambda: trino_health(settings), url=service_url(settings, "trino"),
        env={"JAVA_HOME": str(java), "PATH": f"{java / 'bin'}:{os.environ.get('PATH', '')}"},
        start_timeout=240)


# ---- the batch API simulator ------------------------------------------------------------

def simulator_service(settings: Settings) -> Service:
    """The bundled batch API (lakehouse.simulator): the demo's and the tests' data source."""
    return Service(
        name="simulator",
        command=[sys.executable, "-m", "lakehouse.simulator", "--host", settings.host,
                 "--port", str(settings.simulator_port),
                 "--state-file", str(settings.data_path / "simulator" / "state.json")],
        health=lambda: simulator_health(settings), url=service_url(settings, "simulator"),
        env={"PYTHONPATH": str(REPO_ROOT)}, start_timeout=60)


# ---- Superset ---------------------------------------------------------------------------

def superset_service(settings: Settings) -> Service:
    """gunicorn serving Superset from its own venv; metadata in the stack's PostgreSQL."""
    from lakehouse.superset import runtime

    env = runtime.superset_env(settings)
    return Service(
        name="superset",
        command=runtime.gunicorn_command(settings),
        health=lambda: superset_health(settings), url=service_url(settings, "superset"),
        env={k: env[k] for k in ("SUPERSET_CONFIG_PATH", "FLASK_APP", "SUPERSET_HOME",
                                 "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PYTHONDONTWRITEBYTECODE")},
        start_timeout=180)


# ---- Airflow ------------------------------------------------------------------------------

def airflow_services(settings: Settings) -> list[Service]:
    """api-server, scheduler (LocalExecutor: tasks run as its children), dag-processor,
    triggerer; metadata in the stack's PostgreSQL (lakehouse.orchestration.runtime)."""
    from lakehouse.orchestration import runtime

    env = runtime.airflow_settings(settings)
    return [Service(name=name, command=runtime.component_command(settings, name),
                    health=lambda n=name: HEALTH[n](settings), url=service_url(settings, name),
                    env=env, start_timeout=180,
                    # a running task gets this long to finish before it is killed with its group
                    stop_wait=60 if name == "airflow-scheduler" else 30)
            for name in runtime.COMPONENTS]


# ---- health checks and addresses (no downloads needed to ask) -------------------------

def postgres_health(settings: Settings) -> tuple[bool, str]:
    try:
        proc = subprocess.run([str(postgres_bindir() / "pg_isready"), "-h", settings.postgres_address,
                               "-p", str(settings.postgres_port), "-q"], timeout=10)
    except (OSError, subprocess.TimeoutExpired, PreflightError) as exc:
        return False, str(exc)
    return proc.returncode == 0, "accepting connections" if proc.returncode == 0 else "not ready"


def minio_health(settings: Settings) -> tuple[bool, str]:
    return http_ok(f"{settings.s3_endpoint}/minio/health/ready")


def trino_health(settings: Settings) -> tuple[bool, str]:
    try:
        # The client port: proves TLS with the generated certificate, not only the JVM.
        info = requests.get(f"{settings.trino_url}/v1/info", timeout=5,
                            verify=str(settings.trino_ca_file)).json()
    except (requests.RequestException, ValueError, OSError) as exc:
        return False, type(exc).__name__
    if info.get("starting", True):
        return False, "starting"
    return True, f"Trino {info.get('nodeVersion', {}).get('version', '?')}"


def simulator_health(settings: Settings) -> tuple[bool, str]:
    return http_ok(f"{settings.simulator_url}/health")


def superset_health(settings: Settings) -> tuple[bool, str]:
    return http_ok(f"{settings.superset_url}/health")


def _airflow_health(name: str) -> Callable[[Settings], tuple[bool, str]]:
    def check(settings: Settings) -> tuple[bool, str]:
        from lakehouse.orchestration import runtime

        return runtime.health(settings, name)
    return check


AIRFLOW = tuple(COMPONENTS)  # api-server first: the others report to it
HEALTH = {"postgres": postgres_health, "minio": minio_health, "trino": trino_health,
          "simulator": simulator_health, "superset": superset_health,
          **{name: _airflow_health(name) for name in AIRFLOW}}


def service_url(settings: Settings, name: str) -> str:
    return {
        "postgres": f"postgresql://{settings.postgres_address}:{settings.postgres_port}",
        "minio": f"{settings.s3_endpoint} (S3), http://{settings.host}:{settings.minio_console_port} (console)",
        "trino": settings.trino_url,
        "simulator": f"{settings.simulator_url}/docs",
        "superset": settings.superset_url,
        "airflow-api": settings.airflow_url,
    }.get(name, f"(reported by {settings.airflow_url}/api/v2/monitor/health)")


# ---- shared -------------------------------------------------------------------------------

def http_ok(url: str) -> tuple[bool, str]:
    try:
        resp = requests.get(url, timeout=5)
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


# Start order: each stage starts only once the stages before it are healthy; the services
# of one stage start together. Airflow's scheduler starts after its api-server, which
# every task reports to (a task started before it fails).
STAGES = (("postgres",), ("minio",), ("trino",), ("simulator",), ("superset", AIRFLOW[0]), AIRFLOW[1:])
ORDER = tuple(name for stage in STAGES for name in stage)


def all_services(settings: Settings) -> list[Service]:
    return [postgres_service(settings), minio_service(settings), trino_service(settings),
            simulator_service(settings), superset_service(settings), *airflow_services(settings)]
