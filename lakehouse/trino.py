"""Trino access: a DB-API connection for code, and the Trino CLI for people."""

from __future__ import annotations

import os
import subprocess

import trino

from lakehouse.settings import Settings
from lakehouse.stack import artifacts
from lakehouse.stack.java import SPARK_JAVA, find_java

# Until Trino authentication arrives (Superset issue), the platform connects as this user.
PLATFORM_USER = "lakehouse"


def connect(settings: Settings, schema: str | None = None, user: str = PLATFORM_USER):
    return trino.dbapi.connect(host=settings.trino_address, port=settings.trino_port, user=user,
                               catalog=settings.catalog_name, schema=schema, http_scheme="http")


def query(settings: Settings, sql: str, schema: str | None = None) -> list[tuple]:
    return query_with_columns(settings, sql, schema)[1]


def query_with_columns(settings: Settings, sql: str, schema: str | None = None) -> tuple[list[str], list[tuple]]:
    conn = connect(settings, schema)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        rows = [tuple(r) for r in cur.fetchall()]
        return [d[0] for d in cur.description or []], rows
    finally:
        conn.close()


def cli(settings: Settings, statement: str | None = None, output_format: str | None = None) -> int:
    """Run the Trino CLI jar: interactive, or one statement (`--execute`) for scripts."""
    jar = artifacts.trino_cli_jar(settings)
    # The CLI needs Java 11+; the Java 17/21 JDK avoids Java 24+'s native-access warnings.
    java = find_java(SPARK_JAVA, settings.spark_java_home) / "bin" / "java"
    quiet = ["-Dorg.jline.terminal.dumb=true"] if statement is not None else []
    cmd = [str(java), *quiet, "-jar", str(jar), f"--server={settings.trino_url}",
           f"--catalog={settings.catalog_name}", f"--user={PLATFORM_USER}"]
    if statement is not None:
        cmd += [f"--execute={statement}"]
        if output_format:
            cmd += [f"--output-format={output_format}"]
    return subprocess.call(cmd, env={**os.environ, "TRINO_PAGER": os.environ.get("TRINO_PAGER", "less -SFX")})
