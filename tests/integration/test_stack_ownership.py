"""A stack only ever stops or cleans its own processes: two stacks on one machine, one in
a folder whose name extends the other's, never touch each other; `down` where nothing runs
says so and touches nothing."""

import os

import psutil
import pytest

from lakehouse.paths import REPO_ROOT
from lakehouse.stack import manager, registry

from .conftest import lakehouse

pytestmark = [pytest.mark.postgres, pytest.mark.simulator]
OTHER = ["--service=postgres", "--service=simulator"]


def _env(stack, suffix: str) -> dict:
    """Another stack: the test stack's folder name plus `suffix`, own env file and ports."""
    return {"LAKEHOUSE_DATA_DIR": str(stack.data_path) + suffix,
            "LAKEHOUSE_ENV_FILE": str(REPO_ROOT / f".lakehouse-test{suffix}.env"),
            **registry.load().offset_ports(30000)}


def _settings(env: dict):
    from lakehouse.settings import load_settings

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return load_settings()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _alive(pids) -> bool:
    return all(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)


@pytest.fixture
def other(stack):
    env = _env(stack, "-other")
    lakehouse("clean", "--yes", env=env)
    lakehouse("up", *OTHER, env=env)
    yield env, _settings(env)
    lakehouse("clean", "--yes", env=env)


def test_two_stacks_never_touch_each_other(stack, other):
    env, other_settings = other
    ours = {p.pid for p in manager.stack_processes(stack)}
    theirs = {p.pid for p in manager.stack_processes(other_settings)}
    assert ours and theirs and not ours & theirs
    assert str(other_settings.data_path).startswith(str(stack.data_path))  # the old prefix trap

    # `down` of a stack whose folder is a prefix of both, where nothing runs
    prefix = {**_env(stack, ""), "LAKEHOUSE_DATA_DIR": str(stack.data_path)[:-2],
              "LAKEHOUSE_ENV_FILE": str(REPO_ROOT / ".lakehouse-test-prefix.env")}
    try:
        proc = lakehouse("down", env=prefix)
        assert proc.returncode == 0 and "stack is not running" in proc.stdout
        assert _alive(ours) and _alive(theirs)
    finally:
        (REPO_ROOT / ".lakehouse-test-prefix.env").unlink(missing_ok=True)

    # `down` of the other stack: ours stays up and healthy
    lakehouse("down", env=env)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in theirs)
    assert _alive(ours)
    assert lakehouse("status", check=False).returncode == 0

    # and the other way round: the other stack up again, `down` of ours leaves it healthy
    lakehouse("up", *OTHER, env=env)
    theirs = {p.pid for p in manager.stack_processes(other_settings)}
    ours_selected = manager.selected(stack, registry.load())
    lakehouse("down")
    assert _alive(theirs)
    assert lakehouse("status", check=False, env=env).returncode == 0
    lakehouse("up", *(f"--service={n}" for n in ours_selected))  # ours back as it was


def test_down_when_nothing_runs_says_so_and_exits_0(stack, other):
    env, other_settings = other
    lakehouse("down", env=env)
    again = lakehouse("down", env=env)
    assert again.returncode == 0
    assert f"stack is not running (nothing of {other_settings.data_path} to stop)" in again.stdout
    assert lakehouse("status", check=False).returncode == 0  # ours untouched
