//! The health gate a host must pass after its new files are applied: its TLS server serves the
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
use virtfleet_engine::remote::{self, TlsProbe};
use virtfleet_engine::script::Place;
use virtfleet_engine::HostJob;
use virtfleet_plan::{CertRole, TlsPlan};
use virtfleet_ssh::{ClientOptions, SharedSessions};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT_SECONDS: u64 = 20;

/// What the gate checks one host against.
struct Expected {
    /// Of the server certificate just pushed.
    server_fingerprint: String,
    /// The host's desired client pair (signed by the desired CA): the server must accept it,
    /// so during a CA rollover the gate proves the host really trusts the new CA.
    client_cert: Vec<u8>,
    client_key: Vec<u8>,
}

impl Expected {
    /// The server certificate of `job` (what this pass pushes) and the client pair of `desired`
    /// (the host's final plan).
    fn of(job: &HostJob, desired: &HostJob) -> Result<Expected, String> {
        let file = |job: &HostJob, role| {
            job.plan
                .tls_file(role)
                .map(|f| f.content.clone())
                .ok_or_else(|| format!("the plan pushes no {role:?} for the TLS service"))
        };
        let server = file(job, CertRole::ServerCert)?;
        let leaf = virtfleet_pki::parse_certs(&server)
            .ok()
            .and_then(|c| c.into_iter().next())
            .ok_or("the pushed server certificate does not parse")?;
        Ok(Expected {
            server_fingerprint: leaf.fingerprint_sha256,
            client_cert: file(desired, CertRole::ClientCert)?,
            client_key: file(desired, CertRole::ClientKey)?,
        })
    }
}

fn tls(job: &HostJob) -> Result<&TlsPlan, String> {
    job.plan
        .tls
        .as_ref()
        .ok_or_else(|| format!("{}: TLS is not on for this host", job.target.label))
}

/// The peers that vouch for a host: one already on the new files, one still on the old.
pub struct Peers {
    pub rotated: Option<HostJob>,
    pub pending: Option<HostJob>,
}

/// Runs the gate on `job` (the files just applied; `desired`: the host's final plan): its
/// TLS server serves the pushed certificate, accepts the host's desired client pair, and
/// peers on either side of the rotation can connect to it. Ok holds observations for -v
/// output, Err says what failed.
pub async fn check(
    job: &HostJob,
    desired: &HostJob,
    peers: &Peers,
    ssh: &ClientOptions,
    sessions: &SharedSessions,
) -> Result<Vec<String>, String> {
    let expected = Expected::of(job, desired)?;
    let expected = &expected;
    let host = tls(job)?;
    let mut notes = Vec::new();
    let served = match served_from_controller(host, expected).await {
        Ok((fingerprint, accepted)) => {
            notes.push("served certificate seen from the controller".to_string());
            match accepted {
                Acceptance::Accepted => {
                    notes.push("the server accepts its new client certificate".to_string())
                }
                Acceptance::Unknown(why) => {
                    notes.push(format!("client certificate acceptance not checked: {why}"))
                }
                Acceptance::Refused(why) if fingerprint == expected.server_fingerprint => {
                    return Err(format!(
                        "the server refuses the host's new client certificate ({why}): \
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
            let peer = peers
                .pending
                .as_ref()
                .or(peers.rotated.as_ref())
                .ok_or_else(|| {
                    format!(
                    "cannot reach its TLS port from the controller ({reason}) and no peer can look"
                )
                })?;
            notes.push(format!(
                "controller cannot reach the TLS port ({reason}); served certificate seen from {}",
                peer.target.label
            ));
            served_from_peer(peer, host, ssh, sessions).await?
        }
    };
    if served != expected.server_fingerprint {
        return Err(format!(
            "the server serves certificate {served}, not the pushed {}",
            expected.server_fingerprint
        ));
    }
    for (role, peer) in [
        ("rotated", &peers.rotated),
        ("not yet rotated", &peers.pending),
    ] {
        match peer {
            Some(peer) => {
                let name = &peer.target.label;
                peer_connects(peer, host, ssh, sessions)
                    .await
                    .map_err(|e| format!("{role} peer {name}: {e}"))?;
                notes.push(format!("{role} peer {name} connects"));
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
/// Whether the server kept the connection open after checking our client certificate.
enum Acceptance {
    Accepted,
    Refused(String),
    Unknown(String),
}

/// libvirtd (like any server asking for one) checks the client certificate right after the handshake and hangs up on one it
/// does not trust; a connection still open after this long was accepted.
const ACCEPT_WAIT: Duration = Duration::from_secs(2);

async fn served_from_controller(
    host: &TlsPlan,
    expected: &Expected,
) -> Result<(String, Acceptance), Observe> {
    let address = (host.address.as_str(), host.port);
    let tcp = match tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(address)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(Observe::Unreached(e.to_string())),
        Err(_) => return Err(Observe::Unreached("connect timed out".into())),
    };
    let capture = Arc::new(CaptureServerCert::new());
    let (config, with_client_cert) = client_config(capture.clone(), expected);
    let name = ServerName::try_from(host.server_name.clone())
        .or_else(|_| ServerName::try_from(host.address.clone()))
        .unwrap_or_else(|_| ServerName::try_from("server").expect("valid name"));
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
    peer: &HostJob,
    host: &TlsPlan,
    ssh: &ClientOptions,
    sessions: &SharedSessions,
) -> Result<String, String> {
    let path = |role| {
        peer.plan
            .tls_file(role)
            .map(|f| f.path.as_str())
            .ok_or_else(|| format!("{} has no {role:?} to look with", peer.target.label))
    };
    let probe = TlsProbe {
        address: &host.address,
        port: host.port,
        server_name: &host.server_name,
        cert: path(CertRole::ClientCert)?,
        key: path(CertRole::ClientKey)?,
    };
    let session = (sessions.connect(&peer.target, ssh).await).map_err(|e| e.to_string())?;
    remote::served_fingerprint(&session, &probe)
        .await
        .map_err(|e| e.to_string())
}

/// The playbook's `tls.connect` for `host`, run on the peer inside its TLS service.
pub(crate) async fn peer_connects(
    peer: &HostJob,
    host: &TlsPlan,
    ssh: &ClientOptions,
    sessions: &SharedSessions,
) -> Result<(), String> {
    let service = &tls(peer)?.service;
    // A service the peer's plan leaves out still runs in its container, if anywhere.
    let place = match peer.plan.services.iter().find(|s| &s.name == service) {
        Some(plan) => peer.place(plan),
        None => Place::Container {
            engine: &peer.plan.container_engine,
            name: service,
        },
    };
    let session = (sessions.connect(&peer.target, ssh).await).map_err(|e| e.to_string())?;
    remote::exec_in_service(
        &session,
        place,
        service,
        CONNECT_TIMEOUT_SECONDS,
        &host.connect,
    )
    .await
    .map_err(|e| e.to_string())
}
