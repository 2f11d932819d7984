"""Each process gets only the secrets its service declares: the real supervisord.conf,
rendered from the real registry, read back as supervisord parses it."""

import stat

from supervisor.datatypes import dict_of_key_value_pairs

from lakehouse.orchestration.task import task_env
from lakehouse.settings import PREFIX, SCOPED_VAR, Withheld, load_settings, secret_fields
from lakehouse.stack import registry, supervisor
from lakehouse.stack.services.airflow import TASK_SECRETS


def _sections(text: str) -> dict[str, dict[str, str]]:
    out, current = {}, None
    for line in text.splitlines():
        if line.startswith("[program:"):
            current = out.setdefault(line[len("[program:"):-1], {})
        elif current is not None and "=" in line:
            key, value = line.split("=", 1)
            current[key] = value
    return out


def _secret_values(settings) -> dict[str, str]:
    return {n: getattr(settings, n).get_secret_value() for n in secret_fields()}


def test_supervisord_conf_gives_each_program_exactly_its_declared_secrets(settings):
    reg = registry.load()
    path = supervisor.render_conf(settings, reg)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    sections = _sections(path.read_text())
    assert set(sections) == set(reg.program_names())
    values = _secret_values(settings)
    for svc, prog in reg.programs():
        section = sections[prog.name]
        env = dict_of_key_value_pairs(section["environment"].replace("%%", "%"))
        held = {n for n, v in values.items() if any(v in x for x in env.values())}
        declared = set(reg.program_secrets(svc, prog))
        assert held == declared, (prog.name, "undeclared:", held - declared, "missing:", declared - held)
        assert env[supervisor.STACK_VAR] == str(settings.data_path) and env[SCOPED_VAR] == "1"
        assert not any(v in section["command"] for v in values.values()), prog.name  # cmdline is world-readable
    # the examples the issue names
    trino = dict_of_key_value_pairs(sections["trino"]["environment"].replace("%%", "%"))
    assert settings.airflow_fernet_key.get_secret_value() not in trino.values()
    superset = dict_of_key_value_pairs(sections["superset"]["environment"].replace("%%", "%"))
    assert settings.minio_root_password.get_secret_value() not in superset.values()
    scheduler = dict_of_key_value_pairs(sections["airflow-scheduler"]["environment"].replace("%%", "%"))
    for root in ("postgres_superuser_password", "minio_root_password", "minio_root_user"):
        assert values[root] not in scheduler.values(), root


def test_supervisord_itself_gets_no_secret(settings, monkeypatch):
    for name, value in _secret_values(settings).items():
        monkeypatch.setenv(PREFIX + name.upper(), value)  # even if the caller's shell had them
    env = supervisor.daemon_env(settings)
    assert not any(v in env.values() for v in _secret_values(settings).values())
    assert env[supervisor.STACK_VAR] == str(settings.data_path)


def test_a_scoped_process_sees_only_what_it_was_given(settings, monkeypatch):
    given = settings.process_env(("trino_dbt_password",))
    for key in list(__import__("os").environ):
        if key.startswith(PREFIX):
            monkeypatch.delenv(key)
    for key, value in {**given, SCOPED_VAR: "1"}.items():
        monkeypatch.setenv(key, value)
    scoped = load_settings()
    assert scoped.trino_dbt_password.get_secret_value() == settings.trino_dbt_password.get_secret_value()
    assert isinstance(scoped.minio_root_password, Withheld)
    try:
        scoped.minio_root_password.get_secret_value()
    except Exception as exc:  # noqa: BLE001 - the message is what is checked
        assert "LAKEHOUSE_MINIO_ROOT_PASSWORD was not given to this process" in str(exc)
    else:
        raise AssertionError("a withheld secret was readable")
    assert PREFIX + "MINIO_ROOT_PASSWORD" not in scoped.process_env()


def test_an_airflow_task_keeps_only_its_subcommands_secrets(settings):
    from lakehouse.stack.services.airflow import airflow_settings, scheduler_secrets

    scheduler_env = {**settings.process_env(scheduler_secrets()), **airflow_settings(settings)}
    values = _secret_values(settings)
    for sub, allowed in TASK_SECRETS.items():
        env = task_env([sub, "--help"], scheduler_env)
        held = {n for n, v in values.items() if v in env.values() or any(v in x for x in env.values())}
        assert held == set(allowed), (sub, held ^ set(allowed))
        assert "AIRFLOW__CORE__FERNET_KEY" not in env and "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in env


def test_rendered_secret_files_are_private(settings):
    from lakehouse.stack import trino_security
    from lakehouse.stack.services.airflow import write_passwords_file

    for path in (trino_security.write_password_file(settings), write_passwords_file(settings),
                 trino_security.ensure_certificate(settings) and settings.trino_keystore_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700, path.parent
