"""The contract model and its loader. Scope: reads contracts/*.yaml; writes nothing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lakehouse.errors import LakehouseError
from lakehouse.settings import REPO_ROOT

CONTRACTS_DIR = REPO_ROOT / "contracts"
FieldType = Literal["string", "long", "double", "boolean"]
_NAME = r"^[a-z][a-z0-9_]*$"


class ContractError(LakehouseError):
    """A contract file is missing, not YAML, or breaks a rule of the contract model."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Strict):
    name: str = Field(pattern=_NAME)
    type: FieldType
    required: bool = False
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    description: str

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"pattern does not compile: {exc}") from exc
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "FieldSpec":
        if (self.minimum is not None or self.maximum is not None) and self.type not in ("long", "double"):
            raise ValueError(f"minimum/maximum need a numeric type, not {self.type}")
        if self.pattern is not None and self.type != "string":
            raise ValueError(f"pattern needs type string, not {self.type}")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"minimum {self.minimum} > maximum {self.maximum}")
        return self


class CycleSource(_Strict):
    """Where the API says which cycle a batch belongs to: a response header, an envelope
    field, or nowhere (`infer`: ingestion infers it from batch numbers and payloads)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    from_: Literal["header", "field", "infer"] = Field("infer", alias="from")
    name: str | None = None

    @model_validator(mode="after")
    def _named(self) -> "CycleSource":
        if (self.from_ == "infer") != (self.name is None):
            raise ValueError("cycle: `name` is required with from: header or field, and not allowed with infer")
        return self


class Restart(_Strict):
    """Whether ingestion calls the API's restart itself when a cycle has ended."""

    when_cycle_ends: bool = False
    path: str = Field("/restart_data_generation", pattern=r"^/[A-Za-z0-9/_-]*$")


class Source(_Strict):
    path: str = Field(pattern=r"^/[A-Za-z0-9/_-]*$")
    # Batches 1..N make a cycle; a batch number outside is rejected.
    batches_per_cycle: int = Field(10, ge=1, le=100_000)
    cycle: CycleSource = CycleSource()
    restart: Restart = Restart()


class EventTime(_Strict):
    field: str
    format: Literal["iso8601_offset", "epoch_ms"]


class SchemaDrift(_Strict):
    unknown_fields: Literal["quarantine"]
    type_mismatch: Literal["quarantine"]


class Quality(_Strict):
    max_quarantine_rate: float = Field(ge=0, le=1)


class Contract(_Strict):
    id: str = Field(pattern=_NAME)
    title: str
    owner: str
    description: str
    source: Source
    table: str = Field(pattern=_NAME)
    natural_key: list[str] = Field(min_length=1)
    event_time: EventTime
    partitioning: Literal["day(event_time)"]
    schema_drift: SchemaDrift
    quality: Quality
    fields: list[FieldSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> "Contract":
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate field names: {', '.join(dupes)}")
        for key in self.natural_key:
            if key not in names:
                raise ValueError(f"natural_key names {key!r}, which is not a field")
            if not self.field(key).required:
                raise ValueError(f"natural_key field {key!r} must be required")
        if self.event_time.field not in names:
            raise ValueError(f"event_time.field names {self.event_time.field!r}, which is not a field")
        want = {"iso8601_offset": "string", "epoch_ms": "long"}[self.event_time.format]
        if self.field(self.event_time.field).type != want:
            raise ValueError(f"event_time format {self.event_time.format} needs a {want} field")
        if any(n.startswith("_") for n in names):
            raise ValueError("field names starting with _ are reserved for ingestion metadata")
        return self

    def field(self, name: str) -> FieldSpec:
        return next(f for f in self.fields if f.name == name)

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]


def load_contract(path: Path) -> Contract:
    """Read and validate one contract; errors name the file and the offending entry."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ContractError(f"cannot read contract {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ContractError(f"contract {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ContractError(f"contract {path} must be a mapping at the top level")
    try:
        contract = Contract.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = _describe_loc(raw, e["loc"])
            problems.append(f"{loc}: {e['msg']}" if loc else e["msg"])
        raise ContractError(f"contract {path} is invalid:\n  " + "\n  ".join(problems),
                            "fix the contract (docs/contracts.md describes every key)") from exc
    if contract.id != path.stem:
        raise ContractError(f"contract {path}: id {contract.id!r} must equal the file name {path.stem!r}")
    return contract


def _describe_loc(raw: dict, loc: tuple) -> str:
    """`fields[2] (pm25).maximum` rather than `fields.2.maximum`."""
    parts, node = [], raw
    for item in loc:
        if isinstance(item, int):
            name = node[item].get("name") if isinstance(node, list) and item < len(node) and isinstance(node[item], dict) else None
            parts[-1] += f"[{item}]" + (f" ({name})" if name else "")
            node = node[item] if isinstance(node, list) and item < len(node) else None
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts)


def load_all(folder: Path = CONTRACTS_DIR) -> dict[str, Contract]:
    contracts = {}
    for path in sorted(folder.glob("*.yaml")):
        c = load_contract(path)
        contracts[c.id] = c
    if not contracts:
        raise ContractError(f"no contracts (*.yaml) in {folder}")
    return contracts
