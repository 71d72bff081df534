#!/usr/bin/env bash
# The main job: the homologation run (docs/homologation.md). From nothing, it starts the local
# platform (Kafka KRaft, Apicurio Registry, ClickHouse), applies the topic catalog, runs the IXC
# homologation SIMULATOR with a generated ISP (10,000 subscribers, 2,000 devices, 20 NAS on
# loopback addresses), every processor that exists, drives an ISP's day in minutes (logins and
# accounting, a POP outage and its reconnect storm, a billing run and a payment batch with CoA,
# a marketing campaign to local SMTP/SMS sinks), prints a summary from ClickHouse and leaves the
# status page running until Ctrl-C. The platform keeps running afterwards: 'make down' stops it.
#
# Extra arguments go to 'filas homologation run', e.g.:
#   make demo DEMO_ARGS="--customers 2000 --devices 400 --nas 8 --exit"
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/filas homologation run "$@"
