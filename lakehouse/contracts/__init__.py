"""Data contracts: one YAML per source in contracts/, the single source of truth.

`load_contract` validates a file with clear errors; `lakehouse.contracts.derive` turns a
contract into the Spark schema, the validation suite, the Iceberg DDL and dbt sources.
"""

from lakehouse.contracts.model import (  # noqa: F401
    CONTRACTS_DIR,
    Contract,
    ContractError,
    FieldSpec,
    load_all,
    load_contract,
)
