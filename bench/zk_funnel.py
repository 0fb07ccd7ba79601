#!/usr/bin/env python3
"""The original design's funnel on ZooKeeper, built from kazoo's own recipes,
driven with the same workload as `sgnode bench`: a dedup znode per key
(`create`; NodeExistsError = duplicate), then `LockingQueue.put`; workers
`get` + `consume`. Prints one JSON object per phase.

Phases:
  submit   N submissions (dup_percent reuse the previous key) from C clients
  drain    fill the queue with N items (untimed), then W workers drain it
  latency  one submission at a time, a waiting worker: submit-to-start
  (submit --duration S measures the longest gap without a successful submit)
"""
import argparse
import json
import threading
import time
import uuid

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError
from kazoo.recipe.queue import LockingQueue


def connect(hosts, i):
    # Each client prefers one server, spread like sgnode's clients, and
    # knows the others so it can fail over when that server dies.
    ordered = hosts[i % len(hosts):] + hosts[: i % len(hosts)]
    zk = KazooClient(hosts=",".join(ordered), timeout=6.0, randomize_hosts=False)
    zk.start(timeout=30)
    return zk


def percentile(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100.0 * (len(values) - 1)))]


def submit_one(zk, queue, run, key):
    try:
        zk.create(f"/dedup/{run}/{key}", makepath=True)
    except NodeExistsError:
        return True
    queue.put(json.dumps({"key": key, "ts": time.time()}).encode())
    return False


def phase_submit(args, hosts):
    run = uuid.uuid4().hex[:8]
    lock = threading.Lock()
    state = {"next": 0, "acked": 0, "dups": 0, "errors": 0, "lat": [], "ok_at": []}
    start = time.monotonic()
    deadline = start + args.duration if args.duration else None

    def client(c):
        zk = connect(hosts, c)
        queue = LockingQueue(zk, "/queue")
        while True:
            with lock:
                i = state["next"]
                state["next"] += 1
            if i >= args.jobs or (deadline and time.monotonic() >= deadline):
                break
            dup = args.dup_percent > 0 and i > 0 and (i * args.dup_percent) % 100 < args.dup_percent
            key = i - 1 if dup else i
            t = time.monotonic()
            try:
                was_dup = submit_one(zk, queue, run, key)
                ok = True
            except Exception:  # connection loss during failover: count and go on
                ok, was_dup = False, False
            elapsed = time.monotonic() - t
            with lock:
                state["lat"].append(elapsed * 1000.0)
                if ok:
                    state["acked"] += 1
                    state["dups"] += int(was_dup)
                    state["ok_at"].append(time.monotonic() - start)
                else:
                    state["errors"] += 1
        zk.stop()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    ok_at = sorted(state["ok_at"]) + [elapsed]
    gap, prev = 0.0, 0.0
    for t in ok_at:
        gap, prev = max(gap, t - prev), t
    if args.latencies:
        with open(args.latencies, "w") as f:
            f.writelines(f"{v:.3f}\n" for v in state["lat"])
    return {
        "acked": state["acked"],
        "duplicates": state["dups"],
        "errors": state["errors"],
        "elapsed_s": elapsed,
        "jobs_per_s": state["acked"] / elapsed,
        "p50_ms": percentile(state["lat"], 50),
        "p99_ms": percentile(state["lat"], 99),
        "longest_gap_s": gap,
    }


def phase_drain(args, hosts):
    zk = connect(hosts, 0)
    fill = LockingQueue(zk, "/drain")
    fill.put_all([b"job"] * args.jobs)
    done = {"n": 0}
    lock = threading.Lock()
    start = time.monotonic()

    def worker(w):
        zk = connect(hosts, w)
        queue = LockingQueue(zk, "/drain")
        while True:
            item = queue.get(timeout=2)
            if item is None:
                if len(queue) == 0:
                    break
                continue
            queue.consume()
            with lock:
                done["n"] += 1
        zk.stop()

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(args.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    zk.stop()
    return {"drained": done["n"], "elapsed_s": elapsed, "drained_per_s": done["n"] / elapsed}


def phase_latency(args, hosts):
    zk = connect(hosts, 0)
    run = uuid.uuid4().hex[:8]
    queue = LockingQueue(zk, f"/latency-{run}")
    worker_zk = connect(hosts, 1)
    worker_queue = LockingQueue(worker_zk, f"/latency-{run}")
    lat = []
    for i in range(args.jobs):
        t = time.monotonic()
        zk.create(f"/dedup/{run}/{i}", makepath=True)
        queue.put(b"job")
        item = worker_queue.get(timeout=30)
        if item is None:
            raise SystemExit("a submitted item never reached the worker")
        lat.append((time.monotonic() - t) * 1000.0)
        worker_queue.consume()
    zk.stop()
    worker_zk.stop()
    return {"jobs": args.jobs, "start_p50_ms": percentile(lat, 50), "start_p99_ms": percentile(lat, 99)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=["submit", "drain", "latency"])
    parser.add_argument("--hosts", required=True, help="host:port,host:port,...")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--dup-percent", type=int, default=0)
    parser.add_argument("--duration", type=float, default=0)
    parser.add_argument("--latencies")
    args = parser.parse_args()
    hosts = args.hosts.split(",")
    result = {"submit": phase_submit, "drain": phase_drain, "latency": phase_latency}[args.phase](args, hosts)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
