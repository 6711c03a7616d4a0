//! A throw-away OpenSSH server for integration tests: its own host key, client key,
//! authorized_keys and config in a temp dir, listening on a private loopback address.
//! Killed when dropped.

#![allow(dead_code)] // each test binary uses a different part of this

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use virtfleet_ssh::{ClientOptions, Target};

pub struct TestSshd {
    pub dir: TempDir,
    pub address: String,
    pub port: u16,
    /// `ssh-ed25519 AAAA...` of the server.
    pub host_key: String,
    /// A client key listed in authorized_keys.
    pub client_key: PathBuf,
    child: Child,
}

impl TestSshd {
    pub fn start() -> Self {
        Self::start_with_authorized(&[])
    }

    /// Starts sshd accepting the default client key plus keys of the `extra` types
    /// (`rsa`, `ecdsa`), generated as `client_<type>` in the temp dir.
    pub fn start_with_authorized(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let host_key_file = keygen(dir.path(), "host_ed25519", "ed25519");
        let client_key = keygen(dir.path(), "client_ed25519", "ed25519");
        let mut authorized = read_public(&client_key);
        for kind in extra {
            let key = keygen(dir.path(), &format!("client_{kind}"), kind);
            authorized.push_str(&read_public(&key));
        }
        std::fs::write(dir.path().join("authorized_keys"), authorized).unwrap();

        let (address, port) = free_loopback_port();
        let config = format!(
            "ListenAddress {address}:{port}\n\
             HostKey {host_key}\n\
             PidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\n\
             UsePAM no\n\
             StrictModes no\n\
             PermitRootLogin prohibit-password\n\
             PermitUserEnvironment no\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             MaxSessions 10\n\
             LogLevel VERBOSE\n",
            host_key = host_key_file.display(),
            dir = dir.path().display(),
        );
        let config_path = dir.path().join("sshd_config");
        std::fs::write(&config_path, config).unwrap();
        // sshd's privilege-separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();

        let log = std::fs::File::create(dir.path().join("sshd.log")).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start /usr/sbin/sshd");
        let mut server = TestSshd {
            host_key: public_key_fields(&read_public(&host_key_file)),
            dir,
            address,
            port,
            client_key,
            child,
        };
        server.wait_until_listening();
        server
    }

    fn wait_until_listening(&mut self) {
        let socket: SocketAddr = format!("{}:{}", self.address, self.port).parse().unwrap();
        let started = Instant::now();
        loop {
            if TcpStream::connect_timeout(&socket, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sshd exited with {status}:\n{}", self.log());
            }
            if started.elapsed() > Duration::from_secs(10) {
                panic!("sshd did not listen within 10 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `[address]:port`, as known_hosts writes this server.
    pub fn known_hosts_name(&self) -> String {
        format!("[{}]:{}", self.address, self.port)
    }

    /// A known_hosts file trusting this server's key.
    pub fn trusting_known_hosts(&self) -> PathBuf {
        self.write_file(
            "known_hosts",
            &format!("{} {}\n", self.known_hosts_name(), self.host_key),
        )
    }

    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    pub fn target(&self) -> Target {
        Target {
            label: "testhost".into(),
            address: self.address.clone(),
            port: self.port,
            user: "root".into(),
            key_file: Some(self.client_key.clone()),
            become_user: None,
            jump: None,
            own: Default::default(),
        }
    }

    pub fn options(&self, known_hosts: PathBuf) -> ClientOptions {
        ClientOptions {
            known_hosts,
            accept_new_host_keys: false,
            use_agent: false,
            // Hermetic: not the keys of whoever runs the tests.
            identity_files: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(30),
            keepalive: Duration::from_secs(10),
            max_concurrent_commands: 8,
            ..ClientOptions::default()
        }
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Generates an unencrypted key pair `dir/name` (+ `.pub`) of `kind` with ssh-keygen.
pub fn keygen(dir: &Path, name: &str, kind: &str) -> PathBuf {
    let path = dir.join(name);
    let mut command = Command::new("ssh-keygen");
    command
        .args(["-q", "-N", "", "-C", name, "-t", kind, "-f"])
        .arg(&path);
    if kind == "rsa" {
        command.args(["-b", "2048"]);
    }
    let status = command
        .stdin(Stdio::null())
        .status()
        .expect("run ssh-keygen");
    assert!(status.success(), "ssh-keygen -t {kind} failed");
    path
}

pub fn read_public(private_key: &Path) -> String {
    std::fs::read_to_string(private_key.with_extension("pub")).expect("read public key")
}

/// `type base64` of a public key line, without the comment.
pub fn public_key_fields(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A loopback address private to this test (so parallel tests never collide) and a port
/// that was free on it a moment ago.
pub fn free_loopback_port() -> (String, u16) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) + std::process::id() * 31;
    let address = format!("127.0.{}.{}", 100 + n / 250 % 100, 2 + n % 250);
    let listener = TcpListener::bind((address.as_str(), 0)).expect("bind loopback");
    let port = listener.local_addr().unwrap().port();
    (address, port)
}
