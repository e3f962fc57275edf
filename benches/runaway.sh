#!/usr/bin/env bash
# A runaway query beside 16 clients' small queries, against a real `gridlens serve`:
#   benches/runaway.sh DATA_DIR [QUERY_TIMEOUT_S]
# Starts the server (release build) on DATA_DIR with its own state folder, issues one admin
# token for the runaway and 16 street-scoped analyst tokens for the small queries, and runs
# `gridlens-bench runaway`; prints its JSON line.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?give a dataset folder}
timeout_s=${2:-4}
bin=${GRIDLENS_BIN:-target/release/gridlens}
bench=${GRIDLENS_BENCH:-target/release/gridlens-bench}
state=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
trap 'kill $server 2>/dev/null || true; rm -rf "$state"' EXIT
street=$("$bin" sql --data "$data" --format csv \
  "SELECT street_code FROM grids GROUP BY 1 ORDER BY count(*) DESC LIMIT 1" | tail -1)
admin=$("$bin" token add --state "$state" --name runaway --role admin --scope city)
for i in $(seq 1 16); do
  "$bin" token add --state "$state" --data "$data" --name "small$i" --role analyst --scope "$street"
done > "$state/small-tokens.txt"
"$bin" serve --data "$data" --state "$state" --listen "127.0.0.1:$port" \
  --query-timeout "$timeout_s" > "$state/serve.log" 2>&1 &
server=$!
until grep -q "on http://" "$state/serve.log"; do
  kill -0 $server 2>/dev/null || { cat "$state/serve.log"; exit 1; }
  sleep 0.5
done
"$bench" runaway --url "http://127.0.0.1:$port" --pid $server --runaway-token "$admin" \
  --small-tokens "$state/small-tokens.txt" --seconds "${SECONDS_PER_PHASE:-10}" \
  --small-sql "${SMALL_SQL:-SELECT grid_code, count(*) AS n FROM people WHERE status = 'active' GROUP BY grid_code ORDER BY grid_code}"
