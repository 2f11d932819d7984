"""Provisioning helpers: databases and roles in PostgreSQL, the bucket and S3 users in MinIO.

Scope: idempotent. The PostgreSQL and MinIO service modules call these for every database
and S3 user the registry's services declare. The env file is the truth, so a changed
password there is applied. Uses the PostgreSQL superuser and MinIO root only here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg
from minio import Minio, MinioAdmin
from minio.credentials import StaticProvider
from psycopg import sql

if TYPE_CHECKING:  # the settings class is built from the service modules
    from lakehouse.settings import Settings


# The Iceberg JDBC catalog schema (V1, with iceberg_type, so views work). Created here so
# that Spark, Trino and pyiceberg all find the same tables instead of racing to create them.
ICEBERG_CATALOG_DDL = (
    """CREATE TABLE IF NOT EXISTS iceberg_tables (
        catalog_name VARCHAR(255) NOT NULL,
        table_namespace VARCHAR(255) NOT NULL,
        table_name VARCHAR(255) NOT NULL,
        metadata_location VARCHAR(1000),
        previous_metadata_location VARCHAR(1000),
        iceberg_type VARCHAR(5),
        PRIMARY KEY (catalog_name, table_namespace, table_name))""",
    """CREATE TABLE IF NOT EXISTS iceberg_namespace_properties (
        catalog_name VARCHAR(255) NOT NULL,
        namespace VARCHAR(255) NOT NULL,
        property_key VARCHAR(255),
        property_value VARCHAR(1000),
        PRIMARY KEY (catalog_name, namespace, property_key))""",
)


def pg_connect(settings: Settings, dbname: str = "postgres", user: str | None = None,
               password: str | None = None) -> psycopg.Connection:
    return psycopg.connect(
        host=settings.postgres_address, port=settings.postgres_port, dbname=dbname,
        user=user or settings.postgres_superuser,
        password=password or settings.postgres_superuser_password.get_secret_value(),
        autocommit=True, connect_timeout=10)


def ensure_database(settings: Settings, db: str, owner: str, password: str) -> None:
    """One database and one login role per service; later services call this too."""
    with pg_connect(settings) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(owner), sql.Literal(password)))
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(db), sql.Identifier(owner)))
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db)))


def create_catalog_tables(settings: Settings) -> None:
    password = settings.catalog_db_password.get_secret_value()
    with pg_connect(settings, settings.catalog_db, settings.catalog_db_user, password) as conn:
        for ddl in ICEBERG_CATALOG_DDL:
            conn.execute(ddl)


# ---- MinIO --------------------------------------------------------------------------------

def policy_document(bucket: str, write_prefixes: list[str]) -> dict:
    statements = [
        {"Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:ListBucket",
                                       "s3:ListBucketMultipartUploads"],
         "Resource": [f"arn:aws:s3:::{bucket}"]},
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{bucket}/*"]},
    ]
    if write_prefixes:
        statements.append({
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                       "s3:ListMultipartUploadParts"],
            "Resource": [f"arn:aws:s3:::{bucket}/{p}/*" for p in write_prefixes]})
    return {"Version": "2012-10-17", "Statement": statements}


def minio_root_clients(settings: Settings) -> tuple[Minio, MinioAdmin]:
    endpoint = f"{settings.minio_address}:{settings.minio_port}"
    user = settings.minio_root_user.get_secret_value()
    password = settings.minio_root_password.get_secret_value()
    return (Minio(endpoint, user, password, secure=False, region=settings.s3_region),
            MinioAdmin(endpoint=endpoint, credentials=StaticProvider(user, password), secure=False))


def ensure_bucket(settings: Settings) -> None:
    s3, _ = minio_root_clients(settings)
    if not s3.bucket_exists(settings.warehouse_bucket):
        s3.make_bucket(settings.warehouse_bucket)


def ensure_s3_user(settings: Settings, user: str, secret: str, write_prefixes: list[str]) -> None:
    """One S3 user with a policy of its own: read the bucket, write only these prefixes."""
    _, admin = minio_root_clients(settings)
    policy = f"lakehouse-{user}"
    admin.policy_add(policy, policy=policy_document(settings.warehouse_bucket, write_prefixes))
    admin.user_add(user, secret)
    admin.policy_set(policy, user=user)
