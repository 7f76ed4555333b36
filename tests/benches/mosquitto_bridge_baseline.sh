#!/usr/bin/env bash
# Baseline a user would pick instead of kitt's outbox + QUIC sync: an edge mosquitto with
# persistence bridged (QoS 1, persistent session, unlimited queue) to a central mosquitto.
# N messages of ~200 bytes are published at the edge while the central broker is down;
# then the central broker and a persistent QoS-1 consumer start, and we time the catch-up.
# usage: [AUTOSAVE=seconds] mosquitto_bridge_baseline.sh [N]   prints: received, duplicates, missing, seconds, msgs/s, edge RSS
# Needs Debian's mosquitto and mosquitto-clients. Measure kitt's catch-up for the same N in the same window:
# benches/sync.rs runs this just before each of its catch-ups and reports the ratio.
set -eu
N=${1:-100000}
w=$(mktemp -d); cd "$w"
pc=$((20000 + RANDOM % 20000)); pe=$((pc + 1))
cat > central.conf <<C
listener $pc 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages 0
C
cat > edge.conf <<C
listener $pe 127.0.0.1
allow_anonymous true
persistence true
persistence_location $w/
autosave_interval ${AUTOSAVE:-1}
max_queued_messages 0
connection hub
address 127.0.0.1:$pc
topic kitt/# out 1
cleansession false
bridge_attempt_unsubscribe false
restart_timeout 1
max_queued_messages 0
C
[ "$(id -u)" = 0 ] && chown -R mosquitto "$w"
mosquitto -c edge.conf >edge.log 2>&1 & edge=$!
sleep 0.3
python3 - "$N" > msgs.txt <<'P'
import sys
n=int(sys.argv[1]); pad="x"*170
for i in range(n): print(f"{i:09d} {pad}")
P
t0=$(date +%s.%N)
# one connection per 20k: a single mosquitto_pub flooding 200k QoS-1 messages is cut off by
# the broker ("out of memory"), an artifact of the flood rather than of bridging
split -l 20000 msgs.txt part_
for part in part_*; do mosquitto_pub -p $pe -q 1 -t kitt/printer/1 -l < "$part"; done
t1=$(date +%s.%N)
rss_edge=$(ps -o rss= -p $edge)
# register a persistent consumer session first, so the central broker keeps its queue
mosquitto -c central.conf >central.log 2>&1 & central=$!
sleep 0.3
ts=$(date +%s.%N)
timeout 600 mosquitto_sub -p $pc -q 1 -c -i baseline-consumer -t 'kitt/#' -C $N > got.txt || true
te=$(date +%s.%N)
kill $edge $central 2>/dev/null; wait 2>/dev/null || true
python3 - "$N" "$ts" "$te" "$t0" "$t1" "$rss_edge" <<'P'
import sys
n=int(sys.argv[1]); ts,te,t0,t1=map(float,sys.argv[2:6]); rss=int(sys.argv[6])
seen=[int(l.split()[0]) for l in open("got.txt") if l.strip()]
s=set(seen); dup=len(seen)-len(s); miss=n-len(s)
order_ok = seen == sorted(seen)
print(f"publish {n} at edge: {t1-t0:.1f}s; catch-up: received {len(seen)}, duplicates {dup}, missing {miss}, in order {order_ok}, {te-ts:.1f}s, {len(seen)/max(te-ts,1e-9):.0f} msgs/s; edge RSS after queueing {rss/1024:.1f} MB")
P
cd /; rm -rf "$w"
