"""Pinned third-party components of the native stack, and how each lands in the cache.

Every pin says why it is that version. Downloads come from Maven Central and are verified
against the digest published beside them; MinIO is built by `go install`, which verifies
every module against the Go checksum database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from lakehouse.errors import DownloadError, PreflightError
from lakehouse.stack.downloads import Artifact, ensure

if TYPE_CHECKING:  # the settings class is built from the service modules
    from lakehouse.settings import Settings

MAVEN = "https://repo1.maven.org/maven2"

# Trino 476: the newest Trino on Maven Central (477+ ship on GitHub only). Needs Java 24+.
TRINO_VERSION = "476"
# Same release as the server, so the CLI speaks the same protocol.
TRINO_CLI_VERSION = "476"
# Iceberg 1.11.0: the release that ships a runtime for Spark 4.1 (and only up to 4.1).
ICEBERG_VERSION = "1.11.0"
# PostgreSQL JDBC driver for the Iceberg JDBC catalog; 42.7.x is the current stable line.
POSTGRES_JDBC_VERSION = "42.7.14"
# MinIO: a pseudo-version after RELEASE.2025-10-15T17-29-55Z (fixes CVE-2025-62506). The
# repository is archived, so this is its last commit; the S3 endpoint stays a setting so
# Versity Gateway (or any S3) can replace it.
MINIO_MODULE = "github.com/minio/minio"
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"


def _maven(group: str, artifact: str, version: str, classifier: str = "", ext: str = "jar") -> Artifact:
    name = f"{artifact}-{version}{'-' + classifier if classifier else ''}.{ext}"
    return Artifact(name, f"{MAVEN}/{group.replace('.', '/')}/{artifact}/{version}/{name}")


TRINO_SERVER = _maven("io.trino", "trino-server", TRINO_VERSION, ext="tar.gz")
TRINO_CLI = _maven("io.trino", "trino-cli", TRINO_CLI_VERSION, classifier="executable")
SPARK_JARS = (
    _maven("org.apache.iceberg", "iceberg-spark-runtime-4.1_2.13", ICEBERG_VERSION),
    _maven("org.apache.iceberg", "iceberg-aws-bundle", ICEBERG_VERSION),
    _maven("org.postgresql", "postgresql", POSTGRES_JDBC_VERSION),
)


def downloads_dir(settings: Settings) -> Path:
    return settings.cache_path / "downloads"


def trino_home(settings: Settings) -> Path:
    """The unpacked Trino server, unpacking it once from the cached tarball."""
    home = trino_home_path(settings)
    if (home / "bin" / "launcher").exists():
        return home
    tarball = ensure(TRINO_SERVER, downloads_dir(settings))
    home.parent.mkdir(parents=True, exist_ok=True)
    print(f"  unpacking {tarball.name} ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(dir=home.parent, prefix=".unpack-") as tmp:
        with tarfile.open(tarball) as tf:
            tf.extractall(tmp, filter="tar")
        os.replace(Path(tmp) / f"trino-server-{TRINO_VERSION}", home)
    return home


def trino_cli_jar(settings: Settings) -> Path:
    return ensure(TRINO_CLI, downloads_dir(settings))


def spark_jars(settings: Settings) -> list[Path]:
    return [ensure(a, downloads_dir(settings)) for a in SPARK_JARS]


def minio_binary_path(settings: Settings) -> Path:
    """Where the pinned MinIO binary lives in the cache (built or not)."""
    return settings.cache_path / "bin" / f"minio-{MINIO_VERSION}"


def trino_home_path(settings: Settings) -> Path:
    """Where the unpacked Trino server lives in the cache (unpacked or not)."""
    return settings.cache_path / "opt" / f"trino-server-{TRINO_VERSION}"


def minio_binary(settings: Settings) -> Path:
    """The pinned MinIO server binary, built once with `go install` into the cache."""
    target = minio_binary_path(settings)
    if target.is_file():
        return target
    go = shutil.which("go")
    if go is None:
        raise PreflightError("`go` is not on PATH; MinIO is built with `go install`",
                             "install Go 1.24+ (https://go.dev/dl or `apt-get install golang`)")
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"  building MinIO {MINIO_VERSION} with go install (first run only, a few minutes) ...",
          file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".gobin-") as gobin:
        env = {**os.environ, "GOBIN": gobin, "CGO_ENABLED": "0"}
        proc = subprocess.run([go, "install", f"{MINIO_MODULE}@{MINIO_VERSION}"], env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
            raise DownloadError(f"`go install {MINIO_MODULE}@{MINIO_VERSION}` failed:\n{tail}",
                                "check Go (1.24+), the Go module proxy and free disk")
        os.replace(Path(gobin) / "minio", target)
    return target


def client_artifacts(settings: Settings) -> dict[str, Path]:
    """What client processes need (Spark's jars, the Trino CLI), fetched at `up` so that
    everything after the first start works offline."""
    return {"trino-cli": trino_cli_jar(settings), **{p.name: p for p in spark_jars(settings)}}
