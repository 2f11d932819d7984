"""Read contracts written in the Open Data Contract Standard (ODCS v3.2.0) into `Contract`.

Scope: reads contracts/*.yaml (or $LAKEHOUSE_CONTRACTS_DIR); writes nothing.

A document passes three gates, and every problem found is reported at once, each naming the
file, the path inside it and the fix:
1. ODCS's own JSON Schema, as published in the `open-data-contract-standard` package (its
   pydantic model alone ignores unknown nested keys, so it is not enough);
2. the package's model (`OpenDataContractStandard.model_validate`);
3. the project's rules: what lakehouse derives from the document (the types it can store,
   one schema object, the custom properties it knows and their values).

Where things go (docs/contracts.md has the whole table): the schema, types, required,
unique, primary key, partitioning, descriptions, owner (`team`) and freshness
(`slaProperties: latency`) are ODCS's own; the endpoint, event time, partitioning by day,
schema drift policy and quarantine limit are custom properties.
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from lakehouse.contracts.model import (MAX_DECIMAL_PRECISION, PARTITIONINGS, BatchRule, Contract, ContractError,
                                       Endpoint, EventTime, FieldSpec, Freshness, Quality, SchemaDrift)
from lakehouse.settings import REPO_ROOT

CONTRACTS_DIR = REPO_ROOT / "contracts"
API_VERSION = "v3.2.0"
HELP = "see docs/contracts.md, which describes every key"

# Custom properties lakehouse reads, at the contract's top level and on a property.
CONTRACT_PROPERTIES = ("endpoint", "eventTime", "partitioning", "schemaDrift", "maxQuarantineRate")
FIELD_PROPERTIES = ("unit", "deliveredAs", "timestampFormat")
# ODCS keys of a property that would promise a check lakehouse does not make: refused, not ignored.
_NOT_ENFORCED = ("enum", "relationships", "items", "properties")
_METRICS = ("rowCount", "nullValues", "duplicateValues")
_OPTIONS = {  # logicalTypeOptions lakehouse enforces, per logicalType
    "string": ("pattern",), "integer": ("minimum", "maximum", "format"), "number": ("minimum", "maximum", "format"),
    "boolean": (), "date": ("format",), "timestamp": ("timezone", "defaultTimezone"),
}
# Where a FieldSpec key comes from in an ODCS property, for error paths.
_FIELD_KEYS = {"minimum": ("logicalTypeOptions", "minimum"), "maximum": ("logicalTypeOptions", "maximum"),
               "pattern": ("logicalTypeOptions", "pattern"), "zone": ("logicalTypeOptions", "defaultTimezone"),
               "precision": ("physicalType",), "scale": ("physicalType",), "partition": ("partitioned",),
               "unit": ("customProperties", "unit"), "delivered_as": ("customProperties", "deliveredAs"),
               "time_format": ("customProperties", "timestampFormat")}
_DECIMAL = re.compile(r"^(?:DECIMAL|NUMERIC)\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
_MINUTES = {"min": 1, "mins": 1, "minute": 1, "minutes": 1, "m": 1, "h": 60, "hour": 60, "hours": 60}


def contracts_dir() -> Path:
    """Where the contracts are: LAKEHOUSE_CONTRACTS_DIR from the environment, else from the
    stack's env file, else the repository's contracts/ (a relative path is relative to the
    repository)."""
    from lakehouse.settings import env_file_path, read_env_file

    folder = os.environ.get("LAKEHOUSE_CONTRACTS_DIR")
    if not folder:
        path = env_file_path()
        folder = read_env_file(path).get("LAKEHOUSE_CONTRACTS_DIR") if path.is_file() else None
    if not folder:
        return CONTRACTS_DIR
    folder = Path(os.path.expanduser(folder))
    return folder if folder.is_absolute() else REPO_ROOT / folder


class Problems:
    """The problems found in one document, each as `path: what (fix)`."""

    def __init__(self, raw):
        self.raw = raw
        self.lines: list[str] = []

    def add(self, loc, message: str, fix: str | None = None) -> None:
        where = describe_loc(self.raw, tuple(loc))
        line = f"{where}: {message}" if where else message
        if fix:
            line += f" (fix: {fix})"
        if line not in self.lines:
            self.lines.append(line)

    def pydantic(self, loc, exc: ValidationError, fix: str | None = None) -> None:
        for e in exc.errors():
            inner = tuple(x for x in e["loc"] if x != "__root__")
            msg = e["msg"].removeprefix("Value error, ")
            self.add(tuple(loc) + inner, msg, fix)


def describe_loc(raw, loc: tuple) -> str:
    """`schema[0].properties[2] (pm25).maximum` rather than `schema.0.properties.2.maximum`;
    a custom property is named by its `property`."""
    parts, node = [], raw
    for item in loc:
        if isinstance(item, int):
            entry = node[item] if isinstance(node, list) and item < len(node) else None
            label = None
            if isinstance(entry, dict):
                label = entry.get("name") or entry.get("property")
            text = f"[{item}]" + (f" ({label})" if isinstance(label, str) else "")
            if parts:
                parts[-1] += text
            else:
                parts.append(text)
            node = entry
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts)


@lru_cache(maxsize=1)
def _schema_validator():
    from jsonschema import Draft201909Validator
    from open_data_contract_standard.model import OpenDataContractStandard

    return Draft201909Validator(json.loads(OpenDataContractStandard.json_schema()))


def _schema_fix(error) -> str:
    kind = error.validator
    if kind == "enum":
        return "use one of: " + ", ".join(map(str, error.validator_value))
    if kind in ("additionalProperties", "unevaluatedProperties"):
        return "remove the key, or correct its spelling (ODCS v3.2.0 has no such key here)"
    if kind == "required":
        return "add the missing key"
    if kind == "type":
        return f"write a {error.validator_value} here (quote a version such as '1.0.0', and timestamps)"
    if kind in ("oneOf", "anyOf"):
        return ("a quality rule of type library needs a metric and exactly one operator "
                "(mustBe, mustBeLessThan, ...)" if "quality" in error.absolute_path else
                "this entry matches none of the shapes ODCS allows here")
    return "see the ODCS v3.2.0 specification"


def _custom(problems: Problems, entries, at: tuple, known: tuple[str, ...]) -> dict:
    """name -> (value, loc) of a customProperties list; unknown and repeated names are problems."""
    found: dict = {}
    for i, entry in enumerate(entries or []):
        if not isinstance(entry, dict):
            continue  # the JSON Schema reported it
        name = entry.get("property")
        loc = at + ("customProperties", i)
        if name not in known:
            problems.add(loc + ("property",), f"unknown custom property {name!r}",
                         f"lakehouse knows {', '.join(known)} here; check the spelling")
        elif name in found:
            problems.add(loc + ("property",), f"custom property {name!r} is given twice", "keep one")
        else:
            found[name] = (entry.get("value"), loc + ("value",))
    return found


def _model(problems: Problems, cls: type[BaseModel], value, loc: tuple):
    try:
        return cls.model_validate(value)
    except ValidationError as exc:
        problems.pydantic(loc, exc, HELP)
        return None


def _field_type(problems: Problems, prop: dict, loc: tuple) -> dict | None:
    """type (and precision, scale) of a property, from its logicalType and physicalType."""
    logical = prop.get("logicalType")
    physical = str(prop.get("physicalType") or "").strip().upper()
    fmt = (prop.get("logicalTypeOptions") or {}).get("format")

    def wrong(expected: str) -> None:
        problems.add(loc + ("physicalType",), f"physicalType {prop.get('physicalType')!r} does not fit "
                     f"logicalType {logical}", f"use {expected}, or leave physicalType out")

    if logical is None:
        problems.add(loc, "logicalType is missing",
                     "add one of string, integer, number, boolean, date, timestamp")
        return None
    if logical == "integer":
        if physical in ("INT", "INTEGER") or fmt in ("i8", "i16", "i32"):
            if physical in ("BIGINT", "LONG") or fmt == "i64":
                wrong("INT with format i32, or BIGINT with format i64")
                return None
            return {"type": "integer"}
        if physical in ("", "BIGINT", "LONG"):
            if fmt not in (None, "i64"):
                problems.add(loc + ("logicalTypeOptions", "format"), f"integer format {fmt!r} is not stored",
                             "use i32 (INT) or i64 (BIGINT)")
                return None
            return {"type": "long"}
        wrong("INT or BIGINT")
        return None
    if logical == "number":
        m = _DECIMAL.match(physical)
        if m:
            precision, scale = int(m.group(1)), int(m.group(2))
            if not 1 <= precision <= MAX_DECIMAL_PRECISION:
                problems.add(loc + ("physicalType",), f"{physical}: precision {precision} overflows the largest "
                             f"decimal Iceberg stores ({MAX_DECIMAL_PRECISION} digits)",
                             f"use a precision of 1 to {MAX_DECIMAL_PRECISION}, or DOUBLE")
                return None
            return {"type": "decimal", "precision": precision, "scale": scale}
        if physical in ("", "DOUBLE") and fmt in (None, "f64"):
            return {"type": "double"}
        wrong("DOUBLE or DECIMAL(p,s)")
        return None
    simple = {"string": ("STRING", "VARCHAR", "TEXT"), "boolean": ("BOOLEAN",), "date": ("DATE",),
              "timestamp": ("TIMESTAMP", "TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE")}
    if logical in simple:
        if physical not in ("",) + simple[logical]:
            wrong(simple[logical][0])
            return None
        return {"type": logical}
    problems.add(loc + ("logicalType",), f"logicalType {logical} is not stored by lakehouse",
                 "use string, integer, number, boolean, date or timestamp")
    return None


def _field(problems: Problems, prop: dict, loc: tuple) -> dict | None:
    typed = _field_type(problems, prop, loc)
    for key in _NOT_ENFORCED:
        if key in prop:
            problems.add(loc + (key,), f"lakehouse does not enforce a property's {key} yet",
                         "remove it (a rule lakehouse does not check would be a promise nobody keeps)")
    if "description" not in prop:
        problems.add(loc, "description is missing", "add one: it becomes the column comment and the dbt docs")
    opts = prop.get("logicalTypeOptions") or {}
    if typed is None:
        return None
    logical = prop["logicalType"]
    for key in opts:
        if key not in _OPTIONS.get(logical, ()):
            problems.add(loc + ("logicalTypeOptions", key), f"lakehouse does not enforce {key} on a {logical}",
                         f"remove it; enforced here: {', '.join(_OPTIONS.get(logical, ())) or 'nothing'}")
    if logical == "date" and opts.get("format") not in (None, "yyyy-MM-dd"):
        problems.add(loc + ("logicalTypeOptions", "format"), f"date format {opts['format']!r} is not read",
                     "dates are read as ISO 8601 (yyyy-MM-dd): remove the format or set it to yyyy-MM-dd")
    custom = _custom(problems, prop.get("customProperties"), loc, FIELD_PROPERTIES)
    spec = {"name": prop.get("name"), **typed, "required": prop.get("required", False),
            "unique": prop.get("unique", False), "description": prop.get("description", ""),
            "partition": prop.get("partitioned", False),
            "minimum": opts.get("minimum"), "maximum": opts.get("maximum"), "pattern": opts.get("pattern"),
            "zone": opts.get("defaultTimezone")}
    for key, name in (("unit", "unit"), ("deliveredAs", "delivered_as"), ("timestampFormat", "time_format")):
        if key in custom:
            spec[name] = custom[key][0]
    spec = {k: v for k, v in spec.items() if v is not None}
    spec["rules"] = [r for i, q in enumerate(prop.get("quality") or [])
                     if (r := _rule(problems, q, loc + ("quality", i), [prop.get("name")])) is not None]
    if prop.get("unique"):
        spec["rules"].append({"name": f"{describe_loc(problems.raw, loc)}.unique", "metric": "duplicateValues",
                              "fields": [prop.get("name")], "operator": "mustBe", "value": 0,
                              "description": "unique: a value may not repeat within a batch"})
    rules = spec.pop("rules")
    try:
        return {**FieldSpec.model_validate(spec).model_dump(), "rules": rules}
    except ValidationError as exc:
        for e in exc.errors():
            inner = e["loc"][0] if e["loc"] else None
            msg = e["msg"].removeprefix("Value error, ")
            if inner in _FIELD_KEYS:
                at = loc + _FIELD_KEYS[inner]
                msg = f"{_FIELD_KEYS[inner][-1]}: {msg}" if at[-1] == "customProperties" else msg
            elif "minimum" in msg and "maximum" in msg:
                at = loc + ("logicalTypeOptions",)
            else:
                at = loc + tuple(e["loc"])
            problems.add(at, msg, HELP)
        return None


def _rule(problems: Problems, q: dict, loc: tuple, fields: list | None) -> dict | None:
    """A BatchRule (as a dict) from an ODCS quality rule; `fields`: the property it sits on
    (None: on the schema object). A text rule documents and is not checked."""
    kind = q.get("type", "library")
    if kind == "text":
        return None
    if kind != "library":
        problems.add(loc + ("type",), f"lakehouse does not run {kind} quality rules",
                     "use a library rule (rowCount, nullValues, duplicateValues), or type: text to document")
        return None
    metric = q.get("metric")
    if metric not in _METRICS:
        problems.add(loc + ("metric",), f"lakehouse does not check the metric {metric!r}",
                     f"use one of {', '.join(_METRICS)}")
        return None
    args = dict(q.get("arguments") or {})
    if fields is None:
        fields = args.pop("properties", [])
        fields = [fields] if isinstance(fields, str) else fields
    if args:
        problems.add(loc + ("arguments",), f"lakehouse does not read the arguments {', '.join(args)} here",
                     "remove them (on the schema object, duplicateValues takes arguments.properties)")
        return None
    operator = next(o for o in q if o.startswith("must"))  # the JSON Schema allows exactly one
    unit = q.get("unit", "rows")
    if unit not in ("rows", "percent"):
        problems.add(loc + ("unit",), f"unit {unit!r} is not one lakehouse reads", "use rows or percent")
        return None
    rule = {"name": describe_loc(problems.raw, loc), "metric": metric, "fields": fields, "unit": unit,
            "operator": operator, "value": q[operator], "description": q.get("description", "")}
    try:
        return BatchRule.model_validate(rule).model_dump()
    except ValidationError as exc:
        problems.pydantic(loc, exc, HELP)
        return None


def _owner(problems: Problems, raw: dict) -> str | None:
    team = raw.get("team")
    members = team.get("members", []) if isinstance(team, dict) else team if isinstance(team, list) else []
    owners = [m.get("username") for m in members if isinstance(m, dict) and m.get("role") == "owner"]
    if len(owners) != 1:
        problems.add(("team",), f"{len(owners)} members with role owner; lakehouse needs exactly one",
                     "list the owning team's address under team.members with role: owner")
        return None
    return owners[0]


def _freshness(problems: Problems, raw: dict) -> dict:
    """dbt freshness from `slaProperties: [{property: latency, value: warn, valueExt: error, unit: min}]`."""
    out = {}
    for i, sla in enumerate(raw.get("slaProperties") or []):
        loc = ("slaProperties", i)
        if sla.get("property") != "latency":
            problems.add(loc + ("property",), f"lakehouse does not enforce the SLA {sla.get('property')!r}",
                         "remove it, or use latency (warn after `value`, error after `valueExt`)")
            continue
        scale = _MINUTES.get(str(sla.get("unit", "min")).lower())
        if scale is None:
            problems.add(loc + ("unit",), f"unit {sla.get('unit')!r} is not a unit of time lakehouse reads",
                         "use min or h")
            continue
        for key, name in (("value", "warn_minutes"), ("valueExt", "error_minutes")):
            if key in sla:
                if not isinstance(sla[key], (int, float)) or isinstance(sla[key], bool):
                    problems.add(loc + (key,), f"{sla[key]!r} is not a number", "write a number of minutes or hours")
                else:
                    out[name] = round(sla[key] * scale)
    return out


def parse(raw, path: Path) -> Contract:
    """The Contract of an ODCS document (already read from YAML), or a ContractError listing
    every problem found."""
    problems = Problems(raw)
    if not isinstance(raw, dict):
        raise ContractError(f"contract {path} must be a mapping at the top level (an ODCS document)", HELP)
    for error in sorted(_schema_validator().iter_errors(raw), key=lambda e: list(map(str, e.absolute_path))):
        problems.add(tuple(error.absolute_path), error.message, _schema_fix(error))
    if problems.lines:  # not ODCS: the package's model and our rules would only repeat it
        raise _error(path, problems)
    from open_data_contract_standard.model import OpenDataContractStandard

    try:
        OpenDataContractStandard.model_validate(raw)
    except ValidationError as exc:
        problems.pydantic((), exc, "see the ODCS v3.2.0 specification")
        raise _error(path, problems) from exc
    if raw.get("apiVersion") != API_VERSION:
        problems.add(("apiVersion",), f"lakehouse reads ODCS {API_VERSION}, not {raw.get('apiVersion')}",
                     f"set apiVersion: {API_VERSION}")
    if raw.get("id") != path.stem:
        problems.add(("id",), f"id {raw.get('id')!r} must equal the file name {path.stem!r}",
                     "rename the file or the id")
    if not re.fullmatch(r"\d+\.\d+\.\d+", str(raw.get("version"))):
        problems.add(("version",), f"version {raw.get('version')!r} is not MAJOR.MINOR.PATCH",
                     "write e.g. '1.0.0'; a breaking change raises the major version")
    for key, fix in (("name", "add the source's human name"),
                     ("description", "add description.purpose: what the source is, its units")):
        if not raw.get(key):
            problems.add((key,), f"{key} is missing", fix)
    purpose = (raw.get("description") or {}).get("purpose")
    if raw.get("description") and not purpose:
        problems.add(("description", "purpose"), "description.purpose is missing", "say what the source is")
    owner = _owner(problems, raw)
    schema = raw.get("schema") or []
    if len(schema) != 1:
        problems.add(("schema",), f"{len(schema)} schema objects; a lakehouse contract has exactly one",
                     "describe one table per contract (one file per source)")
        raise _error(path, problems)
    obj, at = schema[0], ("schema", 0)
    rules = [r for i, q in enumerate(obj.get("quality") or [])
             if (r := _rule(problems, q, at + ("quality", i), None)) is not None]
    fields, keys, parted = [], [], []
    for i, prop in enumerate(obj.get("properties") or []):
        spec = _field(problems, prop, at + ("properties", i))
        if spec is not None:
            rules += spec.pop("rules")
            fields.append(spec)
        if prop.get("primaryKey"):
            keys.append((prop.get("primaryKeyPosition", 0), i, prop.get("name")))
        if prop.get("partitioned"):
            parted.append(prop.get("name"))
    if not keys:
        problems.add(at + ("properties",), "no property is marked primaryKey",
                     "mark the fields that identify a row (station and time, say) with primaryKey: true "
                     "and primaryKeyPosition")
    custom = _custom(problems, raw.get("customProperties"), (), CONTRACT_PROPERTIES)
    values = {}
    for key, cls in (("endpoint", Endpoint), ("eventTime", EventTime), ("schemaDrift", SchemaDrift)):
        if key in custom:
            values[key] = _model(problems, cls, custom[key][0], custom[key][1])
    if "endpoint" not in custom:
        problems.add(("customProperties",), "the custom property endpoint is missing",
                     "add {property: endpoint, value: {path: /your/source}}: where ingestion fetches batches")
    quality = Quality()
    if "maxQuarantineRate" in custom:
        quality = _model(problems, Quality, {"max_quarantine_rate": custom["maxQuarantineRate"][0]},
                         custom["maxQuarantineRate"][1][:-1])
    partitioning = "fields" if parted else ("day(event_time)" if "eventTime" in custom else "day(ingested_at)")
    if "partitioning" in custom:
        value, loc = custom["partitioning"]
        if value not in PARTITIONINGS[:2]:
            problems.add(loc, f"partitioning {value!r} is not one lakehouse knows",
                         "use day(event_time) or day(ingested_at); to partition by a field, "
                         "mark the property partitioned: true")
        elif parted:
            problems.add(loc, f"partitioning {value} and properties marked partitioned ({', '.join(parted)})",
                         "choose one")
        else:
            partitioning = value
    freshness = _freshness(problems, raw)
    if problems.lines:
        raise _error(path, problems)
    doc = {"id": raw["id"], "title": raw["name"], "owner": owner, "description": purpose,
           "version": raw["version"], "source": values["endpoint"], "table": obj.get("physicalName") or obj["name"],
           "natural_key": [name for _, _, name in sorted(keys)], "event_time": values.get("eventTime"),
           "partitioning": partitioning, "schema_drift": values.get("schemaDrift") or SchemaDrift(),
           "quality": quality, "freshness": Freshness(**freshness), "fields": fields, "rules": rules}
    try:
        return Contract.model_validate(doc)
    except ValidationError as exc:
        for e in exc.errors():
            where = {"table": at + ("physicalName",), "id": ("id",)}.get(e["loc"][0] if e["loc"] else "", at)
            problems.add(where, e["msg"].removeprefix("Value error, "), HELP)
        raise _error(path, problems) from exc


def _error(path: Path, problems: Problems) -> ContractError:
    return ContractError(f"contract {path} is invalid:\n  " + "\n  ".join(problems.lines),
                         f"fix the contract ({HELP}); `lakehouse contracts lint` checks every contract")


def load_contract(path: Path) -> Contract:
    """Read and validate one contract; errors name the file, the path in it and the fix."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ContractError(f"cannot read contract {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ContractError(f"contract {path} is not valid YAML: {exc}") from exc
    return parse(raw, path)


def lint(folder: Path | None = None) -> tuple[dict[str, Contract], list[ContractError]]:
    """Every contract in the folder: those that load, and an error for each that does not
    (including two contracts that claim one table)."""
    folder = folder or contracts_dir()
    loaded: dict[str, Contract] = {}
    errors: list[ContractError] = []
    paths = sorted(folder.glob("*.yaml"))
    if not paths:
        errors.append(ContractError(f"no contracts (*.yaml) in {folder}",
                                    "add one ODCS document per source (docs/contracts.md)"))
    claimed: dict[str, Path] = {}
    for path in paths:
        try:
            c = load_contract(path)
        except ContractError as exc:
            errors.append(exc)
            continue
        if c.table in claimed:
            errors.append(ContractError(
                f"contract {path}: schema[0].physicalName {c.table!r} is already the table of "
                f"{claimed[c.table]}; two contracts cannot write one table",
                "give this source its own table name (schema[0].physicalName)"))
            continue
        claimed[c.table] = path
        loaded[c.id] = c
    return loaded, errors


def load_all(folder: Path | None = None) -> dict[str, Contract]:
    """Every contract, by id; a ContractError if any of them is invalid."""
    loaded, errors = lint(folder)
    if errors:
        if len(errors) == 1:
            raise errors[0]
        raise ContractError("\n".join(str(e) for e in errors),
                            f"fix the contracts ({HELP}); `lakehouse contracts lint` lists every problem")
    return loaded
