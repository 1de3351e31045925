//! Naming what is wrong when a connection to a ledger fails for want of
//! agreement on TLS: a plaintext client at a TLS port, a TLS client at a
//! plaintext port, a server that demands a client certificate (mutual TLS)
//! and gets none or one it does not trust, a server certificate from a CA
//! the client does not trust or for another name.
//!
//! The transport reports these as "h2 protocol error", "broken pipe" or
//! "InvalidContentType", if at all; a plaintext client's or a refused
//! client certificate's failure only shows on the first call. So
//! [`crate::client::channel`] makes one call (a health check) and, when
//! connecting or that call fails in the transport, asks [`explain`] for one
//! line saying what is wrong and what to do. Where the transport's words
//! are not enough, a second connection sniffs the port: it sends the
//! HTTP/2 preface in plaintext and reads the first bytes of the answer (a
//! TLS alert record, or an HTTP/2 SETTINGS frame).

use std::io::{Read as _, Write as _};
use std::time::Duration;

use crate::client::ClientTls;

/// How long the sniffing connection may take to answer.
const SNIFF_WAIT: Duration = Duration::from_secs(5);

/// What a port answers to the HTTP/2 preface sent in plaintext.
#[derive(Debug, PartialEq, Eq)]
enum Sniffed {
    /// A TLS record (an alert): the port speaks TLS.
    Tls,
    /// An HTTP/2 frame: the port speaks plaintext HTTP/2 (gRPC).
    PlaintextHttp2,
    /// Anything else, or nothing.
    Unknown,
}

/// First byte of a TLS record of type alert (RFC 8446 section 5.1).
const TLS_ALERT_RECORD: u8 = 0x15;
/// First byte of a TLS record of type handshake.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// The type byte (the fourth) of an HTTP/2 SETTINGS frame, which a server
/// sends first (RFC 9113 section 3.4).
const HTTP2_SETTINGS_FRAME: u8 = 0x04;
/// The client connection preface of HTTP/2.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Sends the HTTP/2 preface to `authority` (`host:port`) in plaintext and
/// tells what the answer's first bytes are.
async fn sniff(authority: String) -> Sniffed {
    let sniffing = tokio::task::spawn_blocking(move || {
        let address = std::net::ToSocketAddrs::to_socket_addrs(&authority)
            .ok()?
            .next()?;
        let mut socket = std::net::TcpStream::connect_timeout(&address, SNIFF_WAIT).ok()?;
        socket.set_read_timeout(Some(SNIFF_WAIT)).ok()?;
        socket.write_all(HTTP2_PREFACE).ok()?;
        let mut head = [0u8; 9];
        let mut read = 0;
        while read < head.len() {
            match socket.read(&mut head[read..]) {
                Ok(0) | Err(_) => break,
                Ok(count) => read += count,
            }
        }
        Some(head[..read].to_vec())
    });
    let Ok(Some(head)) = sniffing.await else {
        return Sniffed::Unknown;
    };
    match head.as_slice() {
        [TLS_ALERT_RECORD | TLS_HANDSHAKE_RECORD, 0x03, ..] => Sniffed::Tls,
        [_, _, _, HTTP2_SETTINGS_FRAME, ..] => Sniffed::PlaintextHttp2,
        _ => Sniffed::Unknown,
    }
}

/// The `host:port` of `url`, the port defaulted by its scheme.
fn authority(url: &str) -> Option<String> {
    let uri: tonic::codegen::http::Uri = url.parse().ok()?;
    let host = uri.host()?;
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    // An IPv6 host keeps its brackets in `host()`.
    Some(format!("{host}:{port}"))
}

/// When the connection failed: connecting (the TCP connection or the TLS
/// handshake), or the first call over a connection that opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    Connect,
    FirstCall,
}

/// One line saying what is wrong with the connection to `url` and what to
/// do, when it is a TLS mismatch; `None` for anything else (the caller
/// reports the transport's own words, `cause`).
pub(crate) async fn explain(
    url: &str,
    tls: &ClientTls,
    stage: Stage,
    cause: &str,
) -> Option<String> {
    let https = url.starts_with("https://");
    let authority = authority(url)?;
    if https {
        if cause.contains("UnknownIssuer") {
            return Some(match &tls.ca {
                Some(ca) => format!(
                    "the server's certificate is not signed by the CA in {} (--ca): give the CA \
                     that signed it",
                    ca.display()
                ),
                None => "the server's certificate is not signed by a public CA this client \
                         trusts: give the CA that signed it with --ca FILE"
                    .to_string(),
            });
        }
        if cause.contains("NotValidForName") {
            let host = authority
                .rsplit_once(':')
                .map_or(authority.as_str(), |(host, _)| host);
            return Some(format!(
                "the server's certificate is not issued for {host}: connect by a name (or \
                 address) the certificate holds"
            ));
        }
        if cause.contains("Expired") {
            return Some("the server's certificate has expired".to_string());
        }
        if stage == Stage::Connect {
            // A handshake that failed on a port speaking plaintext.
            if sniff(authority.clone()).await == Sniffed::PlaintextHttp2 {
                let plain = url.replacen("https://", "http://", 1);
                return Some(format!(
                    "the server speaks plaintext, not TLS: use {plain} (or {authority} \
                     without --ca and --cert)"
                ));
            }
            return None;
        }
        // The handshake completed, then the server closed the connection:
        // what a server demanding a client certificate does when it gets
        // none, or one it does not trust (TLS 1.3 checks it after the
        // client has finished).
        return Some(if tls.cert.is_some() {
            "the server refused this client's certificate (--cert) after the TLS handshake: \
             it must be signed by the CA the server trusts for clients (its --tls-client-ca)"
                .to_string()
        } else {
            "the server closed the connection after the TLS handshake, as a server that \
             requires a client certificate (mutual TLS) does: give --cert FILE and \
             --cert-key FILE"
                .to_string()
        });
    }
    // Plaintext: a connection that opened but could not carry a call.
    if stage == Stage::FirstCall && sniff(authority.clone()).await == Sniffed::Tls {
        let secure = url.replacen("http://", "https://", 1);
        return Some(format!(
            "the server speaks TLS: use {secure} or {authority} with --ca FILE (the CA that \
             signed its certificate)"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authority_of_a_url_has_its_port() {
        assert_eq!(
            authority("http://localhost:50051").as_deref(),
            Some("localhost:50051")
        );
        assert_eq!(
            authority("https://ledger.example").as_deref(),
            Some("ledger.example:443")
        );
        assert_eq!(authority("http://[::1]:7").as_deref(), Some("[::1]:7"));
    }
}
