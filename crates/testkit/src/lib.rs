//! Helpers for plaint's tests. Not part of the product.
//!
//! - [`NatsServer`]: starts a real `nats-server -js` on a free loopback port with a
//!   temporary store directory, waits until it accepts connections, and kills it on drop.
//!   Tests never use the machine's own server on 4222.
//! - [`fixtures`]: builders for contract-shaped events (wire bytes), so tests read as
//!   given/when/then instead of JSON literals.

pub mod fixtures;

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A running `nats-server -js`, killed when dropped.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
    config: Option<PathBuf>,
}

impl std::fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsServer")
            .field("port", &self.port)
            .finish()
    }
}

/// The nats-server binary: `$NATS_SERVER_BIN`, else `nats-server` on the PATH, else
/// Debian's `/usr/sbin/nats-server`.
pub fn nats_server_binary() -> PathBuf {
    if let Ok(bin) = std::env::var("NATS_SERVER_BIN") {
        return bin.into();
    }
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/local/bin"])
    {
        let candidate = Path::new(dir).join("nats-server");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "nats-server not found: install it (`apt-get install nats-server`) or set NATS_SERVER_BIN"
    )
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl NatsServer {
    /// Starts a JetStream-enabled server on a free port.
    pub fn start() -> NatsServer {
        Self::start_inner(
            free_port(),
            None,
            tempfile::tempdir().expect("temp store dir"),
        )
    }

    /// Starts a server with the given config file text (its `port`, `listen` and
    /// `store_dir` are added by this function).
    pub fn start_with_config(config_text: &str) -> NatsServer {
        let store = tempfile::tempdir().expect("temp store dir");
        let path = store.path().join("nats-server.conf");
        std::fs::write(&path, config_text).expect("write nats config");
        Self::start_inner(free_port(), Some(path), store)
    }

    fn start_inner(port: u16, config: Option<PathBuf>, store: tempfile::TempDir) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port,
            store,
            config,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let store_dir = self.store.path().join("js");
        let mut cmd = Command::new(nats_server_binary());
        if let Some(config) = &self.config {
            cmd.arg("-c").arg(config);
        }
        cmd.args([
            "-a",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-js",
            "-sd",
        ])
        .arg(&store_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = cmd.spawn().expect("spawn nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not start on port {} within 20 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// kill -9, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store (after [`Self::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
