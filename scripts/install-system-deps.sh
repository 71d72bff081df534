#!/usr/bin/env bash
# Installs the Debian packages Filas needs on a fresh machine (idempotent; apt only when missing).
# Java 17 + Maven run Kafka and Apicurio from Maven Central jars; ClickHouse, kcat, radclient and
# fping are the real servers and protocol peers the tests talk to.
set -euo pipefail

need=()
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
command -v clickhouse-server >/dev/null || need+=(clickhouse-server)
command -v clickhouse-client >/dev/null || need+=(clickhouse-client)
command -v kcat >/dev/null || need+=(kcat)
command -v radclient >/dev/null || need+=(freeradius-utils)
# FreeRADIUS itself is the peer of `make bench-radius` (bench/radius_auth.py runs its own copy).
command -v freeradius >/dev/null || need+=(freeradius)
command -v fping >/dev/null || need+=(fping)
# ip netns / veth: the ping tests build hosts in network namespaces and take them down and up.
command -v ip >/dev/null || need+=(iproute2)
# Headless browser for the status page test.
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${need[*]} (run this script as root, or apt-get install them)" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The package enables a system radiusd on 1812/1813, the gateway's default ports: the benchmark
# starts its own instance, so keep the system one off.
if [[ " ${need[*]} " == *" freeradius "* ]] && command -v systemctl >/dev/null; then
  systemctl disable --now freeradius >/dev/null 2>&1 || true
fi
