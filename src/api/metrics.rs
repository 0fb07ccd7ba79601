//! `GET /metrics`: this peer's view in the Prometheus text format.
//!
//! Gauges (jobs by state, queue depth, slots per node) come from this
//! replica's applied funnel; Raft gauges from this peer's openraft metrics;
//! counters and the latency histogram from [`crate::metrics::Observed`],
//! i.e. from the entries this replica applied since it started. openraft 0.9
//! does not publish the commit index, so the applied index stands for it
//! (applied <= committed <= last log).

use warp::http::{header, HeaderValue};

use crate::metrics::{Kind, TextWriter, CONTENT_TYPE};
use crate::node::Peer;
use crate::queue::JobState;

/// Renders every family.
pub fn render(peer: &Peer) -> String {
    let raft = peer.metrics();
    let observed = peer.state.observed();
    let (stats, nodes) = {
        let applied = peer.state.read();
        let funnel = &applied.funnel;
        let nodes: Vec<(String, u32, u64, u64, u64)> = funnel
            .nodes()
            .values()
            .map(|n| {
                let used = funnel.used(n.id);
                (n.id.to_string(), n.slots, used.0, n.mem_mb, used.1)
            })
            .collect();
        (funnel.stats(), nodes)
    };
    let mut w = TextWriter::new();
    w.family("sgnode_jobs", Kind::Gauge, "Jobs in this replica's history, by state.");
    for state in JobState::ALL {
        let n = stats.by_state.get(state.as_str()).copied().unwrap_or(0);
        w.sample("sgnode_jobs", &[("state", state.as_str())], n as f64);
    }
    if let Some((rss, peak)) = crate::metrics::process_memory() {
        w.single("sgnode_resident_memory_bytes", Kind::Gauge, "This peer's resident memory.", rss as f64);
        w.single(
            "sgnode_peak_resident_memory_bytes",
            Kind::Gauge,
            "This peer's largest resident memory since it started (VmHWM).",
            peak as f64,
        );
    }
    w.single("sgnode_queue_depth", Kind::Gauge, "Jobs waiting for placement.", stats.queued as f64);
    w.single(
        "sgnode_jobs_submitted_total",
        Kind::Counter,
        "Jobs created (all sources), counted as this replica applied them since it started.",
        observed.submitted as f64,
    );
    w.single(
        "sgnode_dedup_hits_total",
        Kind::Counter,
        "Submits answered with an existing job because its dedup key was taken (applied on this replica).",
        observed.dedup_hits as f64,
    );
    w.family(
        "sgnode_submits_rejected_total",
        Kind::Counter,
        "Submits refused by the funnel, by reason (applied on this replica).",
    );
    for reason in ["queue_full", "unschedulable", "invalid", "other"] {
        let n = observed.rejected.get(reason).copied().unwrap_or(0);
        w.sample("sgnode_submits_rejected_total", &[("reason", reason)], n as f64);
    }
    w.single(
        "sgnode_assignments_total",
        Kind::Counter,
        "Placements that held (applied on this replica).",
        observed.assigned as f64,
    );
    w.single(
        "sgnode_attempts_started_total",
        Kind::Counter,
        "Attempts reported started (applied on this replica).",
        observed.started as f64,
    );
    w.family(
        "sgnode_attempts_finished_total",
        Kind::Counter,
        "Attempts reported ended, by outcome (applied on this replica).",
    );
    for outcome in ["succeeded", "failed", "timed_out", "cancelled", "lost"] {
        let n = observed.finished.get(outcome).copied().unwrap_or(0);
        w.sample("sgnode_attempts_finished_total", &[("outcome", outcome)], n as f64);
    }
    w.histogram_seconds(
        "sgnode_submit_to_start_seconds",
        "First attempts: leader time from submit to the worker's start report, observed when applied.",
        &observed.submit_to_start,
    );
    let leader = raft.current_leader;
    w.single("sgnode_raft_term", Kind::Gauge, "Current Raft term.", raft.current_term as f64);
    w.single(
        "sgnode_raft_leader_id",
        Kind::Gauge,
        "Id of the leader this peer knows, 0 when none.",
        leader.unwrap_or(0) as f64,
    );
    w.single(
        "sgnode_raft_is_leader",
        Kind::Gauge,
        "1 on the leader.",
        if leader == Some(peer.id) { 1.0 } else { 0.0 },
    );
    w.single(
        "sgnode_raft_last_log_index",
        Kind::Gauge,
        "Index of the last entry in this peer's log.",
        raft.last_log_index.unwrap_or(0) as f64,
    );
    w.single(
        "sgnode_raft_applied_index",
        Kind::Gauge,
        "Index of the last entry applied here (openraft 0.9 does not expose the commit index).",
        raft.last_applied.map_or(0, |l| l.index) as f64,
    );
    w.single(
        "sgnode_raft_snapshot_index",
        Kind::Gauge,
        "Last index covered by this peer's snapshot.",
        raft.snapshot.map_or(0, |l| l.index) as f64,
    );
    w.family("sgnode_node_slots", Kind::Gauge, "Slots each registered peer declares.");
    for (node, slots, ..) in &nodes {
        w.sample("sgnode_node_slots", &[("node", node)], f64::from(*slots));
    }
    w.family("sgnode_node_slots_used", Kind::Gauge, "Slots held by assigned or running attempts, per peer.");
    for (node, _, used, ..) in &nodes {
        w.sample("sgnode_node_slots_used", &[("node", node)], *used as f64);
    }
    w.family("sgnode_node_mem_mb", Kind::Gauge, "Memory (MiB) each registered peer declares.");
    for (node, _, _, mem, _) in &nodes {
        w.sample("sgnode_node_mem_mb", &[("node", node)], *mem as f64);
    }
    w.family("sgnode_node_mem_used_mb", Kind::Gauge, "Memory (MiB) held by attempts, per peer.");
    for (node, .., used) in &nodes {
        w.sample("sgnode_node_mem_used_mb", &[("node", node)], *used as f64);
    }
    w.finish()
}

/// The `/metrics` answer.
pub fn response(peer: &Peer) -> warp::reply::Response {
    let mut response = warp::reply::Response::new(render(peer).into());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}
