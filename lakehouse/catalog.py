"""pyiceberg on the shared JDBC catalog (same PostgreSQL tables as Spark and Trino).

Scope: reads tables and creates namespaces; uses the read-only S3 user, so it can never
write data files.
"""

from __future__ import annotations

from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import SqlCatalog

from lakehouse.settings import Settings

# The platform's layers (docs/architecture.md). Each namespace is pinned to s3://<bucket>/<ns>
# so every engine writes a layer under the prefix its S3 policy allows.
NAMESPACES = ("raw", "quarantine", "audit", "staging", "intermediate", "marts")


def catalog(settings: Settings) -> Catalog:
    return SqlCatalog(
        settings.catalog_name,
        uri=settings.catalog_sqlalchemy_url,
        warehouse=settings.warehouse_uri,
        init_catalog_tables="false",  # provisioning owns the catalog schema
        **{
            "s3.endpoint": settings.s3_endpoint,
            "s3.access-key-id": settings.reader_s3_access_key,
            "s3.secret-access-key": settings.reader_s3_secret_key.get_secret_value(),
            "s3.region": settings.s3_region,
            "s3.path-style-access": "true",
        },
    )


def ensure_namespaces(settings: Settings, names: tuple[str, ...] = NAMESPACES) -> list[str]:
    """Create the layer namespaces if missing; returns the ones created now."""
    cat = catalog(settings)
    existing = {ns[0] for ns in cat.list_namespaces()}
    created = []
    for name in names:
        if name not in existing:
            cat.create_namespace(name, {"location": f"{settings.warehouse_uri}/{name}"})
            created.append(name)
    return created
