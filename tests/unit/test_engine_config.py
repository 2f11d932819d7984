"""Engine config files take every value from the settings; none holds a value of its own."""

import re

import pytest

from lakehouse.errors import SettingsError
from lakehouse.settings import REPO_ROOT
from lakehouse.spark import SPARK_DEFAULTS, render_defaults

TRINO_CONF = REPO_ROOT / "conf" / "trino"


def test_spark_defaults_render_from_settings(settings):
    conf = render_defaults(settings)
    cat = settings.catalog_name
    assert conf[f"spark.sql.catalog.{cat}"] == "org.apache.iceberg.spark.SparkCatalog"
    assert conf[f"spark.sql.catalog.{cat}.uri"] == (
        f"jdbc:postgresql://127.0.0.1:{settings.postgres_port}/{settings.catalog_db}")
    # S3 credentials are the server's environment, never a setting a client could read back
    assert not any("access-key" in k or settings.spark_s3_secret_key.get_secret_value() in v
                   for k, v in conf.items())
    assert conf["spark.sql.execution.arrow.pyspark.enabled"] == "true"
    assert not any("${" in k or "${" in v for k, v in conf.items())


def test_spark_defaults_unknown_variable_is_named(settings, tmp_path):
    bad = tmp_path / "spark-defaults.conf"
    bad.write_text(SPARK_DEFAULTS.read_text() + "spark.x ${LAKEHOUSE_NOPE}\n")
    n = len(bad.read_text().splitlines())
    with pytest.raises(SettingsError, match=rf"spark-defaults.conf:{n}: unknown variable \$\{{LAKEHOUSE_NOPE\}}"):
        render_defaults(settings, bad)


def test_trino_files_use_only_known_variables(settings):
    env = settings.engine_env()
    for path in [TRINO_CONF / "config.properties", *sorted((TRINO_CONF / "catalog").glob("*.properties"))]:
        refs = re.findall(r"\$\{ENV:([A-Z0-9_]+)\}", path.read_text())
        assert refs, path
        assert set(refs) <= set(env), (path, set(refs) - set(env))


def test_no_credential_or_endpoint_literal_in_engine_configs():
    for path in TRINO_CONF.rglob("*.properties"):
        for line in path.read_text().splitlines():
            # (`password-authenticator.name=file` names a plugin, not a credential)
            if re.match(r"^(?![\w.-]*\.name=)[\w.-]*(password|secret|access-key|connection-url|endpoint|keystore)[\w.-]*=", line):
                assert "${ENV:" in line, f"{path.name}: {line}"
    for line in SPARK_DEFAULTS.read_text().splitlines():
        if re.search(r"(password|secret|access-key|\.uri)\s", line):
            assert "${LAKEHOUSE_" in line, line


def test_spark_connect_server_gets_its_secrets_from_the_environment_not_its_command_line(settings):
    from lakehouse.stack.services import spark

    argv = " ".join(spark.command(settings) + spark.submit_args(settings))
    env = spark.env(settings)
    token = settings.spark_connect_token.get_secret_value()
    assert env["SPARK_CONNECT_AUTHENTICATE_TOKEN"] == token
    assert env["AWS_SECRET_ACCESS_KEY"] == settings.spark_s3_secret_key.get_secret_value()
    assert token not in argv and settings.spark_s3_secret_key.get_secret_value() not in argv
    assert "--properties-file" in argv and spark.SERVER_CLASS in argv


def test_spark_connect_url_carries_the_token_the_way_grpc_will_send_it(settings):
    from lakehouse.spark import connect_url

    token = settings.spark_connect_token.get_secret_value()
    assert connect_url(settings).startswith(f"sc://localhost:{settings.spark_connect_port}/;token={token}")
    remote = settings.model_copy(update={"spark_connect_host": "spark.example.org"})
    assert f"use_ssl=true;token={token}" in connect_url(remote)
    private = remote.model_copy(update={"spark_connect_tls": False})
    assert connect_url(private).startswith(f"sc://spark.example.org:{settings.spark_connect_port}/;"
                                           f"authorization=Bearer%20{token}")
