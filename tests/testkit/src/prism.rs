//! Stoplight Prism as a child process: a mock server that validates each request against an
//! OpenAPI description (`--errors`: a request that breaks it gets a 4xx, with the violations in
//! the `sl-violations` header). Installed by `tests/tools/prism/install` (pinned in its
//! package-lock.json); loads only local files, so it runs offline.

use crate::workspace_root;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long Prism may take to listen (it takes about a second; CI machines are busy).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running Prism mock; stopped when dropped.
pub struct Prism {
    child: Child,
    port: u16,
    log: PathBuf,
    spec: PathBuf,
}

/// Installs Prism once per test process (a no-op when node_modules matches the lock file).
fn install() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = workspace_root();
        let status = Command::new("bash")
            .arg(root.join("tests/tools/prism/install"))
            .status()
            .expect("bash runs the Prism installer");
        assert!(status.success(), "tests/tools/prism/install failed");
        root.join("tests/tools/prism/node_modules/.bin/prism")
    })
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    listener.local_addr().expect("a bound address").port()
}

impl Prism {
    /// Starts a mock of `spec` (a path from the workspace root) without waiting for it: start
    /// several, then [`Prism::ready`] each, so their start-ups overlap.
    pub fn spawn(spec: &str) -> Prism {
        let bin = install();
        let spec = workspace_root().join(spec);
        assert!(spec.is_file(), "no OpenAPI description at {}", spec.display());
        let port = free_port();
        let log = std::env::temp_dir().join(format!("prism-{}-{port}.log", std::process::id()));
        let out = File::create(&log).expect("a log file for Prism");
        let err = out.try_clone().expect("the log file again");
        let child = Command::new(bin)
            .args(["mock", "--errors", "--host", "127.0.0.1", "--port", &port.to_string()])
            .arg(&spec)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("Prism starts");
        Prism { child, port, log, spec }
    }

    /// Waits until Prism accepts connections (polling its port; panics with its log if it exits
    /// or does not listen in time), then returns it.
    pub fn ready(mut self) -> Prism {
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return self;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("Prism exited ({status}) for {}:\n{}", self.spec.display(), self.log());
            }
            assert!(
                Instant::now() < deadline,
                "Prism did not listen for {}:\n{}",
                self.spec.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Starts a mock of `spec` and waits for it.
    pub fn start(spec: &str) -> Prism {
        Prism::spawn(spec).ready()
    }

    /// `http://127.0.0.1:<port>`, for a destination's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What Prism logged so far (its validation findings for each request).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Prism {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
