"""Trino 476: SQL over the Iceberg catalog `lakehouse`, for dbt, Superset and people.

Maven Central's `trino-server` tarball, unpacked once into the cache, run on a Java 24+
JDK (Temurin 25). Clients use HTTPS with a generated certificate and a password per user
(lakehouse.stack.trino_security); the HTTP port serves node-to-node traffic only. Config
files are conf/trino/, read through `${ENV:...}`.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import requests
from pydantic import BaseModel, Field, SecretStr

from lakehouse.paths import CONF, REPO_ROOT
from lakehouse.stack.registry import Program, S3User, Service, empty_means_default

if TYPE_CHECKING:
    from lakehouse.settings import Settings


class Config(BaseModel):
    # Where clients reach it; empty = LAKEHOUSE_HOST.
    trino_host: str | None = None
    trino_port: int = Field(8080, ge=1, le=65535)
    trino_https_port: int = Field(8443, ge=1, le=65535)
    # Password-file users over HTTPS (conf/trino/rules.json says what each may do).
    trino_lakehouse_password: SecretStr
    trino_dbt_password: SecretStr
    trino_superset_password: SecretStr
    trino_internal_secret: SecretStr
    # Its S3 user: reads everything, writes staging/, intermediate/ and marts/.
    trino_s3_access_key: str = "svc-trino"
    trino_s3_secret_key: SecretStr
    trino_java_home: Path | None = None
    trino_heap: str = Field("2G", pattern=r"^\d+[MG]$")

    empty_trino = empty_means_default("trino_host", "trino_java_home")

    @property
    def trino_address(self) -> str:
        return self.trino_host or self.host

    @property
    def trino_url(self) -> str:
        """Where clients connect: HTTPS with a password (the HTTP port is internal only)."""
        return f"https://{self.trino_address}:{self.trino_https_port}"

    @property
    def trino_internal_url(self) -> str:
        """The coordinator's HTTP port: node-to-node traffic and /v1/info; clients are refused."""
        return f"http://{self.trino_address}:{self.trino_port}"

    @property
    def tls_path(self) -> Path:
        return self.data_path / "tls"

    @property
    def trino_ca_file(self) -> Path:
        """The certificate clients trust for Trino's HTTPS port (self-signed, generated)."""
        return self.tls_path / "trino.crt"

    @property
    def trino_keystore_file(self) -> Path:
        """The key and certificate Trino serves HTTPS with: private (0600 in a 0700 folder)."""
        return self.tls_path / "private" / "trino.pem"

    @property
    def trino_password_file(self) -> Path:
        return self.data_path / "trino-auth" / "password.db"

    def derived_env(self) -> dict[str, str]:
        return {"LAKEHOUSE_TRINO_HOST": self.trino_address,
                "LAKEHOUSE_TRINO_CA_FILE": str(self.trino_ca_file),
                "LAKEHOUSE_TRINO_KEYSTORE_FILE": str(self.trino_keystore_file),
                "LAKEHOUSE_TRINO_AUTH_FILE": str(self.trino_password_file),
                "LAKEHOUSE_TRINO_RULES_FILE": str(REPO_ROOT / "conf" / "trino" / "rules.json")}


def etc_dir(settings: Settings) -> Path:
    return settings.run_path / "trino-etc"


def render_etc(settings: Settings) -> Path:
    """Trino's etc folder: the repo's config files linked in, heap and node id rendered."""
    etc = etc_dir(settings)
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
    return etc


def initialize(settings: Settings, say) -> None:
    """Before each start: the TLS certificate (generated once, renewed before it expires)
    and the password file, rewritten from the env file so a changed password applies."""
    from lakehouse.stack import trino_security

    trino_security.ensure_certificate(settings)
    trino_security.write_password_file(settings)


def prepare(settings: Settings, say) -> None:
    from lakehouse.stack import artifacts

    artifacts.trino_home(settings)
    render_etc(settings)


def java_home(settings: Settings) -> Path:
    from lakehouse.stack.java import TRINO_JAVA, find_java

    return find_java(TRINO_JAVA, settings.trino_java_home)


def command(settings: Settings) -> list[str]:
    from lakehouse.stack import artifacts

    home = artifacts.trino_home_path(settings)
    return [str(home / "bin" / "launcher"), "run", f"--etc-dir={etc_dir(settings)}",
            f"--data-dir={settings.data_path / 'trino'}"]


def env(settings: Settings) -> dict[str, str]:
    java = java_home(settings)
    return {"JAVA_HOME": str(java), "PATH": f"{java / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def health(settings: Settings) -> tuple[bool, str]:
    try:
        # The client port: proves TLS with the generated certificate, not only the JVM.
        info = requests.get(f"{settings.trino_url}/v1/info", timeout=5,
                            verify=str(settings.trino_ca_file)).json()
    except (requests.RequestException, ValueError, OSError) as exc:
        return False, type(exc).__name__
    if info.get("starting", True):
        return False, "starting"
    return True, f"Trino {info.get('nodeVersion', {}).get('version', '?')}"


SERVICE = Service(
    name="trino",
    description="Trino 476: SQL on the lakehouse catalog over HTTPS (dbt, Superset, the CLI)",
    settings=Config,
    depends_on=("postgres", "minio"),
    ports=("trino_port", "trino_https_port"),
    # conf/trino/catalog/lakehouse.properties and config.properties read these. The users'
    # passwords are not among them: Trino reads their hashes from the password file.
    secrets=("catalog_db_password", "trino_s3_secret_key", "trino_internal_secret"),
    s3_users=(S3User("trino_s3_access_key", "trino_s3_secret_key", ("staging", "intermediate", "marts"),
                     "dbt's models and Trino-side maintenance"),),
    checks=(("java (Trino)", lambda s: str(java_home(s))),),
    prepare=prepare,
    initialize=initialize,
    programs=(Program(name="trino", command=command, env=env, health=health, start_timeout=240,
                      url=lambda s: s.trino_url),),
)
