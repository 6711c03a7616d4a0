//! The live proof: an unauthenticated libvirt RPC call from the workstation. A libvirtd that
//! answers `REMOTE_PROC_AUTH_LIST` with "none" lets anyone who reaches the port control the
//! hypervisor. Wire format from libvirt's remote_protocol.x / virnetprotocol.x (XDR, big
//! endian): a length word, then program, version, procedure, type, serial, status.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REMOTE_PROGRAM: u32 = 0x2000_8086;
const REMOTE_PROTOCOL_VERSION: u32 = 1;
const REMOTE_PROC_AUTH_LIST: u32 = 66;
const CALL: u32 = 0;
const REPLY: u32 = 1;
const STATUS_OK: u32 = 0;
const AUTH_NONE: u32 = 0;
const AUTH_SASL: u32 = 1;
const AUTH_POLKIT: u32 = 2;

/// What the port said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Nothing listens (connection refused) or it could not be reached in time.
    Closed(String),
    /// libvirtd requires no authentication: anyone reaching the port is root on the host.
    NoAuth,
    /// libvirtd asks for one of these (e.g. "sasl").
    Auth(Vec<String>),
    /// Something answered, but not as libvirtd without TLS does (a TLS port, another service).
    NotPlainLibvirt(String),
}

impl Answer {
    pub fn describe(&self) -> String {
        match self {
            Answer::Closed(why) => format!("closed ({why})"),
            Answer::NoAuth => {
                "open: libvirtd answered REMOTE_PROC_AUTH_LIST with \"none\" (no authentication)"
                    .into()
            }
            Answer::Auth(kinds) => format!("open, authentication required ({})", kinds.join(", ")),
            Answer::NotPlainLibvirt(why) => format!("open, not plain libvirt RPC ({why})"),
        }
    }
}

/// Asks `address:port` which authentication it requires, giving up after `timeout`.
pub async fn probe(address: &str, port: u16, timeout: Duration) -> Answer {
    match tokio::time::timeout(timeout, ask(address, port)).await {
        Ok(answer) => answer,
        Err(_) => Answer::Closed("timed out".into()),
    }
}

async fn ask(address: &str, port: u16) -> Answer {
    let host = address.trim_start_matches('[').trim_end_matches(']');
    let mut tcp = match TcpStream::connect((host, port)).await {
        Ok(tcp) => tcp,
        Err(e) => return Answer::Closed(e.to_string()),
    };
    let mut call = Vec::with_capacity(28);
    for word in [
        28,
        REMOTE_PROGRAM,
        REMOTE_PROTOCOL_VERSION,
        REMOTE_PROC_AUTH_LIST,
        CALL,
        1,
        STATUS_OK,
    ] {
        call.extend_from_slice(&u32::to_be_bytes(word));
    }
    if let Err(e) = tcp.write_all(&call).await {
        return Answer::NotPlainLibvirt(format!("write: {e}"));
    }
    let mut len = [0u8; 4];
    if let Err(e) = tcp.read_exact(&mut len).await {
        return Answer::NotPlainLibvirt(format!("no answer: {e}"));
    }
    let len = u32::from_be_bytes(len) as usize;
    // A reply to AUTH_LIST is a header and a short list; anything else is not libvirt.
    if !(28..=4096).contains(&len) {
        return Answer::NotPlainLibvirt(format!("a {len}-byte message"));
    }
    let mut body = vec![0u8; len - 4];
    if let Err(e) = tcp.read_exact(&mut body).await {
        return Answer::NotPlainLibvirt(format!("short answer: {e}"));
    }
    parse_reply(&body)
}

/// The reply after its length word.
fn parse_reply(body: &[u8]) -> Answer {
    let words: Vec<u32> = body
        .chunks_exact(4)
        .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
        .collect();
    let [program, _, procedure, kind, _, status, rest @ ..] = &words[..] else {
        return Answer::NotPlainLibvirt("short header".into());
    };
    if (*program, *procedure, *kind) != (REMOTE_PROGRAM, REMOTE_PROC_AUTH_LIST, REPLY) {
        return Answer::NotPlainLibvirt("not a reply to AUTH_LIST".into());
    }
    if *status != STATUS_OK {
        return Answer::NotPlainLibvirt("the call was refused".into());
    }
    let Some((count, types)) = rest.split_first() else {
        return Answer::NotPlainLibvirt("no list".into());
    };
    let types = &types[..(*count as usize).min(types.len())];
    if types.is_empty() || types.contains(&AUTH_NONE) {
        return Answer::NoAuth;
    }
    Answer::Auth(
        types
            .iter()
            .map(|t| match *t {
                AUTH_SASL => "sasl".to_string(),
                AUTH_POLKIT => "polkit".to_string(),
                other => format!("type {other}"),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u32, types: &[u32]) -> Vec<u8> {
        let mut words = vec![REMOTE_PROGRAM, 1, REMOTE_PROC_AUTH_LIST, REPLY, 1, status];
        words.push(types.len() as u32);
        words.extend(types);
        words.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    #[test]
    fn replies_say_whether_authentication_is_required() {
        assert_eq!(parse_reply(&reply(0, &[0])), Answer::NoAuth);
        assert_eq!(
            parse_reply(&reply(0, &[1])),
            Answer::Auth(vec!["sasl".into()])
        );
        assert!(matches!(
            parse_reply(&reply(1, &[])),
            Answer::NotPlainLibvirt(_)
        ));
        assert!(matches!(
            parse_reply(b"\x16\x03\x01"),
            Answer::NotPlainLibvirt(_)
        ));
    }
}
