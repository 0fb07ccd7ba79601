#!/usr/bin/env bash
# Starts a 3-peer local cluster (scripts/local-cluster.sh), submits a demo
# job through a follower, shows a duplicate submit, waits for the job to run
# on whichever peer the leader picked, and shows its status and output from
# other peers. The cluster keeps running; stop it with
# `scripts/local-cluster.sh stop`. With DEMO_STOP=1 it stops at the end
# (the test suite runs it that way, on a private home and port range).
set -euo pipefail
cd "$(dirname "$0")/.."
export SGNODE_HOME=${SGNODE_HOME:-.local-cluster}
cleanup() { [ "${DEMO_STOP:-0}" = 1 ] && scripts/local-cluster.sh stop >/dev/null || true; }
trap cleanup EXIT

scripts/local-cluster.sh start 3
# shellcheck disable=SC1091
source "$SGNODE_HOME/env"
sg="target/${SGNODE_PROFILE:-debug}/sgnode"
base=${SGNODE_BASE_PORT:-7100}

echo; echo "\$ sgnode nodes"
"$sg" nodes
echo; echo "\$ sgnode submit --url http://127.0.0.1:$((base + 2)) --name demo --param date=2026-12-04 -- sh -c 'echo hello from \$SG_NODE_ID'"
out=$("$sg" submit --url "http://127.0.0.1:$((base + 2))" --json --name demo --param date=2026-12-04 -- sh -c 'echo hello from $SG_NODE_ID')
echo "$out"
id=$(echo "$out" | sed -n 's/.*"id": "\([0-9]*\)".*/\1/p')
echo; echo "\$ sgnode submit (same job again: deduplicated)"
"$sg" submit --url "http://127.0.0.1:$((base + 3))" --name demo --param date=2026-12-04 -- sh -c 'echo hello from $SG_NODE_ID'
[ -n "$id" ] || { echo "demo: submit returned no id" >&2; exit 1; }
# Wait (bounded) for the job to run somewhere in the cluster.
for _ in $(seq 1 100); do
  "$sg" status --json "$id" | grep -qE '"state": "(succeeded|failed|timed_out|cancelled|lost)"' && break
  sleep 0.1
done
echo; echo "\$ sgnode status $id   (from peer 3, whichever peer ran it)"
"$sg" status --url "http://127.0.0.1:$((base + 3))" "$id"
echo; echo "\$ sgnode logs $id   (from peer 2)"
"$sg" logs --url "http://127.0.0.1:$((base + 2))" "$id"
"$sg" status --json "$id" | grep -q '"state": "succeeded"' || { echo "demo: the job did not succeed" >&2; exit 1; }
echo; echo "\$ sgnode history"
"$sg" history
