//! The health gate a host must pass after its new files are applied: its libvirtd serves the
//! certificate just pushed, and peers on either side of the rotation can still connect to it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use virtfleet_engine::script::quote;
use virtfleet_engine::HostJob;
use virtfleet_ssh::{ClientOptions, Session, Target};

/// The libvirt container, where peers run `virsh` with their own client pair and SASL file.
const LIBVIRT_CONTAINER: &str = "nova_libvirt";
const LIBVIRT_DIR: &str = "/etc/kolla/nova-libvirt";
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const VIRSH_TIMEOUT_SECONDS: u64 = 20;

/// How peers and the controller reach one host's libvirtd.
#[derive(Clone)]
pub struct Endpoint {
    pub name: String,
    pub target: Target,
    pub container_engine: String,
    pub migration_hostname: String,
    pub migration_address: String,
    pub port: u16,
}

impl Endpoint {
    pub fn of(job: &HostJob) -> Endpoint {
        let vars = &job.plan.vars;
        let text = |name: &str| match vars.get(name) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let name = job.target.label.clone();
        Endpoint {
            migration_hostname: text("migration_hostname").unwrap_or_else(|| name.clone()),
            migration_address: text("migration_interface_address")
                .unwrap_or_else(|| job.target.address.clone()),
            port: text("nova_libvirt_port")
                .and_then(|p| p.parse().ok())
                .unwrap_or(16514),
            container_engine: job.container_engine.clone(),
            target: job.target.clone(),
            name,
        }
    }

    /// `qemu+tls://<migration_hostname>/system`, with the port when it is not libvirt's.
    fn uri(&self) -> String {
        if self.port == 16514 {
            format!("qemu+tls://{}/system", self.migration_hostname)
        } else {
            format!(
                "qemu+tls://{}:{}/system",
                self.migration_hostname, self.port
            )
        }
    }
}

/// What the gate checks one host against.
pub struct Expected {
    /// Of the server certificate just pushed.
    pub server_fingerprint: String,
    /// The host's desired client pair (signed by the desired CA): libvirtd must accept it, so
    /// during a CA rollover the gate proves the host really trusts the new CA.
    pub client_cert: Vec<u8>,
    pub client_key: Vec<u8>,
}

impl Expected {
    /// The server certificate of `job` (what this pass pushes) and the client pair of `desired`
    /// (the host's final plan); None when they push no certificates.
    pub fn of(job: &HostJob, desired: &HostJob) -> Option<Expected> {
        let server = libvirt_file(job, "servercert.pem")?;
        let leaf = virtfleet_pki::parse_certs(&server)
            .ok()?
            .into_iter()
            .next()?;
        Some(Expected {
            server_fingerprint: leaf.fingerprint_sha256,
            client_cert: libvirt_file(desired, "clientcert.pem")?,
            client_key: libvirt_file(desired, "clientkey.pem")?,
        })
    }
}

fn libvirt_file(job: &HostJob, name: &str) -> Option<Vec<u8>> {
    job.plan
        .services
        .iter()
        .filter(|s| s.name == LIBVIRT_CONTAINER)
        .flat_map(|s| &s.files)
        .find(|f| f.path == format!("{LIBVIRT_DIR}/{name}"))
        .map(|f| f.content.clone())
}

/// The peers that vouch for a host: one already on the new files, one still on the old.
pub struct Peers<'a> {
    pub rotated: Option<&'a Endpoint>,
    pub pending: Option<&'a Endpoint>,
}

/// Runs the gate; Ok holds lines for -v output, Err says what failed.
pub async fn check(
    host: &Endpoint,
    expected: &Expected,
    peers: &Peers<'_>,
    ssh: &ClientOptions,
) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    let served = match served_from_controller(host, expected).await {
        Ok((fingerprint, accepted)) => {
            notes.push("served certificate seen from the controller".to_string());
            match accepted {
                Acceptance::Accepted => {
                    notes.push("libvirtd accepts its new client certificate".to_string())
                }
                Acceptance::Unknown(why) => {
                    notes.push(format!("client certificate acceptance not checked: {why}"))
                }
                Acceptance::Refused(why) if fingerprint == expected.server_fingerprint => {
                    return Err(format!(
                        "libvirtd refuses the host's new client certificate ({why}): \
                         it does not trust the new CA"
                    ))
                }
                // A wrong server certificate is the clearer finding.
                Acceptance::Refused(_) => {}
            }
            fingerprint
        }
        Err(Observe::Failed(reason)) => return Err(reason),
        Err(Observe::Unreached(reason)) => {
            let peer = peers.pending.or(peers.rotated).ok_or_else(|| {
                format!(
                    "cannot reach its TLS port from the controller ({reason}) and no peer can look"
                )
            })?;
            notes.push(format!(
                "controller cannot reach the TLS port ({reason}); served certificate seen from {}",
                peer.name
            ));
            served_from_peer(peer, host, ssh).await?
        }
    };
    if served != expected.server_fingerprint {
        return Err(format!(
            "libvirtd serves certificate {served}, not the pushed {}",
            expected.server_fingerprint
        ));
    }
    for (role, peer) in [
        ("rotated", peers.rotated),
        ("not yet rotated", peers.pending),
    ] {
        match peer {
            Some(peer) => {
                peer_connects(peer, host, ssh)
                    .await
                    .map_err(|e| format!("{role} peer {}: {e}", peer.name))?;
                notes.push(format!("{role} peer {} connects", peer.name));
            }
            None => notes.push(format!("no {role} peer to try")),
        }
    }
    Ok(notes)
}

enum Observe {
    /// The controller could not open a TCP connection: ask a peer instead.
    Unreached(String),
    Failed(String),
}

/// SHA-256 fingerprint (openssl style) of the leaf certificate `host` presents in a TLS
/// handshake, made with the host's own client pair as a peer would.
/// Whether libvirtd kept the connection open after checking our client certificate.
enum Acceptance {
    Accepted,
    Refused(String),
    Unknown(String),
}

/// libvirtd checks the client certificate right after the handshake and hangs up on one it
/// does not trust; a connection still open after this long was accepted.
const ACCEPT_WAIT: Duration = Duration::from_secs(2);

async fn served_from_controller(
    host: &Endpoint,
    expected: &Expected,
) -> Result<(String, Acceptance), Observe> {
    let address = (host.migration_address.as_str(), host.port);
    let tcp = match tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(address)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(Observe::Unreached(e.to_string())),
        Err(_) => return Err(Observe::Unreached("connect timed out".into())),
    };
    let capture = Arc::new(CaptureServerCert::new());
    let (config, with_client_cert) = client_config(capture.clone(), expected);
    let name = ServerName::try_from(host.migration_hostname.clone())
        .or_else(|_| ServerName::try_from(host.migration_address.clone()))
        .unwrap_or_else(|_| ServerName::try_from("libvirt").expect("valid name"));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // The certificate is captured while it is verified, so a handshake the server ends later
    // (e.g. refusing our client certificate) still shows what it serves.
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp)).await;
    let seen = capture.seen.lock().expect("not poisoned").clone();
    let acceptance = match handshake {
        _ if !with_client_cert => Acceptance::Unknown("rustls cannot use the client key".into()),
        Ok(Ok(mut tls)) => {
            let mut byte = [0u8; 1];
            match tokio::time::timeout(ACCEPT_WAIT, tls.read(&mut byte)).await {
                Err(_) | Ok(Ok(1..)) => Acceptance::Accepted,
                Ok(Ok(_)) => Acceptance::Refused("connection closed".into()),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    Acceptance::Refused("it hung up after the handshake".into())
                }
                Ok(Err(e)) => Acceptance::Refused(e.to_string()),
            }
        }
        Ok(Err(e)) => Acceptance::Refused(e.to_string()),
        Err(_) => Acceptance::Refused("handshake timed out".into()),
    };
    match seen {
        Some(der) => Ok((virtfleet_pki::fingerprint_sha256(&der), acceptance)),
        None => match acceptance {
            Acceptance::Refused(e) => Err(Observe::Failed(format!("TLS handshake failed: {e}"))),
            _ => Err(Observe::Failed(
                "no server certificate in the handshake".into(),
            )),
        },
    }
}

/// The config, and whether it presents the client pair.
fn client_config(
    capture: Arc<CaptureServerCert>,
    expected: &Expected,
) -> (rustls::ClientConfig, bool) {
    let provider = capture.provider.clone();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(capture);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&expected.client_cert)
        .filter_map(Result::ok)
        .collect();
    let key = PrivateKeyDer::from_pem_slice(&expected.client_key).ok();
    match key {
        Some(key) if !chain.is_empty() => match builder.clone().with_client_auth_cert(chain, key) {
            Ok(config) => (config, true),
            // A key rustls cannot sign with: the server still shows its certificate.
            Err(_) => (builder.with_no_client_auth(), false),
        },
        _ => (builder.with_no_client_auth(), false),
    }
}

/// Accepts whatever the server presents (this is an observation, not a trust decision) and
/// keeps the leaf. Handshake signatures are still checked.
#[derive(Debug)]
struct CaptureServerCert {
    provider: Arc<CryptoProvider>,
    seen: Mutex<Option<Vec<u8>>>,
}

impl CaptureServerCert {
    fn new() -> Self {
        CaptureServerCert {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            seen: Mutex::new(None),
        }
    }
}

impl ServerCertVerifier for CaptureServerCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().expect("not poisoned") = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The same handshake from a peer host, with the peer's client pair (openssl on the peer).
async fn served_from_peer(
    peer: &Endpoint,
    host: &Endpoint,
    ssh: &ClientOptions,
) -> Result<String, String> {
    let command = format!(
        "timeout 10 openssl s_client -connect {}:{} -servername {} -cert {LIBVIRT_DIR}/clientcert.pem \
         -key {LIBVIRT_DIR}/clientkey.pem </dev/null 2>/dev/null | openssl x509 -outform DER | sha256sum",
        quote(&host.migration_address),
        host.port,
        quote(&host.migration_hostname)
    );
    let out = run_on(peer, &command, ssh).await?;
    let hex = out.split_whitespace().next().unwrap_or_default();
    if hex.len() != 64 {
        return Err(format!(
            "{} could not read the served certificate",
            peer.name
        ));
    }
    let pairs: Vec<String> = hex
        .as_bytes()
        .chunks(2)
        .map(|p| String::from_utf8_lossy(p).to_uppercase())
        .collect();
    Ok(pairs.join(":"))
}

/// `virsh -c qemu+tls://<host>/system version` in the peer's libvirt container.
async fn peer_connects(
    peer: &Endpoint,
    host: &Endpoint,
    ssh: &ClientOptions,
) -> Result<(), String> {
    let command = format!(
        "{} exec {LIBVIRT_CONTAINER} timeout {VIRSH_TIMEOUT_SECONDS} virsh -c {} version </dev/null",
        quote(&peer.container_engine),
        quote(&host.uri())
    );
    run_on(peer, &command, ssh).await.map(|_| ())
}

async fn run_on(peer: &Endpoint, command: &str, ssh: &ClientOptions) -> Result<String, String> {
    let session = Session::connect(&peer.target, ssh)
        .await
        .map_err(|e| e.to_string())?;
    let out = session
        .exec_with_timeout(
            command,
            b"",
            Duration::from_secs(VIRSH_TIMEOUT_SECONDS + 15),
        )
        .await;
    session.close().await;
    let out = out.map_err(|e| e.to_string())?;
    if !out.success() {
        let stderr = out.stderr_lossy();
        let last = stderr.trim().lines().last().unwrap_or("").to_string();
        return Err(format!("`{command}` failed (exit {}): {last}", out.status));
    }
    Ok(out.stdout_lossy().into_owned())
}
