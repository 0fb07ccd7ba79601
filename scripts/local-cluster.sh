#!/usr/bin/env bash
# Runs an N-peer sgnode cluster on loopback for demos and benchmarks.
#
#   scripts/local-cluster.sh start [N]   build once, write configs, start N peers (default 3)
#   scripts/local-cluster.sh status      show each peer's PID and Raft role
#   scripts/local-cluster.sh stop        stop the peers this script started (by PID file)
#
# Environment: SGNODE_HOME (default .local-cluster), SGNODE_BASE_PORT (default
# 7100; peer i listens on 127.0.0.1:BASE+i), SGNODE_PROFILE (debug|release,
# default debug), SGNODE_TOKEN (default: random, kept in $SGNODE_HOME/env),
# SGNODE_SLOTS (job slots per peer, default 2), SGNODE_MAX_QUEUED (queue
# bound, default: cluster.toml's default), SGNODE_BIN (run this binary
# instead of building one, e.g. an older build for a before/after figure),
# SGNODE_VOTERS (how many of the first peers vote; default 3, or 5 from 5
# peers on).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
home=${SGNODE_HOME:-.local-cluster}
mkdir -p "$home"
home=$(cd "$home" && pwd)
base_port=${SGNODE_BASE_PORT:-7100}
profile=${SGNODE_PROFILE:-debug}

binary() {
  if [ -n "${SGNODE_BIN:-}" ]; then echo "$SGNODE_BIN"; return; fi
  if [ "$profile" = release ]; then echo "$root/target/release/sgnode"; else echo "$root/target/debug/sgnode"; fi
}

build() {
  if [ -n "${SGNODE_BIN:-}" ]; then return; fi
  local flags=()
  [ "$profile" = release ] && flags=(--release)
  (cd "$root" && cargo build --quiet "${flags[@]}" --bin sgnode)
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_config() {
  local n=$1 token=$2
  {
    echo "# written by scripts/local-cluster.sh; see cluster.toml at the repo root for every field"
    echo "cluster_name = \"local\""
    echo "token = \"$token\""
    if [ -n "${SGNODE_MAX_QUEUED:-}" ]; then echo "max_queued = $SGNODE_MAX_QUEUED"; fi
    for i in $(seq 1 "$n"); do
      echo ""
      echo "[[peer]]"
      echo "id = $i"
      echo "address = \"127.0.0.1:$((base_port + i))\""
      echo "data_dir = \"peer$i\""
      echo "slots = ${SGNODE_SLOTS:-2}"
      # Three (or five) voters at most unless SGNODE_VOTERS says; the rest
      # join as learners.
      local voters=${SGNODE_VOTERS:-$(if [ "$n" -ge 5 ]; then echo 5; else echo 3; fi)}
      if [ "$i" -le "$voters" ]; then echo "voter = true"; else echo "voter = false"; fi
    done
  } > "$home/cluster.toml"
}

start() {
  local n=${1:-3}
  for f in "$home"/peer*.pid; do
    if [ -e "$f" ] && pid_alive "$f"; then echo "a cluster is already running under $home (run stop first)" >&2; exit 1; fi
  done
  build
  local token
  if [ -f "$home/env" ] && [ -f "$home/cluster.toml" ]; then
    token=$(sed -n 's/^export SGNODE_TOKEN=//p' "$home/env")
  else
    token=${SGNODE_TOKEN:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}
  fi
  write_config "$n" "$token"
  for i in $(seq 1 "$n"); do
    # Each peer's lines go to its own log, prefixed by nothing: one file per peer.
    nohup "$(binary)" serve --config "$home/cluster.toml" --id "$i" >> "$home/peer$i.log" 2>&1 &
    echo $! > "$home/peer$i.pid"
  done
  echo "export SGNODE_URL=http://127.0.0.1:$((base_port + 1))" > "$home/env"
  echo "export SGNODE_TOKEN=$token" >> "$home/env"
  # Wait (bounded) for a leader so the next command can write.
  local url="http://127.0.0.1:$((base_port + 1))"
  for _ in $(seq 1 100); do
    if curl -fsS "$url/api/v1/local" 2>/dev/null | grep -q '"leader":[0-9]'; then break; fi
    sleep 0.1
  done
  for i in $(seq 1 "$n"); do
    if ! pid_alive "$home/peer$i.pid"; then
      echo "peer $i exited at start; last lines of $home/peer$i.log:" >&2
      tail -n 5 "$home/peer$i.log" >&2
      exit 1
    fi
  done
  echo "started $n peers under $home (logs: $home/peer*.log)"
  echo "run this in your shell (also in $home/env):"
  cat "$home/env"
}

status() {
  for f in "$home"/peer*.pid; do
    [ -e "$f" ] || { echo "no peers started under $home"; return 0; }
    local i; i=$(basename "$f" .pid); i=${i#peer}
    local url="http://127.0.0.1:$((base_port + i))"
    if pid_alive "$f"; then
      local role
      role=$(curl -fsS --max-time 2 "$url/api/v1/local" 2>/dev/null | sed -n 's/.*"role":"\([a-z]*\)".*/\1/p')
      echo "peer $i  pid $(cat "$f")  $url  ${role:-not answering}"
    else
      echo "peer $i  stopped"
    fi
  done
}

stop() {
  local pids=()
  for f in "$home"/peer*.pid; do
    [ -e "$f" ] || continue
    if pid_alive "$f"; then kill -TERM "$(cat "$f")"; pids+=("$(cat "$f")"); fi
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  done
  rm -f "$home"/peer*.pid
  echo "stopped ${#pids[@]} peers"
}

case "${1:-}" in
  start) start "${2:-3}" ;;
  status) status ;;
  stop) stop ;;
  *) echo "usage: $0 start [N] | status | stop" >&2; exit 2 ;;
esac
