#!/usr/bin/env bash
# OS packages the native stack needs and no language registry provides.
# PostgreSQL server: Debian's postgresql package (15 on bookworm). Everything else (Trino,
# jars, MinIO) is fetched by `lakehouse up` into the cache; the JDKs and Go come with the
# machine (see README, Prerequisites).
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || command -v postgres >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "PostgreSQL server binaries are missing. Install them as root: apt-get install -y postgresql" >&2
  exit 1
fi
echo "installing PostgreSQL server (apt) ..." >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
