"""Spark as a service: a Spark Connect server, the one Spark engine of the platform.

Every Spark job (ingestion, raw-layer maintenance, the demo's smoke load) is a light
client that sends plans to this server over gRPC (pyspark's Connect client: no JVM in the
client). The server keeps one warm driver with the Iceberg catalog configured on its side
(conf/spark/spark-defaults.conf, rendered at each start), so a batch costs its own work
and never a JVM start.

Only clients that present the generated token (LAKEHOUSE_SPARK_CONNECT_TOKEN) are served:
the server reads it from its environment (SPARK_CONNECT_AUTHENTICATE_TOKEN), never from
its command line, and binds to the stack's address only. Its S3 credentials come from
its environment too (the AWS SDK's default chain), so they are not Spark settings a
client could read back. The catalog database password is a Spark setting; the rendered
properties file is private to the stack's OS user (0600, run folder).

One machine outgrown: set LAKEHOUSE_SPARK_MASTER to a standalone cluster
(spark://host:7077) or Kubernetes (k8s://https://host:6443, plus the usual
spark.kubernetes.* settings in conf/spark/spark-defaults.conf); the server stays the
driver and the clients change nothing (docs/architecture.md).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field, SecretStr

from lakehouse.stack.registry import Program, S3User, Service, empty_means_default

if TYPE_CHECKING:
    from lakehouse.settings import Settings

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
# warnings and errors only, plus the start-up line (Spark's default INFO is ~200 KB a minute)
LOG_CONFIG = Path(__file__).resolve().parents[3] / "conf" / "spark" / "log4j2.properties"


class Config(BaseModel):
    # Where clients reach the server; empty = LAKEHOUSE_HOST.
    spark_connect_host: str | None = None
    spark_connect_port: int = Field(15002, ge=1, le=65535)
    # Clients present it as a bearer token; the server refuses any other.
    spark_connect_token: SecretStr
    # A server on another host is reached over TLS; false sends the token in clear, for a
    # private network only (compose's).
    spark_connect_tls: bool = True
    # Where the server's executors run: local threads on this machine, or a cluster
    # (spark://host:7077, k8s://https://host:6443).
    spark_master: str = "local[2]"
    # The server's S3 user: writes raw/, quarantine/ and audit/ only.
    spark_s3_access_key: str = "svc-spark"
    spark_s3_secret_key: SecretStr
    spark_java_home: Path | None = None
    # The server's heap (the driver's; on local[...] the executors share it). A batch's rows
    # arrive as one local relation unless staged as files (spark_staging_dir): 2g ran out of
    # memory on a 1M-row batch sent as a local relation, 4g did not.
    spark_driver_memory: str = Field("4g", pattern=r"^\d+[mgMG]$")
    # A folder both the ingest clients and the server's executors read, through which a large
    # batch's valid rows reach the server as Parquet files rather than as one local relation
    # (which the driver converts on one thread). Empty: <data dir>/spark/staging when the
    # server is this stack's own (no LAKEHOUSE_SPARK_CONNECT_HOST) on a local[...] master,
    # else none; "off": never.
    spark_staging_dir: str | None = None

    empty_spark = empty_means_default("spark_connect_host", "spark_java_home", "spark_staging_dir")

    @property
    def spark_connect_address(self) -> str:
        return self.spark_connect_host or self.host

    @property
    def spark_staging_path(self) -> Path | None:
        """Where large batches are staged for the server, or None (they travel in the plan)."""
        if self.spark_staging_dir == "off":
            return None
        if self.spark_staging_dir:
            return Path(self.spark_staging_dir)
        if self.spark_connect_host is None and self.spark_master.startswith("local"):
            return self.data_path / "spark" / "staging"
        return None

    def derived_env(self) -> dict[str, str]:
        return {"LAKEHOUSE_SPARK_CONNECT_HOST": self.spark_connect_address}


def java_home(settings: Settings) -> Path:
    from lakehouse.stack.java import SPARK_JAVA, find_java

    return find_java(SPARK_JAVA, settings.spark_java_home)


def spark_home() -> Path:
    """pyspark's own distribution: bin/spark-submit and the jars, Spark Connect's included."""
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    return Path(spec.origin).parent


def properties_file(settings: Settings) -> Path:
    return settings.run_path / "spark-connect.conf"


def write_properties(settings: Settings) -> Path:
    """The server's properties, rendered from conf/spark/spark-defaults.conf and the settings
    (private: they hold the catalog database password)."""
    from lakehouse.spark import render_defaults
    from lakehouse.stack import artifacts
    from lakehouse.stack.checks import write_private

    conf = render_defaults(settings)
    conf["spark.jars"] = ",".join(str(j) for j in artifacts.spark_jars(settings))
    conf["spark.connect.grpc.binding.address"] = settings.spark_connect_address
    conf["spark.connect.grpc.binding.port"] = str(settings.spark_connect_port)
    return write_private(properties_file(settings), "".join(f"{k} {v}\n" for k, v in conf.items()))


def prepare(settings: Settings, say) -> None:
    from lakehouse.stack import artifacts

    artifacts.spark_jars(settings)


def submit_args(settings: Settings) -> list[str]:
    return ["--class", SERVER_CLASS, "--name", "lakehouse-spark-connect", "--master", settings.spark_master,
            "--driver-memory", settings.spark_driver_memory, "--properties-file", str(properties_file(settings)),
            "--driver-java-options", f"-Dlog4j2.configurationFile={LOG_CONFIG}"]


def command(settings: Settings) -> list[str]:
    """`serve` below, which becomes the server's JVM (no shell in between)."""
    import sys

    return [sys.executable, "-m", "lakehouse.stack.services.spark"]


def jvm_command(settings: Settings, environ: dict[str, str]) -> list[str]:
    """The server's java command line, as Spark's launcher builds it for spark-submit (the
    launcher library prints it, NUL-separated). bin/spark-class would do the same and then
    exec, leaving the launcher's shell behind as a zombie child of the JVM."""
    import subprocess

    from lakehouse.errors import LakehouseError

    java = Path(environ["JAVA_HOME"]) / "bin" / "java"
    proc = subprocess.run([str(java), "-Xmx128m", "-cp", str(spark_home() / "jars" / "*"),
                           "org.apache.spark.launcher.Main", "org.apache.spark.deploy.SparkSubmit",
                           *submit_args(settings)], env=environ, capture_output=True, timeout=120)
    # the launcher prints NUL and a newline, then each argument followed by NUL
    argv = [a.lstrip(b"\n").decode() for a in proc.stdout.split(b"\0") if a.lstrip(b"\n")]
    if proc.returncode != 0 or not argv:
        raise LakehouseError(f"Spark's launcher failed (exit {proc.returncode}): "
                             f"{proc.stderr.decode(errors='replace')[-1000:]}",
                             "check LAKEHOUSE_SPARK_JAVA_HOME (a Java 17 or 21 JDK) and the pyspark install")
    return argv


def env(settings: Settings) -> dict[str, str]:
    java = java_home(settings)
    return {"JAVA_HOME": str(java), "SPARK_HOME": str(spark_home()),
            # what bin/load-spark-env.sh sets for Spark's launcher (Spark 4 is Scala 2.13 only)
            "SPARK_SCALA_VERSION": "2.13",
            # The driver binds to the stack's address only (no other interface is used).
            "SPARK_LOCAL_IP": settings.host,
            "SPARK_CONNECT_AUTHENTICATE_TOKEN": settings.spark_connect_token.get_secret_value(),
            "AWS_ACCESS_KEY_ID": settings.spark_s3_access_key,
            "AWS_SECRET_ACCESS_KEY": settings.spark_s3_secret_key.get_secret_value(),
            "AWS_REGION": settings.s3_region}


def health(settings: Settings) -> tuple[bool, str]:
    """The gRPC port accepts connections: the server opens it once its driver is up."""
    try:
        with socket.create_connection((settings.spark_connect_address, settings.spark_connect_port), timeout=3):
            pass
    except OSError as exc:
        return False, type(exc).__name__
    return True, f"Spark Connect ({settings.spark_master})"


SERVICE = Service(
    name="spark",
    description="Spark Connect 4.1: the warm Spark engine every ingest and maintenance job uses",
    settings=Config,
    depends_on=("postgres", "minio"),
    ports=("spark_connect_port",),
    secrets=("catalog_db_password", "spark_s3_secret_key", "spark_connect_token"),
    s3_users=(S3User("spark_s3_access_key", "spark_s3_secret_key", ("raw", "quarantine", "audit"),
                     "the Spark Connect server: ingestion and raw-layer maintenance"),),
    checks=(("java (Spark)", lambda s: str(java_home(s))),),
    prepare=prepare,
    programs=(Program(name="spark-connect", command=command, env=env, health=health, start_timeout=240,
                      stop_wait=60, url=lambda s: f"sc://{s.spark_connect_address}:{s.spark_connect_port}"),),
)


def serve() -> None:
    """Run the server in the foreground, as this process: render its properties, then become
    its JVM. The supervisor runs it with `env` (and the secrets the service declares) in the
    environment; compose runs it with the env file."""
    import os

    from lakehouse.settings import load_settings

    settings = load_settings()
    write_properties(settings)
    environ = {**os.environ, **env(settings)}
    argv = jvm_command(settings, environ)
    os.execve(argv[0], argv, environ)


if __name__ == "__main__":
    serve()
