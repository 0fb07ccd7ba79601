//! The state machine adapter: feeds committed entries to the pure funnel and
//! persists the result in sled, together with `last_applied`, in one atomic
//! batch per `apply` call. Also builds, stores and installs snapshots.
//!
//! The funnel is kept in memory behind one lock together with
//! `last_applied` and the membership, so a reader or a snapshot always sees
//! a consistent triple. The sled copy exists so that a restart does not have
//! to replay the whole log; the log stays the durable truth, which is why
//! applies are not flushed individually.

use std::io::Cursor;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, StorageIOError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::store::{index_key, Store};
use super::{
    decode, encode, Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::queue::{Dispatch, Funnel, FunnelImage, Job, Meta, Outcome};

const STATE_META_KEY: &[u8] = b"m";
/// Schedules, induced definitions and dataset events: one record, written
/// only when an entry changed them (they change rarely, jobs often).
const DISPATCH_KEY: &[u8] = b"d";
const JOB_PREFIX: u8 = b'j';
const CURRENT_SNAPSHOT_KEY: &[u8] = b"current";

/// What a replica has applied: the funnel and where in the log it stands.
#[derive(Debug, Default)]
pub struct Applied {
    pub funnel: Funnel,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

/// Persisted companion of the funnel's jobs.
#[derive(Serialize, Deserialize)]
struct StateMeta {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    funnel: Meta,
}

/// Snapshot payload.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    image: FunnelImage,
}

/// Shared, read-mostly view of the applied state for the HTTP layer.
#[derive(Clone)]
pub struct SharedState {
    inner: Arc<RwLock<Applied>>,
    /// Bumped after every apply so waiters (e.g. "read your write") can wake.
    applied_tx: Arc<watch::Sender<u64>>,
    /// Counters for `/metrics`, fed by `apply` (not state: they restart at 0).
    observed: Arc<std::sync::Mutex<crate::metrics::Observed>>,
}

impl SharedState {
    /// Read access; the guard must not be held across an `.await`.
    pub fn read(&self) -> RwLockReadGuard<'_, Applied> {
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Applied> {
        self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A receiver that changes whenever the applied index moves.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    /// A copy of the apply-path counters.
    pub fn observed(&self) -> crate::metrics::Observed {
        self.observed.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// openraft's state machine, backed by sled.
pub struct StateMachine {
    store: Arc<Store>,
    shared: SharedState,
    snapshot_seq: u64,
}

fn sm_err(verb: ErrorVerb, e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageError::IO { source: StorageIOError::new(ErrorSubject::StateMachine, verb, AnyError::new(e)) }
}

fn snap_err(verb: ErrorVerb, e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageError::IO { source: StorageIOError::new(ErrorSubject::Snapshot(None), verb, AnyError::new(e)) }
}

fn job_key(id: u64) -> [u8; 9] {
    let mut key = [JOB_PREFIX; 9];
    key[1..].copy_from_slice(&index_key(id));
    key
}

impl StateMachine {
    /// Loads the applied state from sled (or from the stored snapshot if it
    /// is newer, which only happens after a crash during install).
    ///
    /// # Errors
    /// sled read errors or undecodable records.
    pub fn open(store: Arc<Store>) -> Result<StateMachine, StorageError> {
        let mut applied = Applied::default();
        if let Some(bytes) = store.state.get(STATE_META_KEY).map_err(|e| sm_err(ErrorVerb::Read, &e))? {
            let meta: StateMeta = decode(&bytes).map_err(|e| sm_err(ErrorVerb::Read, &e))?;
            let dispatch: Dispatch =
                match store.state.get(DISPATCH_KEY).map_err(|e| sm_err(ErrorVerb::Read, &e))? {
                    Some(bytes) => decode(&bytes).map_err(|e| sm_err(ErrorVerb::Read, &e))?,
                    None => Dispatch::default(),
                };
            let mut jobs: Vec<Job> = Vec::new();
            for item in store.state.scan_prefix([JOB_PREFIX]) {
                let (_, bytes) = item.map_err(|e| sm_err(ErrorVerb::Read, &e))?;
                jobs.push(decode(&bytes).map_err(|e| sm_err(ErrorVerb::Read, &e))?);
            }
            applied = Applied {
                funnel: Funnel::from_parts(meta.funnel, dispatch, jobs),
                last_applied: meta.last_applied,
                membership: meta.membership,
            };
        }
        if let Some((snap_meta, body)) = read_snapshot(&store)? {
            if snap_meta.last_log_id > applied.last_applied {
                let body: SnapshotBody = decode(&body).map_err(|e| snap_err(ErrorVerb::Read, &e))?;
                applied = Applied {
                    funnel: Funnel::from_image(body.image),
                    last_applied: body.last_applied,
                    membership: body.membership,
                };
                write_full_state(&store, &applied)?;
            }
        }
        let index = applied.last_applied.map_or(0, |l| l.index);
        let shared = SharedState {
            inner: Arc::new(RwLock::new(applied)),
            applied_tx: Arc::new(watch::channel(index).0),
            observed: Arc::default(),
        };
        Ok(StateMachine { store, shared, snapshot_seq: 0 })
    }

    /// The view the HTTP layer reads from.
    pub fn shared(&self) -> SharedState {
        self.shared.clone()
    }
}

fn state_meta_bytes(applied: &Applied) -> Result<Vec<u8>, StorageError> {
    let meta = StateMeta {
        last_applied: applied.last_applied,
        membership: applied.membership.clone(),
        funnel: applied.funnel.meta().clone(),
    };
    encode(&meta).map_err(|e| sm_err(ErrorVerb::Write, &e))
}

/// Replaces the whole state tree with `applied`, atomically.
fn write_full_state(store: &Store, applied: &Applied) -> Result<(), StorageError> {
    let mut batch = sled::Batch::default();
    for item in store.state.iter().keys() {
        batch.remove(item.map_err(|e| sm_err(ErrorVerb::Write, &e))?);
    }
    let image = applied.funnel.image();
    for job in image.jobs {
        batch.insert(&job_key(job.id), encode(&job).map_err(|e| sm_err(ErrorVerb::Write, &e))?);
    }
    batch.insert(DISPATCH_KEY, encode(&image.dispatch).map_err(|e| sm_err(ErrorVerb::Write, &e))?);
    batch.insert(STATE_META_KEY, state_meta_bytes(applied)?);
    store.state.apply_batch(batch).map_err(|e| sm_err(ErrorVerb::Write, &e))
}

fn read_snapshot(store: &Store) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError> {
    match store.snapshot.get(CURRENT_SNAPSHOT_KEY).map_err(|e| snap_err(ErrorVerb::Read, &e))? {
        None => Ok(None),
        Some(bytes) => decode(&bytes).map(Some).map_err(|e| snap_err(ErrorVerb::Read, &e)),
    }
}

/// Stores `meta`/`data` as the current snapshot unless a newer one is
/// already stored (a build racing with an install must not win).
fn store_snapshot(store: &Store, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
    if let Some((current, _)) = read_snapshot(store)? {
        if current.last_log_id > meta.last_log_id {
            return Ok(());
        }
    }
    let bytes = encode(&(meta, data)).map_err(|e| snap_err(ErrorVerb::Write, &e))?;
    store.snapshot.insert(CURRENT_SNAPSHOT_KEY, bytes).map_err(|e| snap_err(ErrorVerb::Write, &e))?;
    Ok(())
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = self.shared.read();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Outcome>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let index = {
            let mut applied = self.shared.write();
            for entry in entries {
                applied.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => responses.push(Vec::new()),
                    EntryPayload::Normal(proposal) => {
                        let next_id = applied.funnel.meta().next_id;
                        let outcomes = applied.funnel.apply(&proposal);
                        self.shared.observed.lock().unwrap_or_else(|p| p.into_inner()).observe(
                            next_id,
                            &proposal.commands,
                            &outcomes,
                            &applied.funnel,
                        );
                        responses.push(outcomes);
                    }
                    EntryPayload::Membership(membership) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                        responses.push(Vec::new());
                    }
                }
            }
            // One atomic batch: the jobs these entries touched plus the
            // last_applied they advance to. A crash leaves both old or both new.
            let mut batch = sled::Batch::default();
            let mut touched = applied.funnel.drain_touched();
            touched.sort_unstable();
            touched.dedup();
            for id in touched {
                match applied.funnel.job(id) {
                    Some(job) => {
                        batch.insert(&job_key(id), encode(job).map_err(|e| sm_err(ErrorVerb::Write, &e))?)
                    }
                    None => batch.remove(&job_key(id)),
                }
            }
            if applied.funnel.take_dispatch_dirty() {
                let bytes = encode(applied.funnel.dispatch()).map_err(|e| sm_err(ErrorVerb::Write, &e))?;
                batch.insert(DISPATCH_KEY, bytes);
            }
            batch.insert(STATE_META_KEY, state_meta_bytes(&applied)?);
            self.store.state.apply_batch(batch).map_err(|e| sm_err(ErrorVerb::Write, &e))?;
            applied.last_applied.map_or(0, |l| l.index)
        };
        self.shared.applied_tx.send_replace(index);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        SnapshotBuilder { store: self.store.clone(), shared: self.shared.clone(), seq: self.snapshot_seq }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let body: SnapshotBody = decode(&data).map_err(|e| snap_err(ErrorVerb::Read, &e))?;
        let installed = Applied {
            funnel: Funnel::from_image(body.image),
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        store_snapshot(&self.store, meta, &data)?;
        write_full_state(&self.store, &installed)?;
        self.store.flush().await.map_err(|e| snap_err(ErrorVerb::Write, &e))?;
        let index = installed.last_applied.map_or(0, |l| l.index);
        *self.shared.write() = installed;
        self.shared.applied_tx.send_replace(index);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(read_snapshot(&self.store)?
            .map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

/// Builds a snapshot from a consistent read of the applied state.
pub struct SnapshotBuilder {
    store: Arc<Store>,
    shared: SharedState,
    seq: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        // Copy under the lock, encode outside it: applies must not wait for
        // the serialisation of the whole history.
        let (body, last_applied, membership) = {
            let applied = self.shared.read();
            let body = SnapshotBody {
                last_applied: applied.last_applied,
                membership: applied.membership.clone(),
                image: applied.funnel.image(),
            };
            (body, applied.last_applied, applied.membership.clone())
        };
        let (meta, data) = {
            let data = encode(&body).map_err(|e| snap_err(ErrorVerb::Write, &e))?;
            let snapshot_id = match last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id, l.index, self.seq),
                None => format!("none-{}", self.seq),
            };
            let meta = SnapshotMeta { last_log_id: last_applied, last_membership: membership, snapshot_id };
            (meta, data)
        };
        store_snapshot(&self.store, &meta, &data)?;
        // The log may be purged up to this snapshot next, so the snapshot and
        // the applied state it covers must be on disk first.
        self.store.flush().await.map_err(|e| snap_err(ErrorVerb::Write, &e))?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}
