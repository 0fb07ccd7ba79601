//! A running peer: opens storage, starts Raft, forms the cluster from the
//! cluster file on first start, and owns the write path.
//!
//! Write path. Any peer accepts a write. On the leader, writes from many
//! clients are gathered by one batcher into a single Raft entry (a
//! [`Proposal`]) stamped with the leader's clock, with several entries in
//! flight at once: one fsync round trip then acknowledges hundreds of
//! submits. A follower forwards the write to the leader over HTTP. Every
//! write carries the client's request id, recorded by the funnel, so a write
//! retried after a leader change returns its first answer instead of being
//! applied twice. A write that cannot reach a leader with a quorum within
//! `write_timeout` fails with [`WriteError::NoQuorum`] (HTTP 503); its
//! outcome is then unknown and the client retries with the same request id.
//!
//! Leader housekeeping (replicated settings, retention GC, adding learners)
//! runs only on the leader, as ordinary proposals.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinSet;

use crate::config::ClusterConfig;
use crate::queue::{Command, Millis, Outcome, Proposal, Settings};
use crate::raft::log_store::LogStore;
use crate::raft::network::HttpNetworkFactory;
use crate::raft::state_machine::{SharedState, StateMachine};
use crate::raft::store::Store;
use crate::raft::{NodeId, Raft, RaftMetrics, StorageError};

/// Most commands gathered into one Raft entry.
const MAX_COMMANDS_PER_ENTRY: usize = 4096;
/// Soft cap on an entry's encoded size: far below the Raft RPC body limit,
/// so an entry can always be replicated (one oversized write still goes
/// alone).
const MAX_BYTES_PER_ENTRY: usize = 8 * 1024 * 1024;
/// Raft entries the batcher keeps in flight at once (pipelining).
const MAX_ENTRIES_IN_FLIGHT: usize = 8;
/// Forwarded batches a follower keeps in flight to the leader.
const MAX_FORWARDS_IN_FLIGHT: usize = 4;
/// Most GC removals per proposal, so one GC never stalls applies (about
/// 20 ms of apply for a million-job history, see `sgnode bench history`).
/// A full batch is followed by the next one on the leader's next tick
/// rather than after `gc_interval`, so a backlog drains in small steps.
const GC_BATCH: u32 = 2_000;

/// Errors starting a peer.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot create data dir {path}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open database in {path} (is another sgnode using it?)")]
    Database { path: PathBuf, source: sled::Error },
    #[error("cannot load state: {0}")]
    Storage(#[from] StorageError),
    #[error("invalid raft settings: {0}")]
    RaftConfig(#[from] openraft::ConfigError),
    #[error("raft failed to start: {0}")]
    Raft(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// Why a write did not produce outcomes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("no leader with a quorum answered within {0:?}; the outcome is unknown, retry with the same request id")]
    NoQuorum(Duration),
    #[error("raft stopped on this peer: {0}")]
    Fatal(String),
    #[error("this peer is shutting down")]
    ShuttingDown,
}

/// A write as it travels from a follower to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForwardedWrite {
    pub commands: Vec<Command>,
}

/// The leader's answer to a forwarded write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardedReply {
    Done(WriteResult),
    /// The receiver is not (or no longer) the leader.
    NotLeader {
        leader: Option<NodeId>,
    },
}

/// Outcomes of a write and the log index that carries them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteResult {
    pub log_index: u64,
    pub outcomes: Vec<Outcome>,
}

/// One write waiting in the leader's batcher.
struct PendingWrite {
    commands: Vec<Command>,
    reply: oneshot::Sender<Result<WriteResult, ProposeError>>,
}

#[derive(Debug)]
enum ProposeError {
    NotLeader(Option<NodeId>),
    Fatal(String),
}

/// A worker's liveness signal to the leader (a plain RPC, not a log entry).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node: NodeId,
    pub incarnation: u64,
}

/// The leader's answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeartbeatReply {
    /// Lease renewed: this incarnation is alive in the leader's state.
    Alive,
    /// Ask the leader instead (or nobody can confirm leadership now).
    NotLeader { leader: Option<NodeId> },
    /// The leader considers this incarnation gone (lost or superseded): the
    /// worker must stop its attempts and register again.
    Stale,
}

/// What the leader knows about workers' heartbeats in its current term.
/// One mutex covers both maps so that "renew a lease" and "declare the
/// node lost" can never interleave: a heartbeat either lands before the
/// decision (and prevents it) or after it (and is told `Stale`).
#[derive(Debug, Default)]
struct Liveness {
    /// Last heartbeat per node: (incarnation, when).
    heard: std::collections::HashMap<NodeId, (u64, std::time::Instant)>,
    /// Incarnations this leader decided to declare lost.
    condemned: std::collections::HashSet<(NodeId, u64)>,
}

/// A running peer. Cheap to share behind an `Arc`.
pub struct Peer {
    pub id: NodeId,
    pub config: Arc<ClusterConfig>,
    pub raft: Raft,
    pub state: SharedState,
    store: Arc<Store>,
    /// Leader side: writes waiting to become a Raft entry.
    batcher: mpsc::Sender<PendingWrite>,
    /// Follower side: writes waiting to be forwarded to the leader together.
    forwarder: mpsc::Sender<PendingWrite>,
    /// Client for forwarding writes and asking other peers for their status.
    pub http: reqwest::Client,
    /// The cluster CA (empty without TLS), for every other client a peer makes.
    pub trust: crate::tls::Trust,
    shutdown: watch::Receiver<bool>,
    /// Leader only: heartbeats received and incarnations being declared lost.
    liveness: std::sync::Mutex<Liveness>,
}

/// Wall clock in milliseconds; only ever read outside the state machine.
pub fn now_millis() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as Millis)
}

impl Peer {
    /// Opens storage and starts Raft and the background tasks for peer `id`.
    /// The returned tasks end when `shutdown` turns true.
    ///
    /// # Errors
    /// Config, storage and Raft start-up errors, each naming what failed.
    pub async fn start(
        config: Arc<ClusterConfig>,
        id: NodeId,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Arc<Peer>, JoinSet<()>), StartError> {
        let me = config.peer(id)?.clone();
        let trust = crate::tls::Trust::for_cluster(&config)?;
        std::fs::create_dir_all(&me.data_dir)
            .map_err(|source| StartError::DataDir { path: me.data_dir.clone(), source })?;
        let db_path = me.data_dir.join("db");
        let store = Arc::new(
            Store::open(&db_path).map_err(|source| StartError::Database { path: db_path.clone(), source })?,
        );
        let state_machine = StateMachine::open(store.clone())?;
        let state = state_machine.shared();
        let timing = &config.raft;
        let raft_config = openraft::Config {
            cluster_name: config.cluster_name.clone(),
            heartbeat_interval: timing.heartbeat_ms,
            election_timeout_min: timing.election_min_ms,
            election_timeout_max: timing.election_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(timing.snapshot_every),
            max_in_snapshot_log_to_keep: 1000,
            max_payload_entries: 64,
            ..Default::default()
        }
        .validate()?;
        let raft = Raft::new(
            id,
            Arc::new(raft_config),
            HttpNetworkFactory::new(config.token.clone(), config.scheme(), trust.clone()),
            LogStore::new(store.clone()),
            state_machine,
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;

        let (batcher_tx, batcher_rx) = mpsc::channel(65_536);
        let (forwarder_tx, forwarder_rx) = mpsc::channel(65_536);
        // This client only ever talks to other peers, so every request may
        // carry the peer token (reads between peers need a role too).
        let mut headers = reqwest::header::HeaderMap::new();
        if !config.token.is_empty() {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", config.token))
                .map_err(|_| StartError::Raft("token: not a valid HTTP header value".into()))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = trust
            .peers_only(reqwest::Client::builder())
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .default_headers(headers)
            .build()
            .map_err(|e| StartError::Raft(format!("http client: {e}")))?;
        let peer = Arc::new(Peer {
            id,
            config: config.clone(),
            raft,
            state,
            store,
            batcher: batcher_tx,
            forwarder: forwarder_tx,
            http,
            trust,
            shutdown: shutdown.clone(),
            liveness: Default::default(),
        });

        let mut tasks = JoinSet::new();
        let raft = peer.raft.clone();
        tasks.spawn(run_batches(batcher_rx, shutdown.clone(), MAX_ENTRIES_IN_FLIGHT, move |commands| {
            propose(raft.clone(), commands)
        }));
        let weak = Arc::downgrade(&peer);
        tasks.spawn(run_batches(forwarder_rx, shutdown.clone(), MAX_FORWARDS_IN_FLIGHT, move |commands| {
            let weak = weak.clone();
            async move {
                match weak.upgrade() {
                    Some(peer) => peer.forward(commands).await,
                    None => Err(ProposeError::Fatal("peer stopped".into())),
                }
            }
        }));
        tasks.spawn(run_housekeeping(peer.clone(), shutdown.clone()));
        tasks.spawn(crate::arbiter::run_arbiter(peer.clone(), shutdown.clone()));
        tasks.spawn(crate::dispatch::run_dispatcher(peer.clone(), shutdown.clone()));
        tasks.spawn(crate::runner::worker::run_worker(peer.clone(), shutdown));
        Ok((peer, tasks))
    }

    /// Forms the cluster from the file if this peer has never been part of
    /// one. Safe on every voter: they all propose the identical membership.
    /// A peer that has any Raft state never re-initialises.
    pub async fn bootstrap_if_new(&self) {
        let me_votes = self.config.peers.iter().any(|p| p.id == self.id && p.voter);
        if !me_votes {
            return;
        }
        match self.raft.is_initialized().await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                tracing::error!("cannot check initialisation: {e}");
                return;
            }
        }
        let voters: BTreeMap<NodeId, BasicNode> = self
            .config
            .peers
            .iter()
            .filter(|p| p.voter)
            .map(|p| (p.id, BasicNode { addr: p.address.clone() }))
            .collect();
        match self.raft.initialize(voters).await {
            Ok(()) => tracing::info!("formed a new cluster from the cluster file"),
            // Another voter got there first and already replicated to us.
            Err(e) => tracing::info!("not initialising: {e}"),
        }
    }

    /// Current Raft metrics of this peer.
    pub fn metrics(&self) -> RaftMetrics {
        self.raft.metrics().borrow().clone()
    }

    /// Where peer `id` listens: the replicated membership first, then the
    /// cluster file.
    pub fn peer_address(&self, id: NodeId) -> Option<String> {
        let metrics = self.metrics();
        metrics
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
            .or_else(|| self.config.peer(id).ok().map(|p| p.address.clone()))
    }

    /// Executes `commands` through the leader (batched), returning their
    /// outcomes once committed and applied on the leader. When the write came
    /// through a follower, also waits (briefly) until this peer has applied
    /// it, so that a read from the same peer sees the write.
    ///
    /// # Errors
    /// [`WriteError::NoQuorum`] when no leader could commit it in time.
    pub async fn write(&self, commands: Vec<Command>) -> Result<WriteResult, WriteError> {
        let timeout = self.config.write_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut metrics_rx = self.raft.metrics();
        loop {
            if *self.shutdown.borrow() {
                return Err(WriteError::ShuttingDown);
            }
            let leader = metrics_rx.borrow_and_update().current_leader;
            let attempt = match leader {
                Some(leader) if leader == self.id => self.enqueue(&self.batcher, commands.clone()).await,
                Some(_) => self.enqueue(&self.forwarder, commands.clone()).await,
                None => Err(ProposeError::NotLeader(None)),
            };
            match attempt {
                Ok(result) => {
                    if leader != Some(self.id) {
                        self.wait_applied(result.log_index, deadline).await;
                    }
                    return Ok(result);
                }
                Err(ProposeError::Fatal(e)) => return Err(WriteError::Fatal(e)),
                Err(ProposeError::NotLeader(_)) => {}
            }
            // Wait for a leadership change (or a short pause) before retrying.
            let pause = tokio::time::sleep(Duration::from_millis(50));
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Err(WriteError::NoQuorum(timeout)),
                _ = metrics_rx.changed() => {}
                _ = pause => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(WriteError::NoQuorum(timeout));
            }
        }
    }

    /// Entry point for writes forwarded by followers.
    pub async fn handle_forwarded(&self, write: ForwardedWrite) -> Result<ForwardedReply, WriteError> {
        let timeout = self.config.write_timeout;
        match tokio::time::timeout(timeout, self.enqueue(&self.batcher, write.commands)).await {
            Err(_) => Err(WriteError::NoQuorum(timeout)),
            Ok(Ok(result)) => Ok(ForwardedReply::Done(result)),
            Ok(Err(ProposeError::NotLeader(leader))) => Ok(ForwardedReply::NotLeader { leader }),
            Ok(Err(ProposeError::Fatal(e))) => Err(WriteError::Fatal(e)),
        }
    }

    /// Queues a write for the leader's batcher (`batcher`) or for the
    /// follower's forwarder (`forwarder`) and waits for its outcomes.
    async fn enqueue(
        &self,
        queue: &mpsc::Sender<PendingWrite>,
        commands: Vec<Command>,
    ) -> Result<WriteResult, ProposeError> {
        let (reply, rx) = oneshot::channel();
        // A stalled leader (no quorum) stops draining its queue; do not wait
        // for room forever.
        match tokio::time::timeout(self.config.write_timeout, queue.send(PendingWrite { commands, reply }))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(ProposeError::Fatal("batcher stopped".into())),
            Err(_) => return Err(ProposeError::NotLeader(None)),
        }
        match tokio::time::timeout(self.config.write_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ProposeError::Fatal("batcher dropped the write".into())),
            // A leader without quorum never answers; report it as not-leader
            // so the caller's deadline decides.
            Err(_) => Err(ProposeError::NotLeader(None)),
        }
    }

    /// Sends many followers' writes to the leader in one request.
    async fn forward(&self, commands: Vec<Command>) -> Result<WriteResult, ProposeError> {
        let Some(leader) = self.metrics().current_leader else { return Err(ProposeError::NotLeader(None)) };
        if leader == self.id {
            // We became leader meanwhile: the caller retries locally.
            return Err(ProposeError::NotLeader(Some(leader)));
        }
        let Some(address) = self.peer_address(leader) else { return Err(ProposeError::NotLeader(None)) };
        let body = crate::raft::encode(&ForwardedWrite { commands })
            .map_err(|e| ProposeError::Fatal(e.to_string()))?;
        let response = self
            .http
            .post(format!("{}/raft/write", self.config.url(&address)))
            .timeout(self.config.write_timeout)
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                tracing::debug!("leader {leader} answered {} to a forwarded write", r.status());
                return Err(ProposeError::NotLeader(None));
            }
            Err(e) => {
                tracing::debug!("forwarding to leader {leader} failed: {e}");
                return Err(ProposeError::NotLeader(None));
            }
        };
        let bytes = response.bytes().await.map_err(|_| ProposeError::NotLeader(None))?;
        match crate::raft::decode::<ForwardedReply>(&bytes) {
            Ok(ForwardedReply::Done(result)) => Ok(result),
            Ok(ForwardedReply::NotLeader { leader }) => Err(ProposeError::NotLeader(leader)),
            Err(e) => Err(ProposeError::Fatal(format!("undecodable reply from leader {leader}: {e}"))),
        }
    }

    async fn wait_applied(&self, index: u64, deadline: tokio::time::Instant) {
        let mut applied = self.state.subscribe();
        let wait = applied.wait_for(|&i| i >= index);
        let _ = tokio::time::timeout_at(deadline, wait).await;
    }

    /// Leader side of a heartbeat. Leadership is confirmed with a quorum
    /// round first: a deposed leader that does not know it yet must not
    /// renew leases, or a partitioned worker could keep running a job the
    /// new leader already gave to someone else.
    pub async fn handle_heartbeat(&self, heartbeat: &Heartbeat) -> HeartbeatReply {
        let metrics = self.metrics();
        if metrics.state != ServerState::Leader {
            return HeartbeatReply::NotLeader { leader: metrics.current_leader };
        }
        let confirm = Duration::from_millis(self.config.raft.election_min_ms);
        match tokio::time::timeout(confirm, self.raft.ensure_linearizable()).await {
            Ok(Ok(_)) => {}
            _ => return HeartbeatReply::NotLeader { leader: None },
        }
        let alive = {
            let applied = self.state.read();
            applied
                .funnel
                .nodes()
                .get(&heartbeat.node)
                .is_some_and(|n| !n.lost && n.incarnation == heartbeat.incarnation)
        };
        // A peer removed from the membership gets no lease: its worker
        // fences itself and its attempts take the lost-node path.
        if !alive || !crate::members::is_member(self, heartbeat.node) {
            return HeartbeatReply::Stale;
        }
        let mut liveness = self.liveness.lock().unwrap_or_else(|p| p.into_inner());
        if liveness.condemned.contains(&(heartbeat.node, heartbeat.incarnation)) {
            return HeartbeatReply::Stale;
        }
        liveness.heard.insert(heartbeat.node, (heartbeat.incarnation, std::time::Instant::now()));
        HeartbeatReply::Alive
    }

    /// When the leader last heard from this incarnation of `node` (leader only).
    pub fn last_heartbeat(&self, node: NodeId, incarnation: u64) -> Option<std::time::Instant> {
        let liveness = self.liveness.lock().unwrap_or_else(|p| p.into_inner());
        liveness.heard.get(&node).filter(|(inc, _)| *inc == incarnation).map(|(_, t)| *t)
    }

    /// Decides, atomically with heartbeat handling, that this incarnation of
    /// `node` has been silent since `floor` or its last heartbeat (whichever
    /// is later) for longer than `timeout`. Once it returns true, heartbeats
    /// from that incarnation are refused, so no lease is renewed while the
    /// `NodeLost` entry is on its way.
    pub fn condemn_if_silent(
        &self,
        node: NodeId,
        incarnation: u64,
        floor: std::time::Instant,
        timeout: Duration,
    ) -> bool {
        let mut liveness = self.liveness.lock().unwrap_or_else(|p| p.into_inner());
        let heard = liveness.heard.get(&node).filter(|(inc, _)| *inc == incarnation).map(|(_, t)| *t);
        let silent_since = heard.map_or(floor, |h| h.max(floor));
        if silent_since.elapsed() <= timeout {
            return false;
        }
        liveness.condemned.insert((node, incarnation));
        true
    }

    /// Forgets heartbeats and decisions (on any change of term: a new term
    /// starts from a clean slate).
    pub fn reset_liveness(&self) {
        let mut liveness = self.liveness.lock().unwrap_or_else(|p| p.into_inner());
        liveness.heard.clear();
        liveness.condemned.clear();
    }

    /// A write proposed by this peer only if it leads, never forwarded: the
    /// leader's own decisions (placements, node loss) must not be carried
    /// out by a later leader that never made them.
    ///
    /// # Errors
    /// [`WriteError::NoQuorum`] when not leader or not committed in time.
    pub async fn write_as_leader(&self, commands: Vec<Command>) -> Result<WriteResult, WriteError> {
        let timeout = self.config.write_timeout;
        match tokio::time::timeout(timeout, self.enqueue(&self.batcher, commands)).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(ProposeError::Fatal(e))) => Err(WriteError::Fatal(e)),
            Ok(Err(ProposeError::NotLeader(_))) | Err(_) => Err(WriteError::NoQuorum(timeout)),
        }
    }

    /// Sends a heartbeat to the current leader (or handles it locally).
    pub async fn send_heartbeat(&self, heartbeat: &Heartbeat) -> HeartbeatReply {
        let leader = self.metrics().current_leader;
        let Some(leader) = leader else { return HeartbeatReply::NotLeader { leader: None } };
        if leader == self.id {
            return self.handle_heartbeat(heartbeat).await;
        }
        let Some(address) = self.peer_address(leader) else {
            return HeartbeatReply::NotLeader { leader: None };
        };
        let Ok(body) = crate::raft::encode(heartbeat) else {
            return HeartbeatReply::NotLeader { leader: None };
        };
        let response = self
            .http
            .post(format!("{}/raft/heartbeat", self.config.url(&address)))
            .timeout(Duration::from_millis(self.config.raft.election_min_ms * 2))
            .body(body)
            .send()
            .await;
        match response {
            Ok(r) if r.status().is_success() => match r.bytes().await {
                Ok(bytes) => {
                    crate::raft::decode(&bytes).unwrap_or(HeartbeatReply::NotLeader { leader: None })
                }
                Err(_) => HeartbeatReply::NotLeader { leader: None },
            },
            _ => HeartbeatReply::NotLeader { leader: None },
        }
    }

    /// Whether shutdown has begun: long-lived responses (log follows) end.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Flushes storage; called last on shutdown.
    pub async fn flush(&self) {
        if let Err(e) = self.store.flush().await {
            tracing::error!("final flush failed: {e}");
        }
    }
}

/// Gathers pending writes into batches and hands each batch to `dispatch`,
/// with up to `in_flight` batches outstanding. Waiting for a free slot
/// before draining the queue lets writes pile up while batches are in
/// flight, which is what makes the next batch big.
async fn run_batches<F, Fut>(
    mut rx: mpsc::Receiver<PendingWrite>,
    mut shutdown: watch::Receiver<bool>,
    in_flight: usize,
    dispatch: F,
) where
    F: Fn(Vec<Command>) -> Fut,
    Fut: std::future::Future<Output = Result<WriteResult, ProposeError>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(in_flight));
    let mut tasks = JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.changed() => break,
            permit = slots.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
        };
        let first = tokio::select! {
            _ = shutdown.changed() => break,
            first = rx.recv() => match first { Some(w) => w, None => break },
        };
        let mut batch = vec![first];
        let mut count = batch[0].commands.len();
        let mut bytes = encoded_size(&batch[0].commands);
        while count < MAX_COMMANDS_PER_ENTRY && bytes < MAX_BYTES_PER_ENTRY {
            match rx.try_recv() {
                Ok(w) => {
                    count += w.commands.len();
                    bytes += encoded_size(&w.commands);
                    batch.push(w);
                }
                Err(_) => break,
            }
        }
        // Writers that gave up (timed out) are not proposed late.
        batch.retain(|w| !w.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let commands: Vec<Command> = batch.iter().flat_map(|w| w.commands.iter().cloned()).collect();
        let sent = dispatch(commands);
        tasks.spawn(async move {
            reply_all(batch, sent.await);
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    tasks.shutdown().await;
}

fn encoded_size(commands: &[Command]) -> usize {
    bincode::serialized_size(commands).map_or(0, |n| n as usize)
}

/// Splits a batch's outcomes back to its writers, in order.
fn reply_all(batch: Vec<PendingWrite>, result: Result<WriteResult, ProposeError>) {
    match result {
        Ok(result) => {
            let mut outcomes = result.outcomes.into_iter();
            for write in batch {
                let mine: Vec<Outcome> = outcomes.by_ref().take(write.commands.len()).collect();
                let _ = write.reply.send(Ok(WriteResult { log_index: result.log_index, outcomes: mine }));
            }
        }
        Err(error) => {
            for write in batch {
                let _ = write.reply.send(Err(match &error {
                    ProposeError::NotLeader(l) => ProposeError::NotLeader(*l),
                    ProposeError::Fatal(s) => ProposeError::Fatal(s.clone()),
                }));
            }
        }
    }
}

/// Proposes one batch as one Raft entry, stamped with the leader's clock.
async fn propose(raft: Raft, commands: Vec<Command>) -> Result<WriteResult, ProposeError> {
    match raft.client_write(Proposal { now: now_millis(), commands }).await {
        Ok(response) => Ok(WriteResult { log_index: response.log_id.index, outcomes: response.data }),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(ProposeError::NotLeader(f.leader_id))
        }
        Err(RaftError::APIError(other)) => Err(ProposeError::Fatal(other.to_string())),
        Err(RaftError::Fatal(fatal)) => Err(ProposeError::Fatal(fatal.to_string())),
    }
}

fn desired_settings(config: &ClusterConfig) -> Settings {
    Settings {
        dedup_window_ms: config.dedup_window.as_millis() as u64,
        history_retention_ms: config.history_retention.as_millis() as u64,
        max_queued: config.max_queued,
        retry_backoff_ms: config.retry_backoff.as_millis() as u64,
    }
}

/// Leader-only chores, re-checked every tick.
async fn run_housekeeping(peer: Arc<Peer>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_gc = tokio::time::Instant::now();
    // The last Gc was full: more may be due, collect again on the next tick.
    let mut gc_behind = false;
    let mut metrics_rx = peer.raft.metrics();
    let mut was_leader = false;
    loop {
        // Metrics changes wake us at once on election, so a new leader
        // replicates its settings before most clients find it.
        let woken_by_metrics = tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => false,
            changed = metrics_rx.changed() => if changed.is_err() { return } else { true },
        };
        let is_leader = metrics_rx.borrow_and_update().state == ServerState::Leader;
        let became_leader = is_leader && !was_leader;
        was_leader = is_leader;
        // Metrics change on every apply; only an election is worth a pass.
        if !is_leader || (woken_by_metrics && !became_leader) {
            continue;
        }
        let metrics = peer.metrics();
        let wanted = desired_settings(&peer.config);
        let current = *peer.state.read().funnel.settings();
        if current != wanted {
            // The leader's file wins: the settings then hold on every replica.
            if let Err(e) = peer.write(vec![Command::Configure(wanted)]).await {
                tracing::warn!("cannot replicate settings: {e}");
            }
        }
        if gc_behind || last_gc.elapsed() >= peer.config.gc_interval {
            last_gc = tokio::time::Instant::now();
            match peer.write(vec![Command::Gc { limit: GC_BATCH }]).await {
                Ok(r) => {
                    tracing::debug!("gc: {:?}", r.outcomes);
                    gc_behind = matches!(r.outcomes.first(),
                        Some(Outcome::Collected { removed }) if *removed >= u64::from(GC_BATCH));
                }
                Err(e) => tracing::warn!("gc failed: {e}"),
            }
        }
        // Configured non-voters join as learners, unless an operator
        // removed them.
        let membership = metrics.membership_config.membership().clone();
        let removed = peer.state.read().funnel.removed_members().clone();
        for learner in peer.config.peers.iter().filter(|p| !p.voter) {
            if membership.get_node(&learner.id).is_none() && !removed.contains(&learner.id) {
                let node = BasicNode { addr: learner.address.clone() };
                match peer.raft.add_learner(learner.id, node, false).await {
                    Ok(_) => tracing::info!("added peer {} as a learner", learner.id),
                    Err(e) => tracing::warn!("cannot add learner {}: {e}", learner.id),
                }
            }
        }
    }
}
