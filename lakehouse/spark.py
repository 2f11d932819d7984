"""SparkSession on the shared Iceberg catalog, configured from conf/spark/spark-defaults.conf.

Scope: renders the defaults from the env file, puts the cached Iceberg/AWS/PostgreSQL jars
on the class path and pins Spark to a Java 17/21 JDK (never Trino's Java 25).

JVM start: on these 2-core machines a bare driver JVM takes ~13 s to start and its first job
~4 s more, most of it loading and verifying classes. The driver therefore uses a dynamic
AppCDS archive (JDK class-data sharing) kept in the cache: the first session on a machine
records the classes it loaded when its JVM exits (-XX:ArchiveClassesAtExit), every later
session maps them in (-XX:SharedArchiveFile), which roughly halves both. The archive is keyed
by the JDK, pyspark and jar versions; a stale or unusable archive only costs the speed-up,
the JVM ignores it (-Xshare:auto). Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import subprocess
from pathlib import Path

from lakehouse.errors import SettingsError
from lakehouse.settings import REPO_ROOT, Settings
from lakehouse.stack import artifacts
from lakehouse.stack.java import SPARK_JAVA, find_java

SPARK_DEFAULTS = REPO_ROOT / "conf" / "spark" / "spark-defaults.conf"
_VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")


def render_defaults(settings: Settings, path: Path = SPARK_DEFAULTS) -> dict[str, str]:
    """`key value` pairs of the defaults file with every ${VAR} filled from the settings."""
    env = settings.engine_env()
    conf: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue

        def fill(m: re.Match) -> str:
            if m.group(1) not in env:
                raise SettingsError(f"{path}:{lineno}: unknown variable ${{{m.group(1)}}}",
                                    "use a variable listed in .env.example")
            return env[m.group(1)]

        parts = _VAR.sub(fill, line).split(None, 1)
        if len(parts) != 2:
            raise SettingsError(f"{path}:{lineno}: expected `key value`", "fix that line")
        conf[parts[0]] = parts[1]
    return conf


def class_archive(settings: Settings, java_home: Path, jars: list[Path]) -> Path:
    """Where the driver's class-data archive for this JDK, pyspark and jar set lives."""
    import pyspark

    release = (java_home / "release").read_text() if (java_home / "release").exists() else ""
    ident = "\n".join([str(java_home.resolve()), release, pyspark.__version__,
                       *(f"{j.name}:{j.stat().st_size}" for j in jars)])
    digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
    return settings.cache_path / "spark-cds" / f"driver-{digest}.jsa"


def _archive_options(archive: Path) -> tuple[str, Path | None]:
    """JVM options that use the archive, or record it (returns the file being recorded)."""
    quiet = "-Xlog:cds=off -Xlog:cds+dynamic=off"  # its warnings would go to stdout
    if archive.is_file() and archive.stat().st_size > 0:
        return f"-XX:SharedArchiveFile={archive} {quiet}", None
    archive.parent.mkdir(parents=True, exist_ok=True)
    recording = archive.with_name(f"{archive.name}.{os.getpid()}.part")
    return f"-XX:ArchiveClassesAtExit={recording} {quiet}", recording


def _finish_recording(session, recording: Path, archive: Path) -> None:
    """Stop the JVM cleanly so it writes the archive, then publish it atomically."""
    try:
        proc = getattr(session.sparkContext._gateway, "proc", None)
        session.stop()
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()  # the gateway JVM exits on EOF and dumps the archive
            proc.wait(timeout=300)
        if recording.is_file() and recording.stat().st_size > 0 and not archive.exists():
            os.replace(recording, archive)
    except (OSError, subprocess.TimeoutExpired, RuntimeError):
        pass
    finally:
        recording.unlink(missing_ok=True)


def spark_session(settings: Settings, app_name: str = "lakehouse", master: str = "local[2]"):
    """A local SparkSession wired to the lakehouse catalog (starts a JVM: ~7-15 s)."""
    java_home = find_java(SPARK_JAVA, settings.spark_java_home)
    os.environ["JAVA_HOME"] = str(java_home)
    # The driver binds to the stack's address only (no other interface is ever used).
    os.environ["SPARK_LOCAL_IP"] = settings.host
    jars = artifacts.spark_jars(settings)
    from pyspark.sql import SparkSession  # imported late: pyspark is heavy

    archive = class_archive(settings, Path(java_home), jars)
    cds, recording = _archive_options(archive)
    builder = SparkSession.builder.appName(app_name).master(master)
    for key, value in render_defaults(settings).items():
        builder = builder.config(key, value)
    builder = builder.config("spark.jars", ",".join(str(j) for j in jars))
    builder = builder.config("spark.driver.extraJavaOptions", f"-Dlog4j2.level=WARN {cds}")
    session = builder.getOrCreate()
    if recording is not None:
        atexit.register(_finish_recording, session, recording, archive)
    return session
