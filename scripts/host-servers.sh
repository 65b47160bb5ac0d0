#!/usr/bin/env bash
# The servers tests/integration runs on this machine, on loopback, from Debian's packages:
# PostgreSQL 15 (with postgres_fdw) and Redis; and Prometheus's promtool (package prometheus), which
# checks the monitoring role's configuration and rules. Where they are installed, do nothing; otherwise
# install them (root and apt-get needed). Nothing is started here: each test starts its own
# throwaway servers on free ports and removes them (tests/rehab_testlib.py LocalPostgres, LocalRedis).
set -euo pipefail

missing=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql-15)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -eq 0 ]; then
  echo "host-servers: PostgreSQL 15, Redis and promtool are installed"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "host-servers: missing ${missing[*]}; install them (apt-get install ${missing[*]}) and retry" >&2
  exit 1
fi
echo "host-servers: installing ${missing[*]} from Debian"
apt-get update -qq
# policy-rc.d: the packages' own services are not started (the tests start their own servers).
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
