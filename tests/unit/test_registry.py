"""The service registry: every list about the servers is derived from it, and a service
module that breaks a rule is refused when the registry loads, naming the module."""

import importlib
import sys
import textwrap

import pytest

from lakehouse.errors import LakehouseError
from lakehouse.settings import env_example_missing, load_settings
from lakehouse.stack import doctor, manager, registry, supervisor
from lakehouse.stack.registry import Program, Registry, RegistryError, Service

THROWAWAY = '''
from pydantic import BaseModel, Field

from lakehouse.stack.registry import Program, Service


class Config(BaseModel):
    throwaway_port: int = Field(7777, ge=1, le=65535)


SERVICE = Service(
    name="throwaway", description="a server that exists only in this test", profile="bi",
    settings=Config, depends_on=("postgres",), ports=("throwaway_port",),
    programs=(Program(name="throwaway", command=lambda s: ["/bin/sleep", "60"],
                      health=lambda s: (True, "fine"), url=lambda s: f"http://{s.host}:{s.throwaway_port}"),))
'''


def _module(tmp_path, name: str, source: str):
    pkg = tmp_path / f"svcpkg_{name}"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / f"{name}.py").write_text(textwrap.dedent(source))
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module(f"svcpkg_{name}.{name}")
    finally:
        sys.path.remove(str(tmp_path))


@pytest.fixture
def with_throwaway(tmp_path):
    real = [registry.service_of_module(m) for m in registry.service_modules()]
    extra = registry.service_of_module(_module(tmp_path, "throwaway", THROWAWAY))
    return Registry([*real, extra])


def test_a_new_service_module_appears_in_every_derived_list(with_throwaway, tmp_path, monkeypatch):
    reg = with_throwaway
    # the start order: after what it depends on, with the services it has no order with
    waves = reg.stages()
    level = {n: i for i, wave in enumerate(waves) for n in wave}
    assert level["throwaway"] == level["postgres"] + 1
    # the profiles (the one it names, and all), with its dependency
    assert {"throwaway", "postgres"} <= set(reg.profile("bi")) and "throwaway" in reg.profile("all")
    assert "throwaway" not in reg.profile("core")
    # its settings: part of the settings class, documented-or-flagged in .env.example
    cls = reg.settings_class()
    assert cls.model_fields["throwaway_port"].default == 7777
    assert env_example_missing(cls) == ["LAKEHOUSE_THROWAWAY_PORT"]
    # the preflight's port list, and the test and bench stacks' ports
    monkeypatch.setenv("LAKEHOUSE_ENV_FILE", str(tmp_path / "t.env"))
    base = load_settings()
    settings = cls(**{k: getattr(base, k) for k in type(base).model_fields}, throwaway_port=7777)
    assert doctor.stack_ports(settings, reg=reg)["LAKEHOUSE_THROWAWAY_PORT"] == 7777
    assert any(c.name == "port 7777" for c in doctor.check_ports(settings, reg=reg))
    assert reg.offset_ports(10000)["LAKEHOUSE_THROWAWAY_PORT"] == "17777"
    # `status` rows, the `logs` choices, the supervisord programs
    assert "throwaway" in [r["program"] for r in manager.status(settings, reg)]
    assert "throwaway" in manager.log_names(reg)
    settings.run_path.mkdir(parents=True, exist_ok=True)
    conf = supervisor.render_conf(settings, reg).read_text()
    assert "[program:throwaway]" in conf and "command=/bin/sleep 60" in conf


def test_the_real_registry_documents_every_setting_in_env_example():
    assert env_example_missing() == []


def _refused(tmp_path, name, source) -> str:
    real = [registry.service_of_module(m) for m in registry.service_modules()]
    with pytest.raises(RegistryError) as err:
        Registry([*real, registry.service_of_module(_module(tmp_path, name, source))])
    return str(err.value)


def test_a_program_without_a_health_check_is_refused_naming_the_module(tmp_path):
    msg = _refused(tmp_path, "nohealth", THROWAWAY.replace("health=lambda s: (True, \"fine\"), ", "health=None, "))
    assert "service module svcpkg_nohealth.nohealth" in msg and "has no health check" in msg


def test_a_dependency_on_an_unknown_service_is_refused_naming_both(tmp_path):
    msg = _refused(tmp_path, "baddep", THROWAWAY.replace('depends_on=("postgres",)', 'depends_on=("postgress",)'))
    assert "svcpkg_baddep.baddep" in msg and "unknown service(s) postgress" in msg and "known services:" in msg


def test_a_dependency_cycle_is_refused_naming_it():
    def svc(name, deps):
        return Service(name=name, description=name, depends_on=deps, module=f"mod_{name}",
                       programs=(Program(name=name, command=lambda s: [], health=lambda s: (True, "")),))

    with pytest.raises(RegistryError, match=r"dependency cycle (a -> b -> a|b -> a -> b)"):
        Registry([svc("a", ("b",)), svc("b", ("a",))])


def test_two_services_with_one_name_or_program_are_refused(tmp_path):
    msg = _refused(tmp_path, "dup", THROWAWAY.replace('name="throwaway", description', 'name="trino", description'))
    assert "service name 'trino' is taken by lakehouse.stack.services.trino" in msg


def test_a_module_without_a_service_is_refused(tmp_path):
    mod = _module(tmp_path, "empty", "X = 1\n")
    with pytest.raises(RegistryError, match="svcpkg_empty.empty: no `SERVICE = Service"):
        registry.service_of_module(mod)


def test_an_unknown_profile_lists_the_known_ones():
    with pytest.raises(LakehouseError) as err:
        registry.load().profile("nope")
    assert "unknown profile 'nope'" in err.value.message
    for name in ("core", "bi", "orchestration", "all"):
        assert name in err.value.hint


def test_up_with_an_unknown_profile_starts_nothing(tmp_path):
    import os
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "lakehouse.cli", "up", "--profile", "nope"],
                          capture_output=True, text=True, env=os.environ)
    assert proc.returncode == 2 and "unknown profile 'nope'" in proc.stderr and "known profiles: core" in proc.stderr
    assert not (tmp_path / "data" / "run").exists()


def test_start_order_is_a_topological_sort_of_the_declared_dependencies():
    reg = registry.load()
    position = {n: i for i, n in enumerate(reg.names)}
    for name, svc in reg.services.items():
        assert all(position[d] < position[name] for d in svc.depends_on), name
    waves = reg.stages()
    assert sorted(waves[0]) == sorted(n for n, s in reg.services.items() if not s.depends_on)


def test_the_stack_core_imports_no_service_module_and_no_runtime():
    """Dependencies point one way: the core reads the registry, service modules use the core."""
    import ast
    from pathlib import Path

    core = Path(registry.__file__).parent
    for path in core.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.startswith(("lakehouse.stack.services", "lakehouse.superset",
                                            "lakehouse.orchestration", "lakehouse.dbt", "lakehouse.demo")), \
                    f"{path.name} imports {name}"
