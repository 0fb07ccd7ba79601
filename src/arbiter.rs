//! The leader's arbiter: places queued jobs on workers and declares silent
//! workers lost.
//!
//! It reads the leader's own replica (which has applied everything the
//! leader committed), plans with [`Funnel::plan_placements`], and proposes
//! the whole plan as one `Assign` entry, so placement throughput is many
//! jobs per Raft round trip. Only workers whose heartbeat this leader has
//! received within the lease are eligible. A worker silent for
//! `node_timeout` (counted from this leader's election at the earliest) is
//! declared lost; its attempts are requeued by the funnel.
//!
//! [`Funnel::plan_placements`]: crate::queue::Funnel::plan_placements

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ServerState;
use tokio::sync::watch;

use crate::node::{now_millis, Peer};
use crate::queue::{Command, NodeId};

/// Most placements in one `Assign` entry.
const MAX_PLACEMENTS_PER_ENTRY: usize = 2048;
/// Most queued jobs examined per planning round.
const MAX_SCAN: usize = 20_000;

/// Runs until `shutdown`; acts only while this peer leads.
pub async fn run_arbiter(peer: Arc<Peer>, mut shutdown: watch::Receiver<bool>) {
    let mut applied = peer.state.subscribe();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // (term, when this peer saw itself lead in it); liveness is per term.
    let mut leading: Option<(u64, Instant)> = None;
    // When each worker incarnation was first seen registered: a worker that
    // (re)registers gets a full timeout to send its first heartbeat.
    let mut first_seen: HashMap<(NodeId, u64), Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
            changed = applied.changed() => if changed.is_err() { return },
        }
        let metrics = peer.metrics();
        if metrics.state != ServerState::Leader {
            if leading.take().is_some() {
                peer.reset_liveness();
            }
            continue;
        }
        let since = match leading {
            Some((term, since)) if term == metrics.current_term => since,
            _ => {
                // A new term (even one where we lead again): heartbeats and
                // decisions from an older term mean nothing now.
                peer.reset_liveness();
                first_seen.clear();
                let now = Instant::now();
                leading = Some((metrics.current_term, now));
                now
            }
        };
        let lease = peer.config.lease;
        let node_timeout = peer.config.node_timeout;
        let mut alive = BTreeSet::new();
        let mut lost = Vec::new();
        let nodes: Vec<(NodeId, u64)> = peer
            .state
            .read()
            .funnel
            .nodes()
            .values()
            .filter(|n| !n.lost)
            .map(|n| (n.id, n.incarnation))
            .collect();
        first_seen.retain(|key, _| nodes.contains(key));
        for (id, incarnation) in nodes {
            // Heartbeats of removed peers are refused, but one heard just
            // before the removal must not earn a new placement either.
            if peer.last_heartbeat(id, incarnation).is_some_and(|t| t.elapsed() < lease)
                && crate::members::is_member(&peer, id)
            {
                alive.insert(id);
            }
            let registered = *first_seen.entry((id, incarnation)).or_insert_with(Instant::now);
            if peer.condemn_if_silent(id, incarnation, registered.max(since), node_timeout) {
                lost.push(id);
            }
        }
        if !lost.is_empty() {
            let commands: Vec<Command> = lost.iter().map(|&node| Command::NodeLost { node }).collect();
            match peer.write_as_leader(commands).await {
                Ok(_) => tracing::warn!("declared lost after {node_timeout:?} without heartbeat: {lost:?}"),
                Err(e) => tracing::warn!("cannot declare {lost:?} lost: {e}"),
            }
        }
        place(&peer, &alive).await;
    }
}

/// Proposes placements until nothing more fits (or a write fails).
async fn place(peer: &Peer, alive: &BTreeSet<NodeId>) {
    loop {
        let plan =
            peer.state.read().funnel.plan_placements(now_millis(), alive, MAX_PLACEMENTS_PER_ENTRY, MAX_SCAN);
        if plan.is_empty() {
            return;
        }
        let planned = plan.len();
        match peer.write_as_leader(vec![Command::Assign { placements: plan }]).await {
            Ok(result) => {
                tracing::debug!("assigned {:?} of {planned}", result.outcomes);
                if planned < MAX_PLACEMENTS_PER_ENTRY {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!("cannot propose placements: {e}");
                return;
            }
        }
    }
}
