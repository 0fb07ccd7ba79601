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

use std::collections::BTreeSet;
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
    let mut leader_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
            changed = applied.changed() => if changed.is_err() { return },
        }
        if peer.metrics().state != ServerState::Leader {
            if leader_since.take().is_some() {
                peer.reset_liveness();
            }
            continue;
        }
        let since = *leader_since.get_or_insert_with(|| {
            peer.reset_liveness();
            Instant::now()
        });
        let lease = peer.config.lease;
        let node_timeout = peer.config.node_timeout;
        let (alive, lost) = {
            let applied = peer.state.read();
            let mut alive = BTreeSet::new();
            let mut lost = Vec::new();
            for node in applied.funnel.nodes().values().filter(|n| !n.lost) {
                let heard = peer.last_heartbeat(node.id);
                if heard.is_some_and(|t| t.elapsed() < lease) {
                    alive.insert(node.id);
                }
                // A new leader gives every worker a full timeout to find it.
                let silent_since = heard.unwrap_or(since).max(since);
                if silent_since.elapsed() > node_timeout {
                    lost.push(node.id);
                }
            }
            (alive, lost)
        };
        if !lost.is_empty() {
            let commands: Vec<Command> = lost.iter().map(|&node| Command::NodeLost { node }).collect();
            match peer.write(commands).await {
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
        match peer.write(vec![Command::Assign { placements: plan }]).await {
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
