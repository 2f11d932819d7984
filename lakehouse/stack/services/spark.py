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
    # The server's heap (the driver's; on local[...] the executors share it).
    spark_driver_memory: str = Field("2g", pattern=r"^\d+[mgMG]$")

    empty_spark = empty_means_default("spark_connect_host", "spark_java_home")

    @property
    def spark_connect_address(self) -> str:
        return self.spark_connect_host or self.host

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


def initialize(settings: Settings, say) -> None:
    """Before each start: the server's properties, rendered from conf/spark/spark-defaults.conf
    and the env file (private: they hold the catalog database password)."""
    from lakehouse.spark import render_defaults
    from lakehouse.stack import artifacts
    from lakehouse.stack.checks import write_private

    conf = render_defaults(settings)
    conf["spark.jars"] = ",".join(str(j) for j in artifacts.spark_jars(settings))
    conf["spark.connect.grpc.binding.address"] = settings.spark_connect_address
    conf["spark.connect.grpc.binding.port"] = str(settings.spark_connect_port)
    write_private(properties_file(settings), "".join(f"{k} {v}\n" for k, v in conf.items()))


def prepare(settings: Settings, say) -> None:
    from lakehouse.stack import artifacts

    artifacts.spark_jars(settings)


def command(settings: Settings) -> list[str]:
    return [str(spark_home() / "bin" / "spark-submit"), "--class", SERVER_CLASS,
            "--name", "lakehouse-spark-connect", "--master", settings.spark_master,
            "--driver-memory", settings.spark_driver_memory,
            "--properties-file", str(properties_file(settings))]


def env(settings: Settings) -> dict[str, str]:
    java = java_home(settings)
    return {"JAVA_HOME": str(java), "SPARK_HOME": str(spark_home()),
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
    initialize=initialize,
    programs=(Program(name="spark-connect", command=command, env=env, health=health, start_timeout=240,
                      stop_wait=60, url=lambda s: f"sc://{s.spark_connect_address}:{s.spark_connect_port}"),),
)


def serve() -> None:
    """Run the server in the foreground with the settings of this environment: compose's
    entry point (the native stack's supervisor runs `command` with `env` itself)."""
    import os

    from lakehouse.settings import load_settings

    settings = load_settings()
    initialize(settings, print)
    argv = command(settings)
    os.execve(argv[0], argv, {**os.environ, **env(settings)})


if __name__ == "__main__":
    serve()
