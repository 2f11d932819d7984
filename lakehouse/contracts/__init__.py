"""Data contracts: one Open Data Contract Standard (ODCS v3.2.0) document per source in
contracts/, the single source of truth.

`load_contract` validates a file with clear errors (`lakehouse.contracts.odcs`);
`lakehouse.contracts.derive` turns a contract into the Spark schema, the validation suite,
the Iceberg DDL and the dbt sources.
"""

from lakehouse.contracts.model import Contract, ContractError, FieldSpec
from lakehouse.contracts.odcs import CONTRACTS_DIR, contracts_dir, lint, load_all, load_contract

__all__ = ["CONTRACTS_DIR", "Contract", "ContractError", "FieldSpec", "contracts_dir", "lint", "load_all",
           "load_contract"]
