//! Each peer's cache of fetched artifacts: one file per content hash,
//! bounded in size by evicting the least recently used, with single-flight
//! fetching so that concurrent attempts needing the same archive download
//! it once.
//!
//! Entries are only ever added after their content was verified against
//! the hash they are named by, so a cache hit needs no new check. An entry
//! in use (pinned by an attempt that is unpacking it) is never evicted; the
//! bound may be exceeded while pins last, and is restored when they end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::queue::is_sha256_hex;

/// Suffix of files being downloaded (removed at start-up).
pub const PARTIAL_SUFFIX: &str = ".part";

#[derive(Debug)]
struct Entry {
    size: u64,
    /// Logical clock of the last use (bigger is more recent).
    used: u64,
    pins: u32,
}

#[derive(Debug, Default)]
struct Index {
    entries: HashMap<String, Entry>,
    total: u64,
    clock: u64,
}

/// The cache; share it behind an `Arc`.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    limit: u64,
    index: Mutex<Index>,
    /// One lock per hash being fetched; its holder fetches, the others wait
    /// and then find the entry.
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A cache entry held for use; unpinned (and the bound enforced) on drop.
#[derive(Debug)]
pub struct Pinned {
    cache: Arc<Cache>,
    hash: String,
    path: PathBuf,
}

impl Pinned {
    /// The verified archive.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let mut index = self.cache.lock();
        if let Some(entry) = index.entries.get_mut(&self.hash) {
            entry.pins = entry.pins.saturating_sub(1);
        }
        self.cache.evict(&mut index);
    }
}

impl Cache {
    /// Opens (creating) the cache directory, forgets half-downloaded files
    /// and indexes the rest, oldest modification first.
    ///
    /// # Errors
    /// When the directory cannot be created or listed.
    pub fn open(dir: &Path, limit_bytes: u64) -> std::io::Result<Cache> {
        std::fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(meta) = entry.metadata() else { continue };
            if !is_sha256_hex(&name) || !meta.is_file() {
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            found.push((modified, name, meta.len()));
        }
        found.sort();
        let mut index = Index::default();
        for (_, name, size) in found {
            index.clock += 1;
            index.total += size;
            index.entries.insert(name, Entry { size, used: index.clock, pins: 0 });
        }
        let cache = Cache {
            dir: dir.to_path_buf(),
            limit: limit_bytes,
            index: Mutex::new(index),
            flights: Default::default(),
        };
        {
            let mut index = cache.lock();
            cache.evict(&mut index);
        }
        Ok(cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the entry for `hash` lives (whether or not it exists).
    pub fn path_of(&self, hash: &str) -> PathBuf {
        self.dir.join(hash)
    }

    /// A fresh temporary path in the cache directory for a download.
    pub fn partial_path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}.{:016x}{PARTIAL_SUFFIX}", rand::random::<u64>()))
    }

    /// Bytes held.
    pub fn total(&self) -> u64 {
        self.lock().total
    }

    /// Whether `hash` is cached.
    pub fn contains(&self, hash: &str) -> bool {
        self.lock().entries.contains_key(hash)
    }

    fn pin(self: &Arc<Self>, hash: &str) -> Option<Pinned> {
        let mut index = self.lock();
        index.clock += 1;
        let clock = index.clock;
        let entry = index.entries.get_mut(hash)?;
        entry.pins += 1;
        entry.used = clock;
        Some(Pinned { cache: self.clone(), hash: hash.to_string(), path: self.path_of(hash) })
    }

    /// Evicts least recently used, unpinned entries until the total fits.
    fn evict(&self, index: &mut Index) {
        while index.total > self.limit {
            let victim = index
                .entries
                .iter()
                .filter(|(_, e)| e.pins == 0)
                .min_by_key(|(_, e)| e.used)
                .map(|(h, _)| h.clone());
            let Some(victim) = victim else { break };
            if let Some(entry) = index.entries.remove(&victim) {
                index.total -= entry.size;
                if let Err(e) = std::fs::remove_file(self.path_of(&victim)) {
                    tracing::warn!("cannot evict artifact {victim} from the cache: {e}");
                }
                tracing::debug!("evicted artifact {victim} ({} bytes) from the cache", entry.size);
            }
        }
    }

    /// The cached, verified archive for `hash`, fetching it with `fetch` on
    /// a miss. `fetch` gets the path to fill and must only return `Ok`
    /// once that file holds content whose SHA-256 is `hash` (it is then
    /// moved into place). Concurrent calls for one hash run `fetch` once;
    /// if it fails, the next waiter tries again.
    ///
    /// # Errors
    /// Whatever `fetch` returns; I/O errors moving the file into place are
    /// reported through `io_error`.
    pub async fn get_or_fetch<E, F, Fut>(
        self: &Arc<Self>,
        hash: &str,
        fetch: F,
        io_error: impl FnOnce(std::io::Error) -> E,
    ) -> Result<Pinned, E>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: std::future::Future<Output = Result<u64, E>>,
    {
        if let Some(pinned) = self.pin(hash) {
            return Ok(pinned);
        }
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            flights.entry(hash.to_string()).or_default().clone()
        };
        let result = async {
            let _turn = flight.lock().await;
            if let Some(pinned) = self.pin(hash) {
                return Ok(pinned);
            }
            let partial = self.partial_path(hash);
            let guard = RemoveOnDrop(Some(partial.clone()));
            let size = fetch(partial.clone()).await?;
            std::fs::rename(&partial, self.path_of(hash)).map_err(io_error)?;
            guard.disarm();
            {
                let mut index = self.lock();
                index.clock += 1;
                let used = index.clock;
                if let Some(old) = index.entries.insert(hash.to_string(), Entry { size, used, pins: 0 }) {
                    index.total -= old.size;
                }
                index.total += size;
            }
            // Pinned before the bound is enforced, so it survives that.
            let pinned = self.pin(hash);
            {
                let mut index = self.lock();
                self.evict(&mut index);
            }
            Ok(pinned.unwrap_or_else(|| Pinned {
                cache: self.clone(),
                hash: hash.to_string(),
                path: self.path_of(hash),
            }))
        }
        .await;
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map and this function hold it: nobody is waiting.
        if flights.get(hash).is_some_and(|f| Arc::strong_count(f) <= 2) {
            flights.remove(hash);
        }
        result
    }
}

/// Deletes a temporary file unless disarmed (downloads that fail, time out
/// or are cancelled leave nothing behind).
pub struct RemoveOnDrop(pub Option<PathBuf>);

impl RemoveOnDrop {
    /// Keeps the file.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;

    fn hash(i: u8) -> String {
        format!("{:064x}", i)
    }

    async fn put(cache: &Arc<Cache>, h: &str, size: usize, calls: &AtomicU32) -> Result<Pinned, String> {
        cache
            .get_or_fetch(
                h,
                |path| async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    std::fs::write(&path, vec![7u8; size]).map_err(|e| e.to_string())?;
                    Ok(size as u64)
                },
                |e| e.to_string(),
            )
            .await
    }

    #[tokio::test]
    async fn concurrent_requests_fetch_once() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(Cache::open(dir.path(), 1 << 20).unwrap());
        let calls = AtomicU32::new(0);
        let h = hash(1);
        let (a, b, c) = tokio::join!(
            put(&cache, &h, 10, &calls),
            put(&cache, &h, 10, &calls),
            put(&cache, &h, 10, &calls)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        for p in [a, b, c] {
            assert_eq!(std::fs::read(p.unwrap().path()).unwrap().len(), 10);
        }
        assert!(cache.flights.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn least_recently_used_is_evicted_but_never_a_pinned_entry() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(Cache::open(dir.path(), 250).unwrap());
        let calls = AtomicU32::new(0);
        drop(put(&cache, &hash(1), 100, &calls).await.unwrap());
        drop(put(&cache, &hash(2), 100, &calls).await.unwrap());
        drop(put(&cache, &hash(1), 100, &calls).await.unwrap()); // a hit: 1 is now newer than 2
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let held = put(&cache, &hash(3), 100, &calls).await.unwrap();
        assert!(!cache.contains(&hash(2)) && cache.contains(&hash(1)) && cache.contains(&hash(3)));
        assert!(!cache.path_of(&hash(2)).exists());
        // Larger than the whole bound: kept while pinned (the unpinned 1
        // goes to make room), gone after.
        let big = put(&cache, &hash(4), 300, &calls).await.unwrap();
        assert!(big.path().exists());
        assert!(!cache.contains(&hash(1)) && cache.contains(&hash(3)));
        drop(big);
        assert!(!cache.contains(&hash(4)));
        assert_eq!(cache.total(), 100);
        drop(held);
        // Reopening indexes what is on disk and drops partial files.
        std::fs::write(dir.path().join(format!("{}.1{PARTIAL_SUFFIX}", hash(9))), b"x").unwrap();
        let reopened = Cache::open(dir.path(), 250).unwrap();
        assert_eq!(reopened.total(), 100);
        assert!(reopened.contains(&hash(3)));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn a_failed_fetch_leaves_nothing_and_the_next_caller_retries() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(Cache::open(dir.path(), 1 << 20).unwrap());
        let failed: Result<Pinned, String> = cache
            .get_or_fetch(
                &hash(5),
                |path| async move {
                    std::fs::write(&path, b"partial").unwrap();
                    Err("HTTP 404".to_string())
                },
                |e| e.to_string(),
            )
            .await;
        assert_eq!(failed.unwrap_err(), "HTTP 404");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let calls = AtomicU32::new(0);
        put(&cache, &hash(5), 5, &calls).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
