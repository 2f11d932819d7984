"""Row validation against a contract. Pure: no Spark, no network.

Each row of a batch ends up either valid (typed, with `_event_time`) or quarantined with
every reason found, so rows in = rows valid + rows quarantined, always.

Order of checks: structure (object, or array of the contract's length), schema drift
(unknown fields), types (strict: a string is never a number), then the row checks
compiled from the contract (required, ranges, patterns), then the event time parse.
Rules follow the contract's `schema_drift` policy (docs/contracts.md).

The row checks are the contract's Great Expectations suite (lakehouse.contracts.derive),
compiled into vectorised column operations with GE's own semantics (nulls skip range and
pattern checks; ranges are inclusive; a pattern is searched, not anchored) and GE's
reasons, so a batch costs no Great Expectations import. `expectations_with_gx` runs the
suite itself; the unit tests prove both give the same reasons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson
import pandas as pd

from lakehouse.contracts import Contract

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


# The Python types a JSON value may have for each contract type (strict: a string is never
# a number, and JSON true/false is never a number either).
_ALLOWED = {
    "string": {str, type(None)},
    "double": {int, float, type(None)},
    "long": {int, type(None)},
    "boolean": {bool, type(None)},
}


def _short(value) -> str:
    if hasattr(value, "item"):  # numpy/pandas scalars (values read back from a column)
        value = value.item()
    text = orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def structure_and_types(contract: Contract, rows: list) -> tuple[list[int], dict[str, list], list[Quarantined]]:
    """Split rows into well-formed, well-typed ones and the others with their reasons.

    Column-wise, so a large batch costs a few passes in C rather than a Python loop of
    checks per row: a column whose set of value types is allowed needs no look at each row.
    Returns the positions of the good rows, their columns, and the quarantined rows.
    """
    names = contract.field_names
    known = set(names)
    reasons: dict[int, list[str]] = {}
    records: list[dict] = []
    positions: list[int] = []
    for i, row in enumerate(rows):
        if type(row) is dict:
            if row.keys() <= known:
                records.append(row)
                positions.append(i)
                continue
            reasons[i] = [f"{extra}: unknown field (schema drift; contract policy: quarantine)"
                          for extra in sorted(set(row) - known)]
        elif type(row) is list:
            if len(row) == len(names):
                records.append(dict(zip(names, row)))
                positions.append(i)
                continue
            reasons[i] = [f"malformed row: array of {len(row)} values, the contract has "
                          f"{len(names)} fields ({', '.join(names)})"]
        else:
            reasons[i] = [f"malformed row: expected a JSON object or array, got {type(row).__name__} {_short(row)}"]
    columns: dict[str, list] = {}
    for f in contract.fields:
        col = [r.get(f.name) for r in records]
        allowed = _ALLOWED[f.type]
        if not set(map(type, col)) <= allowed:
            for pos in [pos for pos, value in enumerate(col) if type(value) not in allowed]:
                value = col[pos]
                reasons.setdefault(positions[pos], []).append(
                    f"{f.name}: expected {f.type}, got {type(value).__name__} {_short(value)} "
                    "(type mismatch; contract policy: quarantine)")
        columns[f.name] = col
    bad = [Quarantined(i, orjson.dumps(rows[i]).decode(), why) for i, why in reasons.items()]
    if bad:
        keep = [pos for pos, i in enumerate(positions) if i not in reasons]
        positions = [positions[pos] for pos in keep]
        columns = {name: [col[pos] for pos in keep] for name, col in columns.items()}
    return positions, columns, bad


def _frame(contract: Contract, positions: list[int], columns: dict[str, list]) -> pd.DataFrame:
    dtypes = {"string": "object", "double": "float64", "long": "Int64", "boolean": "boolean"}
    data = {ROW_INDEX: pd.Series(positions, dtype="int64")}
    for f in contract.fields:
        data[f.name] = pd.Series(columns[f.name], dtype=dtypes[f.type])
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


def row_checks(contract: Contract, df: pd.DataFrame) -> dict[int, list[str]]:
    """The contract's row checks, vectorised: row index -> reasons, in the suite's order
    (per field: required, range, pattern), worded as expectations_with_gx words them."""
    reasons: dict[int, list[str]] = {}

    def flag(column: str, failing: pd.Series, msg: str, show: bool = True) -> None:
        for pos in failing[failing].index:
            value = df.at[pos, column]
            reasons.setdefault(int(df.at[pos, ROW_INDEX]), []).append(
                f"{column}: {msg}" + (f" (got {_short(value)})" if show else ""))

    if df.empty:
        return reasons
    for f in contract.fields:
        col = df[f.name]
        present = col.notna()
        if f.required:
            flag(f.name, ~present, "required, got null", show=False)
        if f.minimum is not None or f.maximum is not None:
            numbers = col.astype("float64")
            outside = pd.Series(False, index=col.index)
            if f.minimum is not None:
                outside |= numbers < f.minimum
            if f.maximum is not None:
                outside |= numbers > f.maximum
            flag(f.name, present & outside.fillna(False).astype(bool),
                 _describe("expect_column_values_to_be_between",
                           {"min_value": f.minimum, "max_value": f.maximum}))
        if f.pattern is not None:
            matches = col[present].astype(str).str.contains(f.pattern, regex=True)
            failing = pd.Series(False, index=col.index)
            failing[present] = ~matches.astype(bool)
            flag(f.name, failing, _describe("expect_column_values_to_match_regex", {"regex": f.pattern}))
    return reasons


def expectations_with_gx(contract: Contract, df: pd.DataFrame) -> dict[int, list[str]]:
    """Run the contract's GE suite itself; row index -> reasons, from GE's per-row results.
    Seconds of import: for the batch-level suite and the tests, never per batch."""
    from lakehouse.contracts.derive import expectation_suite, gx_context

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


# The common ISO 8601 shapes, parsed vectorised; anything else is parsed row by row with
# datetime.fromisoformat, which decides (and explains) what is accepted.
_ISO_FAST = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})$"


def event_times(fmt: str, values: pd.Series) -> tuple[pd.Series, dict[int, str]]:
    """UTC (naive) event times of a column, and position -> error for those that don't parse."""
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
    if fmt == "epoch_ms":
        fast = values.notna()
        parse = lambda v: pd.to_datetime(v.astype("int64"), unit="ms", utc=True, errors="coerce")  # noqa: E731
    else:
        fast = values.str.match(_ISO_FAST, na=False).astype(bool)
        parse = lambda v: pd.to_datetime(v, format="ISO8601", utc=True, errors="coerce")  # noqa: E731
    if fast.any():
        out[fast] = parse(values[fast]).dt.tz_localize(None).astype("datetime64[us]")
    slow = ~fast | out.isna()  # not the common shape, or out of range: decided row by row
    errors: dict[int, str] = {}
    for pos in values.index[slow]:
        value = values[pos]
        try:
            out[pos] = parse_event_time(fmt, value).replace(tzinfo=None)
        except (ValueError, OverflowError, OSError, TypeError) as exc:
            errors[pos] = f"not a valid {fmt} event time (got {_short(value)}: {exc})"
    return out, errors


def validate_rows(contract: Contract, rows: list) -> Validation:
    positions, columns, bad = structure_and_types(contract, rows)
    df = _frame(contract, positions, columns)
    failed = row_checks(contract, df)
    et = contract.event_time
    checked = ~df[ROW_INDEX].isin(failed.keys())
    times, errors = event_times(et.format, df.loc[checked, et.field])
    for pos, message in errors.items():
        failed.setdefault(int(df.at[pos, ROW_INDEX]), []).append(f"{et.field}: {message}")
    df["_event_time"] = times.reindex(df.index)
    for i, reasons in failed.items():
        bad.append(Quarantined(i, orjson.dumps(rows[i]).decode(), reasons))  # as it arrived
    bad.sort(key=lambda q: q.index)
    valid = df[~df[ROW_INDEX].isin(failed.keys())].reset_index(drop=True)
    result = Validation(rows_in=len(rows), valid=valid, quarantined=bad)
    if result.rows_valid + result.rows_quarantined != result.rows_in:
        raise AssertionError(f"row conservation broken: {result.rows_in} in, {result.rows_valid} valid, "
                             f"{result.rows_quarantined} quarantined")
    return result
