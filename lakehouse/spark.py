"""SparkSession on the shared Iceberg catalog, configured from conf/spark/spark-defaults.conf.

Scope: renders the defaults from the env file, puts the cached Iceberg/AWS/PostgreSQL jars
on the class path and pins Spark to a Java 17/21 JDK (never Trino's Java 25).
"""

from __future__ import annotations

import os
import re
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


def spark_session(settings: Settings, app_name: str = "lakehouse", master: str = "local[2]"):
    """A local SparkSession wired to the lakehouse catalog (starts a JVM: ~10-20 s)."""
    os.environ["JAVA_HOME"] = str(find_java(SPARK_JAVA, settings.spark_java_home))
    # The driver binds to the stack's address only (no other interface is ever used).
    os.environ["SPARK_LOCAL_IP"] = settings.host
    jars = artifacts.spark_jars(settings)
    from pyspark.sql import SparkSession  # imported late: pyspark is heavy

    builder = SparkSession.builder.appName(app_name).master(master)
    for key, value in render_defaults(settings).items():
        builder = builder.config(key, value)
    builder = builder.config("spark.jars", ",".join(str(j) for j in jars))
    builder = builder.config("spark.driver.extraJavaOptions", "-Dlog4j2.level=WARN")
    return builder.getOrCreate()
