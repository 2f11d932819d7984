"""`python -m lakehouse.orchestration.task <lakehouse args>`: how an Airflow task runs a
`lakehouse` command with only the secrets that kind of task needs.

Tasks are children of the scheduler, which holds the union of every task's secrets (and
Airflow's own keys). This launcher replaces its own process with `lakehouse <args>` in an
environment narrowed to the secrets `TASK_SECRETS[<subcommand>]` names (declared in the
Airflow service module), with Airflow's keys and every other secret removed. The DAG file
holds no value, only the command line.
"""

from __future__ import annotations

import os
import sys

from lakehouse.stack.services.airflow import TASK_SECRETS

# Airflow's own keys are the components' business, never a task's.
_AIRFLOW_SECRET_VARS = ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__FERNET_KEY",
                        "AIRFLOW__API__SECRET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET")


def task_env(args: list[str], environ: dict[str, str]) -> dict[str, str]:
    """`environ` without any secret the task's subcommand does not declare."""
    from lakehouse.settings import PREFIX, secret_fields

    if not args or args[0] not in TASK_SECRETS:
        raise SystemExit(f"lakehouse.orchestration.task: no secrets are declared for "
                         f"`lakehouse {' '.join(args[:1])}`; add it to TASK_SECRETS in "
                         "lakehouse/stack/services/airflow.py")
    allowed = {PREFIX + n.upper() for n in TASK_SECRETS[args[0]]}
    secret_vars = {PREFIX + n.upper() for n in secret_fields()}
    return {k: v for k, v in environ.items()
            if k not in _AIRFLOW_SECRET_VARS and (k not in secret_vars or k in allowed)}


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    env = task_env(args, dict(os.environ))
    os.execve(sys.executable, [sys.executable, "-m", "lakehouse.cli", *args], env)


if __name__ == "__main__":
    main()
