#!/usr/bin/env bash
# Installs the system packages the tests use, when missing: PostgreSQL server binaries,
# Prometheus, Pushgateway and promtool, the age tool, postgres_exporter (benchmarks) and
# faketime (backups made while the host's clock is wrong).
set -euo pipefail

need=()
command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ] || need+=(postgresql postgresql-contrib)
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus-pushgateway >/dev/null || need+=(prometheus-pushgateway)
command -v age >/dev/null || need+=(age)
command -v prometheus-postgres-exporter >/dev/null || need+=(prometheus-postgres-exporter)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v faketime >/dev/null || need+=(faketime)
command -v pgbackrest >/dev/null || need+=(pgbackrest)
command -v chromium >/dev/null || need+=(chromium chromium-driver)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${need[*]} (install them with apt-get as root)" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# Services must not start on install: tests start their own on free ports.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
# Another apt or dpkg (unattended-upgrades, a parallel install) may hold the lock: wait for
# it, up to 10 minutes, rather than fail at once.
lock_wait=(-o DPkg::Lock::Timeout=600)
timeout 1200 apt-get "${lock_wait[@]}" update -qq
timeout 1800 apt-get "${lock_wait[@]}" install -y -qq --no-install-recommends "${need[@]}" >/dev/null
rm -f /usr/sbin/policy-rc.d
