"""Row validation against a contract. Pure: no Spark, no network.

Each row of a batch ends up either valid (typed, with `_event_time`) or quarantined with
every reason found, so rows in = rows valid + rows quarantined, always.

Order of checks: structure (object, or array of the contract's length), schema drift
(unknown fields), types (strict: a string is never a number), then the Great
Expectations suite derived from the contract (required, ranges, patterns), then the event
time parse. Rules follow the contract's `schema_drift` policy (docs/contracts.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson
import pandas as pd

from lakehouse.contracts import Contract
from lakehouse.contracts.derive import expectation_suite, gx_context

ROW_INDEX = "_row_index"


@dataclass
class Quarantined:
    index: int
    raw: str
    reasons: list[str]


@dataclass
class Validation:
    rows_in: int
    valid: pd.DataFrame                      # contract fields + _event_time + _row_index
    quarantined: list[Quarantined] = field(default_factory=list)

    @property
    def rows_valid(self) -> int:
        return len(self.valid)

    @property
    def rows_quarantined(self) -> int:
        return len(self.quarantined)


def _type_ok(kind: str, value) -> bool:
    if value is None:
        return True
    if kind == "string":
        return isinstance(value, str)
    if kind == "double":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "long":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    raise AssertionError(kind)


def _short(value) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def structure_and_types(contract: Contract, rows: list) -> tuple[list[tuple[int, dict]], list[Quarantined]]:
    """Rows that are well-formed and well-typed, and the others with their reasons."""
    names = contract.field_names
    types = {f.name: f.type for f in contract.fields}
    known = set(names)
    good: list[tuple[int, dict]] = []
    bad: list[Quarantined] = []
    for i, row in enumerate(rows):
        reasons: list[str] = []
        if isinstance(row, dict):
            record = row
            for extra in sorted(set(row) - known):
                reasons.append(f"{extra}: unknown field (schema drift; contract policy: quarantine)")
        elif isinstance(row, list):
            if len(row) != len(names):
                reasons.append(f"malformed row: array of {len(row)} values, the contract has "
                               f"{len(names)} fields ({', '.join(names)})")
                record = {}
            else:
                record = dict(zip(names, row))
        else:
            reasons.append(f"malformed row: expected a JSON object or array, got {type(row).__name__} {_short(row)}")
            record = {}
        if not reasons:
            for name in names:
                value = record.get(name)
                if not _type_ok(types[name], value):
                    reasons.append(f"{name}: expected {types[name]}, got {type(value).__name__} "
                                   f"{_short(value)} (type mismatch; contract policy: quarantine)")
        if reasons:
            bad.append(Quarantined(i, orjson.dumps(row).decode(), reasons))
        else:
            good.append((i, {n: record.get(n) for n in names}))
    return good, bad


def _frame(contract: Contract, good: list[tuple[int, dict]]) -> pd.DataFrame:
    dtypes = {"string": "object", "double": "float64", "long": "Int64", "boolean": "boolean"}
    data = {ROW_INDEX: [i for i, _ in good]}
    for f in contract.fields:
        data[f.name] = pd.Series([r[f.name] for _, r in good], dtype=dtypes[f.type])
    return pd.DataFrame(data)


def _missing(value) -> bool:
    """None, NaN and pandas' NA (nullable integer columns) are all 'null' to a user."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _describe(exp_type: str, kwargs: dict) -> str:
    if exp_type == "expect_column_values_to_not_be_null":
        return "required, got null"
    if exp_type == "expect_column_values_to_be_between":
        return f"outside [{kwargs.get('min_value')}, {kwargs.get('max_value')}]"
    if exp_type == "expect_column_values_to_match_regex":
        return f"does not match {kwargs.get('regex')}"
    return exp_type


def expectations(contract: Contract, df: pd.DataFrame) -> dict[int, list[str]]:
    """Run the contract's GE suite; row index -> reasons, from GE's per-row results."""
    if df.empty:
        return {}
    ctx = gx_context()
    name = f"contract_{contract.id}"
    try:
        asset = ctx.data_sources.get("batches").get_asset(name)
    except (KeyError, ValueError, LookupError):
        source = (ctx.data_sources.get("batches") if "batches" in ctx.data_sources.all()
                  else ctx.data_sources.add_pandas("batches"))
        asset = source.add_dataframe_asset(name)
        asset.add_batch_definition_whole_dataframe("whole")
    batch = asset.get_batch_definition("whole").get_batch(batch_parameters={"dataframe": df})
    result = batch.validate(expectation_suite(contract), result_format={
        "result_format": "COMPLETE", "unexpected_index_column_names": [ROW_INDEX],
        "return_unexpected_index_query": False})
    reasons: dict[int, list[str]] = {}
    for r in result.results:
        cfg = r.expectation_config
        if r.exception_info and r.exception_info.get("raised_exception"):
            raise RuntimeError(f"validation of {cfg.kwargs.get('column')} failed to run: "
                               f"{r.exception_info.get('exception_message')}")
        column = cfg.kwargs.get("column")
        for hit in r.result.get("unexpected_index_list") or []:
            value = hit.get(column)
            shown = "null" if _missing(value) else _short(value.item() if hasattr(value, "item") else value)
            msg = _describe(cfg.type, cfg.kwargs)
            reasons.setdefault(int(hit[ROW_INDEX]), []).append(
                f"{column}: {msg}" + ("" if msg.endswith("null") else f" (got {shown})"))
    return reasons


def parse_event_time(fmt: str, value) -> datetime:
    """UTC instant of an event-time value; ValueError if it can't be parsed."""
    if fmt == "epoch_ms":
        return datetime.fromtimestamp(int(value) / 1000, tz=timezone.utc)
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("no UTC offset")
    return parsed.astimezone(timezone.utc)


def validate_rows(contract: Contract, rows: list) -> Validation:
    good, bad = structure_and_types(contract, rows)
    df = _frame(contract, good)
    failed = expectations(contract, df)
    et = contract.event_time
    times: list = []
    for pos, (i, record) in enumerate(good):
        if i in failed:
            times.append(None)
            continue
        try:
            times.append(parse_event_time(et.format, record[et.field]).replace(tzinfo=None))
        except (ValueError, OverflowError, OSError) as exc:
            failed.setdefault(i, []).append(f"{et.field}: not a valid {et.format} event time "
                                            f"(got {_short(record[et.field])}: {exc})")
            times.append(None)
    df["_event_time"] = pd.Series(times, dtype="datetime64[us]")
    for i, reasons in failed.items():
        bad.append(Quarantined(i, orjson.dumps(rows[i]).decode(), reasons))  # as it arrived
    bad.sort(key=lambda q: q.index)
    valid = df[~df[ROW_INDEX].isin(failed.keys())].reset_index(drop=True)
    result = Validation(rows_in=len(rows), valid=valid, quarantined=bad)
    if result.rows_valid + result.rows_quarantined != result.rows_in:
        raise AssertionError(f"row conservation broken: {result.rows_in} in, {result.rows_valid} valid, "
                             f"{result.rows_quarantined} quarantined")
    return result

