//! The built-in artifact store's registry inside the funnel: which peers
//! hold a verified copy of which content hash. Peers register a copy after
//! it is on their disk; workers read the registry to know whom to ask.
//!
//! Registrations are never removed by a node loss: a lost peer may come
//! back with its disk, and fetchers simply skip holders that do not answer.

use super::*;

/// Most holders recorded per artifact (a bound on what one hash can cost
/// in the replicated state).
pub const MAX_ARTIFACT_HOLDERS: usize = 64;

impl Funnel {
    /// Built-in store artifacts by hash.
    pub fn artifacts(&self) -> &BTreeMap<String, ArtifactInfo> {
        &self.meta.artifacts
    }

    pub(super) fn register_artifact(&mut self, now: Millis, hash: &str, size: u64, node: NodeId) -> Outcome {
        if !is_sha256_hex(hash) {
            return Outcome::Refused(FunnelError::Invalid {
                field: "hash".into(),
                message: "must be 64 lowercase hexadecimal digits".into(),
            });
        }
        let info = self.meta.artifacts.entry(hash.to_string()).or_insert_with(|| ArtifactInfo {
            size,
            holders: BTreeSet::new(),
            registered_at: now,
        });
        if info.size != size {
            // Same hash, different size: impossible for honest peers (the
            // content is verified); keep the first record.
            return Outcome::Refused(FunnelError::Invalid {
                field: "size".into(),
                message: format!("artifact {hash} is registered with {} bytes, not {size}", info.size),
            });
        }
        if info.holders.len() < MAX_ARTIFACT_HOLDERS || info.holders.contains(&node) {
            info.holders.insert(node);
        }
        Outcome::ArtifactHolders { holders: info.holders.len() as u32 }
    }
}
