//! Runtime membership: adding, promoting and removing peers without
//! downtime.
//!
//! `cluster.toml` only bootstraps the cluster; afterwards the membership
//! replicated by Raft is the truth. A new peer starts (`sgnode serve` with
//! its own `--address`), the leader adds it as a learner and waits until it
//! has caught up, and only then (if asked) makes it a voter, so a slow new
//! peer never stalls the quorum. A removal is recorded in the funnel first
//! ([`Command::MemberRemoved`]) so that no leader re-adds the peer from its
//! cluster file, and a removed peer's heartbeats are refused, so its worker
//! fences itself and its attempts are requeued by the usual lost-node path
//! (never while they may still run). Changes run on the leader; a follower
//! passes the request on.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers};
use serde::{Deserialize, Serialize};

use crate::node::{Peer, WriteError};
use crate::queue::Command;
use crate::raft::NodeId;

/// How long a new learner may take to catch up before `add` gives up (it
/// stays a learner and keeps replicating; `promote` finishes the job).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors of membership changes.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error("{0}")]
    Invalid(String),
    #[error("peer {0} is not a member")]
    NotMember(NodeId),
    #[error("this peer is not the leader")]
    NotLeader,
    #[error("membership change failed: {0}")]
    Raft(String),
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// One member as `sgnode members list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub id: NodeId,
    pub address: String,
    pub voter: bool,
}

/// The replicated membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersView {
    pub members: Vec<MemberView>,
    /// Peers removed by an operator (not re-added from cluster files).
    pub removed: Vec<NodeId>,
    /// Whether a joint (two-step) change is still in progress.
    pub changing: bool,
}

/// Body of `POST /api/v1/members`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    pub id: NodeId,
    /// The new peer's `host:port` (a URL is accepted and reduced to it).
    pub address: String,
    /// Become a voter once caught up (default); false keeps it a learner.
    #[serde(default = "default_true")]
    pub voter: bool,
}

fn default_true() -> bool {
    true
}

/// Reduces `http://host:port/` to `host:port` and checks it is numeric.
pub fn parse_address(raw: &str) -> Result<String, MemberError> {
    let trimmed = raw.trim();
    let without_scheme =
        trimmed.strip_prefix("http://").or_else(|| trimmed.strip_prefix("https://")).unwrap_or(trimmed);
    let address = without_scheme.trim_end_matches('/');
    address.parse::<std::net::SocketAddr>().map_err(|_| {
        MemberError::Invalid(format!(
            "address {raw:?} must be host:port with a numeric IP (e.g. 10.0.0.4:7100)"
        ))
    })?;
    Ok(address.to_string())
}

/// The membership as this peer last saw it.
pub fn view(peer: &Peer) -> MembersView {
    let metrics = peer.metrics();
    let stored = metrics.membership_config.membership();
    let voters: BTreeSet<NodeId> = stored.voter_ids().collect();
    let members = stored
        .nodes()
        .map(|(id, node)| MemberView { id: *id, address: node.addr.clone(), voter: voters.contains(id) })
        .collect();
    let removed = peer.state.read().funnel.removed_members().iter().copied().collect();
    MembersView { members, removed, changing: stored.get_joint_config().len() > 1 }
}

fn is_leader(peer: &Peer) -> bool {
    peer.metrics().current_leader == Some(peer.id)
}

fn raft_error(e: impl std::fmt::Display) -> MemberError {
    MemberError::Raft(e.to_string())
}

/// Adds peer `id` at `address` as a learner, waits for it to catch up,
/// then (if `voter`) promotes it. Leader only.
///
/// # Errors
/// [`MemberError::NotLeader`] on a follower; invalid ids/addresses; Raft
/// errors (including a learner that did not catch up in time).
pub async fn add(peer: &Peer, request: &AddMemberRequest) -> Result<MembersView, MemberError> {
    if request.id == 0 {
        return Err(MemberError::Invalid("id 0 is reserved; ids start at 1".into()));
    }
    let address = parse_address(&request.address)?;
    if !is_leader(peer) {
        return Err(MemberError::NotLeader);
    }
    let current = view(peer);
    if let Some(existing) = current.members.iter().find(|m| m.id == request.id) {
        if existing.address != address {
            return Err(MemberError::Invalid(format!(
                "peer {} is already a member at {}; remove it first to move it",
                request.id, existing.address
            )));
        }
    }
    peer.write(vec![Command::MemberAdded { node: request.id }]).await?;
    let node = BasicNode { addr: address };
    match tokio::time::timeout(CATCH_UP_TIMEOUT, peer.raft.add_learner(request.id, node, true)).await {
        Ok(result) => {
            result.map_err(raft_error)?;
        }
        Err(_) => {
            return Err(MemberError::Raft(format!(
                "peer {} did not catch up within {}s; it stays a learner (see `sgnode members list`)",
                request.id,
                CATCH_UP_TIMEOUT.as_secs()
            )))
        }
    }
    if request.voter {
        promote(peer, request.id).await
    } else {
        Ok(view(peer))
    }
}

/// Makes learner `id` a voter. Leader only.
///
/// # Errors
/// Not a member, not leader, Raft errors.
pub async fn promote(peer: &Peer, id: NodeId) -> Result<MembersView, MemberError> {
    if !is_leader(peer) {
        return Err(MemberError::NotLeader);
    }
    let current = view(peer);
    match current.members.iter().find(|m| m.id == id) {
        None => return Err(MemberError::NotMember(id)),
        Some(m) if m.voter => return Ok(current),
        Some(_) => {}
    }
    peer.raft
        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
        .await
        .map_err(raft_error)?;
    Ok(view(peer))
}

/// Removes peer `id` (voter or learner) from the membership. Leader only.
///
/// # Errors
/// Not a member, the last voter, not leader, Raft errors.
pub async fn remove(peer: &Peer, id: NodeId) -> Result<MembersView, MemberError> {
    if !is_leader(peer) {
        return Err(MemberError::NotLeader);
    }
    let current = view(peer);
    let Some(member) = current.members.iter().find(|m| m.id == id) else {
        return Err(MemberError::NotMember(id));
    };
    let voters = current.members.iter().filter(|m| m.voter).count();
    if member.voter && voters <= 1 {
        return Err(MemberError::Invalid(format!("peer {id} is the last voter; add another voter first")));
    }
    // Recorded first, so no leader re-adds it from its cluster file while
    // the change is under way.
    peer.write(vec![Command::MemberRemoved { node: id }]).await?;
    let change = if member.voter {
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    };
    peer.raft.change_membership(change, false).await.map_err(raft_error)?;
    Ok(view(peer))
}

/// Whether `node` is in the current membership (voter or learner): only
/// members' workers get their leases renewed.
pub fn is_member(peer: &Peer, node: NodeId) -> bool {
    peer.metrics().membership_config.membership().get_node(&node).is_some()
}
