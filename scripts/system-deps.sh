#!/usr/bin/env bash
# OS packages the native stack and its tests need, which no language registry provides:
#   - PostgreSQL server: Debian's postgresql package (15 on bookworm);
#   - with the argument `test`, also Chromium: Debian's chromium, which the dashboard tests
#     drive headless through Playwright (Playwright's own browser download is unreachable).
# Everything else (Trino, jars, MinIO, Superset's venv) is fetched by `lakehouse up` into
# the cache; the JDKs and Go come with the machine (see README, Prerequisites).
set -euo pipefail
missing=()
if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null && ! command -v postgres >/dev/null; then
  missing+=(postgresql)
fi
if [ "${1:-}" = test ] && ! command -v chromium >/dev/null; then
  missing+=(chromium)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing OS packages: ${missing[*]}. Install them as root: apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]} (apt) ..." >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
