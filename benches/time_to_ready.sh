#!/bin/bash
# Time from spawn to /ready of one server, and its peak RSS (GNU time), then SIGKILL.
#
#   benches/time_to_ready.sh BINARY DATA_DIR PORT [run ARGS...]
#   benches/time_to_ready.sh target/release/lambdaflow /tmp/ck 7701 -w 2 --from-scratch --checkpoint-interval off
set -euo pipefail
bin=$1 data=$2 port=$3
shift 3
log=$(mktemp)
start=$(date +%s.%N)
/usr/bin/time -v -o "$log" "$bin" run --data-dir "$data" --listen "127.0.0.1:$port" "$@" \
    >/dev/null 2>"$log.server" &
timer=$!
until curl -sf "http://127.0.0.1:$port/ready" >/dev/null 2>&1; do sleep 0.05; done
end=$(date +%s.%N)
pkill -KILL -P "$timer"
wait "$timer" 2>/dev/null || true
rss=$(awk '/Maximum resident/ {print $6}' "$log")
echo "ready in $(echo "$end - $start" | bc) s, peak RSS $((rss / 1024)) MiB"
rm -f "$log" "$log.server"
