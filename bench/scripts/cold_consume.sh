#!/usr/bin/env bash
# Cold and hot consume of 1 M x 1 KiB records (2 partitions, 2 shards) with
# librdkafka (kcat) and fjord-bench: produce, stop, drop the page cache,
# start again, consume from the beginning twice. Root (drop_caches) needed.
#
#   bash bench/scripts/cold_consume.sh [path/to/fjord] [label]
#
# Run it against two binaries in one sitting to compare them; the machine's
# ceilings come from `fjord-bench limits` (O_DIRECT read, loopback TCP).
set -euo pipefail
BIN=${1:-target/release/fjord}
LABEL=${2:-fjord}
BENCH=${FJORD_BENCH:-target/release/fjord-bench}
D=$(mktemp -d /tmp/fjord-cold-XXXX)
PORT=${PORT:-19392}
ADMIN=${ADMIN:-19944}
start() {
  "$BIN" serve --data-dir "$D/data" --kafka-addr 127.0.0.1:$PORT --admin-addr 127.0.0.1:$ADMIN --shards 2 >> "$D/log" 2>&1 &
  echo $! > "$D/pid"
  for _ in $(seq 150); do curl -sf 127.0.0.1:$ADMIN/health >/dev/null && return; sleep 0.2; done
  echo "broker did not start" >&2; exit 1
}
stop() { kill "$(cat "$D/pid")"; while kill -0 "$(cat "$D/pid")" 2>/dev/null; do sleep 0.2; done; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
trap 'kill "$(cat "$D/pid")" 2>/dev/null || true; rm -rf "$D"' EXIT
start
"$BENCH" produce --bootstrap 127.0.0.1:$PORT --topic cold --partitions 2 --record-size 1024 --records 1000000 \
  --batch-bytes 1000000 --linger-ms 5 --acks 1 2>/dev/null | grep -E "\| MiB/s"
for round in cold hot; do
  [ $round = cold ] && { stop; drop_caches; start; }
  /usr/bin/time -f "$LABEL kcat $round: wall %e s, client user %U s sys %S s" \
    kcat -b 127.0.0.1:$PORT -t cold -C -o beginning -e -q -f '' 2>&1 >/dev/null | tail -1
done
for round in cold hot; do
  [ $round = cold ] && { stop; drop_caches; start; }
  echo "$LABEL fjord-bench $round: $("$BENCH" consume --bootstrap 127.0.0.1:$PORT --topic cold --partitions 2 \
    --records 1000000 --fetch-partition-bytes 4194304 --broker-pid "$(cat "$D/pid")" 2>/dev/null \
    | grep -E '\| MiB/s|broker CPU' | tr -s ' |' ' ')"
done
stop
