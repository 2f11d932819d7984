"""No running server holds a secret it does not declare, read from /proc/<pid>/environ of
every process of every program; the files that hold secrets are private."""

import os
import stat

import psutil
import pytest

from lakehouse.settings import secret_fields
from lakehouse.stack import manager, registry, supervisor

pytestmark = [pytest.mark.superset, pytest.mark.airflow]


def _environ(pid: int) -> str:
    with open(f"/proc/{pid}/environ", "rb") as fh:
        return fh.read().decode(errors="replace")


def test_no_server_holds_a_secret_it_does_not_declare(stack):
    reg = registry.load()
    values = {n: getattr(stack, n).get_secret_value() for n in secret_fields()}
    pids = {p["name"]: p["pid"] for p in supervisor.client(stack).supervisor.getAllProcessInfo() if p["pid"]}
    assert set(pids) == set(reg.program_names()), pids
    for svc, prog in reg.programs():
        declared = set(reg.program_secrets(svc, prog))
        root = psutil.Process(pids[prog.name])
        held_by_root = {n for n, v in values.items() if v in _environ(root.pid)}
        # what it declares, it has (so this reading can see a secret), and nothing else
        assert held_by_root == declared, (prog.name, held_by_root ^ declared)
        for child in root.children(recursive=True):
            try:
                held = {n for n, v in values.items() if v in _environ(child.pid)}
            except (FileNotFoundError, ProcessLookupError):
                continue
            assert held <= declared, (prog.name, child.pid, child.name(), held - declared)
    for program, secret in (("superset", "minio_root_password"), ("trino", "airflow_fernet_key"),
                            ("airflow-scheduler", "postgres_superuser_password"),
                            ("airflow-scheduler", "minio_root_password")):
        assert values[secret] not in _environ(pids[program]), (program, secret)
    daemon = supervisor.daemon_pid(stack)
    assert not any(v in _environ(daemon) for v in values.values())


def test_the_data_folder_and_the_files_holding_secrets_are_private(stack):
    assert stat.S_IMODE(stack.data_path.stat().st_mode) & 0o044 == 0  # not readable by others
    from lakehouse.stack.services import spark

    for path in (supervisor.conf_path(stack), stack.trino_password_file, stack.trino_keystore_file,
                 stack.airflow_home / "passwords.json", spark.properties_file(stack)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700, path.parent
    readable = []
    for folder, dirs, files in os.walk(stack.data_path):
        for name in dirs + files:
            p = os.path.join(folder, name)
            if not os.path.islink(p) and os.stat(p).st_mode & 0o004:
                readable.append(p)
    assert readable == [], readable[:20]


def test_every_process_of_the_stack_carries_its_tag(stack):
    ours = {p.pid for p in manager.stack_processes(stack)}
    supervised = {p["pid"] for p in supervisor.client(stack).supervisor.getAllProcessInfo() if p["pid"]}
    assert supervised <= ours and supervisor.daemon_pid(stack) in ours
