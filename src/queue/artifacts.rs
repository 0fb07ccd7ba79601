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

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(f: &mut Funnel, now: Millis, command: Command) -> Outcome {
        f.apply(&Proposal { now, commands: vec![command] }).remove(0)
    }

    #[test]
    fn holders_accumulate_and_bad_registrations_are_refused() {
        let mut f = Funnel::new();
        let hash = "ab".repeat(32);
        let reg = |node| Command::ArtifactRegistered { hash: hash.clone(), size: 10, node };
        assert_eq!(apply(&mut f, 5, reg(1)), Outcome::ArtifactHolders { holders: 1 });
        assert_eq!(apply(&mut f, 6, reg(2)), Outcome::ArtifactHolders { holders: 2 });
        assert_eq!(apply(&mut f, 7, reg(2)), Outcome::ArtifactHolders { holders: 2 });
        let info = &f.artifacts()[&hash];
        assert_eq!((info.size, info.registered_at), (10, 5));
        assert_eq!(info.holders.iter().copied().collect::<Vec<_>>(), [1, 2]);
        let wrong_size = Command::ArtifactRegistered { hash: hash.clone(), size: 11, node: 3 };
        assert!(matches!(apply(&mut f, 8, wrong_size), Outcome::Refused(FunnelError::Invalid { .. })));
        let bad = Command::ArtifactRegistered { hash: "AB".repeat(32), size: 1, node: 1 };
        assert!(matches!(apply(&mut f, 8, bad), Outcome::Refused(FunnelError::Invalid { .. })));
        // Replicas agree, including after a restart from the image.
        let copy = Funnel::from_image(f.image());
        assert_eq!(copy.digest(), f.digest());
    }

    fn artifact_spec(url: &str, sha256: Option<&str>) -> JobSpec {
        JobSpec { artifact: Some(ArtifactRef::new(url, sha256)), ..JobSpec::new("a", Vec::new()) }
    }

    #[test]
    fn artifact_specs_are_validated_by_field() {
        let hash = "0f".repeat(32);
        let field = |spec: JobSpec| match spec.validate() {
            Err(FunnelError::Invalid { field, .. }) => field,
            Ok(()) => "ok".into(),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(field(artifact_spec("https://h/a.tgz", Some(&hash))), "ok");
        assert_eq!(field(artifact_spec("file:///srv/a.tgz", Some(&hash.to_uppercase()))), "ok");
        assert_eq!(field(artifact_spec(&format!("sg:sha256:{hash}"), None)), "ok");
        assert_eq!(field(artifact_spec(&format!("sg:sha256:{}", hash.to_uppercase()), None)), "ok");
        assert_eq!(field(artifact_spec("https://h/a.tgz", None)), "sha256");
        assert_eq!(field(artifact_spec("https://h/a.tgz", Some("abc"))), "sha256");
        assert_eq!(field(artifact_spec("ftp://h/a.tgz", Some(&hash))), "artifact");
        assert_eq!(field(artifact_spec("file://relative/a.tgz", Some(&hash))), "artifact");
        assert_eq!(field(artifact_spec("sg:sha256:12", None)), "artifact");
        let other = "1f".repeat(32);
        assert_eq!(field(artifact_spec(&format!("sg:sha256:{hash}"), Some(&other))), "sha256");
        let plain = JobSpec {
            artifact: None,
            args: vec!["x".into()],
            command: vec!["true".into()],
            ..artifact_spec("", None)
        };
        assert_eq!(field(plain), "args");
        let nothing = JobSpec { artifact: None, ..artifact_spec("", None) };
        assert_eq!(field(nothing), "command");
    }

    #[test]
    fn the_artifact_hash_and_args_are_part_of_the_derived_key() {
        let a = "0f".repeat(32);
        let b = "1f".repeat(32);
        let key = |url: &str, hash: &str, args: &[&str]| {
            JobSpec { args: args.iter().map(|s| s.to_string()).collect(), ..artifact_spec(url, Some(hash)) }
                .effective_dedup_key()
        };
        assert_ne!(key("https://h/a.tgz", &a, &[]), key("https://h/a.tgz", &b, &[]));
        assert_ne!(key("https://h/a.tgz", &a, &[]), key("https://h/a.tgz", &a, &["x"]));
        // Same content from a mirror: the same job.
        assert_eq!(key("https://h/a.tgz", &a, &[]), key("https://mirror/a.tgz", &a, &[]));
        // Plain jobs keep the keys they had before artifacts existed
        // (computed independently from the encoding: n, "a", c, "true").
        let plain = JobSpec { artifact: None, command: vec!["true".into()], ..artifact_spec("", None) };
        assert_eq!(plain.effective_dedup_key(), "auto:01f2bf7a7eb4730a8985e330c811aeb4");
    }
}
