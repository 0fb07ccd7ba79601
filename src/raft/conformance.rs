//! openraft's storage conformance suite against the sled log store and state
//! machine, each run on a fresh temp dir.

use std::sync::{Arc, Mutex};

use openraft::testing::{StoreBuilder, Suite};

use super::log_store::LogStore;
use super::state_machine::StateMachine;
use super::store::Store;
use super::{StorageError, TypeConfig};

/// Builds stores in temp dirs that live as long as the store does.
struct SledBuilder {
    dirs: Mutex<Vec<tempfile::TempDir>>,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, Arc<Store>> for SledBuilder {
    async fn build(&self) -> Result<(Arc<Store>, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(Store::open(dir.path()).expect("open sled"));
        self.dirs.lock().expect("lock").push(dir);
        let sm = StateMachine::open(store.clone())?;
        Ok((store.clone(), LogStore::new(store), sm))
    }
}

#[test]
fn sled_storage_passes_openraft_suite() -> Result<(), StorageError> {
    Suite::test_all(SledBuilder { dirs: Mutex::new(Vec::new()) })
}
