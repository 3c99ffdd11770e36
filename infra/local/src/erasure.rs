//! Erasure on one machine: once the store has erased a person, nothing readable about them is
//! left in the data directory.
//!
//! - The logs (`nudges.jsonl`, `dead-letter.jsonl`, the webhook outbox) are rewritten without the
//!   person's nudges (`Webhooks::forget`).
//! - SQLite: every connection this process opens runs with `secure_delete`, so deleted rows are
//!   overwritten with zeros in the pages that held them; a `wal_checkpoint(TRUNCATE)` right after
//!   the erasure copies those pages over the old ones in `engagement.db` and empties the WAL,
//!   where older copies of the pages were; a `VACUUM` within the hour (then another truncating
//!   checkpoint) rebuilds every page, for what `secure_delete` does not reach (pages freed before
//!   it was on, the gaps a page rebalance leaves). ARCHITECTURE.md says why all three.

use crate::erased::ErasedPerson;
use crate::webhooks::Webhooks;
use rusqlite::auto_extension::{init_auto_extension, register_auto_extension};
use rusqlite::ffi;
use std::ffi::{c_char, c_int};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Marks a data directory whose database still has to be vacuumed after an erasure: a restart
/// in between vacuums at start.
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

/// Scrubs the data directory after each erasure, and vacuums the database within
/// `vacuum_after` of one.
pub struct Scrubber {
    dir: PathBuf,
    database: Option<dynoxide::Database>,
    webhooks: Arc<Webhooks>,
    vacuum_after: Duration,
    /// People whose logs could not be scrubbed yet: tried again with the next vacuum.
    unfinished: Mutex<Vec<ErasedPerson>>,
    vacuum_planned: tokio::sync::Mutex<bool>,
}

impl Scrubber {
    /// A scrubber for `dir`; vacuums at once if an erasure before a restart left one due.
    pub fn start(dir: &Path, database: Option<dynoxide::Database>, webhooks: Arc<Webhooks>, vacuum_after: Duration) -> Arc<Scrubber> {
        let scrubber = Arc::new(Scrubber {
            dir: dir.to_path_buf(),
            database,
            webhooks,
            vacuum_after,
            unfinished: Mutex::default(),
            vacuum_planned: tokio::sync::Mutex::new(false),
        });
        if dir.join(VACUUM_DUE).exists() {
            let now = Arc::clone(&scrubber);
            tokio::spawn(async move { now.plan_vacuum(Duration::ZERO).await });
        }
        scrubber
    }

    /// After the store erased `person`: their nudges leave the logs and the outbox, their rows
    /// the database's pages and log. Done when this returns; a vacuum follows within the hour.
    pub async fn after_erasure(self: &Arc<Self>, person: ErasedPerson) -> Result<(), ScrubError> {
        let outcome = self.scrub(&person).await;
        if outcome.is_err() {
            if let Ok(mut unfinished) = self.unfinished.lock() {
                unfinished.push(person);
            }
        }
        // Due before anything else can fail, so that a restart vacuums if this process does not.
        crate::files::write_private(&self.dir.join(VACUUM_DUE), b"").or_else(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(e),
        })?;
        let later = Arc::clone(self);
        tokio::spawn(async move { later.plan_vacuum(later.vacuum_after).await });
        outcome
    }

    async fn scrub(&self, person: &ErasedPerson) -> Result<(), ScrubError> {
        let (webhooks, person, database) = (Arc::clone(&self.webhooks), person.clone(), self.database_path());
        tokio::task::spawn_blocking(move || {
            webhooks.forget(&person)?;
            checkpoint(&database)
        })
        .await?
    }

    fn database_path(&self) -> PathBuf {
        self.dir.join("engagement.db")
    }

    /// One vacuum for every erasure until it runs.
    async fn plan_vacuum(&self, after: Duration) {
        {
            let mut planned = self.vacuum_planned.lock().await;
            if *planned {
                return;
            }
            *planned = true;
        }
        tokio::time::sleep(after).await;
        *self.vacuum_planned.lock().await = false;
        match self.vacuum().await {
            Ok(()) => tracing::info!("database vacuumed after an erasure"),
            Err(error) => tracing::error!(%error, "vacuum after an erasure failed; retried at the next erasure or start"),
        }
    }

    async fn vacuum(&self) -> Result<(), ScrubError> {
        let unfinished = self.unfinished.lock().map(|mut u| std::mem::take(&mut *u)).unwrap_or_default();
        for person in unfinished {
            if let Err(error) = self.scrub(&person).await {
                tracing::error!(customer_id = ?person.customer_ids.first(), %error, "logs still not scrubbed after an erasure");
                if let Ok(mut again) = self.unfinished.lock() {
                    again.push(person);
                }
            }
        }
        let (database, path, dir) = (self.database.clone(), self.database_path(), self.dir.clone());
        tokio::task::spawn_blocking(move || {
            // Through dynoxide's own connection: requests wait for it instead of failing on a
            // lock another connection holds.
            match &database {
                Some(database) => database.vacuum().map_err(|e| ScrubError::Vacuum(e.to_string()))?,
                None => rusqlite::Connection::open(&path)?.execute_batch("VACUUM")?,
            }
            checkpoint(&path)?;
            match std::fs::remove_file(dir.join(VACUUM_DUE)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ScrubError::Logs(e)),
                _ => Ok(()),
            }
        })
        .await?
    }
}
