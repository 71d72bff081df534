#!/usr/bin/env bash
# The main job, from nothing: local platform, topic catalog, IXC homologation simulator polled
# into Kafka, one event emitted by an operator, everything read back. Leaves the platform up.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
HOME_DIR=${FILAS_LOCAL__HOME:-.filas}
SIM_PORT=${FILAS_DEMO_SIM_PORT:-18080}

step() { printf '\n\033[1;36m== %s\033[0m\n' "$*"; }

step "1. Local platform: Kafka (KRaft), Apicurio Registry, ClickHouse"
$BIN/filas up
set -a; . "$HOME_DIR/platform.env"; set +a

step "2. Topic catalog and schemas"
$BIN/filas topics apply
$BIN/filas schemas register

step "3. IXC homologation SIMULATOR on 127.0.0.1:$SIM_PORT (a generated ISP, not a real IXC)"
export FILAS_IXC__BASE_URL="http://127.0.0.1:$SIM_PORT"
export FILAS_IXC__USER=1
export FILAS_IXC__TOKEN="demo-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export FILAS_IXC__WATERMARK_PATH="$HOME_DIR/state/demo-watermarks.json"
rm -f "$FILAS_IXC__WATERMARK_PATH"
$BIN/filas ixc simulate --port "$SIM_PORT" --customers 500 --devices 120 --nas 4 \
  > "$HOME_DIR/logs/ixc-simulator.log" 2>&1 &
SIM_PID=$!
trap 'kill $SIM_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  (echo > /dev/tcp/127.0.0.1/"$SIM_PORT") 2>/dev/null && break
  sleep 0.2
done

step "4. Poll IXC into the compacted state topics (one pass)"
$BIN/filas ixc poll --once

step "5. An operator emits an accounting event from JSON"
NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ)
cat <<JSON | $BIN/filas emit radius.accounting --json -
{"login": "demo.cliente@fibra", "status_type": "start", "session_id": "DEMO0001",
 "nas_ip_address": "10.20.0.1", "framed_ip_address": "100.64.0.10",
 "event_at": "$NOW", "received_at": "$NOW"}
JSON

step "6. Read back with kcat (key, partition, offset, bytes; the value is Confluent-framed Avro)"
kcat -b "$FILAS_KAFKA__BOOTSTRAP_SERVERS" -C -t radius.accounting -o beginning -e -q \
  -f 'key=%k partition=%p offset=%o value=%S bytes\n' | tail -n 3

step "7. Read back decoded through the schema registry"
$BIN/filas tail radius.accounting --from-beginning --idle-timeout 3 | tail -n 1
$BIN/filas tail ixc.subscribers --from-beginning --max 2 --idle-timeout 3

step "8. Topics, partitions and records held"
$BIN/filas topics list

printf '\nThe platform keeps running (%s/platform.env). Stop it with: make down\n' "$HOME_DIR"
