"""Trino access: a DB-API connection for code, and the Trino CLI for people."""

from __future__ import annotations

import os
import subprocess

import requests
import trino

from lakehouse.settings import Settings
from lakehouse.stack import artifacts, trino_security
from lakehouse.stack.java import SPARK_JAVA, find_java

# The platform's own Trino user (operators, provisioning, tests); rules.json grants it all.
PLATFORM_USER = "lakehouse"


def connect(settings: Settings, schema: str | None = None, user: str = PLATFORM_USER,
            password: str | None = None):
    """HTTPS with the user's password from the env file; the certificate is pinned."""
    if password is None:
        password = trino_security.user_passwords(settings)[user]
    return trino.dbapi.connect(
        host=settings.trino_address, port=settings.trino_https_port, user=user,
        catalog=settings.catalog_name, schema=schema, http_scheme="https",
        auth=trino.auth.BasicAuthentication(user, password), http_session=pinned_session(settings))


def pinned_session(settings: Settings) -> requests.Session:
    """A requests session that trusts only the platform's Trino certificate.

    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (set system-wide on many machines)
    override a session's `verify`, so the environment is not consulted here. Processes
    we start (dbt, Superset) get those variables emptied instead (`CA_BUNDLE_OVERRIDE`).
    """
    session = requests.Session()
    session.trust_env = False
    session.verify = str(settings.trino_ca_file)
    return session


# For child processes whose Trino client we don't construct: empty values make requests
# fall back to the `verify` the client passes (the platform's certificate).
CA_BUNDLE_OVERRIDE = {"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": ""}


def query(settings: Settings, sql: str, schema: str | None = None, user: str = PLATFORM_USER) -> list[tuple]:
    return query_with_columns(settings, sql, schema, user)[1]


def query_with_columns(settings: Settings, sql: str, schema: str | None = None,
                       user: str = PLATFORM_USER) -> tuple[list[str], list[tuple]]:
    conn = connect(settings, schema, user)
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
    # --password makes the CLI read TRINO_PASSWORD from its environment, not a prompt.
    cmd = [str(java), *quiet, "-jar", str(jar), f"--server={settings.trino_url}",
           f"--catalog={settings.catalog_name}", f"--user={PLATFORM_USER}", "--password",
           f"--truststore-path={settings.trino_ca_file}"]
    if statement is not None:
        cmd += [f"--execute={statement}"]
        if output_format:
            cmd += [f"--output-format={output_format}"]
    env = {**os.environ, "TRINO_PAGER": os.environ.get("TRINO_PAGER", "less -SFX"),
           "TRINO_PASSWORD": trino_security.user_passwords(settings)[PLATFORM_USER]}
    return subprocess.call(cmd, env=env)
