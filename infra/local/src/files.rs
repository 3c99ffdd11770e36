//! Files in the data directory: secrets made from the OS generator and written for their owner
//! only, atomic rewrites, and appends that never interleave.

use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;

/// Bytes from the operating system's CSPRNG, for secrets (a seeded PRNG's output can be predicted).
pub fn os_random<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)?;
    Ok(bytes)
}

/// Writes a new file only its owner can read, durably.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Writes a file so that a crash leaves either the old or the new content, never half.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // A name of its own: two writers of one path never share a temporary file.
    let temporary = path.with_extension(format!("{:016x}.tmp", fastrand::u64(..)));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// Held by every append, and by a rewrite from its read to its rename.
static APPENDING: Mutex<()> = Mutex::new(());

/// Appends one line in one write (concurrent appenders never interleave within a line).
pub(crate) fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    let _guard = APPENDING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(format!("{line}\n").as_bytes())?;
    file.sync_data()
}

/// Rewrites a file of JSON lines without the lines `doomed` picks, atomically.
pub(crate) fn rewrite_lines(path: &Path, doomed: impl Fn(&str) -> bool) -> std::io::Result<()> {
    let _guard = APPENDING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    let kept: String = text.lines().filter(|line| !doomed(line)).map(|line| format!("{line}\n")).collect();
    if kept.len() == text.len() {
        return Ok(());
    }
    write_atomically(path, kept.as_bytes())
}
