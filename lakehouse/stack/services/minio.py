"""MinIO: the S3 object store holding the warehouse bucket.

Built once with `go install` at a pinned pseudo-version (lakehouse.stack.artifacts). Its
root user is used only to provision: the bucket, and one S3 user and policy for every
`S3User` a service declares. The S3 endpoint stays a setting, so any S3 can replace it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field, SecretStr

from lakehouse.stack.checks import http_ok
from lakehouse.stack.registry import Program, S3User, Service, empty_means_default

if TYPE_CHECKING:
    from lakehouse.settings import Settings


class Config(BaseModel):
    # Where clients reach it; empty = LAKEHOUSE_HOST.
    minio_host: str | None = None
    minio_port: int = Field(9000, ge=1, le=65535)
    minio_console_port: int = Field(9001, ge=1, le=65535)
    minio_root_user: SecretStr
    minio_root_password: SecretStr

    empty_minio = empty_means_default("minio_host")

    @property
    def minio_address(self) -> str:
        return self.minio_host or self.host

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.minio_address}:{self.minio_port}"

    def derived_env(self) -> dict[str, str]:
        # Derived, not settable: the S3 endpoint engines use (compose sets its own).
        return {"LAKEHOUSE_MINIO_HOST": self.minio_address, "LAKEHOUSE_S3_ENDPOINT": self.s3_endpoint}


def binary(settings: Settings):
    from lakehouse.stack import artifacts

    return artifacts.minio_binary_path(settings)


def prepare(settings: Settings, say) -> None:
    from lakehouse.stack import artifacts

    artifacts.minio_binary(settings)


def check_go(settings: Settings) -> str:
    """Go is needed only until MinIO is built into the cache."""
    import shutil

    from lakehouse.errors import PreflightError

    if binary(settings).is_file():
        return f"not needed: MinIO already built ({binary(settings).name})"
    go = shutil.which("go")
    if go is None:
        raise PreflightError("`go` not on PATH; MinIO is built with `go install` on first run",
                             "install Go 1.24+ (apt-get install golang-go, or go.dev/dl)")
    return go


def command(settings: Settings) -> list[str]:
    return [str(binary(settings)), "server", str(settings.data_path / "minio"),
            "--address", f"{settings.host}:{settings.minio_port}",
            "--console-address", f"{settings.host}:{settings.minio_console_port}", "--quiet"]


def env(settings: Settings) -> dict[str, str]:
    return {"MINIO_ROOT_USER": settings.minio_root_user.get_secret_value(),
            "MINIO_ROOT_PASSWORD": settings.minio_root_password.get_secret_value(),
            "MINIO_BROWSER_REDIRECT": "false", "MINIO_UPDATE": "off"}


def provision(settings: Settings, say) -> None:
    from lakehouse.stack import provision as prov
    from lakehouse.stack import registry

    prov.ensure_bucket(settings)
    for _svc, user in registry.load().s3_users():
        prov.ensure_s3_user(settings, getattr(settings, user.access_key),
                            getattr(settings, user.secret_key).get_secret_value(), list(user.writes))


SERVICE = Service(
    name="minio",
    description="MinIO: S3 object storage for the warehouse bucket",
    settings=Config,
    ports=("minio_port", "minio_console_port"),
    secrets=("minio_root_user", "minio_root_password"),
    # The S3 user of read-only client processes (pyiceberg, DuckDB), which have no server
    # module of their own. A server's own S3 user is declared in its module (spark.py, trino.py).
    s3_users=(
        S3User("reader_s3_access_key", "reader_s3_secret_key", (),
               "pyiceberg, DuckDB: read everything, write nothing"),
    ),
    checks=(("go", check_go),),
    prepare=prepare,
    provision=provision,
    programs=(Program(
        name="minio", command=command, env=env, start_timeout=60,
        health=lambda s: http_ok(f"{s.s3_endpoint}/minio/health/ready"),
        url=lambda s: f"{s.s3_endpoint} (S3), http://{s.host}:{s.minio_console_port} (console)"),),
)
