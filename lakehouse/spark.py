"""Spark sessions: light clients of the platform's Spark Connect server.

Scope: renders conf/spark/spark-defaults.conf from the env file (for the server, see
lakehouse/stack/services/spark.py), and opens client sessions to the server. A client
starts no JVM and imports no heavy engine code: pyspark's Connect client sends plans over
gRPC, and the server's warm driver runs them on its Iceberg catalog.

Errors are clear: a server that is down, or refuses the token, is a SparkUnavailable
naming the address and what to do, raised before any work starts. A server that goes away
mid-job is retried for about 45 s (a supervised restart takes ~10 s), then fails.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

from lakehouse.errors import LakehouseError, SettingsError
from lakehouse.settings import REPO_ROOT, Settings

SPARK_DEFAULTS = REPO_ROOT / "conf" / "spark" / "spark-defaults.conf"
_VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")
# Connect's own policy waits at least 10 minutes for a server; a job here waits ~45 s
# (50 ms x 4^k, capped at 10 s, 8 retries), then says so.
RETRIES = {"max_retries": 8, "max_backoff": 10_000}


class SparkUnavailable(LakehouseError):
    """The Spark Connect server can't be reached, or refuses this client."""


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


def connect_url(settings: Settings, user_agent: str = "lakehouse") -> str:
    """The sc:// address, carrying the token. gRPC sends call credentials over a secure
    channel only: to a loopback server pyspark uses gRPC's local credentials (no TLS, the
    name must be `localhost`); to another host TLS (LAKEHOUSE_SPARK_CONNECT_TLS=true, the
    default), or else, on a private network such as compose's, the token as a plain
    `authorization` header."""
    host = settings.spark_connect_address
    token = settings.spark_connect_token.get_secret_value()
    port = settings.spark_connect_port
    if host in ("127.0.0.1", "localhost", "::1"):
        return f"sc://localhost:{port}/;token={token};user_agent={user_agent}"
    if settings.spark_connect_tls:
        return f"sc://{host}:{port}/;use_ssl=true;token={token};user_agent={user_agent}"
    return f"sc://{host}:{port}/;authorization=Bearer%20{token};user_agent={user_agent}"


def where(settings: Settings) -> str:
    return f"sc://{settings.spark_connect_address}:{settings.spark_connect_port}"


def spark_session(settings: Settings, app_name: str = "lakehouse"):
    """A client session on the Spark Connect server (no JVM here). SparkUnavailable when
    the server is down or refuses the token."""
    try:
        with socket.create_connection((settings.spark_connect_address, settings.spark_connect_port), timeout=5):
            pass
    except OSError as exc:
        raise SparkUnavailable(f"the Spark Connect server at {where(settings)} is not reachable "
                               f"({type(exc).__name__}: {exc}); nothing was written",
                               "start it with `lakehouse up` (`lakehouse status` shows it; "
                               "`lakehouse logs spark-connect` says why it stopped)") from exc
    from pyspark.errors.exceptions.connect import SparkConnectGrpcException
    from pyspark.sql import SparkSession  # the Connect client: gRPC and Arrow, no JVM
    from pyspark.sql.connect.client.retries import DefaultPolicy

    session = SparkSession.builder.remote(connect_url(settings, app_name)).create()
    session.client.set_retry_policies([DefaultPolicy(**RETRIES)])
    try:
        session.version  # one round trip: proves the token before any work starts
    except SparkConnectGrpcException as exc:
        text = str(exc)
        if "UNAUTHENTICATED" in text or "authentication" in text.lower():
            raise SparkUnavailable(f"the Spark Connect server at {where(settings)} refused this client's "
                                   "token; nothing was written",
                                   "LAKEHOUSE_SPARK_CONNECT_TOKEN must be the server's: after changing it "
                                   "in .env, restart the stack (`lakehouse down`, `lakehouse up`)") from exc
        raise SparkUnavailable(f"the Spark Connect server at {where(settings)} failed: {text[:300]}",
                               "`lakehouse logs spark-connect` shows the server's side") from exc
    return session


def stop_session(session) -> None:
    """Release the session on the server and close the channel. The client first waits for
    the ReleaseExecute calls it still sends in the background after each operation: sent
    after the release, each would fail and log a warning."""
    from pyspark.sql.connect.client.reattach import ExecutePlanResponseReattachableIterator

    ExecutePlanResponseReattachableIterator.shutdown()
    session.stop()
