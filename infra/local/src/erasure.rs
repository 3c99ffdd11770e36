//! Erasure on one machine: once the store has erased a person, nothing readable about them is
//! left in the data directory when the erasure answers.
//!
//! - The logs (`nudges.jsonl`, `dead-letter.jsonl`, the delivery outbox) are rewritten without the
//!   person's nudges (`Outbox::forget`).
//! - SQLite: every connection this process opens runs with `secure_delete`, so deleted rows are
//!   overwritten with zeros in the pages that held them; then a `VACUUM` rebuilds every page, for
//!   what `secure_delete` does not reach (the copies of a row that a page rebalance left in the
//!   unused gap of another page, pages freed before it was on), and a `wal_checkpoint(TRUNCATE)`
//!   copies the rebuilt pages over the file's and empties the WAL, where older copies of the
//!   pages were. ARCHITECTURE.md says why all three.

use crate::erased::ErasedPerson;
use crate::outbox::Outbox;
use rusqlite::auto_extension::{init_auto_extension, register_auto_extension};
use rusqlite::ffi;
use std::ffi::{c_char, c_int};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Marks a data directory whose database still has to be rebuilt after an erasure: a restart
/// in between rebuilds it at start.
const VACUUM_DUE: &str = "vacuum-due";

#[derive(Debug, thiserror::Error)]
pub enum ScrubError {
    #[error("the logs could not be rewritten: {0}")]
    Logs(#[from] std::io::Error),
    #[error("the database could not be checkpointed or vacuumed: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("SQLite's secure_delete did not take")]
    SecureDeleteOff,
    #[error("the database stayed busy; its log was not emptied")]
    Busy,
    #[error("the embedded store refused to vacuum: {0}")]
    Vacuum(String),
    #[error("the scrubbing task stopped: {0}")]
    Stopped(#[from] tokio::task::JoinError),
}

fn secure_delete(connection: rusqlite::Connection) -> rusqlite::Result<()> {
    connection.pragma_update(None, "secure_delete", "ON")
}

/// SQLite's entry point for the auto-extension below.
unsafe extern "C" fn secure_delete_on_open(
    db: *mut ffi::sqlite3,
    error: *mut *mut c_char,
    _api: *const ffi::sqlite3_api_routines,
) -> c_int {
    // SAFETY: SQLite calls this with a connection it has just opened; `secure_delete` sets one
    // pragma on it and neither opens nor closes a connection.
    unsafe { init_auto_extension(db, error, secure_delete) }
}

/// Turns `secure_delete` on for every SQLite connection this process opens from now on,
/// dynoxide's included (it offers no PRAGMA call of its own), and checks that it took.
pub fn secure_delete_on_every_connection() -> Result<(), ScrubError> {
    // SAFETY: the routine registered neither opens nor closes a connection, nor changes the
    // list of auto-extensions. Registering it twice is a no-op.
    unsafe { register_auto_extension(secure_delete_on_open)? };
    let probe = rusqlite::Connection::open_in_memory()?;
    let on: i64 = probe.query_row("PRAGMA secure_delete", [], |row| row.get(0))?;
    if on == 1 {
        Ok(())
    } else {
        Err(ScrubError::SecureDeleteOff)
    }
}

/// Copies the WAL into the database file and truncates it to zero bytes, from a connection of
/// its own (dynoxide's is busy serving). Retried while readers hold old frames.
fn checkpoint(database: &Path) -> Result<(), ScrubError> {
    let connection = rusqlite::Connection::open(database)?;
    connection.busy_timeout(Duration::from_secs(2))?;
    for _ in 0..5 {
        let busy: i64 = connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
        if busy == 0 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(ScrubError::Busy)
}

/// Rebuilds every page of the database (`VACUUM`), then empties its log: `secure_delete` zeroes
/// a deleted row where it lies, but not the copies of it a page rebalance left in the gaps of
/// other pages, nor pages freed before it was on; a rebuilt page holds live rows only.
fn rebuild(database: Option<&dynoxide::Database>, path: &Path) -> Result<(), ScrubError> {
    // Through dynoxide's own connection: requests wait for it instead of failing on a lock
    // another connection holds.
    match database {
        Some(database) => database.vacuum().map_err(|e| ScrubError::Vacuum(e.to_string()))?,
        None => rusqlite::Connection::open(path)?.execute_batch("VACUUM")?,
    }
    // The vacuum wrote the new pages to the log, after the old ones.
    checkpoint(path)
}

/// Scrubs the data directory after each erasure, before the erasure answers.
pub struct Scrubber {
    dir: PathBuf,
    database: Option<dynoxide::Database>,
    outbox: Arc<Outbox>,
    retry_after: Duration,
    /// One scrub at a time (the vacuums would wait for each other anyway), so that one that
    /// succeeds removes `vacuum-due` only after every earlier erasure's rows are gone.
    serial: Arc<Mutex<()>>,
    /// People whose scrub failed: tried again after `retry_after`, at the next erasure or start.
    unfinished: Mutex<Vec<ErasedPerson>>,
    retry_planned: tokio::sync::Mutex<bool>,
}

impl Scrubber {
    /// A scrubber for `dir`; rebuilds the database at once if an erasure before a restart left
    /// one due.
    pub fn start(dir: &Path, database: Option<dynoxide::Database>, outbox: Arc<Outbox>, retry_after: Duration) -> Arc<Scrubber> {
        let scrubber = Arc::new(Scrubber {
            dir: dir.to_path_buf(),
            database,
            outbox,
            retry_after,
            serial: Arc::default(),
            unfinished: Mutex::default(),
            retry_planned: tokio::sync::Mutex::new(false),
        });
        if dir.join(VACUUM_DUE).exists() {
            let now = Arc::clone(&scrubber);
            tokio::spawn(async move { now.plan_retry(Duration::ZERO).await });
        }
        scrubber
    }

    /// After the store erased `person`: their nudges leave the logs and the outbox, and the
    /// database is rebuilt without their rows and its log emptied. Done when this returns.
    pub async fn after_erasure(self: &Arc<Self>, person: ErasedPerson) -> Result<(), ScrubError> {
        // With the logs of anyone whose scrub failed before.
        let mut people = self.unfinished.lock().map(|mut u| std::mem::take(&mut *u)).unwrap_or_default();
        people.push(person);
        let outcome = self.scrub(&people).await;
        if outcome.is_err() {
            if let Ok(mut unfinished) = self.unfinished.lock() {
                unfinished.extend(people);
            }
            let later = Arc::clone(self);
            tokio::spawn(async move { later.plan_retry(later.retry_after).await });
        }
        outcome
    }

    /// Scrubs the logs of `people` and rebuilds the database. `vacuum-due` is written first, so
    /// that a restart before the rebuild is done rebuilds at start, and removed once it is.
    async fn scrub(&self, people: &[ErasedPerson]) -> Result<(), ScrubError> {
        let (outbox, people, database, path) = (
            Arc::clone(&self.outbox),
            people.to_vec(),
            self.database.clone(),
            self.database_path(),
        );
        let (serial, due) = (Arc::clone(&self.serial), self.dir.join(VACUUM_DUE));
        tokio::task::spawn_blocking(move || {
            let _one_at_a_time = serial.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            crate::files::write_private(&due, b"").or_else(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Ok(()),
                _ => Err(e),
            })?;
            for person in &people {
                outbox.forget(person)?;
            }
            rebuild(database.as_ref(), &path)?;
            match std::fs::remove_file(&due) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ScrubError::Logs(e)),
                _ => Ok(()),
            }
        })
        .await?
    }

    fn database_path(&self) -> PathBuf {
        self.dir.join("engagement.db")
    }

    /// One retry for every failed scrub until it runs.
    async fn plan_retry(&self, after: Duration) {
        {
            let mut planned = self.retry_planned.lock().await;
            if *planned {
                return;
            }
            *planned = true;
        }
        tokio::time::sleep(after).await;
        *self.retry_planned.lock().await = false;
        let unfinished = self.unfinished.lock().map(|mut u| std::mem::take(&mut *u)).unwrap_or_default();
        match self.scrub(&unfinished).await {
            Ok(()) => tracing::info!(people = unfinished.len(), "data directory scrubbed after an earlier erasure"),
            Err(error) => {
                tracing::error!(%error, "scrub after an erasure failed again; retried at the next erasure or start");
                if let Ok(mut again) = self.unfinished.lock() {
                    again.extend(unfinished);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether any file of `dir` holds `needle`, byte for byte.
    fn holds(dir: &Path, needle: &[u8]) -> bool {
        std::fs::read_dir(dir).expect("a dir").any(|entry| {
            let bytes = std::fs::read(entry.expect("an entry").path()).unwrap_or_default();
            bytes.windows(needle.len()).any(|window| window == needle)
        })
    }

    /// Her interactions among someone else's in a table shaped as dynoxide's, written as
    /// dynoxide writes (`INSERT OR REPLACE`: a rewritten row is deleted and appended anew),
    /// between rewrites of a few rows of varying size (profiles, counters); then hers deleted.
    fn erased_among_others(path: &Path, seed: u64) {
        let connection = rusqlite::Connection::open(path).expect("opened");
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;
                 CREATE TABLE items (pk TEXT NOT NULL, sk TEXT NOT NULL DEFAULT '', item_json TEXT NOT NULL,
                                     PRIMARY KEY (pk, sk));",
            )
            .expect("a table");
        let mut random = fastrand::Rng::with_seed(seed);
        let put = |pk: String, size: usize| {
            let item = format!("{pk}{}", "x".repeat(size));
            connection
                .execute("INSERT OR REPLACE INTO items VALUES (?1, 'S', ?2)", (&pk, &item))
                .expect("written");
        };
        for n in 0..60 {
            let whose = if random.bool() { "hers" } else { "kept" };
            put(format!("INTERACTION#{whose}-interaction-{n}"), random.usize(150..400));
            for _ in 0..random.usize(1..5) {
                put(format!("HOT#{}", random.usize(0..6)), random.usize(50..1200));
            }
        }
        connection
            .execute("DELETE FROM items WHERE pk LIKE 'INTERACTION#hers-%'", [])
            .expect("deleted");
    }

    #[test]
    fn an_erased_row_is_readable_nowhere_in_the_database_once_rebuilt() {
        secure_delete_on_every_connection().expect("secure_delete");
        let mut left_by_secure_delete_and_a_checkpoint = 0;
        for seed in 0..8 {
            let dir = std::env::temp_dir().join(format!("pyramid-rebuild-{}-{seed}-{}", std::process::id(), fastrand::u32(..)));
            std::fs::create_dir_all(&dir).expect("a dir");
            let path = dir.join("engagement.db");
            erased_among_others(&path, seed);
            checkpoint(&path).expect("checkpointed");
            left_by_secure_delete_and_a_checkpoint += usize::from(holds(&dir, b"hers-interaction-"));
            rebuild(None, &path).expect("rebuilt");
            assert!(!holds(&dir, b"hers-interaction-"), "seed {seed}: her rows are still readable");
            let _ = std::fs::remove_dir_all(&dir);
        }
        // What the rebuild is for: copies a page rebalance left in the gaps of other pages.
        assert!(
            left_by_secure_delete_and_a_checkpoint > 0,
            "the workload no longer leaves such copies"
        );
    }
}
