"""Schema evolution: a contract against the raw table it deployed. Scope: pure.

`compare` lists what differs between a contract and the deployed raw table (its Iceberg
schema, and the contract version and required fields recorded in its properties):
- an optional field added: additive, applied in place before the next append;
- a type widened the way Iceberg promotes in place (integer to long, decimal(p,s) to
  decimal(p',s) with p' > p): additive too;
- a field removed, a type narrowed or changed otherwise, a new required field, or a field
  that became required: breaking. Refused unless the contract's major version is higher than
  the deployed one; then applied in place (docs/contracts.md, "Schema evolution"), except a
  type change Iceberg cannot make, which is refused whatever the version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lakehouse.contracts.model import Contract

VERSION_PROP = "lakehouse.contract-version"
REQUIRED_PROP = "lakehouse.contract-required"


@dataclass(frozen=True)
class Change:
    kind: str          # add | promote | add_required | drop | require | retype
    field: str
    detail: str
    breaking: bool
    sql: str | None = None  # what applies it to the table (None: cannot be applied in place)

    def line(self) -> str:
        return f"{'BREAKING ' if self.breaking else ''}{self.kind} {self.field}: {self.detail}"


def _promotes(old: str, new: str) -> bool:
    """Whether Iceberg changes `old` to `new` in place (a widening)."""
    if (old, new) in {("INT", "BIGINT"), ("FLOAT", "DOUBLE")}:
        return True
    a, b = re.fullmatch(r"DECIMAL\((\d+),(\d+)\)", old), re.fullmatch(r"DECIMAL\((\d+),(\d+)\)", new)
    return bool(a and b and a.group(2) == b.group(2) and int(b.group(1)) > int(a.group(1)))


def iceberg_type(t) -> str:
    """A pyiceberg type as the raw DDL writes it."""
    from pyiceberg import types as T

    if isinstance(t, T.DecimalType):
        return f"DECIMAL({t.precision},{t.scale})"
    return {T.StringType: "STRING", T.IntegerType: "INT", T.LongType: "BIGINT", T.DoubleType: "DOUBLE",
            T.FloatType: "FLOAT", T.BooleanType: "BOOLEAN", T.DateType: "DATE", T.TimestamptzType: "TIMESTAMP",
            T.TimestampType: "TIMESTAMP"}.get(type(t), str(t).upper())


def compare(contract: Contract, columns: dict[str, str], properties: dict[str, str], table: str) -> list[Change]:
    """The changes from the deployed table (`columns`: name -> type, `properties`) to the
    contract, in the contract's field order, removals last. `table`: its full name, for
    the ALTER statements."""
    from lakehouse.contracts.derive import columns_sql

    deployed_required = properties.get(REQUIRED_PROP)
    was_required = set(deployed_required.split(",")) if deployed_required else None
    changes = []
    for f in contract.fields:
        comment = f.description + (f" [{f.unit}]" if f.unit else "")
        if f.name not in columns:
            add = f"ALTER TABLE {table} ADD COLUMNS ({columns_sql([(f.name, f.spark_type, comment)])})"
            if f.required:
                changes.append(Change("add_required", f.name, f"a new required field ({f.spark_type}); rows "
                                      "written before have no value in it", True, add))
            else:
                changes.append(Change("add", f.name, f"a new optional field ({f.spark_type})", False, add))
            continue
        old = columns[f.name]
        if old != f.spark_type:
            if _promotes(old, f.spark_type):
                changes.append(Change("promote", f.name, f"{old} widens to {f.spark_type}", False,
                                      f"ALTER TABLE {table} ALTER COLUMN {f.name} TYPE {f.spark_type}"))
            else:
                kind = "narrowed" if _promotes(f.spark_type, old) else "changed"
                changes.append(Change("retype", f.name, f"type {kind} from {old} to {f.spark_type}", True))
        if f.required and was_required is not None and f.name not in was_required:
            changes.append(Change("require", f.name, "an optional field became required", True, ""))
    metadata = {n for n, _, _ in _raw_metadata()}
    for name in columns:
        if name not in contract.field_names and name not in metadata:
            changes.append(Change("drop", name, "a field removed from the contract", True,
                                  f"ALTER TABLE {table} DROP COLUMN {name}"))
    return changes


def _raw_metadata():
    from lakehouse.contracts.derive import RAW_METADATA

    return RAW_METADATA


def deployed_major(properties: dict[str, str]) -> int:
    """The major version of the contract that last shaped the table (1 for a table made
    before versions were recorded)."""
    return int(properties.get(VERSION_PROP, "1.0.0").split(".")[0])


def refusal(contract: Contract, changes: list[Change], properties: dict[str, str]) -> str | None:
    """Why the changes can't be applied, or None."""
    deployed = properties.get(VERSION_PROP, "1.0.0")
    breaking = [c for c in changes if c.breaking]
    if contract.major_version < deployed_major(properties):
        return (f"contract {contract.id} is version {contract.version}, older than the version {deployed} "
                f"that shaped its raw table")
    impossible = [c for c in breaking if c.sql is None]
    if impossible:
        return ("Iceberg cannot make these changes in place: " + "; ".join(c.line() for c in impossible)
                + ". Add the field under a new name (and remove the old one) instead")
    if breaking and contract.major_version == deployed_major(properties):
        return (f"breaking change(s) to {contract.id} without a new major version (the table was shaped by "
                f"{deployed}, the contract is {contract.version}): " + "; ".join(c.line() for c in breaking))
    return None


def properties_sql(contract: Contract, table: str) -> str:
    required = ",".join(f.name for f in contract.fields if f.required)
    return (f"ALTER TABLE {table} SET TBLPROPERTIES ('{VERSION_PROP}'='{contract.version}', "
            f"'{REQUIRED_PROP}'='{required}')")


def table_state(table) -> tuple[dict[str, str], dict[str, str]]:
    """(column -> type, properties) of a pyiceberg table."""
    return {f.name: iceberg_type(f.field_type) for f in table.schema().fields}, dict(table.properties)


def diff_lines(settings, contract: Contract) -> tuple[list[str], bool]:
    """`lakehouse contracts diff` for one contract: lines to print, and whether the
    next ingest would refuse (a breaking change without a new major version)."""
    from lakehouse.catalog import catalog

    name = f"{settings.catalog_name}.raw.{contract.table}"
    cat = catalog(settings)
    if not cat.table_exists(("raw", contract.table)):
        return [f"{contract.id} {contract.version}: raw.{contract.table} is not deployed yet "
                "(the first ingest creates it)"], False
    columns, props = table_state(cat.load_table(("raw", contract.table)))
    changes = compare(contract, columns, props, name)
    deployed = props.get(VERSION_PROP, "1.0.0 (not recorded)")
    head = f"{contract.id} {contract.version}: raw.{contract.table} was shaped by {deployed}"
    if not changes:
        return [head + "; in step"], False
    why = refusal(contract, changes, props)
    lines = [head + f"; {len(changes)} change(s):"] + [f"  {c.line()}" for c in changes]
    lines.append(f"  -> refused at the next ingest: {why}" if why else
                 "  -> applied in place before the next append")
    return lines, why is not None
