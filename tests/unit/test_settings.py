"""The env file: generated once with random secrets, read strictly, errors that name the line."""

import os
import pwd
import re
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from lakehouse.errors import SettingsError
from lakehouse.settings import ENV_EXAMPLE, PREFIX, Settings, generate_env_file, load_settings, secret_fields


def test_first_run_generates_env_file_with_mode_0600_and_random_secrets(tmp_path):
    a = load_settings(tmp_path / "a.env")
    b = load_settings(tmp_path / "b.env")
    assert stat.S_IMODE((tmp_path / "a.env").stat().st_mode) == 0o600
    for name in secret_fields():
        va, vb = getattr(a, name).get_secret_value(), getattr(b, name).get_secret_value()
        assert len(va) >= 8 and va != vb, name


def test_second_load_keeps_the_same_secrets(tmp_path):
    path = tmp_path / ".env"
    first = load_settings(path).catalog_db_password.get_secret_value()
    assert load_settings(path).catalog_db_password.get_secret_value() == first


def test_env_example_lists_every_setting_and_nothing_else():
    example = {m.group(1) for m in re.finditer(r"^([A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.M)}
    fields = {PREFIX + n.upper() for n in Settings.model_fields}
    assert example == fields


def test_env_example_has_a_comment_for_every_variable():
    lines = ENV_EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[A-Z0-9_]+=", line):
            above = [ln for ln in lines[max(0, i - 8):i] if ln.strip()]
            assert any(ln.startswith("#") for ln in above), f"no comment near {line}"


def test_env_example_holds_no_secret_value():
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"^([A-Z0-9_]+)=(.*)$", line)
        if m and m.group(1)[len(PREFIX):].lower() in secret_fields():
            assert m.group(2) == "", f"{m.group(1)} must be empty in .env.example"


def test_process_environment_overrides_the_file(tmp_path, monkeypatch):
    path = tmp_path / ".env"
    load_settings(path)
    monkeypatch.setenv("LAKEHOUSE_TRINO_PORT", "18123")
    assert load_settings(path).trino_port == 18123


def test_missing_env_file_with_existing_state_is_refused(tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "postgres").mkdir(parents=True)
    (data / "postgres" / "PG_VERSION").write_text("15\n")
    with pytest.raises(SettingsError, match="missing, but .* holds state"):
        load_settings(tmp_path / ".env")
    assert not (tmp_path / ".env").exists()


def test_missing_env_file_without_create_names_the_path(tmp_path):
    with pytest.raises(SettingsError, match=r"\.env does not exist"):
        load_settings(tmp_path / ".env", create=False)


def test_env_file_that_is_a_directory(tmp_path):
    (tmp_path / ".env").mkdir()
    with pytest.raises(SettingsError, match="not a regular file"):
        load_settings(tmp_path / ".env")


def test_unreadable_env_file(tmp_path):
    """A file the current user may not read. Root reads anything, so as root the load runs
    in a child process that became `nobody`, on a root-owned 0600 file."""
    folder = Path(tempfile.mkdtemp(prefix="lh-unreadable-"))
    try:
        os.chmod(folder, 0o755)
        path = folder / ".env"
        load_settings(path)
        if os.geteuid() != 0:
            os.chmod(path, 0o000)
            with pytest.raises(SettingsError, match="unreadable: Permission denied"):
                load_settings(path, create=False)
            return
        # fork (no exec: the interpreter lives under /root) and drop to `nobody` in the child
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(read_end)
            try:
                os.setgid(pwd.getpwnam("nobody").pw_gid)
                os.setuid(pwd.getpwnam("nobody").pw_uid)
                load_settings(path, create=False)
                msg = "loaded"
            except SettingsError as exc:
                msg = str(exc)
            except BaseException as exc:  # noqa: BLE001 - report anything to the parent
                msg = f"{type(exc).__name__}: {exc}"
            os.write(write_end, msg.encode())
            os._exit(0)
        os.close(write_end)
        os.waitpid(pid, 0)
        msg = os.read(read_end, 4096).decode()
        os.close(read_end)
        assert "unreadable: Permission denied" in msg, msg
        assert str(path) in msg
    finally:
        shutil.rmtree(folder)


def test_env_file_not_utf8(tmp_path):
    path = tmp_path / ".env"
    path.write_bytes(b"LAKEHOUSE_HOST=\xff\xfe\n")
    os.chmod(path, 0o600)
    with pytest.raises(SettingsError, match="not valid UTF-8"):
        load_settings(path)


def test_malformed_line_is_named_with_its_number(tmp_path):
    path = tmp_path / ".env"
    load_settings(path)
    with open(path, "a") as fh:
        fh.write("this is not a setting\n")
    n = len(path.read_text().splitlines())
    with pytest.raises(SettingsError, match=rf"\.env:{n}: expected KEY=VALUE"):
        load_settings(path)


def test_unknown_variable_is_named(tmp_path):
    path = tmp_path / ".env"
    load_settings(path)
    with open(path, "a") as fh:
        fh.write("LAKEHOUSE_TRINO_PROT=8080\n")
    with pytest.raises(SettingsError, match="unknown variable LAKEHOUSE_TRINO_PROT"):
        load_settings(path)


def test_invalid_value_names_the_variable(tmp_path):
    path = tmp_path / ".env"
    load_settings(path)
    path.write_text(path.read_text().replace("LAKEHOUSE_TRINO_PORT=8080", "LAKEHOUSE_TRINO_PORT=eighty"))
    with pytest.raises(SettingsError, match="LAKEHOUSE_TRINO_PORT"):
        load_settings(path)


def test_empty_secret_is_refused(tmp_path):
    path = tmp_path / ".env"
    load_settings(path)
    text = re.sub(r"^LAKEHOUSE_CATALOG_DB_PASSWORD=.*$", "LAKEHOUSE_CATALOG_DB_PASSWORD=", path.read_text(), flags=re.M)
    path.write_text(text)
    with pytest.raises(SettingsError, match="LAKEHOUSE_CATALOG_DB_PASSWORD"):
        load_settings(path)


def test_world_readable_env_file_is_refused(tmp_path):
    path = tmp_path / ".env"
    load_settings(path)
    os.chmod(path, 0o644)
    with pytest.raises(SettingsError, match="chmod 600"):
        load_settings(path)


def test_engine_env_carries_every_setting_and_the_derived_endpoints(settings):
    env = settings.engine_env()
    for name in Settings.model_fields:
        assert PREFIX + name.upper() in env
    assert env["LAKEHOUSE_S3_ENDPOINT"] == f"http://127.0.0.1:{settings.minio_port}"
    assert env["LAKEHOUSE_POSTGRES_HOST"] == "127.0.0.1"


def test_an_older_env_file_gets_the_new_secrets_appended_and_keeps_the_rest(tmp_path):
    path = tmp_path / ".env"
    generate_env_file(path)
    old = [ln for ln in path.read_text().splitlines()
           if not ln.startswith(("LAKEHOUSE_SUPERSET_SECRET_KEY=", "LAKEHOUSE_TRINO_DBT_PASSWORD="))]
    path.write_text("\n".join(old) + "\n")
    kept = load_settings(path)
    text = path.read_text()
    assert text.startswith("\n".join(old))  # nothing before the appended block changed
    added = text[len("\n".join(old)) + 1:].splitlines()
    assert added[0].startswith("#") and sorted(a.split("=")[0] for a in added[1:]) == [
        "LAKEHOUSE_SUPERSET_SECRET_KEY", "LAKEHOUSE_TRINO_DBT_PASSWORD"]
    assert len(kept.superset_secret_key.get_secret_value()) >= 32
    assert load_settings(path).trino_dbt_password == kept.trino_dbt_password  # stable from then on


def test_generated_airflow_fernet_key_is_a_valid_fernet_key(settings):
    from cryptography.fernet import Fernet

    key = settings.airflow_fernet_key.get_secret_value()
    token = Fernet(key.encode()).encrypt(b"connection password")  # raises on a malformed key
    assert Fernet(key.encode()).decrypt(token) == b"connection password"


def test_airflow_settings_share_the_generated_keys_and_avoid_trinos_port(settings):
    from lakehouse.stack.services.airflow import airflow_settings

    env = airflow_settings(settings)
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == settings.airflow_jwt_secret.get_secret_value()
    assert env["AIRFLOW__CORE__FERNET_KEY"] == settings.airflow_fernet_key.get_secret_value()
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8070/execution/"
    assert settings.airflow_port != settings.trino_port
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert str(settings.data_path) in env["AIRFLOW_HOME"]


@pytest.mark.parametrize("update, expected", [
    ({}, "default"),                                           # this stack's own server, local[2]
    ({"spark_connect_host": "spark.example.org"}, None),       # another host: no shared folder
    ({"spark_master": "spark://cluster:7077"}, None),          # executors elsewhere
    ({"spark_staging_dir": "off"}, None),
    ({"spark_staging_dir": "/shared/staging", "spark_connect_host": "spark.example.org"}, "/shared/staging"),
])
def test_large_batches_are_staged_only_where_the_server_reads_the_clients_files(settings, update, expected):
    got = settings.model_copy(update=update).spark_staging_path
    if expected == "default":
        assert got == settings.data_path / "spark" / "staging"
    else:
        assert got == (Path(expected) if expected else None)
