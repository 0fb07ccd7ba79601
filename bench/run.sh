#!/usr/bin/env bash
# sgnode versus the original design's ZooKeeper funnel, side by side, on this
# machine and disk, in one run. Writes bench/RESULTS.md, bench/latency-cdf.png
# and prints a last `summary:` line.
#
#   bench/run.sh [--quick]          (BENCH_NOTE="..." adds a line to RESULTS.md)
#
# Installs what it needs (Debian: zookeeper, gnuplot-nox, python3-venv; PyPI:
# kazoo in a venv under target/), starts a 3-server ZooKeeper ensemble and a
# 3-peer sgnode cluster on loopback, and measures: the disk's fdatasync rate;
# N submissions with 10% duplicate keys from C clients; draining D queued
# jobs with W workers (ZooKeeper: W kazoo workers; sgnode: 3 peers x 2 slots,
# no-op jobs); submit-to-start latency at light load; the longest gap without
# a successful submit when the leader is killed -9 under load; and sgnode
# alone under 10x overload (offered jobs/s = 10 x its measured drain rate,
# for OVERLOAD seconds, max_queued = MAX_QUEUED): refusals, accepted jobs that
# did not finish, read latency, leader changes, peak memory per peer.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1
if ((quick)); then N=2000 D=300 L=50 FAILOVER=8 OVERLOAD=10; else N=10000 D=1000 L=200 FAILOVER=12 OVERLOAD=20; fi
# sgnode's queue bound for the run: room for the submit phases (2.5 N jobs
# queued with placement paused) and small enough that the overload fills it.
MAX_QUEUED=$((3 * N))
C=16 W=6

need_apt=()
[[ -f /usr/share/java/zookeeper.jar ]] || need_apt+=(zookeeper)
command -v gnuplot >/dev/null || need_apt+=(gnuplot-nox)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v curl >/dev/null || need_apt+=(curl)
if ((${#need_apt[@]})); then
  echo "== installing ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
venv=$root/target/bench-venv
if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import kazoo' 2>/dev/null; then
  echo "== installing kazoo into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q kazoo
fi
py=$venv/bin/python

echo "== building sgnode (release)"
cargo build --release --locked -q
sg=$root/target/release/sgnode

work=$(mktemp -d /tmp/sgbench.XXXXXX)
zk_pids=()
cleanup() {
  for pid in "${zk_pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  SGNODE_HOME=$work/sg scripts/local-cluster.sh stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

json() { "$py" -c "import json,sys; v=json.loads(sys.argv[1])[sys.argv[2]]; print(v if isinstance(v,(str,int,float)) else json.dumps(v))" "$1" "$2"; }

echo "== disk: fdatasync rate in $work"
fsync_rate=$("$py" - "$work" <<'EOF'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
n, start = 0, time.monotonic()
while time.monotonic() - start < 3:
    os.write(fd, b"x" * 512)
    os.fdatasync(fd)
    n += 1
print(round(n / (time.monotonic() - start)))
EOF
)
echo "fdatasync/s: $fsync_rate"

echo "== ZooKeeper: 3-server ensemble on loopback"
zk_hosts=""
for i in 1 2 3; do
  dir=$work/zk$i
  mkdir -p "$dir/data"
  echo $i >"$dir/data/myid"
  cat >"$dir/zoo.cfg" <<EOF
tickTime=500
initLimit=20
syncLimit=10
dataDir=$dir/data
clientPort=$((22180 + i))
maxClientCnxns=0
4lw.commands.whitelist=*
admin.enableServer=false
server.1=127.0.0.1:22881:23881
server.2=127.0.0.1:22882:23882
server.3=127.0.0.1:22883:23883
EOF
  cp /etc/zookeeper/conf_example/log4j.properties "$dir/" 2>/dev/null || true
  java -Dzookeeper.log.dir="$dir" -Dlog4j.configuration="file:$dir/log4j.properties" \
    -cp "$dir:/usr/share/java/zookeeper.jar" org.apache.zookeeper.server.quorum.QuorumPeerMain \
    "$dir/zoo.cfg" >"$dir/server.log" 2>&1 &
  zk_pids+=($!)
  zk_hosts+="${zk_hosts:+,}127.0.0.1:$((22180 + i))"
done
zk_mode() { # prints leader|follower for server $1, or nothing
  exec 3<>/dev/tcp/127.0.0.1/$((22180 + $1)) 2>/dev/null || return 0
  echo srvr >&3
  sed -n 's/^Mode: //p' <&3
  exec 3<&-
}
for _ in $(seq 1 120); do
  for i in 1 2 3; do [[ "$(zk_mode $i)" == leader ]] && break 2; done
  sleep 0.5
done

echo "== sgnode: 3 peers on loopback"
export SGNODE_HOME=$work/sg SGNODE_BASE_PORT=27300 SGNODE_PROFILE=release SGNODE_MAX_QUEUED=$MAX_QUEUED
scripts/local-cluster.sh start 3 >/dev/null
# shellcheck disable=SC1091
source "$SGNODE_HOME/env"
sg_urls="http://127.0.0.1:27301,http://127.0.0.1:27302,http://127.0.0.1:27303"
for _ in $(seq 1 120); do
  curl -s http://127.0.0.1:27301/api/v1/local | grep -q '"leader":[0-9]' && break
  sleep 0.5
done

echo "== submit-to-start at light load ($L jobs, one at a time)"
zk_lat=$("$py" bench/zk_funnel.py latency --hosts "$zk_hosts" --jobs "$L")
sg_lat=$("$sg" bench run --url http://127.0.0.1:27301 --jobs "$L" --sequential --json)
echo "zookeeper: $zk_lat"; echo "sgnode:    $sg_lat"

echo "== drain $D queued jobs with $W workers"
zk_drain=$("$py" bench/zk_funnel.py drain --hosts "$zk_hosts" --jobs "$D" --workers "$W")
sg_drain=$("$sg" bench run --url http://127.0.0.1:27301 --jobs "$D" --drain --json)
echo "zookeeper: $zk_drain"; echo "sgnode:    $sg_drain"

echo "== $N submissions, 10% duplicate keys, $C clients (placement paused on sgnode)"
"$sg" queue pause --url http://127.0.0.1:27301 >/dev/null
zk_submit=$("$py" bench/zk_funnel.py submit --hosts "$zk_hosts" --jobs "$N" --clients "$C" \
  --dup-percent 10 --latencies "$work/zk-latency.txt")
sg_submit=$("$sg" bench submit --url "$sg_urls" --clients "$C" --jobs "$N" --dup-percent 10 \
  --latencies "$work/sg-latency.txt" --json)
echo "zookeeper: $zk_submit"; echo "sgnode:    $sg_submit"

echo "== sgnode: peak submit rate (64 clients), then p50/p99 at half of it (open loop)"
sg_peak=$("$sg" bench submit --url "$sg_urls" --clients 64 --jobs "$N" --json)
half=$("$py" -c "import sys; print(round(float(sys.argv[1]) / 2))" "$(json "$sg_peak" jobs_per_s)")
sg_half=$("$sg" bench submit --url "$sg_urls" --clients 64 --jobs $((N / 2)) --rate "$half" --json)
echo "peak: $sg_peak"; echo "half ($half/s): $sg_half"

echo "== sgnode under 10x overload for ${OVERLOAD}s"
"$sg" queue resume --url http://127.0.0.1:27301 >/dev/null
for _ in $(seq 1 600); do # the submit phase's jobs run first (bounded: 5 min)
  [[ "$(json "$(curl -s http://127.0.0.1:27301/api/v1/local)" queued)" == 0 ]] && break
  sleep 0.5
done
offer=$("$py" -c "import sys; print(max(100, round(10 * float(sys.argv[1]))))" "$(json "$sg_drain" drained_per_s)")
sg_over=$("$sg" bench overload --url "$sg_urls" --rate "$offer" --duration "${OVERLOAD}s" --json)
echo "sgnode: $sg_over"

echo "== failover: kill -9 the leader ${FAILOVER}s into continuous submits"
zk_leader=""
for i in 1 2 3; do [[ "$(zk_mode $i)" == leader ]] && zk_leader=$i; done
("$py" bench/zk_funnel.py submit --hosts "$zk_hosts" --jobs 100000000 --clients 4 \
  --duration "$FAILOVER" >"$work/zk-failover.json") &
load=$!
sleep $((FAILOVER / 3))
[[ -n $zk_leader ]] && kill -9 "${zk_pids[$((zk_leader - 1))]}"
wait $load
zk_fail=$(cat "$work/zk-failover.json")
sg_leader=$(curl -s http://127.0.0.1:27301/api/v1/local | "$py" -c 'import json,sys; print(json.load(sys.stdin)["leader"])')
("$sg" bench submit --url "$sg_urls" --clients 4 --jobs 100000000 --duration "${FAILOVER}s" \
  --json >"$work/sg-failover.json") &
load=$!
sleep $((FAILOVER / 3))
kill -9 "$(cat "$SGNODE_HOME/peer$sg_leader.pid")"
wait $load
sg_fail=$(cat "$work/sg-failover.json")
echo "zookeeper (leader $zk_leader killed): $zk_fail"; echo "sgnode (leader $sg_leader killed): $sg_fail"

echo "== plot"
gnuplot <<EOF
set terminal png size 900,560
set output "$root/bench/latency-cdf.png"
set title "Submit latency CDF ($N submits, $C clients, 10% duplicates, 3 servers on loopback)"
set xlabel "latency (ms, log scale)"; set ylabel "fraction of submits"
set logscale x; set key bottom right; set grid
plot "< sort -g $work/sg-latency.txt | awk '{print \$1, NR}'" using 1:(\$2/$(wc -l <"$work/sg-latency.txt")) with lines lw 2 title "sgnode", \
     "< sort -g $work/zk-latency.txt | awk '{print \$1, NR}'" using 1:(\$2/$(wc -l <"$work/zk-latency.txt")) with lines lw 2 title "ZooKeeper funnel (kazoo)"
EOF

ratio() { "$py" -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.1f}' if b else 'inf')" "$1" "$2"; }
f1() { "$py" -c "import sys; print(f'{float(sys.argv[1]):.1f}')" "$1"; }
f0() { "$py" -c "import sys; print(f'{float(sys.argv[1]):,.0f}')" "$1"; }
sg_rate=$(json "$sg_submit" jobs_per_s); zk_rate=$(json "$zk_submit" jobs_per_s)
sg_dr=$(json "$sg_drain" drained_per_s); zk_dr=$(json "$zk_drain" drained_per_s)
submit_ratio=$(ratio "$sg_rate" "$zk_rate"); drain_ratio=$(ratio "$sg_dr" "$zk_dr")
cat >bench/RESULTS.md <<EOF
# sgnode vs. the ZooKeeper funnel

Measured by \`bench/run.sh$( ((quick)) && echo " --quick")\` on $(date -u +%Y-%m-%d), $(nproc) cores,
$(free -g | awk '/Mem:/{print $2}') GiB, one disk shared by both systems. Both run 3 servers on loopback;
every acknowledged submit is durable on a quorum (ZooKeeper: forceSync; sgnode: fsync'd Raft log).
ZooKeeper side: kazoo recipes as in the original design (dedup znode via \`create\`,
\`LockingQueue.put\`; workers \`get\` + \`consume\`), Python threads. sgnode side: its HTTP API via
\`sgnode bench\`, real workers running no-op jobs (3 peers x 2 slots).

| metric | ZooKeeper funnel | sgnode | sgnode / ZooKeeper |
| --- | --- | --- | --- |
| submits/s ($N submits, 10% duplicate keys, $C clients) | $(f0 "$zk_rate") | $(f0 "$sg_rate") | $submit_ratio |
| submit latency p50 / p99 (ms) | $(f1 "$(json "$zk_submit" p50_ms)") / $(f1 "$(json "$zk_submit" p99_ms)") | $(f1 "$(json "$sg_submit" p50_ms)") / $(f1 "$(json "$sg_submit" p99_ms)") | |
| sgnode alone: peak submits/s with 64 clients; p50 / p99 (ms) at half that rate, open loop | | $(f0 "$(json "$sg_peak" jobs_per_s)"); $(f1 "$(json "$sg_half" p50_ms)") / $(f1 "$(json "$sg_half" p99_ms)") at $half/s | |
| duplicates detected | $(json "$zk_submit" duplicates) | $(json "$sg_submit" duplicates) | |
| drained jobs/s ($D queued, $W workers) | $(f0 "$zk_dr") | $(f0 "$sg_dr") | $drain_ratio |
| submit-to-start p50 / p99 (ms), one job at a time | $(f1 "$(json "$zk_lat" start_p50_ms)") / $(f1 "$(json "$zk_lat" start_p99_ms)") | $(json "$sg_lat" start_p50_ms) / $(json "$sg_lat" start_p99_ms) | |
| failover: longest gap without a successful submit, leader kill -9 (s) | $(f1 "$(json "$zk_fail" longest_gap_s)") | $(f1 "$(json "$sg_fail" longest_gap_s)") | |
| disk fdatasync/s (bound for un-batched durable commits) | $fsync_rate | $fsync_rate | |

Latency CDFs: ![submit latency CDF](latency-cdf.png)

## sgnode under 10x overload

$(json "$sg_over" offered_per_s) jobs/s offered (10x the drain rate above) for $(f1 "$(json "$sg_over" offer_s)") s,
open loop, half as backfill batches of 200 and half as single submits, spread over the 3 peers,
at most 256 requests outstanding; \`max_queued = $MAX_QUEUED\`; 4 readers calling \`status\` and \`nodes\`
throughout; every peer's term and leader polled every 100 ms.

| figure | value |
| --- | --- |
| jobs sent / not sent (client at 256 requests outstanding) | $(json "$sg_over" sent) / $(json "$sg_over" not_sent) |
| accepted (jobs/s) | $(json "$sg_over" accepted) ($(f0 "$(json "$sg_over" accepted_per_s)")/s) |
| refused, by code | $(json "$sg_over" refused) $(json "$sg_over" refused_by_code) |
| requests that failed without an answer (jobs) | $(json "$sg_over" unanswered) |
| accepted jobs missing / not succeeded | $(json "$sg_over" accepted_missing) / $(json "$sg_over" accepted_not_succeeded) |
| every accepted job finished, seconds after the offer started | $(f1 "$(json "$sg_over" all_finished_s)") |
| submit latency p50 / p99 (ms) | $(f1 "$(json "$sg_over" submit_p50_ms)") / $(f1 "$(json "$sg_over" submit_p99_ms)") |
| reads (\`status\`, \`nodes\`) during the overload: count, p50 / p99 / max (ms) | $(json "$sg_over" reads), $(f1 "$(json "$sg_over" read_p50_ms)") / $(f1 "$(json "$sg_over" read_p99_ms)") / $(f1 "$(json "$sg_over" read_max_ms)") |
| read errors | $(json "$sg_over" read_errors) |
| leader changes (terms seen) | $(json "$sg_over" leader_changes) ($(json "$sg_over" terms_seen)) |
| peak RSS per peer (MiB) | $(json "$sg_over" peers) |

${BENCH_NOTE:+Conditions: $BENCH_NOTE
}
sgnode's drain figure counts running the job (a process spawned per job and its start and finish
recorded through Raft); ZooKeeper's counts only taking an item off the queue.
EOF
cat bench/RESULTS.md
echo "summary: submit_ratio=$submit_ratio drain_ratio=$drain_ratio sg_submit_p99_ms=$(f1 "$(json "$sg_half" p99_ms)") sg_failover_s=$(f1 "$(json "$sg_fail" longest_gap_s)") overload_lost=$(( $(json "$sg_over" accepted_missing) + $(json "$sg_over" accepted_not_succeeded) )) overload_leader_changes=$(json "$sg_over" leader_changes) overload_read_p99_ms=$(f1 "$(json "$sg_over" read_p99_ms)")"
