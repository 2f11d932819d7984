"""PostgreSQL 15: the Iceberg JDBC catalog, and one metadata database per service that
declares one (`databases=` in its module).

Runs Debian's server binaries (apt `postgresql`); as root it runs as the `postgres` OS
account, which refuses to start as root. Listens on LAKEHOUSE_HOST only, no Unix socket.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field, SecretStr

from lakehouse.errors import PreflightError, StackError
from lakehouse.stack.registry import Database, Program, Service, empty_means_default

if TYPE_CHECKING:
    from lakehouse.settings import Settings


class Config(BaseModel):
    # Where clients reach it; empty = LAKEHOUSE_HOST (an external PostgreSQL, or compose).
    postgres_host: str | None = None
    postgres_port: int = Field(5433, ge=1, le=65535)
    # Superuser, used only to provision databases and roles.
    postgres_superuser: str = "lakehouse_admin"
    postgres_superuser_password: SecretStr

    empty_postgres = empty_means_default("postgres_host")

    @property
    def postgres_address(self) -> str:
        return self.postgres_host or self.host

    def derived_env(self) -> dict[str, str]:
        return {"LAKEHOUSE_POSTGRES_HOST": self.postgres_address}


def bindir() -> Path:
    """Newest PostgreSQL server binaries: Debian's /usr/lib/postgresql/N/bin, else PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    raise PreflightError("PostgreSQL server binaries (postgres, initdb) not found",
                         "install them: apt-get install -y postgresql (or `make system-deps`)")


def os_user() -> str | None:
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


def init_cluster(settings: Settings, say) -> None:
    """initdb once, with the superuser password from the env file and scram auth."""
    data = pg_data(settings)
    if (data / "PG_VERSION").exists():
        return
    user = os_user()
    data.mkdir(parents=True, exist_ok=True)
    if user:
        check_traversable(data.parent, user)
        shutil.chown(data, user, user)
    os.chmod(data, 0o700)
    say(f"- initialising PostgreSQL in {data} (once) ...")
    # The password file lives in a folder only initdb's OS user can enter, for a moment.
    with tempfile.TemporaryDirectory(dir=settings.data_path, prefix=".initdb-") as tmp:
        pwfile = Path(tmp) / "pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(settings.postgres_superuser_password.get_secret_value() + "\n")
        if user:
            shutil.chown(tmp, user, user)
            shutil.chown(pwfile, user, user)
        cmd = [str(bindir() / "initdb"), "-D", str(data), "-U", settings.postgres_superuser,
               f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C"]
        proc = subprocess.run(cmd, capture_output=True, text=True, user=user)
    if proc.returncode != 0:
        raise StackError(f"initdb failed for {data}:\n{proc.stderr.strip()[-2000:]}",
                         "check free disk and permissions, then run `make up` again")


def health(settings: Settings) -> tuple[bool, str]:
    try:
        proc = subprocess.run([str(bindir() / "pg_isready"), "-h", settings.postgres_address,
                               "-p", str(settings.postgres_port), "-q"], timeout=10)
    except (OSError, subprocess.TimeoutExpired, PreflightError) as exc:
        return False, str(exc)
    return proc.returncode == 0, "accepting connections" if proc.returncode == 0 else "not ready"


def command(settings: Settings) -> list[str]:
    return [str(bindir() / "postgres"), "-D", str(pg_data(settings)),
            "-c", f"listen_addresses={settings.host}", "-c", f"port={settings.postgres_port}",
            "-c", "unix_socket_directories=", "-c", "max_connections=100",
            "-c", "shared_buffers=128MB", "-c", "logging_collector=off"]


def check_binaries(settings: Settings) -> str:
    user = os_user()
    return f"{bindir()}" + (f" (runs as OS user {user})" if user else "")


def check_reach(settings: Settings) -> str:
    user = os_user()
    if user:
        check_traversable(settings.data_path, user)
        return f"`{user}` can reach {settings.data_path}"
    return "not root: PostgreSQL runs as the current user"


def clear_stale_pid(settings: Settings) -> None:
    """A postmaster.pid left by a killed server blocks the next start: drop it if its
    process is gone (a live one is left alone)."""
    import psutil

    pm_pid = pg_data(settings) / "postmaster.pid"
    if not pm_pid.exists():
        return
    try:
        pid = int(pm_pid.read_text().splitlines()[0])
        alive = psutil.pid_exists(pid) and "postgres" in psutil.Process(pid).name()
    except (OSError, ValueError, IndexError, psutil.Error):
        alive = False
    if not alive:
        pm_pid.unlink(missing_ok=True)


def prepare(settings: Settings, say) -> None:
    init_cluster(settings, say)
    clear_stale_pid(settings)


def provision(settings: Settings, say) -> None:
    """The catalog database and tables, and every database a service declares."""
    from lakehouse.stack import provision as prov
    from lakehouse.stack import registry

    for _svc, db in registry.load().databases():
        prov.ensure_database(settings, getattr(settings, db.name), getattr(settings, db.user),
                             getattr(settings, db.password).get_secret_value())
    prov.create_catalog_tables(settings)


SERVICE = Service(
    name="postgres",
    description="PostgreSQL 15: the Iceberg JDBC catalog and each service's metadata database",
    settings=Config,
    ports=("postgres_port",),
    # The Iceberg catalog database: shared by Spark, Trino and pyiceberg, so no one
    # engine's module owns it.
    databases=(Database("catalog_db", "catalog_db_user", "catalog_db_password"),),
    checks=(("postgresql", check_binaries), ("data folder access", check_reach)),
    prepare=prepare,
    provision=provision,
    programs=(Program(
        name="postgres", command=command, health=health, user=os_user,
        stop_signal="INT", stop_wait=60, start_timeout=60,
        url=lambda s: f"postgresql://{s.postgres_address}:{s.postgres_port}"),),
)
