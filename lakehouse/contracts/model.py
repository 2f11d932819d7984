"""The contract model. Scope: pure; `lakehouse.contracts.odcs` reads contracts/*.yaml into it.

A contract file is an Open Data Contract Standard (ODCS v3.2.0) document. This module holds
the project's own, normalised view of one (`Contract`): what ingestion, the derivations and
the scheduler read. The mapping from ODCS, and every rule beyond ODCS's JSON Schema, live in
`lakehouse.contracts.odcs`; docs/contracts.md describes both.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lakehouse.errors import LakehouseError

FieldType = Literal["string", "integer", "long", "decimal", "double", "boolean", "date", "timestamp"]
# How a timestamp arrives: ISO 8601 text (with its offset, or read in the declared zone when
# it has none), or a number of seconds or milliseconds since 1970-01-01 UTC.
TimeFormat = Literal["iso8601", "epoch_seconds", "epoch_millis"]
NUMERIC = ("integer", "long", "decimal", "double")
# The largest decimal Iceberg (and Spark, and Trino) store.
MAX_DECIMAL_PRECISION = 38
NAME = r"^[a-z][a-z0-9_]*$"


class ContractError(LakehouseError):
    """A contract file is missing, not YAML, not valid ODCS, or breaks a rule of the project."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _zone(v: str | None) -> str | None:
    if v is not None:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as America/Mexico_City)") from exc
    return v


class FieldSpec(_Strict):
    name: str = Field(pattern=NAME)
    type: FieldType
    required: bool = False
    unique: bool = False
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    description: str
    precision: int | None = Field(None, ge=1, le=MAX_DECIMAL_PRECISION)  # decimal only
    scale: int | None = Field(None, ge=0)                                # decimal only
    # `string`: the API sends this number or boolean as text ("42", "3.5", "true"); ingestion
    # converts it, and quarantines a value that does not parse, with its reason.
    delivered_as: Literal["native", "string"] = "native"
    time_format: TimeFormat | None = None   # timestamp only (default iso8601)
    zone: str | None = None                 # timestamp only: the zone of ISO values without an offset
    partition: bool = False                 # the raw table is partitioned by this field

    @field_validator("zone")
    @classmethod
    def _zone_known(cls, v: str | None) -> str | None:
        return _zone(v)

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
        if (self.minimum is not None or self.maximum is not None) and self.type not in NUMERIC:
            raise ValueError(f"minimum/maximum need a numeric type, not {self.type}")
        if self.pattern is not None and self.type != "string":
            raise ValueError(f"pattern needs type string, not {self.type}")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"minimum {self.minimum} > maximum {self.maximum}")
        if (self.type == "decimal") != (self.precision is not None and self.scale is not None):
            raise ValueError("a decimal needs its precision and scale (physicalType: DECIMAL(p,s)), "
                             "and only a decimal has them")
        if self.scale is not None and self.precision is not None and self.scale > self.precision:
            raise ValueError(f"decimal scale {self.scale} > precision {self.precision}")
        if self.delivered_as == "string" and self.type not in NUMERIC + ("boolean",):
            raise ValueError(f"deliveredAs: string applies to numbers and booleans, not {self.type} "
                             "(dates, timestamps and strings always arrive as text)")
        if (self.time_format is not None or self.zone is not None) and self.type != "timestamp":
            raise ValueError(f"timestampFormat and defaultTimezone apply to timestamps, not {self.type}")
        if self.zone is not None and self.time_format not in (None, "iso8601"):
            raise ValueError("defaultTimezone applies to ISO 8601 text; epoch values are UTC by definition")
        return self

    @property
    def spark_type(self) -> str:
        if self.type == "decimal":
            return f"DECIMAL({self.precision},{self.scale})"
        return {"string": "STRING", "integer": "INT", "long": "BIGINT", "double": "DOUBLE",
                "boolean": "BOOLEAN", "date": "DATE", "timestamp": "TIMESTAMP"}[self.type]

    @property
    def max_abs(self) -> Decimal | None:
        """A decimal's largest absolute value (precision and scale), else None."""
        if self.type != "decimal":
            return None
        return Decimal(10) ** (self.precision - self.scale) - Decimal(1).scaleb(-self.scale)


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


class Auth(_Strict):
    """An HTTP header sent with every request; its value is read from an environment
    variable (the secret is never written in the contract)."""

    header: str = Field(pattern=r"^[A-Za-z0-9-]+$")
    # LAKEHOUSE_SOURCE_<NAME>: set in the environment or in the stack's env file.
    env: str = Field(pattern=r"^LAKEHOUSE_SOURCE_[A-Z0-9_]+$")
    prefix: str = ""  # e.g. "Bearer " for an Authorization header


class Endpoint(_Strict):
    # None: the platform's batch API (LAKEHOUSE_BATCH_API_URL, or the bundled simulator).
    base_url: str | None = Field(None, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
    path: str = Field(pattern=r"^/[A-Za-z0-9/_.-]*$")
    # None: the platform's group (LAKEHOUSE_GROUP_NUMBER).
    group_number: int | None = Field(None, ge=0)
    auth: Auth | None = None
    # Batches 1..N make a cycle; a batch number outside is rejected.
    batches_per_cycle: int = Field(10, ge=1, le=100_000)
    cycle: CycleSource = CycleSource()
    restart: Restart = Restart()

    @field_validator("base_url")
    @classmethod
    def _no_trailing_slash(cls, v: str | None) -> str | None:
        return v.rstrip("/") if v else v


class EventTime(_Strict):
    """The field that says when a row happened. For a timestamp field the format is the
    field's own; a string or integer field names how to read it."""

    field: str
    format: Literal["iso8601_offset", "iso8601_local", "epoch_seconds", "epoch_ms"] | None = None
    zone: str | None = None  # iso8601_local: the zone the local times are in

    @field_validator("zone")
    @classmethod
    def _zone_known(cls, v: str | None) -> str | None:
        return _zone(v)

    @model_validator(mode="after")
    def _zone_with_local(self) -> "EventTime":
        if (self.format == "iso8601_local") != (self.zone is not None):
            raise ValueError("eventTime: `zone` is required with format iso8601_local, and not allowed otherwise")
        return self


class SchemaDrift(_Strict):
    unknown_fields: Literal["quarantine"] = "quarantine"
    type_mismatch: Literal["quarantine"] = "quarantine"


class Quality(_Strict):
    max_quarantine_rate: float = Field(0.10, ge=0, le=1)


class Freshness(_Strict):
    """dbt source freshness of the raw table, from the contract's SLA latency."""

    warn_minutes: int = Field(15, ge=1)
    error_minutes: int = Field(60, ge=1)


PARTITIONINGS = ("day(event_time)", "day(ingested_at)", "fields")
OPERATORS = ("mustBe", "mustNotBe", "mustBeGreaterThan", "mustBeGreaterOrEqualTo", "mustBeLessThan",
             "mustBeLessOrEqualTo", "mustBeBetween", "mustNotBeBetween")


class BatchRule(_Strict):
    """A batch-level rule (an ODCS `quality` rule of type library, or a property's
    `unique`), checked on each batch's valid rows before they are published: a batch that
    breaks one is held (docs/contracts.md, "The quality gate")."""

    name: str                      # where the contract states it, for messages
    metric: Literal["rowCount", "nullValues", "duplicateValues"]
    fields: list[str] = []         # nullValues: one field; duplicateValues: the fields whose values repeat
    unit: Literal["rows", "percent"] = "rows"
    operator: Literal[OPERATORS]
    value: float | list[float]
    description: str = ""

    @model_validator(mode="after")
    def _shape(self) -> "BatchRule":
        between = self.operator in ("mustBeBetween", "mustNotBeBetween")
        if between != isinstance(self.value, list) or (between and len(self.value) != 2):
            raise ValueError(f"{self.operator} takes {'[low, high]' if between else 'one number'}")
        if self.metric == "rowCount" and (self.fields or self.unit == "percent"):
            raise ValueError("rowCount counts the batch's valid rows: it takes no field and no percent unit")
        if self.metric == "nullValues" and len(self.fields) != 1:
            raise ValueError("nullValues is a rule of one property")
        if self.metric == "duplicateValues" and not self.fields:
            raise ValueError("duplicateValues needs the properties whose values must not repeat")
        return self

    def holds(self, measured: float) -> bool:
        v = self.value
        return {"mustBe": lambda: measured == v, "mustNotBe": lambda: measured != v,
                "mustBeGreaterThan": lambda: measured > v, "mustBeGreaterOrEqualTo": lambda: measured >= v,
                "mustBeLessThan": lambda: measured < v, "mustBeLessOrEqualTo": lambda: measured <= v,
                "mustBeBetween": lambda: v[0] <= measured <= v[1],
                "mustNotBeBetween": lambda: not v[0] <= measured <= v[1]}[self.operator]()

    def text(self) -> str:
        what = {"rowCount": "valid rows", "nullValues": "null values", "duplicateValues": "repeated values"}
        of = f" of {', '.join(self.fields)}" if self.fields else ""
        unit = " (percent of valid rows)" if self.unit == "percent" else ""
        return f"{what[self.metric]}{of}{unit} {self.operator} {self.value:g}" if not isinstance(self.value, list) \
            else f"{what[self.metric]}{of}{unit} {self.operator} {self.value}"


class Contract(_Strict):
    id: str = Field(pattern=NAME)
    title: str
    owner: str
    description: str
    version: str
    source: Endpoint
    table: str = Field(pattern=NAME)
    natural_key: list[str] = Field(min_length=1)
    event_time: EventTime | None = None
    # day(event_time): the day of the event time; day(ingested_at): the day ingestion wrote
    # the row; fields: the fields marked `partitioned` (a timestamp by its day).
    partitioning: Literal["day(event_time)", "day(ingested_at)", "fields"]
    schema_drift: SchemaDrift = SchemaDrift()
    quality: Quality = Quality()
    freshness: Freshness = Freshness()
    fields: list[FieldSpec] = Field(min_length=1)
    rules: list[BatchRule] = []

    @model_validator(mode="after")
    def _references(self) -> "Contract":
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate field names: {', '.join(dupes)}")
        for key in self.natural_key:
            if key not in names:
                raise ValueError(f"the primary key names {key!r}, which is not a field")
            if not self.field(key).required:
                raise ValueError(f"primary key field {key!r} must be required")
        if any(n.startswith("_") for n in names):
            raise ValueError("field names starting with _ are reserved for ingestion metadata")
        if self.event_time is not None:
            et = self.event_time
            if et.field not in names:
                raise ValueError(f"eventTime.field names {et.field!r}, which is not a field")
            f = self.field(et.field)
            if f.type == "timestamp":
                if et.format is not None:
                    raise ValueError(f"eventTime: {et.field!r} is a timestamp, which says how it is read; "
                                     "remove eventTime.format")
            else:
                want = {"iso8601_offset": "string", "iso8601_local": "string",
                        "epoch_seconds": "long", "epoch_ms": "long"}.get(et.format)
                if want is None:
                    raise ValueError(f"eventTime: {et.field!r} is a {f.type}; a format is needed "
                                     "(iso8601_offset, iso8601_local, epoch_seconds or epoch_ms), "
                                     "or make the field a timestamp")
                if f.type != want:
                    raise ValueError(f"eventTime format {et.format} needs a {want} field, "
                                     f"and {et.field!r} is a {f.type}")
        elif self.partitioning == "day(event_time)":
            raise ValueError("partitioning day(event_time) needs an eventTime")
        for rule in self.rules:
            unknown = [n for n in rule.fields if n not in names]
            if unknown:
                raise ValueError(f"{rule.name}: names {', '.join(unknown)}, not a field of the contract")
        parted = [f.name for f in self.fields if f.partition]
        if (self.partitioning == "fields") != bool(parted):
            raise ValueError("partitioning by fields needs at least one property with `partitioned: true`, "
                             "and properties are partitioned only then")
        return self

    def field(self, name: str) -> FieldSpec:
        return next(f for f in self.fields if f.name == name)

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def major_version(self) -> int:
        return int(self.version.split(".")[0])
