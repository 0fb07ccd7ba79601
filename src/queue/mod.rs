//! The funnel: sgnode's replicated state machine, as pure deterministic code.
//!
//! Every replica feeds the same [`Proposal`]s (Raft log entries) through
//! [`Funnel::apply`] and must end in byte-identical state. Hence: no I/O, no
//! clock (time comes from the proposal, stamped by the leader), no randomness,
//! and no iteration over hash maps where the order could reach a result. The
//! hash maps below are lookup-only indexes.
//!
//! Persisted state is `meta` (settings, id counter, clock) plus the jobs; the
//! other maps are indexes derived from the jobs and rebuilt on load, so they
//! can never disagree with what is on disk.
//!
//! History queries never scan the whole history: filters by name, state,
//! node and dedup key walk per-filter id indexes (intersected by
//! leapfrogging from the newest id down), and time bounds become an id
//! range by binary search, because `submitted_at` never decreases with the
//! id. A page costs roughly its length times a few B-tree lookups.

mod artifacts;
mod dispatch;
mod exec;
mod job;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

pub use dispatch::*;
use exec::queue_key;
pub use job::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The small, always-persisted part of the funnel state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub settings: Settings,
    /// Next job id to hand out; ids start at 1.
    pub next_id: JobId,
    /// Largest leader clock seen: time never goes backwards inside the funnel
    /// even if a new leader's clock lags the old one's.
    pub clock: Millis,
    /// Registered workers.
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// Placement paused by an operator: jobs queue up but none start.
    pub paused: bool,
    /// Built-in store: artifact hash -> size and holders.
    pub artifacts: BTreeMap<String, ArtifactInfo>,
    /// Peers an operator removed from the membership.
    pub removed_members: BTreeSet<NodeId>,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            settings: Settings::default(),
            next_id: 1,
            clock: 0,
            nodes: BTreeMap::new(),
            paused: false,
            artifacts: BTreeMap::new(),
            removed_members: BTreeSet::new(),
        }
    }
}

/// Full serialisable image of the funnel (snapshots and digests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunnelImage {
    pub meta: Meta,
    pub dispatch: Dispatch,
    pub jobs: Vec<Job>,
}

/// Filters for history queries; all optional.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub name: Option<String>,
    pub state: Option<JobState>,
    pub dedup_key: Option<String>,
    /// Only jobs with id < before (pagination cursor, newest first).
    pub before: Option<JobId>,
    /// Only jobs with an attempt placed on this node.
    pub node: Option<NodeId>,
    /// Only jobs submitted at or after this time.
    pub since: Option<Millis>,
    /// Only jobs submitted before this time.
    pub until: Option<Millis>,
    pub limit: usize,
}

/// Job counts by state plus queue facts, for `nodes`, metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunnelStats {
    pub jobs: u64,
    pub queued: u64,
    pub by_state: BTreeMap<String, u64>,
}

/// The replicated job queue with dedup, retention and admission control.
#[derive(Debug, Default)]
pub struct Funnel {
    meta: Meta,
    jobs: BTreeMap<JobId, Job>,
    /// dedup key -> newest job carrying it (derived).
    dedup: HashMap<String, JobId>,
    /// creating request -> job (derived).
    requests: HashMap<RequestRef, JobId>,
    /// Jobs waiting for placement, by (-priority, id): highest priority
    /// first, then FIFO (derived).
    queued: BTreeSet<(i64, JobId)>,
    /// Jobs holding capacity (assigned or running), per node (derived).
    placed: BTreeMap<NodeId, BTreeSet<JobId>>,
    /// Slots and MiB held per node (derived).
    used: BTreeMap<NodeId, (u64, u64)>,
    /// Terminal jobs by (finished_at, id): retention GC pops from the front,
    /// so a Gc costs what it removes, not what the history holds (derived).
    finished: BTreeSet<(Millis, JobId)>,
    /// History indexes (derived): job ids per name, per state, per node
    /// that ran an attempt, and per hash of the dedup key (hashed so that
    /// a million unique keys are not stored twice; matches are re-checked
    /// against the job, so a collision never reaches a result).
    by_name: BTreeMap<String, BTreeSet<JobId>>,
    by_state: BTreeMap<JobState, BTreeSet<JobId>>,
    by_node: BTreeMap<NodeId, BTreeSet<JobId>>,
    by_dedup: BTreeSet<(u64, JobId)>,
    /// Schedules, induced definitions and dataset events.
    dispatch: Dispatch,
    /// Jobs changed since the storage adapter last drained them. Not state.
    touched: Vec<JobId>,
    /// `dispatch` changed since the adapter last persisted it. Not state.
    dispatch_dirty: bool,
}

impl Funnel {
    /// An empty funnel.
    pub fn new() -> Funnel {
        Funnel::default()
    }

    /// Rebuilds a funnel (and all derived indexes) from persisted parts.
    pub fn from_parts(meta: Meta, dispatch: Dispatch, jobs: impl IntoIterator<Item = Job>) -> Funnel {
        let mut funnel = Funnel { meta, dispatch, ..Funnel::default() };
        for job in jobs {
            funnel.index(&job);
            funnel.jobs.insert(job.id, job);
        }
        funnel
    }

    /// Rebuilds a funnel from an image (snapshot install).
    pub fn from_image(image: FunnelImage) -> Funnel {
        Funnel::from_parts(image.meta, image.dispatch, image.jobs)
    }

    /// The full image, jobs in id order.
    pub fn image(&self) -> FunnelImage {
        FunnelImage {
            meta: self.meta.clone(),
            dispatch: self.dispatch.clone(),
            jobs: self.jobs.values().cloned().collect(),
        }
    }

    /// Canonical bytes of the whole state: equal bytes <=> equal state.
    ///
    /// # Panics
    /// Never in practice: bincode cannot fail on these plain types.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        bincode::serialize(&self.image()).expect("funnel image is always serialisable")
    }

    /// SHA-256 over the canonical bytes, hex; compared across replicas.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(bincode::serialize(&self.meta).unwrap_or_default());
        hasher.update(bincode::serialize(&self.dispatch).unwrap_or_default());
        for job in self.jobs.values() {
            hasher.update(bincode::serialize(job).unwrap_or_default());
        }
        hex::encode(hasher.finalize())
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Peers an operator removed; never re-added from the cluster file.
    pub fn removed_members(&self) -> &BTreeSet<NodeId> {
        &self.meta.removed_members
    }

    pub fn settings(&self) -> &Settings {
        &self.meta.settings
    }

    pub fn job(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(&id)
    }

    /// Ids of jobs changed since the last call (the adapter persists them;
    /// an id no longer present in the funnel was deleted).
    pub fn drain_touched(&mut self) -> Vec<JobId> {
        std::mem::take(&mut self.touched)
    }

    /// Whether the dispatch state changed since the last call.
    pub fn take_dispatch_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dispatch_dirty)
    }

    /// Applies one log entry. Total: every input yields one outcome per
    /// command, never a panic.
    pub fn apply(&mut self, proposal: &Proposal) -> Vec<Outcome> {
        self.meta.clock = self.meta.clock.max(proposal.now);
        let now = self.meta.clock;
        proposal.commands.iter().map(|command| self.apply_one(now, command)).collect()
    }

    fn apply_one(&mut self, now: Millis, command: &Command) -> Outcome {
        match command {
            Command::Submit { request, spec } => self.submit(now, *request, spec),
            Command::Configure(settings) => {
                self.meta.settings = *settings;
                Outcome::Configured
            }
            Command::Cancel { id } => self.cancel(now, *id),
            Command::RegisterNode { id, addr, slots, mem_mb } => {
                self.register_node(now, *id, addr, *slots, *mem_mb)
            }
            Command::Assign { placements } => self.assign(now, placements),
            Command::Started { job, attempt, node, runner } => {
                self.started(now, *job, *attempt, *node, *runner)
            }
            Command::Finished { job, attempt, node, end } => self.finished(now, *job, *attempt, *node, end),
            Command::NodeLost { node } => self.node_lost(now, *node),
            Command::SetPaused { paused } => {
                self.meta.paused = *paused;
                Outcome::Paused { paused: *paused }
            }
            Command::Gc { limit } => {
                let removed = self.gc(now, *limit);
                let left = u64::from(*limit).saturating_sub(removed);
                Outcome::Collected { removed: removed + self.gc_dispatch(now, left) }
            }
            Command::ScheduleUpsert { def } => self.schedule_upsert(now, def),
            Command::ScheduleDelete { name } => self.schedule_delete(name),
            Command::SchedulePause { name, paused } => self.schedule_pause(now, name, *paused),
            Command::ScheduleFired { name, tick, spec, skipped } => {
                self.schedule_fired(now, name, *tick, spec.as_ref(), *skipped)
            }
            Command::InducedUpsert { def } => self.induced_upsert(def),
            Command::DatasetPublished { dataset, params } => self.dataset_published(now, dataset, params),
            Command::InducedFired { name, set, spec } => self.induced_fired(now, name, set, spec),
            Command::ArtifactRegistered { hash, size, node } => {
                self.register_artifact(now, hash, *size, *node)
            }
            Command::MemberRemoved { node } => {
                self.meta.removed_members.insert(*node);
                Outcome::MembershipNoted
            }
            Command::MemberAdded { node } => {
                self.meta.removed_members.remove(node);
                Outcome::MembershipNoted
            }
        }
    }

    fn submit(&mut self, now: Millis, request: Option<RequestRef>, spec: &JobSpec) -> Outcome {
        if let Err(e) = spec.validate() {
            return Outcome::Refused(e);
        }
        if let Some(id) = request.and_then(|r| self.requests.get(&r)) {
            if let Some(job) = self.jobs.get(id) {
                // A retry of a request we already executed: its first answer.
                return Outcome::Submitted { id: *id, duplicate: false, state: job.state };
            }
        }
        let key = spec.effective_dedup_key();
        if let Some(existing) = self.dedup.get(&key).and_then(|id| self.jobs.get(id)) {
            let within_window = match existing.finished_at {
                None => true,
                Some(end) => now < end.saturating_add(self.meta.settings.dedup_window_ms),
            };
            if within_window {
                return Outcome::Submitted { id: existing.id, duplicate: true, state: existing.state };
            }
        }
        if self.queued.len() as u64 >= self.meta.settings.max_queued {
            return Outcome::Refused(FunnelError::QueueFull { max_queued: self.meta.settings.max_queued });
        }
        if let Err(e) = self.check_fits_somewhere(spec) {
            return Outcome::Refused(e);
        }
        let id = self.meta.next_id;
        self.meta.next_id += 1;
        let job = Job {
            id,
            spec: spec.clone(),
            dedup_key: key,
            state: JobState::Queued,
            submitted_at: now,
            finished_at: None,
            request,
            attempts: Vec::new(),
            not_before: now,
            cancel_requested: false,
        };
        self.index(&job);
        self.jobs.insert(id, job);
        self.touched.push(id);
        Outcome::Submitted { id, duplicate: false, state: JobState::Queued }
    }

    fn cancel(&mut self, now: Millis, id: JobId) -> Outcome {
        let Some(job) = self.jobs.get(&id) else { return Outcome::Refused(FunnelError::NotFound { id }) };
        match job.state {
            JobState::Queued => {
                self.update(id, |job| {
                    job.state = JobState::Cancelled;
                    job.finished_at = Some(now);
                });
                Outcome::Cancelled { id, state: JobState::Cancelled }
            }
            // The worker sees the flag on its replica, kills the process
            // group and reports the attempt as cancelled.
            JobState::Assigned | JobState::Running => {
                let state = job.state;
                self.update(id, |job| job.cancel_requested = true);
                Outcome::Cancelled { id, state }
            }
            // Cancelling twice is not an error: the answer is the same.
            JobState::Cancelled => Outcome::Cancelled { id, state: JobState::Cancelled },
            state => Outcome::Refused(FunnelError::WrongState { id, state, action: "cancelled".into() }),
        }
    }

    fn gc(&mut self, now: Millis, limit: u32) -> u64 {
        let retention = self.meta.settings.history_retention_ms;
        let mut removed = 0;
        while removed < u64::from(limit) {
            let Some(&(end, id)) = self.finished.first() else { break };
            if now < end.saturating_add(retention) {
                break;
            }
            self.finished.pop_first();
            if let Some(job) = self.jobs.remove(&id) {
                self.unindex(&job);
                self.touched.push(id);
                removed += 1;
            }
        }
        removed
    }

    fn index(&mut self, job: &Job) {
        // Ids grow with time, so the newest job for a key wins.
        let newest = self.dedup.get(&job.dedup_key).is_none_or(|&other| other < job.id);
        if newest {
            self.dedup.insert(job.dedup_key.clone(), job.id);
        }
        if let Some(request) = job.request {
            self.requests.insert(request, job.id);
        }
        if job.state == JobState::Queued {
            self.queued.insert(queue_key(job));
        }
        if let Some(end) = job.finished_at {
            self.finished.insert((end, job.id));
        }
        match self.by_name.get_mut(&job.spec.name) {
            Some(ids) => {
                ids.insert(job.id);
            }
            None => {
                self.by_name.insert(job.spec.name.clone(), BTreeSet::from([job.id]));
            }
        }
        self.by_state.entry(job.state).or_default().insert(job.id);
        for attempt in &job.attempts {
            self.by_node.entry(attempt.node).or_default().insert(job.id);
        }
        self.by_dedup.insert((key_hash(&job.dedup_key), job.id));
        if let (true, Some(attempt)) = (job.holds_capacity(), job.current()) {
            self.placed.entry(attempt.node).or_default().insert(job.id);
            let used = self.used.entry(attempt.node).or_default();
            used.0 = used.0.saturating_add(u64::from(job.spec.slots));
            used.1 = used.1.saturating_add(job.spec.mem_mb);
        }
    }

    fn unindex(&mut self, job: &Job) {
        if self.dedup.get(&job.dedup_key) == Some(&job.id) {
            self.dedup.remove(&job.dedup_key);
        }
        if let Some(request) = job.request {
            self.requests.remove(&request);
        }
        self.queued.remove(&queue_key(job));
        if let Some(end) = job.finished_at {
            self.finished.remove(&(end, job.id));
        }
        remove_id(&mut self.by_name, &job.spec.name, job.id);
        remove_id(&mut self.by_state, &job.state, job.id);
        for attempt in &job.attempts {
            remove_id(&mut self.by_node, &attempt.node, job.id);
        }
        self.by_dedup.remove(&(key_hash(&job.dedup_key), job.id));
        if let (true, Some(attempt)) = (job.holds_capacity(), job.current()) {
            if let Some(set) = self.placed.get_mut(&attempt.node) {
                set.remove(&job.id);
                if set.is_empty() {
                    self.placed.remove(&attempt.node);
                }
            }
            if let Some(used) = self.used.get_mut(&attempt.node) {
                used.0 = used.0.saturating_sub(u64::from(job.spec.slots));
                used.1 = used.1.saturating_sub(job.spec.mem_mb);
            }
        }
    }

    /// Changes one job, keeping every derived index in step.
    fn update(&mut self, id: JobId, change: impl FnOnce(&mut Job)) -> bool {
        let Some(mut job) = self.jobs.remove(&id) else { return false };
        self.unindex(&job);
        change(&mut job);
        self.index(&job);
        self.jobs.insert(id, job);
        self.touched.push(id);
        true
    }

    /// History, newest first, filtered; stops after `limit` matches.
    ///
    /// Cost: with no filter, `limit` steps; with filters, one leapfrog step
    /// per id that is in every filter's index (a few B-tree seeks each), so
    /// a page of a selective filter does not scan the jobs in between. Only
    /// a combination of filters that are each broad but rarely hold together
    /// (e.g. a common name on a busy node in a rare state) walks many ids.
    pub fn history(&self, query: &HistoryQuery) -> Vec<&Job> {
        let mut upper = query.before.unwrap_or(JobId::MAX);
        if let Some(until) = query.until {
            upper = upper.min(self.first_submitted_at_or_after(until));
        }
        let lower = query.since.map_or(0, |since| self.first_submitted_at_or_after(since));
        let mut sources = Vec::new();
        if let Some(key) = &query.dedup_key {
            sources.push((0, IdSource::Hashed(&self.by_dedup, key_hash(key))));
        }
        let indexed = [
            query.name.as_ref().map(|n| self.by_name.get(n)),
            query.state.map(|s| self.by_state.get(&s)),
            query.node.map(|n| self.by_node.get(&n)),
        ];
        for index in indexed.into_iter().flatten() {
            // A filter nobody matches: nothing to walk.
            let Some(ids) = index else { return Vec::new() };
            sources.push((ids.len(), IdSource::Ids(ids)));
        }
        // The smallest index leads (ties keep filter order: deterministic).
        sources.sort_by_key(|(len, _)| *len);
        let sources: Vec<IdSource<'_>> = sources.into_iter().map(|(_, s)| s).collect();
        let matches = |job: &&Job| {
            query.since.is_none_or(|s| job.submitted_at >= s)
                && query.until.is_none_or(|u| job.submitted_at < u)
                && query.node.is_none_or(|n| job.attempts.iter().any(|a| a.node == n))
                && query.name.as_ref().is_none_or(|n| &job.spec.name == n)
                && query.state.is_none_or(|s| job.state == s)
                && query.dedup_key.as_ref().is_none_or(|k| &job.dedup_key == k)
        };
        if lower >= upper {
            return Vec::new();
        }
        if sources.is_empty() {
            return self
                .jobs
                .range(lower..upper)
                .rev()
                .map(|(_, job)| job)
                .filter(matches)
                .take(query.limit)
                .collect();
        }
        let mut out = Vec::new();
        let mut bound = upper;
        while out.len() < query.limit {
            let Some(id) = common_before(&sources, lower, bound) else { break };
            bound = id;
            if let Some(job) = self.jobs.get(&id).filter(matches) {
                out.push(job);
            }
        }
        out
    }

    /// The smallest id whose job was submitted at or after `t` (`JobId::MAX`
    /// when none): a binary search over ids, valid because the funnel's
    /// clock never goes back, so `submitted_at` never decreases with the id.
    fn first_submitted_at_or_after(&self, t: Millis) -> JobId {
        let first_from = |x: JobId| self.jobs.range(x..).next().map(|(&id, job)| (id, job.submitted_at));
        let (mut lo, mut hi) = (0, self.meta.next_id);
        // Invariant: the answer's search key lies in [lo, hi]; hi = past all.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match first_from(mid) {
                Some((_, at)) if at >= t => hi = mid,
                _ => lo = mid + 1,
            }
        }
        first_from(lo).filter(|&(_, at)| at >= t).map_or(JobId::MAX, |(id, _)| id)
    }

    /// Counts by state, from the state index (cost: the number of states,
    /// not of jobs: `/metrics` and `nodes` call this often).
    pub fn stats(&self) -> FunnelStats {
        let by_state =
            self.by_state.iter().map(|(state, ids)| (state.as_str().to_string(), ids.len() as u64)).collect();
        FunnelStats { jobs: self.jobs.len() as u64, queued: self.queued.len() as u64, by_state }
    }
}

/// Hash of a dedup key for the `by_dedup` index. Lookup only: results are
/// checked against the job's key, so the hash function may differ between
/// builds without changing any answer.
fn key_hash(key: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

/// Removes `id` from the set under `key`, dropping the set when it empties
/// (so that, e.g., names that left the history leave the index too).
fn remove_id<K: Ord>(index: &mut BTreeMap<K, BTreeSet<JobId>>, key: &K, id: JobId) {
    if let Some(ids) = index.get_mut(key) {
        ids.remove(&id);
        if ids.is_empty() {
            index.remove(key);
        }
    }
}

/// One filter's candidate ids, in id order.
enum IdSource<'a> {
    Ids(&'a BTreeSet<JobId>),
    /// The ids filed under one key hash.
    Hashed(&'a BTreeSet<(u64, JobId)>, u64),
}

impl IdSource<'_> {
    /// The largest id in `[lower, upper)`.
    fn last_in(&self, lower: JobId, upper: JobId) -> Option<JobId> {
        match self {
            IdSource::Ids(ids) => ids.range(lower..upper).next_back().copied(),
            IdSource::Hashed(set, hash) => {
                set.range((*hash, lower)..(*hash, upper)).next_back().map(|&(_, id)| id)
            }
        }
    }
}

/// The largest id in `[lower, upper)` present in every source (leapfrog:
/// each source seeks to at most the current candidate until all agree).
fn common_before(sources: &[IdSource<'_>], lower: JobId, upper: JobId) -> Option<JobId> {
    let mut candidate = sources.first()?.last_in(lower, upper)?;
    loop {
        let mut moved = false;
        for source in sources {
            let id = source.last_in(lower, candidate + 1)?;
            if id < candidate {
                candidate = id;
                moved = true;
            }
        }
        if !moved {
            return Some(candidate);
        }
    }
}

#[cfg(test)]
mod tests;
