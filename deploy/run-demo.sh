#!/usr/bin/env bash
# plaint's main job end to end on a fresh Debian/Ubuntu machine:
#  1. installs nats-server (Debian package) if missing, and starts it with JetStream on
#     127.0.0.1:4222 if nothing listens there;
#  2. builds plaint (release);
#  3. starts `plaint serve` with a data directory in ./demo-data;
#  4. publishes a realistic demo stream (complaints in many regions and categories, with
#     acknowledgements, contacts, promises, resolutions, reopenings, silence);
#  5. shows `plaint status`, one complaint's history, the SLA breaches and an escalation
#     queue; then stops the server (the data stays in ./demo-data).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"
NATS_URL="${PLAINT_NATS_URL:-nats://127.0.0.1:4222}"
DATA="${PLAINT_DEMO_DATA:-./demo-data}"

if ! command -v nats-server >/dev/null 2>&1; then
  echo "==> installing nats-server (Debian package)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
  echo "==> starting nats-server -js on 127.0.0.1:4222 (store in ./demo-nats)"
  mkdir -p ./demo-nats
  nohup nats-server -js -a 127.0.0.1 -p 4222 -sd ./demo-nats >./demo-nats/nats-server.log 2>&1 &
  for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null && break; sleep 0.1; done
fi

echo "==> building plaint (release)"
cargo build --release --locked -p plaint
PLAINT="./target/release/plaint"

echo "==> starting plaint serve (data in $DATA)"
mkdir -p "$DATA"
# See deploy/plaint.service for why.
MIMALLOC_PURGE_DELAY=1000 "$PLAINT" --nats "$NATS_URL" serve --data "$DATA" --config deploy/plaint.toml >"$DATA/serve.log" 2>&1 &
SERVE_PID=$!
trap 'kill -TERM $SERVE_PID 2>/dev/null; wait $SERVE_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do "$PLAINT" --nats "$NATS_URL" status >/dev/null 2>&1 && break; sleep 0.2; done

echo "==> publishing the demo stream (3,000 complaints over 21 days)"
"$PLAINT" --nats "$NATS_URL" demo --complaints 3000 --days 21 --seed "$(date +%s)" --publish
sleep 2

echo "==> plaint status"
"$PLAINT" --nats "$NATS_URL" status
ID=$("$PLAINT" --nats "$NATS_URL" replay --type complaint.reopened | tail -1 | sed -E 's/.*"subject":"([^"]+)".*/\1/')
echo "==> plaint complaint $ID (a complaint that was reopened)"
"$PLAINT" --nats "$NATS_URL" complaint "$ID"
echo "==> plaint sla compliance --group-by region"
"$PLAINT" --nats "$NATS_URL" sla compliance --group-by region
echo "==> plaint escalation queue 2 --limit 2"
"$PLAINT" --nats "$NATS_URL" escalation queue 2 --limit 2
echo "==> done. The server log is $DATA/serve.log; run more commands with $PLAINT --help"
