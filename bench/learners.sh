#!/usr/bin/env bash
# Jobs started per second with 3 voters versus 3 voters + 7 learners, the
# same number of job slots in both (60): does replicating to seven more
# peers slow the leader down?
#
#   bench/learners.sh [JOBS]        (default 5000 no-op jobs, 3 runs each)
#
# Each run queues JOBS jobs with placement paused, resumes and times the
# drain (`sgnode bench run --drain`). Prints one line per run and a last
# `learners:` line with the median of each and the ratio, and the CPU time
# the peers spent per 1,000 jobs (all peers, and the leader alone): on one
# machine every replica's work shares the same cores.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${1:-5000}
cargo build --release --locked -q
sg=$(pwd)/target/release/sgnode
work=$(mktemp -d /tmp/sglearners.XXXXXX)
export SGNODE_HOME=$work/sg SGNODE_BASE_PORT=27500 SGNODE_PROFILE=release SGNODE_VOTERS=3
cleanup() { scripts/local-cluster.sh stop >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

cpu_ticks() { # summed utime+stime of the given pids, in clock ticks
  local total=0 pid
  for pid in "$@"; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}
median() { python3 -c "import sys,statistics; print(round(statistics.median(float(x) for x in sys.argv[1:])))" "$@"; }
measure() { # peers slots-per-peer -> prints the median drained/s of 3 runs
  local peers=$1 slots=$2 rates=()
  scripts/local-cluster.sh stop >/dev/null 2>&1 || true
  rm -rf "$SGNODE_HOME"
  SGNODE_SLOTS=$slots scripts/local-cluster.sh start "$peers" >/dev/null
  # shellcheck disable=SC1091
  source "$SGNODE_HOME/env"
  # Every peer registered as a worker before timing (bounded: 30 s).
  for _ in $(seq 1 60); do
    [[ $("$sg" nodes --url "$SGNODE_URL" --json | python3 -c 'import json,sys; print(sum(1 for n in json.load(sys.stdin)["nodes"] if n["slots"]))') -ge $peers ]] && break
    sleep 0.5
  done
  local pids=() leader
  for f in "$SGNODE_HOME"/peer*.pid; do pids+=("$(cat "$f")"); done
  leader=$(curl -s "$SGNODE_URL/api/v1/local" | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])')
  local leader_pid; leader_pid=$(cat "$SGNODE_HOME/peer$leader.pid")
  local all_before lead_before; all_before=$(cpu_ticks "${pids[@]}"); lead_before=$(cpu_ticks "$leader_pid")
  for run in 1 2 3; do
    local r
    r=$("$sg" bench run --url "$SGNODE_URL" --jobs "$jobs" --drain --json |
      python3 -c 'import json,sys; print(round(json.load(sys.stdin)["drained_per_s"]))')
    echo "$peers peers x $slots slots, run $run: $r jobs/s" >&2
    rates+=("$r")
  done
  local hz; hz=$(getconf CLK_TCK)
  python3 -c "import sys; a,l,n,hz=map(float,sys.argv[1:5]); print(f'{int(sys.argv[5])} peers: CPU per 1,000 jobs {a/hz/n*1000:.2f} s (all peers), {l/hz/n*1000:.2f} s (leader)')" \
    "$(( $(cpu_ticks "${pids[@]}") - all_before ))" "$(( $(cpu_ticks "$leader_pid") - lead_before ))" "$((3 * jobs))" "$hz" "$peers" >&2
  median "${rates[@]}"
}
three=$(measure 3 20)
ten=$(measure 10 6)
echo "learners: 3_voters=$three 3_voters_7_learners=$ten ratio=$(python3 -c "print(f'{$ten/$three:.2f}')")"
