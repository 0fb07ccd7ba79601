//! The body of `POST /api/v1/jobs` and `/api/v1/jobs/batch`, parsed and
//! validated exactly as the handlers do. Must never panic; every spec that
//! validates must also be accepted by the funnel's own check in `apply`
//! (the two checks must agree, or a proposal would be refused after it
//! cost a log entry).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sgnode::api::fuzzing::{batch_body, submit_body};
use sgnode::api::ApiError;
use sgnode::queue::{Command, Funnel, FunnelError, JobSpec, Outcome, Proposal};

fn check(specs: Vec<Result<JobSpec, ApiError>>) {
    let mut funnel = Funnel::new();
    for spec in specs {
        match spec {
            Ok(spec) => {
                let key = spec.effective_dedup_key();
                assert!(!key.is_empty());
                let proposal = Proposal {
                    now: 1_700_000_000_000,
                    commands: vec![Command::Submit { request: None, spec }],
                };
                for outcome in funnel.apply(&proposal) {
                    assert!(
                        !matches!(outcome, Outcome::Refused(FunnelError::Invalid { .. })),
                        "validated spec refused by apply: {outcome:?}"
                    );
                }
            }
            // The error body is what the client sees; rendering it must not panic.
            Err(e) => drop(e.body()),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    match submit_body(data) {
        Ok(specs) => check(specs),
        Err(e) => drop(e.body()),
    }
    match batch_body(data) {
        Ok(specs) => check(specs),
        Err(e) => drop(e.body()),
    }
});
