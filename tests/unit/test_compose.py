"""compose/docker-compose.yml and compose/Dockerfile, checked without Docker.

These machines have no Docker engine. So the container stack is validated statically
instead: the compose-spec schema, the mounts, the variables, the secrets, the pins and
health checks, and how settings resolve inside a container.
"""

from __future__ import annotations

import ast
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lakehouse.settings import ENV_EXAMPLE, PREFIX, REPO_ROOT, generate_env_file, load_settings, secret_fields
from lakehouse.spark import SPARK_DEFAULTS, connect_url, render_defaults
from lakehouse.stack import artifacts

COMPOSE_DIR = REPO_ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
DOCKERFILE = COMPOSE_DIR / "Dockerfile"
TRINO_CONF = [*sorted((REPO_ROOT / "conf" / "trino").glob("*.properties")),
              *sorted((REPO_ROOT / "conf" / "trino" / "catalog").glob("*.properties"))]
IMAGE_REPO_DIR = "/opt/lakehouse"  # where compose/Dockerfile puts the repository

# Derived by the settings module (engine_env), never written in .env.
DERIVED = {PREFIX + n for n in ("S3_ENDPOINT", "TRINO_KEYSTORE_FILE", "TRINO_AUTH_FILE", "TRINO_RULES_FILE")}
SECRETS = {PREFIX + n.upper() for n in secret_fields()}
PROFILES = {"jobs", "bi", "orchestration", "olap", "catalog"}

# Compose interpolation: $$ is a literal $; otherwise ${NAME[op[word]]} or $NAME.
_INTERP = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def example_vars() -> set[str]:
    return {m.group(1) for m in re.finditer(r"^([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M)}


def strings(node):
    """Every string value (and mapping key) in a parsed YAML tree."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)
    elif isinstance(node, str):
        yield node


def interpolations(text: str) -> list[tuple[str, str, str]]:
    """(variable, operator, word) for each compose interpolation in `text`."""
    out = []
    for m in _INTERP.finditer(text):
        if m.group(0) == "$$":
            continue
        out.append((m.group(1) or m.group(4), m.group(2) or "", m.group(3) or ""))
    return out


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def bind_mounts(service: dict) -> list[tuple[str, str, bool]]:
    """(host path, container path, read-only) for each bind mount of a service."""
    mounts = []
    for vol in service.get("volumes", []):
        if isinstance(vol, dict):
            if vol.get("type") == "bind":
                mounts.append((vol["source"], vol["target"], bool(vol.get("read_only"))))
            continue
        parts = vol.split(":")
        if parts[0].startswith((".", "/", "~")):
            mounts.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    return mounts


def dockerfile_stages() -> list[tuple[str, str | None, int]]:
    """(base image, stage name, line number) for each FROM in compose/Dockerfile."""
    stages = []
    for i, line in enumerate(DOCKERFILE.read_text().splitlines()):
        m = re.match(r"^FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?\s*$", line, re.I)
        if m:
            stages.append((m.group(1), m.group(2), i))
    return stages


def run_schema_check(path: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "check-jsonschema"
    assert exe.exists(), f"{exe} missing: run `uv sync` (check-jsonschema is a dev dependency)"
    return subprocess.run([str(exe), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=120)


# ---- 1. schema ---------------------------------------------------------------------------

def test_compose_file_is_valid_against_the_compose_spec_schema():
    proc = run_schema_check(COMPOSE_FILE)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_schema_check_rejects_a_misspelled_key(tmp_path):
    """The check above can fail: the same file with one key misspelled does not pass."""
    text = COMPOSE_FILE.read_text()
    assert "\n    healthcheck:" in text
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace("\n    healthcheck:", "\n    healtcheck:", 1))
    proc = run_schema_check(broken)
    assert proc.returncode != 0 and "healtcheck" in proc.stdout, proc.stdout + proc.stderr


def test_depends_on_names_defined_services_with_conditions_that_fit(services):
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on undefined service {dep}"
            cond = spec["condition"]
            if cond == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy, which has no health check"
            if cond == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{name} waits for {dep} to exit, but it restarts"


# ---- 2. mounts ---------------------------------------------------------------------------

def test_every_bind_mount_exists_and_is_read_only(services):
    seen = 0
    for name, svc in services.items():
        for host, container, read_only in bind_mounts(svc):
            seen += 1
            assert (COMPOSE_DIR / host).exists(), f"{name}: {host} does not exist relative to compose/"
            assert read_only, f"{name}: {host} -> {container} must be mounted read-only (:ro)"
    assert seen >= 4  # Trino's three and Spark's defaults


def test_trino_mounts_the_native_config_files(services):
    mounts = {container: (COMPOSE_DIR / host).resolve() for host, container, _ in bind_mounts(services["trino"])}
    conf = REPO_ROOT / "conf" / "trino"
    assert mounts.get("/etc/trino/config.properties") == conf / "config.properties"
    assert mounts.get("/etc/trino/jvm.config") == conf / "jvm.config"
    assert mounts.get("/etc/trino/catalog") == conf / "catalog"


def test_spark_defaults_are_mounted_where_the_package_reads_them(services):
    expected = f"{IMAGE_REPO_DIR}/{SPARK_DEFAULTS.relative_to(REPO_ROOT).as_posix()}"
    mounts = {container: (COMPOSE_DIR / host).resolve()
              for host, container, _ in bind_mounts(services["spark-connect"])}
    assert mounts.get(expected) == SPARK_DEFAULTS
    assert services["spark-connect"]["command"] == ["python", "-m", "lakehouse.stack.services.spark"]
    assert re.search(rf"^WORKDIR {re.escape(IMAGE_REPO_DIR)}$", DOCKERFILE.read_text(), re.M)


def test_env_file_is_the_repository_env_file(services):
    users = [n for n, s in services.items() if "env_file" in s]
    assert {"provision", "trino", "spark", "spark-connect", "init"} <= set(users)
    for name in users:
        files = services[name]["env_file"]
        for f in [files] if isinstance(files, str) else files:
            assert (COMPOSE_DIR / f).resolve() == REPO_ROOT / ".env", f"{name}: env_file {f}"


# ---- 3. variables ------------------------------------------------------------------------

def test_every_interpolated_variable_is_in_env_example(compose):
    known = example_vars()
    used = {var for s in strings(compose) for var, _, _ in interpolations(s)}
    assert used, "compose interpolates nothing: the ports and secrets must come from .env"
    assert used <= known, f"not in .env.example: {sorted(used - known)}"


def test_environment_sets_only_known_lakehouse_variables(services):
    known = example_vars() | DERIVED
    for name, svc in services.items():
        for key in environment(svc):
            if key.startswith(PREFIX):
                assert key in known, f"{name}: {key} is neither in .env.example nor derived"


def test_trino_config_variables_are_known_and_derived_ones_are_set_by_compose(services):
    known = example_vars()
    trino_env = environment(services["trino"])
    refs = {v for f in TRINO_CONF for v in re.findall(r"\$\{ENV:([A-Za-z0-9_]+)\}", f.read_text())}
    assert PREFIX + "S3_ENDPOINT" in refs
    for var in refs:
        assert var in known or var in DERIVED, f"Trino config reads {var}: not in .env.example"
        if var not in known:
            assert trino_env.get(var), f"Trino reads derived {var}, but compose does not set it for trino"
    assert trino_env[PREFIX + "S3_ENDPOINT"] == f"http://minio:{trino_env[PREFIX + 'MINIO_PORT']}"


def test_client_addresses_point_at_compose_services(services):
    for name, svc in services.items():
        env = environment(svc)
        if "env_file" not in svc:
            continue
        for server in ("POSTGRES", "MINIO", "TRINO", "SPARK_CONNECT"):
            host = env.get(f"{PREFIX}{server}_HOST")
            if name == server.lower().replace("_", "-"):
                continue  # the server itself: it binds its container's interfaces
            assert host in services, f"{name}: {PREFIX}{server}_HOST={host!r} is not a compose service"
            assert env.get(f"{PREFIX}{server}_PORT"), f"{name}: {PREFIX}{server}_PORT must be the container port"


def test_settings_resolve_inside_a_container(services, tmp_path, monkeypatch):
    """Compose's order: .env through env_file, then `environment:`, over the image's empty env file."""
    dotenv = generate_env_file(tmp_path / "host.env")
    empty = tmp_path / "image.env"
    empty.touch(mode=0o600)
    assert re.search(r"LAKEHOUSE_ENV_FILE=/etc/lakehouse/env\b", DOCKERFILE.read_text())
    assert "install -m 600" in DOCKERFILE.read_text()
    for line in dotenv.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            monkeypatch.setenv(*line.split("=", 1))
    for key, value in environment(services["spark"]).items():
        monkeypatch.setenv(key, value)
    s = load_settings(empty, create=False)
    assert stat.S_IMODE(empty.stat().st_mode) == 0o600 and empty.read_text() == ""
    assert s.s3_endpoint == "http://minio:9000"
    assert s.trino_url == "https://trino:8443"
    assert s.trino_ca_file == Path("/var/lib/lakehouse/tls/trino.crt")
    assert (s.postgres_address, s.postgres_port) == ("postgres", 5432)
    assert s.cache_path == Path("/var/cache/lakehouse") and s.spark_java_home is None
    assert connect_url(s).startswith("sc://spark-connect:15002/;authorization=Bearer%20")
    conf = render_defaults(s)
    assert conf[f"spark.sql.catalog.{s.catalog_name}.s3.endpoint"] == "http://minio:9000"
    assert conf[f"spark.sql.catalog.{s.catalog_name}.uri"].startswith("jdbc:postgresql://postgres:5432/")


def test_commands_call_code_that_exists(services):
    from lakehouse.cli import cli

    provision = " ".join(services["provision"]["command"])
    subcommands = re.findall(r"\blakehouse (\w+)", provision)
    assert subcommands == ["provision"]
    assert services["init"]["command"] == ["lakehouse", "init"]
    assert services["init"]["depends_on"]["spark-connect"]["condition"] == "service_healthy"
    for sub in [*subcommands, "init"]:
        assert sub in cli.commands, f"compose runs `lakehouse {sub}`, which does not exist"
    commands = [c for svc in services.values()
                for c in (svc.get("command"), (svc.get("healthcheck") or {}).get("test"))
                if isinstance(c, list)]
    commands = [c[1:] if c[0] == "CMD" else c for c in commands]
    python_snippets = [c[c.index("-c") + 1] for c in commands if c[0].startswith("python") and "-c" in c]
    assert len(python_snippets) >= 2
    for code in python_snippets:
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom) and node.module.startswith("lakehouse"):
                source = REPO_ROOT / (node.module.replace(".", "/") + ".py")
                defined = {d.name for d in ast.parse(source.read_text()).body
                           if isinstance(d, (ast.FunctionDef, ast.ClassDef))}
                for alias in node.names:
                    assert alias.name in defined, f"{node.module} has no {alias.name}"


# ---- 4. secrets --------------------------------------------------------------------------

def test_secrets_are_only_required_references(compose, services):
    secret_names = SECRETS | {v for v in example_vars() if v.endswith(("PASSWORD", "SECRET_KEY", "MINIO_ROOT_USER"))}
    assert PREFIX + "MINIO_ROOT_USER" in secret_names
    for s in strings(compose):
        for var, op, _ in interpolations(s):
            if var in secret_names:
                assert op in ("", ":?", "?"), f"${{{var}{op}...}} gives a secret a default"
    for name, svc in services.items():
        for key, value in environment(svc).items():
            assert key not in secret_names, f"{name}: {key} belongs in .env (env_file), not in compose"
            refs = interpolations(value or "")
            secretish = re.search(r"PASSWORD|SECRET|ROOT_USER|TOKEN", key)
            if secretish or any(var in secret_names for var, _, _ in refs):
                assert len(refs) == 1 and refs[0][1] == ":?", \
                    f"{name}: {key} must be exactly ${{LAKEHOUSE_...:?message}}, got {value!r}"
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]*\}", value), f"{name}: {key}={value!r}"
                assert refs[0][0] in secret_names, f"{name}: {key} reads non-secret {refs[0][0]}"


def test_image_holds_no_secret():
    text = DOCKERFILE.read_text()
    for line in text.splitlines():
        if re.match(r"^(ENV|ARG)\b", line):
            assert not re.search(r"PASSWORD|SECRET|ROOT_USER|TOKEN", line), line
        m = re.match(r"^(?:COPY|ADD)\s+(?!--from)(.*)$", line)
        if m:
            sources = m.group(1).split()[:-1]
            assert sources and all(s not in (".", "./", "*") and ".env" not in s
                                   for s in sources), f"copies the context root or .env: {line}"


# ---- 5. pins, health, profiles -----------------------------------------------------------

def _pinned(ref: str) -> bool:
    name, _, tag = ref.rpartition("/")[2].partition(":")
    return bool(name) and bool(tag) and tag != "latest" and bool(re.search(r"\d", tag))


def test_every_image_is_pinned_with_a_comment_saying_why(services):
    lines = COMPOSE_FILE.read_text().splitlines()
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        if "image" in svc:
            assert _pinned(svc["image"]), f"{name}: image {svc['image']} is not pinned"
            i = next(i for i, line in enumerate(lines) if line.strip() == f"image: {svc['image']}")
            assert lines[i - 1].strip().startswith("#"), f"{name}: say why {svc['image']} above it"
    stage_names = set()
    dlines = DOCKERFILE.read_text().splitlines()
    for base, stage, i in dockerfile_stages():
        if base not in stage_names:
            assert _pinned(base), f"Dockerfile: FROM {base} is not pinned"
            assert dlines[i - 1].startswith("#"), f"Dockerfile: say why {base} above its FROM"
        if stage:
            stage_names.add(stage)
    targets = {s["build"]["target"] for s in services.values() if "build" in s}
    assert targets and targets <= stage_names, f"unknown build targets {targets - stage_names}"


def test_pins_match_the_native_stack(services):
    assert services["trino"]["image"] == f"trinodb/trino:{artifacts.TRINO_VERSION}"
    m = re.search(r"^ARG MINIO_VERSION=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert m and m.group(1) == artifacts.MINIO_VERSION
    assert f"minio/minio@${{MINIO_VERSION}}" in DOCKERFILE.read_text()


def test_long_running_services_have_health_checks(services):
    for name, svc in services.items():
        assert "restart" in svc, f"{name}: say whether it restarts (\"no\" for one-shot jobs)"
        if svc["restart"] != "no":
            hc = svc.get("healthcheck") or {}
            assert hc.get("test") and not hc.get("disable"), f"{name} runs on but has no health check"
    assert {n for n, s in services.items() if s["restart"] != "no"} == {
        "postgres", "minio", "trino", "spark-connect", "simulator", "superset",
        "airflow-api", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}


def test_ports_are_published_on_the_configured_address_only(services):
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert isinstance(port, dict), f"{name}: use the long port syntax with host_ip"
            assert port["host_ip"] in ("127.0.0.1", "${LAKEHOUSE_HOST:-127.0.0.1}"), f"{name}: {port}"
            assert re.fullmatch(r"\$\{LAKEHOUSE_[A-Z_]+_PORT:-\d+\}", str(port["published"])), f"{name}: {port}"


def test_core_services_have_no_profile_and_profiles_are_the_documented_ones(services):
    header = COMPOSE_FILE.read_text().split("\nname:", 1)[0]
    for profile in PROFILES | {"core"}:
        assert re.search(rf"^#\s+{profile}\s", header, re.M), f"profile {profile} is not described"
    for name in ("postgres", "minio", "provision", "trino"):
        assert not services[name].get("profiles"), f"{name} is core: it takes no profile"
    used = {p for svc in services.values() for p in svc.get("profiles", [])}
    assert used == {"jobs", "bi", "orchestration"} and services["spark"]["profiles"] == ["jobs"]
    assert services["superset"]["profiles"] == ["bi"]
    assert {n for n, s in services.items() if s.get("profiles") == ["orchestration"]} == {
        "airflow-api", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}


def test_superset_runs_the_native_lock_and_config_and_imports_with_the_cli(services):
    text = DOCKERFILE.read_text()
    stage = text.split("FROM base AS superset", 1)[1].split("\nFROM ", 1)[0]
    assert "uv pip sync" in stage and "superset-requirements.txt" in stage
    assert "COPY conf/superset/requirements.txt" in stage
    assert "ensure_users.py" in stage and "superset db upgrade" in stage and "superset init" in stage
    sup = services["superset"]
    assert sup["build"]["target"] == "superset" and sup["profiles"] == ["bi"]
    assert any(str(v).startswith("../conf/superset:") for v in sup["volumes"])
    assert services["superset-import"]["command"] == ["lakehouse", "superset", "import"]
    assert "COPY superset_assets ./superset_assets" in text  # the import reads them in the image


def test_trino_gets_the_auth_files_and_clients_the_certificate(services):
    trino = services["trino"]
    mounts = [str(v) for v in trino["volumes"]]
    for name in ("password-authenticator.properties", "access-control.properties", "rules.json"):
        assert any(m.startswith(f"../conf/trino/{name}:") for m in mounts), name
    assert [p["target"] for p in trino["ports"]] == [8443]  # clients: HTTPS only
    for name in ("provision", "dbt", "spark", "superset", "superset-import"):
        assert any(str(v).startswith("trino-tls:/var/lib/lakehouse/tls") for v in services[name]["volumes"]), name


def test_airflow_runs_the_platform_image_with_the_repo_dags(services):
    for name in ("airflow-api", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        svc = services[name]
        assert svc["build"]["target"] == "lakehouse", name
        assert svc["command"][:2] == ["lakehouse", "airflow"], name  # settings -> AIRFLOW__* as natively
        assert "../airflow_dags:/opt/lakehouse/airflow_dags:ro" in svc["volumes"], name
        assert "airflow-home:/var/lib/lakehouse/airflow" in svc["volumes"], name
    assert "airflow-home:/var/lib/lakehouse/airflow" in services["provision"]["volumes"]
    assert services["airflow-scheduler"]["depends_on"]["airflow-api"]["condition"] == "service_healthy"
    assert "COPY airflow_dags ./airflow_dags" in DOCKERFILE.read_text()


def test_compose_profiles_are_the_registrys(services):
    """`make up PROFILE=x` and `docker compose --profile x` start the same servers: each
    registry program that compose runs has its service's profile there (core: none)."""
    from lakehouse.stack import registry

    reg = registry.load()
    matched = 0
    for svc, prog in reg.programs():
        if prog.name in services:
            matched += 1
            want = [] if svc.profile == registry.CORE else [svc.profile]
            assert services[prog.name].get("profiles", []) == want, prog.name
    assert matched == len(reg.program_names()), "every native server has a compose service of the same name"
    assert {s.profile for s in reg.services.values()} - {registry.CORE} <= PROFILES
