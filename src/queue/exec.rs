//! The execution half of the funnel: worker registration, placement,
//! attempt reports, node loss and retries.
//!
//! The leader *proposes* placements and node loss, but the funnel decides:
//! every `Assign` is re-checked against capacity and job state when applied,
//! and every worker report must match the job's current attempt (number,
//! node) or it is ignored as stale. So a slow or partitioned peer can never
//! overcommit a node or resurrect an attempt that was already given up.

use super::*;

/// Most queued jobs one refill looks at (bounded work inside apply).
const REFILL_SCAN: usize = 64;

/// Cap on the backoff doubling (2^6 = 64x the base).
const MAX_BACKOFF_DOUBLINGS: u32 = 6;

fn lost(reason: String) -> AttemptEnd {
    AttemptEnd {
        outcome: AttemptOutcome::Lost,
        exit_code: None,
        signal: None,
        duration_ms: 0,
        reason,
        log_tail: String::new(),
        runner: None,
    }
}

impl Funnel {
    /// Registered workers.
    pub fn nodes(&self) -> &BTreeMap<NodeId, NodeInfo> {
        &self.meta.nodes
    }

    /// Free (slots, MiB) on a registered node.
    pub fn spare(&self, node: NodeId) -> Option<(u64, u64)> {
        let info = self.meta.nodes.get(&node)?;
        let (slots, mem) = self.used.get(&node).copied().unwrap_or_default();
        Some((u64::from(info.slots).saturating_sub(slots), info.mem_mb.saturating_sub(mem)))
    }

    /// Held (slots, MiB) on a node.
    pub fn used(&self, node: NodeId) -> (u64, u64) {
        self.used.get(&node).copied().unwrap_or_default()
    }

    /// Queued jobs in placement order: priority, then FIFO.
    pub fn queue(&self) -> impl Iterator<Item = &Job> {
        self.queued.iter().filter_map(|(_, id)| self.jobs.get(id))
    }

    /// Jobs with an assigned or running attempt on `node`.
    pub fn placed_on(&self, node: NodeId) -> impl Iterator<Item = &Job> {
        self.placed.get(&node).into_iter().flatten().filter_map(|id| self.jobs.get(id))
    }

    /// Plans placements for queued jobs, in priority-then-FIFO order, each
    /// on the node in `alive` with the most spare slots (then memory, then
    /// lowest id). Pure: the leader proposes the plan as one `Assign`, and
    /// `apply` re-checks it. Scans at most `scan` queued jobs.
    pub fn plan_placements(
        &self,
        now: Millis,
        alive: &BTreeSet<NodeId>,
        limit: usize,
        scan: usize,
    ) -> Vec<(JobId, NodeId)> {
        if self.meta.paused {
            return Vec::new();
        }
        let mut spare: BTreeMap<NodeId, (u64, u64)> = alive
            .iter()
            .filter(|id| self.meta.nodes.get(id).is_some_and(|n| !n.lost))
            .filter_map(|&id| self.spare(id).map(|s| (id, s)))
            .collect();
        let mut plan = Vec::new();
        for job in self.queue().take(scan) {
            if plan.len() >= limit || spare.values().all(|s| s.0 == 0) {
                break;
            }
            if job.not_before > now {
                continue;
            }
            let need = (u64::from(job.spec.slots), job.spec.mem_mb);
            let best = spare
                .iter()
                .filter(|(_, s)| s.0 >= need.0 && s.1 >= need.1)
                .max_by(|(a_id, a), (b_id, b)| a.cmp(b).then(b_id.cmp(a_id)))
                .map(|(&id, _)| id);
            if let Some(node) = best {
                if let Some(s) = spare.get_mut(&node) {
                    s.0 -= need.0;
                    s.1 -= need.1;
                }
                plan.push((job.id, node));
            }
        }
        plan
    }

    pub(super) fn check_fits_somewhere(&self, spec: &JobSpec) -> Result<(), FunnelError> {
        let nodes = &self.meta.nodes;
        // Before any worker registered there is nothing to judge against.
        if nodes.is_empty() || nodes.values().any(|n| n.slots >= spec.slots && n.mem_mb >= spec.mem_mb) {
            return Ok(());
        }
        Err(FunnelError::Unschedulable {
            slots: spec.slots,
            mem_mb: spec.mem_mb,
            max_slots: nodes.values().map(|n| n.slots).max().unwrap_or(0),
            max_mem_mb: nodes.values().map(|n| n.mem_mb).max().unwrap_or(0),
        })
    }

    pub(super) fn register_node(
        &mut self,
        now: Millis,
        id: NodeId,
        addr: &str,
        slots: u32,
        mem_mb: u64,
    ) -> Outcome {
        let incarnation = self.meta.nodes.get(&id).map_or(1, |n| n.incarnation + 1);
        self.meta
            .nodes
            .insert(id, NodeInfo { id, addr: addr.to_string(), slots, mem_mb, incarnation, lost: false });
        // Whatever an older incarnation held was orphaned by the restart.
        let orphans: Vec<JobId> = self.placed_on(id).map(|j| j.id).collect();
        for job in orphans {
            self.end_attempt(now, job, lost(format!("worker {id} restarted")));
        }
        Outcome::Registered { incarnation }
    }

    pub(super) fn assign(&mut self, now: Millis, placements: &[(JobId, NodeId)]) -> Outcome {
        let mut accepted = 0;
        for &(job_id, node_id) in placements {
            let Some(job) = self.jobs.get(&job_id) else { continue };
            let Some(node) = self.meta.nodes.get(&node_id) else { continue };
            if job.state != JobState::Queued || node.lost || job.not_before > now {
                continue;
            }
            let (slots, mem) = self.used(node_id);
            // Checked: a forged Assign must not overflow inside apply.
            let fits =
                slots.checked_add(u64::from(job.spec.slots)).is_some_and(|s| s <= u64::from(node.slots))
                    && mem.checked_add(job.spec.mem_mb).is_some_and(|m| m <= node.mem_mb);
            if !fits {
                continue;
            }
            let incarnation = node.incarnation;
            self.update(job_id, |job| {
                job.attempts.push(Attempt {
                    number: job.attempts.len() as u32 + 1,
                    node: node_id,
                    incarnation,
                    assigned_at: now,
                    started_at: None,
                    ended_at: None,
                    end: None,
                    runner: None,
                });
                job.state = JobState::Assigned;
            });
            accepted += 1;
        }
        Outcome::Assigned { accepted }
    }

    fn is_current(&self, job: JobId, attempt: u32, node: NodeId) -> bool {
        self.jobs.get(&job).is_some_and(|j| {
            j.holds_capacity() && j.current().is_some_and(|a| a.number == attempt && a.node == node)
        })
    }

    pub(super) fn started(
        &mut self,
        now: Millis,
        job: JobId,
        attempt: u32,
        node: NodeId,
        runner: RunnerKind,
    ) -> Outcome {
        let current = self.is_current(job, attempt, node) && self.jobs[&job].state == JobState::Assigned;
        if current {
            self.update(job, |job| {
                job.state = JobState::Running;
                if let Some(a) = job.attempts.last_mut() {
                    a.started_at = Some(now);
                    a.runner = Some(runner);
                }
            });
        }
        Outcome::Reported { current, placed: 0, started: false }
    }

    pub(super) fn finished(
        &mut self,
        now: Millis,
        job: JobId,
        attempt: u32,
        node: NodeId,
        end: &AttemptEnd,
    ) -> Outcome {
        let mut end = end.clone();
        if end.log_tail.len() > LOG_TAIL_BYTES {
            let mut cut = end.log_tail.len() - LOG_TAIL_BYTES;
            while !end.log_tail.is_char_boundary(cut) {
                cut += 1;
            }
            end.log_tail.drain(..cut);
        }
        if self.is_current(job, attempt, node) {
            let refill = end.outcome != AttemptOutcome::Lost;
            let started = self.record_implied_start(now, job, &end);
            self.end_attempt(now, job, end);
            let placed = if refill { self.refill(now, node) } else { 0 };
            return Outcome::Reported { current: true, placed, started };
        }
        if self.is_late_success(job, attempt, node, &end) {
            // The attempt was given up (worker frozen, cut off or restarted)
            // but had in fact succeeded, and no other attempt has been
            // placed since: record the truth instead of running it again.
            self.update(job, |j| {
                end.reason = format!("{} (reported after the attempt was given up)", end.reason);
                if let Some(a) = j.attempts.last_mut() {
                    a.end = Some(end);
                }
                j.state = JobState::Succeeded;
                j.finished_at = Some(now);
            });
            return Outcome::Reported { current: true, placed: 0, started: false };
        }
        Outcome::Reported { current: false, placed: 0, started: false }
    }

    /// An end reported for an attempt whose `Started` has not been applied
    /// (it is still on its way, and will be ignored as stale when it
    /// lands): the end records the start, dated back by the run's duration
    /// (never before the assignment). Returns whether it did.
    fn record_implied_start(&mut self, now: Millis, job: JobId, end: &AttemptEnd) -> bool {
        let Some(runner) = end.runner else { return false };
        let unstarted = self.jobs.get(&job).and_then(|j| j.current()).is_some_and(|a| a.started_at.is_none());
        if !unstarted {
            return false;
        }
        self.update(job, |j| {
            if let Some(a) = j.attempts.last_mut() {
                a.started_at = Some(now.saturating_sub(end.duration_ms).max(a.assigned_at));
                a.runner = Some(runner);
            }
        });
        true
    }

    /// Gives the capacity an attempt just freed on `node` to the queued jobs
    /// next in line that fit there, inside the same entry as the report.
    ///
    /// Without it every slot cycle costs two Raft round trips (the report,
    /// then the leader's `Assign`); with it the worker learns its next job
    /// from the very entry that recorded its last one. The node has just
    /// shown it is alive and holds its lease (an attempt ended by a lost
    /// lease reports `Lost`, which does not refill); a node that is lost,
    /// removed or paused is never refilled. The leader's arbiter still
    /// places everything else, and its `Assign` skips jobs refilled here.
    fn refill(&mut self, now: Millis, node: NodeId) -> u32 {
        if self.meta.paused || self.meta.removed_members.contains(&node) {
            return 0;
        }
        if self.meta.nodes.get(&node).is_none_or(|n| n.lost) {
            return 0;
        }
        let Some(mut spare) = self.spare(node) else { return 0 };
        let mut placements = Vec::new();
        for job in self.queue().take(REFILL_SCAN) {
            if spare.0 == 0 {
                break;
            }
            let need = (u64::from(job.spec.slots), job.spec.mem_mb);
            if job.not_before > now || need.0 > spare.0 || need.1 > spare.1 {
                continue;
            }
            spare = (spare.0 - need.0, spare.1 - need.1);
            placements.push((job.id, node));
        }
        if placements.is_empty() {
            return 0;
        }
        match self.assign(now, &placements) {
            Outcome::Assigned { accepted } => accepted,
            _ => 0,
        }
    }

    /// A success reported for the job's latest attempt after the funnel had
    /// marked it lost, while the job still waits in the queue (so nothing
    /// else runs it).
    fn is_late_success(&self, job: JobId, attempt: u32, node: NodeId, end: &AttemptEnd) -> bool {
        end.outcome == AttemptOutcome::Succeeded
            && self.jobs.get(&job).is_some_and(|j| {
                j.state == JobState::Queued
                    && j.current().is_some_and(|a| {
                        a.number == attempt
                            && a.node == node
                            && a.end.as_ref().is_some_and(|e| e.outcome == AttemptOutcome::Lost)
                    })
            })
    }

    pub(super) fn node_lost(&mut self, now: Millis, node: NodeId) -> Outcome {
        match self.meta.nodes.get_mut(&node) {
            Some(info) if !info.lost => info.lost = true,
            _ => return Outcome::NodeMarkedLost { requeued: 0 },
        }
        let victims: Vec<JobId> = self.placed_on(node).map(|j| j.id).collect();
        let requeued = victims.len() as u32;
        for job in victims {
            self.end_attempt(now, job, lost(format!("node {node} stopped sending heartbeats")));
        }
        Outcome::NodeMarkedLost { requeued }
    }

    /// Closes the current attempt and decides what the job does next.
    fn end_attempt(&mut self, now: Millis, id: JobId, end: AttemptEnd) {
        let backoff_base = self.meta.settings.retry_backoff_ms;
        self.update(id, |job| {
            let outcome = end.outcome;
            if let Some(attempt) = job.attempts.last_mut() {
                attempt.ended_at = Some(now);
                attempt.end = Some(end);
            }
            let count = |o: &[AttemptOutcome]| {
                job.attempts.iter().filter(|a| a.end.as_ref().is_some_and(|e| o.contains(&e.outcome))).count()
                    as u32
            };
            let next = match outcome {
                AttemptOutcome::Succeeded => JobState::Succeeded,
                AttemptOutcome::Cancelled => JobState::Cancelled,
                _ if job.cancel_requested => JobState::Cancelled,
                AttemptOutcome::Failed | AttemptOutcome::TimedOut => {
                    let failures = count(&[AttemptOutcome::Failed, AttemptOutcome::TimedOut]);
                    if failures <= job.spec.retries {
                        let doublings = (failures - 1).min(MAX_BACKOFF_DOUBLINGS);
                        job.not_before = now.saturating_add(backoff_base.saturating_mul(1 << doublings));
                        JobState::Queued
                    } else if outcome == AttemptOutcome::Failed {
                        JobState::Failed
                    } else {
                        JobState::TimedOut
                    }
                }
                AttemptOutcome::Lost => {
                    if count(&[AttemptOutcome::Lost]) <= MAX_LOST_ATTEMPTS {
                        job.not_before = now;
                        JobState::Queued
                    } else {
                        JobState::Lost
                    }
                }
            };
            job.state = next;
            if next.is_terminal() {
                job.finished_at = Some(now);
            }
        });
    }
}

/// Placement order key: highest priority first, then oldest.
pub(super) fn queue_key(job: &Job) -> (i64, JobId) {
    (-i64::from(job.spec.priority), job.id)
}
