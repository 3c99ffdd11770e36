//! How often the embedded store's write-ahead log is copied into the database file.
//!
//! SQLite checkpoints on the commit that takes the log past 1 000 pages (4 MB): it copies them
//! into the file and syncs it, on the thread that committed. Under a stream of batches that is a
//! pause of about 11 ms every ~70 ms on the store's one thread, and every request queued behind
//! it waits: the single posts' slowest 1 % were those. At 250 pages the pause is a quarter as
//! long and the syncs a little more frequent (figures in ARCHITECTURE.md). Durability is the
//! same: a commit is durable in the log either way.
//!
//! dynoxide offers no PRAGMA call, and SQLite sets the default on every connection after its
//! auto-extensions have run, so the setting is made on the connection once dynoxide has opened
//! it: an auto-extension notes each connection a thread opens, and `opened_checkpointing_every`
//! sets it on the one dynoxide opened.

use rusqlite::auto_extension::register_auto_extension;
use rusqlite::ffi;
use std::cell::RefCell;
use std::ffi::{c_char, c_int};

/// Pages in the log that make a commit checkpoint it.
pub const CHECKPOINT_PAGES: c_int = 250;

thread_local! {
    /// Connections opened on this thread while `opened_checkpointing_every` listens: SQLite calls
    /// auto-extensions on the opening thread.
    static OPENED: RefCell<Option<Vec<usize>>> = const { RefCell::new(None) };
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("SQLite refused the auto-extension that finds the store's connection: {0}")]
    Register(#[from] rusqlite::Error),
    #[error("opening the store opened {0} SQLite connections, not one: its checkpoints were left as SQLite sets them")]
    NotOneConnection(usize),
    #[error("SQLite refused the checkpoint setting (code {0})")]
    Refused(c_int),
}

/// SQLite's entry point for the auto-extension: notes the connection, changes nothing.
unsafe extern "C" fn note_opened(db: *mut ffi::sqlite3, _error: *mut *mut c_char, _api: *const ffi::sqlite3_api_routines) -> c_int {
    OPENED.with(|opened| {
        if let Some(opened) = opened.borrow_mut().as_mut() {
            opened.push(db as usize);
        }
    });
    ffi::SQLITE_OK
}

/// Runs `open`, which must open exactly one SQLite connection and keep it (dynoxide's
/// `Database::new` does), then has that connection checkpoint its log every `pages` pages.
/// `open`'s own error comes first; then, if the setting could not be made, the opened value and
/// why (the store works with SQLite's default; the caller decides whether to say so).
pub fn opened_checkpointing_every<T, E>(pages: c_int, open: impl FnOnce() -> Result<T, E>) -> Result<(T, Option<CheckpointError>), E> {
    // SAFETY: the routine registered only records a pointer; it neither opens nor closes a
    // connection, nor changes the list of auto-extensions. Registering it twice is a no-op.
    if let Err(error) = unsafe { register_auto_extension(note_opened) } {
        return open().map(|value| (value, Some(CheckpointError::Register(error))));
    }
    OPENED.with(|opened| *opened.borrow_mut() = Some(Vec::new()));
    let value = open();
    let opened = OPENED.with(|opened| opened.borrow_mut().take()).unwrap_or_default();
    let value = value?;
    let [connection] = opened[..] else {
        return Ok((value, Some(CheckpointError::NotOneConnection(opened.len()))));
    };
    // SAFETY: `open` returned successfully having opened this one connection, which it keeps
    // open inside `value`; nothing else uses it yet (it was opened on this thread, just now).
    let code = unsafe { ffi::sqlite3_wal_autocheckpoint(connection as *mut ffi::sqlite3, pages) };
    if code == ffi::SQLITE_OK {
        Ok((value, None))
    } else {
        Ok((value, Some(CheckpointError::Refused(code))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn autocheckpoint(connection: &rusqlite::Connection) -> i64 {
        connection
            .query_row("PRAGMA wal_autocheckpoint", [], |row| row.get(0))
            .expect("the setting")
    }

    #[test]
    fn the_connection_opened_checkpoints_every_so_many_pages() {
        let (connection, problem) = opened_checkpointing_every(CHECKPOINT_PAGES, rusqlite::Connection::open_in_memory).expect("opened");
        assert!(problem.is_none(), "{problem:?}");
        assert_eq!(autocheckpoint(&connection), i64::from(CHECKPOINT_PAGES));
        // Connections opened otherwise keep SQLite's default.
        let other = rusqlite::Connection::open_in_memory().expect("opened");
        assert_eq!(autocheckpoint(&other), 1000);
    }

    #[test]
    fn dynoxide_opens_one_connection_and_it_is_set() {
        let directory = std::env::temp_dir().join(format!("pyramid-checkpoints-{}", std::process::id()));
        std::fs::create_dir_all(&directory).expect("a directory");
        let file = directory.join("engagement.db");
        let (_database, problem) =
            opened_checkpointing_every(CHECKPOINT_PAGES, || dynoxide::Database::new(&file.to_string_lossy())).expect("opened");
        assert!(problem.is_none(), "{problem:?}");
        let _ = std::fs::remove_dir_all(&directory);
    }

    #[test]
    fn two_connections_are_left_as_they_are() {
        let ((first, second), problem) = opened_checkpointing_every(CHECKPOINT_PAGES, || {
            Ok::<_, rusqlite::Error>((rusqlite::Connection::open_in_memory()?, rusqlite::Connection::open_in_memory()?))
        })
        .expect("opened");
        assert!(matches!(problem, Some(CheckpointError::NotOneConnection(2))), "{problem:?}");
        assert_eq!((autocheckpoint(&first), autocheckpoint(&second)), (1000, 1000));
    }

    #[test]
    fn a_failed_open_is_the_error() {
        let result = opened_checkpointing_every(CHECKPOINT_PAGES, || Err::<(), _>("cannot open"));
        assert_eq!(result.err(), Some("cannot open"));
    }
}
