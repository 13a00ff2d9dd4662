#!/usr/bin/env bash
# Makes sure the services the tests use answer, and prints `export` lines for the test run.
# PostgreSQL: the standard local server at 127.0.0.1:5432 when it answers; otherwise a throwaway
# instance from the system's packages. Under CI=true a missing service is an error, not a skip.
set -euo pipefail

answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

if answers 127.0.0.1 5432; then
  echo "export SWITCHYARD_TEST_PG=${SWITCHYARD_TEST_PG:-postgres://postgres@127.0.0.1:5432/test}"
  exit 0
fi

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [[ -z "$bindir" || ! -x "$bindir/initdb" ]]; then
  echo "test-services: no PostgreSQL at 127.0.0.1:5432 and no server binaries to start one" >&2
  [[ "${CI:-}" == "true" ]] && exit 1
  exit 0
fi

dir=$(mktemp -d /tmp/switchyard-pg.XXXXXX)
port=55432
as_pg=()
if [[ $(id -u) -eq 0 ]]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  chown postgres "$dir"
  as_pg=(runuser -u postgres --)
fi
"${as_pg[@]}" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust >/dev/null
"${as_pg[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-p $port -h 127.0.0.1 -k $dir" start >/dev/null
"${as_pg[@]}" "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres test
echo "test-services: started a throwaway PostgreSQL on 127.0.0.1:$port ($dir)" >&2
echo "export SWITCHYARD_TEST_PG=postgres://postgres@127.0.0.1:$port/test"
