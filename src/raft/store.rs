//! The one place that knows sled: opening the database, its trees, and the
//! serialized flusher.
//!
//! sled makes writes durable only on flush, and concurrent `flush_async`
//! calls have deadlocked in 0.34. So exactly one thread flushes; everybody
//! else queues a request and is told when a flush that covers their writes
//! has finished. Requests that pile up during a flush share the next one:
//! that is group commit, and it is what makes durable appends cheap.

use std::io;
use std::path::Path;
use std::sync::mpsc;

use openraft::storage::LogFlushed;
use tokio::sync::oneshot;

use super::TypeConfig;

/// Tree of Raft log entries, keyed by big-endian index.
pub const LOG_TREE: &str = "raft_log";
/// Tree of Raft metadata: vote, committed, last purged.
pub const RAFT_META_TREE: &str = "raft_meta";
/// Tree of the applied funnel state (meta + one key per job).
pub const STATE_TREE: &str = "funnel_state";
/// Tree holding the current snapshot.
pub const SNAPSHOT_TREE: &str = "snapshot";

enum FlushRequest {
    Log(LogFlushed<TypeConfig>),
    Wait(oneshot::Sender<io::Result<()>>),
}

/// An open sled database with its flusher thread.
pub struct Store {
    pub db: sled::Db,
    pub log: sled::Tree,
    pub raft_meta: sled::Tree,
    pub state: sled::Tree,
    pub snapshot: sled::Tree,
    flusher: mpsc::Sender<FlushRequest>,
}

impl Store {
    /// Opens (or creates) the database under `dir`.
    ///
    /// # Errors
    /// Any sled error opening the files or trees, e.g. another process
    /// holding the directory.
    pub fn open(dir: &Path) -> Result<Store, sled::Error> {
        let db = sled::Config::new().path(dir).mode(sled::Mode::HighThroughput).open()?;
        let (tx, rx) = mpsc::channel();
        let flush_db = db.clone();
        std::thread::Builder::new()
            .name("sled-flusher".into())
            .spawn(move || flusher(flush_db, rx))
            .map_err(sled::Error::Io)?;
        Ok(Store {
            log: db.open_tree(LOG_TREE)?,
            raft_meta: db.open_tree(RAFT_META_TREE)?,
            state: db.open_tree(STATE_TREE)?,
            snapshot: db.open_tree(SNAPSHOT_TREE)?,
            db,
            flusher: tx,
        })
    }

    /// Fires `callback` once everything written so far is on disk.
    pub fn flush_then(&self, callback: LogFlushed<TypeConfig>) {
        if let Err(mpsc::SendError(FlushRequest::Log(cb))) = self.flusher.send(FlushRequest::Log(callback)) {
            cb.log_io_completed(Err(io::Error::other("flusher thread is gone")));
        }
    }

    /// Waits until everything written so far is on disk.
    ///
    /// # Errors
    /// The flush's I/O error, or an error if the flusher thread is gone.
    pub async fn flush(&self) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.flusher.send(FlushRequest::Wait(tx)).map_err(|_| io::Error::other("flusher thread is gone"))?;
        rx.await.map_err(|_| io::Error::other("flusher thread is gone"))?
    }
}

fn flusher(db: sled::Db, requests: mpsc::Receiver<FlushRequest>) {
    // Ends when every Store handle (and so every sender) is dropped.
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        batch.extend(requests.try_iter());
        let result = db.flush().map(|_| ());
        for request in batch {
            let outcome = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::other(e.to_string())),
            };
            match request {
                FlushRequest::Log(cb) => cb.log_io_completed(outcome),
                FlushRequest::Wait(tx) => {
                    let _ = tx.send(outcome);
                }
            }
        }
    }
}

/// Big-endian key so that sled's byte order is numeric order.
pub fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}
