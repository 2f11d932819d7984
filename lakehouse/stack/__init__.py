"""The native stack: PostgreSQL, MinIO and Trino as local processes under supervisord."""
