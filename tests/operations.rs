//! Operations: what an operator relies on besides the ledger's own rules.
//! TLS and mutual TLS, the gRPC health and reflection services, Prometheus
//! metrics, graceful SIGTERM of the real binary under load (no acknowledged
//! entry lost), the TOML config file and JSON logs.
//!
//! Certificates are made here with rcgen; the binary is the one cargo built
//! for this test, run through the test kit's harness. Every wait is
//! bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ceasefire_core::leaf::Leaf;
use ceasefire_grpc::client::{self, ClientTls};
use ceasefire_grpc::proto::{
    compliance_client::ComplianceClient, Receipt, SignedEvent, StatusChange, StatusFilter,
    SubscribeRequest,
};
use ceasefire_ledger::dev;
use ceasefire_node::node::{self, Node, NodeConfig};
use ceasefire_node::server::TlsFiles;
use ceasefire_node::storage::Store;
use ceasefire_testkit::fixture::{checkpoint, leaf_hash, node_config, Client};
use ceasefire_testkit::harness::{command, free_port, tree_size, Serve};
use ceasefire_testkit::scenario::{Scenario, BOOTSTRAP_ENTRIES};
use prost::Message;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

/// The longest any single call or stream read may take before the test
/// calls it a hang.
const CALL_WAIT: Duration = Duration::from_secs(10);
/// How long the binary may take to start serving (the first start of a dev
/// ledger writes keys and the bootstrap entries).
const START_WAIT: Duration = Duration::from_secs(30);
/// How long the binary may take to exit after SIGTERM.
const EXIT_WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// In-process nodes

const BINARY: &str = env!("CARGO_BIN_EXE_ceasefire-ledger");

async fn start(config: NodeConfig) -> Node {
    tokio::time::timeout(START_WAIT, node::start(config))
        .await
        .expect("the node did not start within the bound")
        .expect("the node did not start")
}

async fn stop(node: Node) {
    tokio::time::timeout(Duration::from_secs(20), node.shutdown())
        .await
        .expect("the node did not shut down within 20 s")
        .expect("the node failed to shut down");
}

async fn plain_channel(url: &str) -> Channel {
    tokio::time::timeout(CALL_WAIT, client::channel(url, &ClientTls::default()))
        .await
        .expect("connecting hung")
        .expect("cannot connect")
}

// ---------------------------------------------------------------------------
// 1. TLS and mutual TLS

/// PEM files for a CA, a server certificate for "localhost" and 127.0.0.1
/// and a client certificate it signed, and an unrelated CA with its own
/// client certificate.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    other_ca: PathBuf,
    other_client_cert: PathBuf,
    other_client_key: PathBuf,
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// An end-entity certificate and its key (PEM), signed by `issuer`.
fn new_leaf(
    common_name: &str,
    names: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'static, KeyPair>,
) -> (String, String) {
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn make_pki(dir: &Path) -> Pki {
    std::fs::create_dir_all(dir).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (ca_pem, ca) = new_ca("ceasefire test CA");
    let (server_cert, server_key) = new_leaf(
        "localhost",
        vec!["localhost".into(), "127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
        &ca,
    );
    let (client_cert, client_key) = new_leaf(
        "monitor client",
        Vec::new(),
        ExtendedKeyUsagePurpose::ClientAuth,
        &ca,
    );
    let (other_ca_pem, other_ca) = new_ca("unrelated CA");
    let (other_client_cert, other_client_key) = new_leaf(
        "stranger client",
        Vec::new(),
        ExtendedKeyUsagePurpose::ClientAuth,
        &other_ca,
    );
    Pki {
        ca: write("ca.pem", &ca_pem),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server.key", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client.key", &client_key),
        other_ca: write("other-ca.pem", &other_ca_pem),
        other_client_cert: write("other-client.pem", &other_client_cert),
        other_client_key: write("other-client.key", &other_client_key),
    }
}

/// Connects with `tls` and asks for the checkpoint; the error (connecting
/// or calling) as text. A hang fails the test: refusing must be prompt.
async fn try_checkpoint(url: &str, tls: &ClientTls) -> Result<u64, String> {
    tokio::time::timeout(CALL_WAIT, async {
        let channel = client::channel(url, tls)
            .await
            .map_err(|error| format!("connect: {error:#}"))?;
        let mut client = client::ledger_client(channel);
        client
            .get_checkpoint(ceasefire_grpc::proto::GetCheckpointRequest::default())
            .await
            .map(|response| response.into_inner().tree_size)
            .map_err(|status| format!("call: {status:?}"))
    })
    .await
    .unwrap_or_else(|_| panic!("{url} with {tls:?} neither answered nor refused within 10 s"))
}

/// A TLS client that must be served: verifies the checkpoint note and
/// submits one observation, checking its receipt.
async fn served_over_tls(url: &str, tls: &ClientTls, dev: &Scenario, expected_seq: u64) {
    let channel = tokio::time::timeout(CALL_WAIT, client::channel(url, tls))
        .await
        .expect("the TLS connection hung")
        .unwrap_or_else(|error| panic!("cannot connect to {url} with {tls:?}: {error:#}"));
    let mut ledger: Client = client::ledger_client(channel);
    let body = checkpoint(&mut ledger, &dev.note_verifier()).await;
    assert_eq!(body.tree_size, expected_seq);
    let signed = dev.observation().narrative("over TLS").signed();
    let receipt = tokio::time::timeout(CALL_WAIT, ledger.submit(signed.clone()))
        .await
        .expect("Submit over TLS hung")
        .unwrap_or_else(|status| panic!("Submit over TLS refused: {status:?}"))
        .into_inner();
    assert_eq!(receipt.seq, expected_seq);
    assert_eq!(receipt.leaf_hash, leaf_hash(&receipt.leaf).to_vec());
    assert_eq!(Leaf::decode(&receipt.leaf).unwrap().payload, signed.payload);
}

fn localhost_url(node: &Node) -> String {
    format!("https://localhost:{}", node.local_addr.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_clients_that_trust_the_ca_and_refuses_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(&dir.path().join("pki"));
    let data = dir.path().join("data");
    let dev = Scenario::dev_with_random_keys();
    let mut config = node_config(&data, &dev);
    config.tls = Some(TlsFiles {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: None,
    });
    let node = start(config).await;
    assert!(node.url().starts_with("https://"), "url: {}", node.url());
    let url = localhost_url(&node);
    let trusting = ClientTls {
        ca: Some(pki.ca.clone()),
        ..ClientTls::default()
    };

    // By name, and by the IP address the certificate also names (node.url()).
    served_over_tls(&url, &trusting, &dev, BOOTSTRAP_ENTRIES).await;
    served_over_tls(&node.url(), &trusting, &dev, BOOTSTRAP_ENTRIES + 1).await;

    // Plaintext to a TLS port.
    let plain = format!("http://localhost:{}", node.local_addr.port());
    let error = try_checkpoint(&plain, &ClientTls::default())
        .await
        .expect_err("a plaintext client was served by a TLS port");
    eprintln!("plaintext client: {error}");
    // https without trusting our CA (no roots at all).
    let error = try_checkpoint(&url, &ClientTls::default())
        .await
        .expect_err("a client trusting nothing was served");
    eprintln!("client without CA: {error}");
    // https trusting another CA.
    let stranger = ClientTls {
        ca: Some(pki.other_ca.clone()),
        ..ClientTls::default()
    };
    let error = try_checkpoint(&url, &stranger)
        .await
        .expect_err("a client trusting an unrelated CA accepted the server");
    eprintln!("client trusting another CA: {error}");
    // A client certificate is not needed (and not refused) without client_ca.
    let with_cert = ClientTls {
        ca: Some(pki.ca.clone()),
        cert: Some(pki.client_cert.clone()),
        cert_key: Some(pki.client_key.clone()),
    };
    assert_eq!(
        try_checkpoint(&url, &with_cert).await,
        Ok(BOOTSTRAP_ENTRIES + 2)
    );
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_serves_only_clients_with_a_certificate_from_the_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(&dir.path().join("pki"));
    let data = dir.path().join("data");
    let dev = Scenario::dev_with_random_keys();
    let mut config = node_config(&data, &dev);
    config.tls = Some(TlsFiles {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: Some(pki.ca.clone()),
    });
    let node = start(config).await;
    let url = localhost_url(&node);

    let member = ClientTls {
        ca: Some(pki.ca.clone()),
        cert: Some(pki.client_cert.clone()),
        cert_key: Some(pki.client_key.clone()),
    };
    served_over_tls(&url, &member, &dev, BOOTSTRAP_ENTRIES).await;

    let anonymous = ClientTls {
        ca: Some(pki.ca.clone()),
        ..ClientTls::default()
    };
    let error = try_checkpoint(&url, &anonymous)
        .await
        .expect_err("a client without a certificate was served under mutual TLS");
    eprintln!("no client certificate: {error}");

    let stranger = ClientTls {
        ca: Some(pki.ca.clone()),
        cert: Some(pki.other_client_cert.clone()),
        cert_key: Some(pki.other_client_key.clone()),
    };
    let error = try_checkpoint(&url, &stranger)
        .await
        .expect_err("a client certificate from an unrelated CA was accepted");
    eprintln!("client certificate from another CA: {error}");

    // Plaintext is refused too.
    let plain = format!("http://localhost:{}", node.local_addr.port());
    try_checkpoint(&plain, &ClientTls::default())
        .await
        .expect_err("a plaintext client was served under mutual TLS");

    // The member is still served after the refusals.
    assert_eq!(
        try_checkpoint(&url, &member).await,
        Ok(BOOTSTRAP_ENTRIES + 1)
    );
    stop(node).await;
}

// ---------------------------------------------------------------------------
// 2. Health

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_serving_for_the_server_and_each_service() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(node_config(dir.path(), &Scenario::dev_with_random_keys())).await;
    let mut health = HealthClient::new(plain_channel(&node.url()).await);
    for service in ["", "ceasefire.v1.Ledger", "ceasefire.v1.Compliance"] {
        let response = tokio::time::timeout(
            CALL_WAIT,
            health.check(HealthCheckRequest {
                service: service.into(),
            }),
        )
        .await
        .expect("health Check hung")
        .unwrap_or_else(|status| panic!("health Check {service:?} failed: {status:?}"))
        .into_inner();
        assert_eq!(
            response.status,
            ServingStatus::Serving as i32,
            "service {service:?}"
        );
    }
    let status = health
        .check(HealthCheckRequest {
            service: "ceasefire.v1.NoSuchService".into(),
        })
        .await
        .expect_err("an unknown service has a health status");
    assert_eq!(status.code(), Code::NotFound);
    drop(health);
    stop(node).await;
}

/// A client watching health (gRPC client-side health checking keeps a
/// `Watch` open for the life of the connection) must not keep the server
/// from stopping; it should see NOT_SERVING, then the stream end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_health_watch_does_not_block_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(node_config(dir.path(), &Scenario::dev_with_random_keys())).await;
    let mut health = HealthClient::new(plain_channel(&node.url()).await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "ceasefire.v1.Ledger".into(),
        })
        .await
        .expect("health Watch failed")
        .into_inner();
    let first = tokio::time::timeout(CALL_WAIT, watch.message())
        .await
        .expect("health Watch sent nothing")
        .expect("health Watch failed")
        .expect("health Watch ended at once");
    assert_eq!(first.status, ServingStatus::Serving as i32);
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        let end = loop {
            match tokio::time::timeout(Duration::from_secs(15), watch.message()).await {
                Ok(Ok(Some(message))) => seen.push(message.status),
                Ok(Ok(None)) => break Ok(()),
                Ok(Err(status)) => break Err(status.code()),
                Err(_) => break Err(Code::DeadlineExceeded),
            }
        };
        (seen, end)
    });
    let stopped = tokio::time::timeout(Duration::from_secs(10), node.shutdown()).await;
    assert!(
        matches!(stopped, Ok(Ok(()))),
        "the node did not stop within 10 s while a client watched its health \
         (the Watch stream never ends, so graceful shutdown waits forever)"
    );
    let (seen, end) = reader.await.unwrap();
    assert!(
        end != Err(Code::DeadlineExceeded),
        "the Watch stream stayed open after shutdown (saw {seen:?})"
    );
}

// ---------------------------------------------------------------------------
// 3. Reflection

/// One reflection request on its own stream; its one response.
async fn reflect(channel: &Channel, request: MessageRequest) -> MessageResponse {
    let mut client = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut responses = tokio::time::timeout(
        CALL_WAIT,
        client.server_reflection_info(tokio_stream::iter(vec![request])),
    )
    .await
    .expect("reflection call hung")
    .expect("reflection call failed")
    .into_inner();
    tokio::time::timeout(CALL_WAIT, responses.message())
        .await
        .expect("reflection response hung")
        .expect("reflection stream failed")
        .expect("reflection stream ended without a response")
        .message_response
        .expect("reflection response without a message")
}

/// The descriptors a file response carries; panics on an error response.
fn files(response: MessageResponse, asked: &str) -> Vec<prost_types::FileDescriptorProto> {
    match response {
        MessageResponse::FileDescriptorResponse(files) => files
            .file_descriptor_proto
            .iter()
            .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap())
            .collect(),
        MessageResponse::ErrorResponse(error) => panic!(
            "reflection cannot resolve {asked}: code {} {}",
            error.error_code, error.error_message
        ),
        other => panic!("unexpected reflection response for {asked}: {other:?}"),
    }
}

/// Resolves `symbol` and then, like grpcurl, every file it imports,
/// transitively, by file name; returns every file by name.
async fn resolve_symbol(
    channel: &Channel,
    symbol: &str,
) -> BTreeMap<String, prost_types::FileDescriptorProto> {
    let mut resolved = BTreeMap::new();
    let mut wanted = Vec::new();
    for file in files(
        reflect(
            channel,
            MessageRequest::FileContainingSymbol(symbol.to_string()),
        )
        .await,
        symbol,
    ) {
        wanted.extend(file.dependency.clone());
        resolved.insert(file.name().to_string(), file);
    }
    assert!(!resolved.is_empty(), "no descriptor for {symbol}");
    while let Some(name) = wanted.pop() {
        if resolved.contains_key(&name) {
            continue;
        }
        let mut found = false;
        for file in files(
            reflect(channel, MessageRequest::FileByFilename(name.clone())).await,
            &name,
        ) {
            found |= file.name() == name;
            wanted.extend(file.dependency.clone());
            resolved.insert(file.name().to_string(), file);
        }
        assert!(found, "asking for {name} did not return {name}");
    }
    resolved
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_services_and_resolves_their_files_and_imports() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(node_config(dir.path(), &Scenario::dev_with_random_keys())).await;
    let channel = plain_channel(&node.url()).await;

    let services: BTreeSet<String> =
        match reflect(&channel, MessageRequest::ListServices(String::new())).await {
            MessageResponse::ListServicesResponse(list) => list
                .service
                .into_iter()
                .map(|service| service.name)
                .collect(),
            other => panic!("unexpected ListServices response: {other:?}"),
        };
    for service in [
        "ceasefire.v1.Ledger",
        "ceasefire.v1.Compliance",
        "grpc.health.v1.Health",
    ] {
        assert!(services.contains(service), "{service} not in {services:?}");
    }

    for (service, method) in [
        ("ceasefire.v1.Ledger", "Submit"),
        ("ceasefire.v1.Compliance", "Subscribe"),
        ("grpc.health.v1.Health", "Check"),
    ] {
        let resolved = resolve_symbol(&channel, service).await;
        let (package, name) = service.rsplit_once('.').unwrap();
        let defines = resolved.values().any(|file| {
            file.package() == package
                && file.service.iter().any(|candidate| {
                    candidate.name() == name
                        && candidate
                            .method
                            .iter()
                            .any(|candidate| candidate.name() == method)
                })
        });
        assert!(
            defines,
            "no resolved file defines {service}.{method}: {:?}",
            resolved.keys().collect::<Vec<_>>()
        );
        // compliance.proto imports timestamp.proto (ledger.proto imports nothing).
        if service == "ceasefire.v1.Compliance" {
            assert!(
                resolved.contains_key("google/protobuf/timestamp.proto"),
                "{service}'s files do not lead to google/protobuf/timestamp.proto: {:?}",
                resolved.keys().collect::<Vec<_>>()
            );
        }
    }

    // The well-known import, asked for directly (what grpcurl does).
    let timestamp = files(
        reflect(
            &channel,
            MessageRequest::FileByFilename("google/protobuf/timestamp.proto".into()),
        )
        .await,
        "google/protobuf/timestamp.proto",
    );
    assert!(
        timestamp
            .iter()
            .any(|file| file.name() == "google/protobuf/timestamp.proto"
                && file.message_type.iter().any(|m| m.name() == "Timestamp")),
        "timestamp.proto not served"
    );
    // Message symbols too: events.proto and its import.
    let resolved = resolve_symbol(&channel, "ceasefire.v1.Event").await;
    assert!(
        resolved.contains_key("ceasefire/v1/events.proto")
            && resolved.contains_key("google/protobuf/timestamp.proto"),
        "ceasefire.v1.Event resolves to {:?}",
        resolved.keys().collect::<Vec<_>>()
    );
    resolve_symbol(&channel, "ceasefire.v1.SignedEvent").await;
    drop(channel);
    stop(node).await;
}

/// Older clients (grpcurl before 1.8.8, Postman, several language runtimes)
/// speak only reflection v1alpha: the same services and files answer there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1alpha_serves_the_same_services_and_files() {
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;

    let dir = tempfile::tempdir().unwrap();
    let node = start(node_config(dir.path(), &Scenario::dev_with_random_keys())).await;
    let channel = plain_channel(&node.url()).await;
    let mut client = ServerReflectionClient::new(channel.clone());
    let requests = vec![
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "ceasefire.v1.Ledger".into(),
            )),
        },
    ];
    let mut responses = tokio::time::timeout(
        CALL_WAIT,
        client.server_reflection_info(tokio_stream::iter(requests)),
    )
    .await
    .expect("v1alpha reflection call hung")
    .expect("v1alpha reflection call failed")
    .into_inner();
    let mut answers = Vec::new();
    while let Some(response) = tokio::time::timeout(CALL_WAIT, responses.message())
        .await
        .expect("v1alpha reflection response hung")
        .expect("v1alpha reflection stream failed")
    {
        answers.push(
            response
                .message_response
                .expect("a response without a message"),
        );
    }
    match &answers[..] {
        [MessageResponse::ListServicesResponse(list), MessageResponse::FileDescriptorResponse(files)] =>
        {
            let services: BTreeSet<&str> = list
                .service
                .iter()
                .map(|service| service.name.as_str())
                .collect();
            for service in [
                "ceasefire.v1.Ledger",
                "ceasefire.v1.Compliance",
                "grpc.health.v1.Health",
            ] {
                assert!(services.contains(service), "{service} not in {services:?}");
            }
            let defines_ledger = files.file_descriptor_proto.iter().any(|bytes| {
                prost_types::FileDescriptorProto::decode(bytes.as_slice())
                    .unwrap()
                    .service
                    .iter()
                    .any(|service| service.name() == "Ledger")
            });
            assert!(
                defines_ledger,
                "v1alpha did not return the file defining Ledger"
            );
        }
        other => panic!("unexpected v1alpha answers: {other:?}"),
    }
    drop(channel);
    stop(node).await;
}

// ---------------------------------------------------------------------------
// 4. Metrics

/// A hand-written HTTP/1.1 GET; the status code, the headers and the body.
async fn http_get(address: SocketAddr, path: &str) -> (u16, String, String) {
    tokio::time::timeout(CALL_WAIT, async {
        let mut socket = tokio::net::TcpStream::connect(address)
            .await
            .expect("cannot connect to the metrics port");
        socket
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: */*\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut response = Vec::new();
        socket.read_to_end(&mut response).await.unwrap();
        let text = String::from_utf8(response).expect("the response is not UTF-8");
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no end of headers in {text:?}"));
        let mut status_line = head.lines().next().unwrap().split_whitespace();
        assert_eq!(status_line.next(), Some("HTTP/1.1"), "{head}");
        let status = status_line.next().unwrap().parse().unwrap();
        let length = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().unwrap())
            })
            .expect("no Content-Length");
        assert_eq!(length, body.len(), "Content-Length differs from the body");
        (status, head.to_string(), body.to_string())
    })
    .await
    .unwrap_or_else(|_| panic!("GET {path} hung"))
}

/// The value of one series (`name` or `name{labels}`) in a text exposition.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

fn require(text: &str, series: &str) -> f64 {
    metric(text, series).unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

/// Polls /metrics until `series` has `value` (within 10 s).
async fn wait_for_metric(address: SocketAddr, series: &str, value: f64) -> String {
    let deadline = Instant::now() + CALL_WAIT;
    loop {
        let (_, _, body) = http_get(address, "/metrics").await;
        if metric(&body, series) == Some(value) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {value}:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_submissions_batches_syncs_tree_and_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Scenario::dev_with_random_keys();
    let mut config = node_config(dir.path(), &dev);
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let node = start(config).await;
    let address = node
        .metrics_addr
        .expect("metrics_listen set but not served");
    let mut ledger = client::ledger_client(plain_channel(&node.url()).await);

    // One accepted submission and one refused one (a signature that does
    // not verify).
    let signed = dev.observation().narrative("counted").signed();
    let receipt = ledger.submit(signed).await.expect("submit refused");
    assert_eq!(receipt.get_ref().seq, BOOTSTRAP_ENTRIES);
    let mut forged = dev.observation().narrative("forged").signed();
    forged.signatures[0].signature[0] ^= 1;
    let refusal = ledger
        .submit(forged)
        .await
        .expect_err("a forged signature was accepted");
    let refused_code = format!("{:?}", refusal.code());

    let (status, head, body) = http_get(address, "/metrics").await;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    assert!(body.trim_end().ends_with("# EOF"), "no # EOF:\n{body}");
    eprintln!("{body}");
    let accepted = require(
        &body,
        r#"ceasefire_ledger_submissions_total{outcome="accepted",code="Ok"}"#,
    );
    assert!(accepted >= 1.0, "accepted submissions: {accepted}");
    let refused = require(
        &body,
        &format!(
            r#"ceasefire_ledger_submissions_total{{outcome="refused",code="{refused_code}"}}"#
        ),
    );
    assert_eq!(refused, 1.0, "refused submissions");
    assert!(require(&body, "ceasefire_ledger_batch_entries_count") >= 1.0);
    assert!(require(&body, "ceasefire_ledger_batch_entries_sum") >= 1.0);
    assert!(require(&body, "ceasefire_ledger_sync_seconds_count") >= 1.0);
    let size = checkpoint(&mut ledger, &dev.note_verifier())
        .await
        .tree_size;
    assert_eq!(size, BOOTSTRAP_ENTRIES + 1);
    assert_eq!(require(&body, "ceasefire_ledger_tree_size"), size as f64);
    assert_eq!(require(&body, "ceasefire_ledger_subscribers"), 0.0);
    let verify = require(&body, "ceasefire_ledger_verify_on_start_seconds");
    assert!(
        (0.0..60.0).contains(&verify),
        "verify_on_start_seconds: {verify}"
    );

    // A subscriber shows in the gauge while it is open, and leaves it.
    let mut compliance = ComplianceClient::new(plain_channel(&node.url()).await);
    let stream = compliance
        .subscribe(SubscribeRequest {
            filter: Some(StatusFilter::default()),
            from_seq: 0,
            from_index: 0,
        })
        .await
        .expect("Subscribe failed")
        .into_inner();
    wait_for_metric(address, "ceasefire_ledger_subscribers", 1.0).await;
    drop(stream);
    wait_for_metric(address, "ceasefire_ledger_subscribers", 0.0).await;

    // Nothing but GET /metrics.
    for path in ["/other", "/", "/metrics/x"] {
        let (status, head, _) = http_get(address, path).await;
        assert_eq!(status, 404, "GET {path}: {head}");
    }
    drop(compliance);
    drop(ledger);
    stop(node).await;
}

/// A stopped node lets go of its metrics port, so a node started again in
/// the same process (or a test restarting one) can serve metrics there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_releases_its_metrics_port() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Scenario::dev_with_random_keys();
    let mut config = node_config(dir.path(), &dev);
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let node = start(config).await;
    let address = node.metrics_addr.unwrap();
    assert_eq!(http_get(address, "/metrics").await.0, 200);
    stop(node).await;

    let mut config = node_config(dir.path(), &dev);
    config.bootstrap = Vec::new();
    config.metrics_listen = Some(address);
    let restarted = tokio::time::timeout(START_WAIT, node::start(config))
        .await
        .expect("the node did not start within the bound");
    let node = match restarted {
        Ok(node) => node,
        Err(error) => panic!(
            "a node cannot serve metrics on {address} after the node that served \
             there was shut down: {error:#}"
        ),
    };
    stop(node).await;
}

// ---------------------------------------------------------------------------
// The real binary (ceasefire_testkit::harness)

/// SIGTERM, then the exit status (which must come within [`EXIT_WAIT`]) and
/// everything the server wrote to stderr.
async fn stop_serve(serve: &mut Serve) -> (std::process::ExitStatus, String) {
    let status = serve
        .terminate(EXIT_WAIT)
        .await
        .expect("serve did not stop");
    (status, serve.stderr())
}

/// What one submitting task saw: its receipts, and how it stopped.
struct Submitted {
    receipts: Vec<(SignedEvent, Receipt)>,
    /// The first error status, after which the task stopped.
    refused: Option<tonic::Status>,
    /// A call that neither answered nor failed within [`CALL_WAIT`].
    hung: bool,
}

// ---------------------------------------------------------------------------
// 5. Graceful SIGTERM under load

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_every_call_and_loses_no_acknowledged_entry() {
    const TASKS: usize = 8;
    const PER_TASK: usize = 100;
    const RECEIPTS_BEFORE_SIGTERM: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let mut serve = Serve::start(
        command(
            BINARY,
            &[
                &"serve",
                &"--dev",
                &"--data-dir",
                &data,
                &"--listen",
                &format!("127.0.0.1:{port}"),
            ],
        ),
        url.clone(),
        dir.path().join("stderr.log"),
    )
    .expect("cannot run serve");
    serve
        .wait_ready(START_WAIT)
        .await
        .expect("serve did not start");
    // The keys `serve --dev` wrote.
    let scenario = dev::scenario(&dev::ensure_dev_keys(&data).expect("cannot load the dev keys"));

    // A watch-style subscription, open across the shutdown.
    let mut compliance = ComplianceClient::new(plain_channel(&url).await);
    let mut changes = compliance
        .subscribe(SubscribeRequest {
            filter: Some(StatusFilter::default()),
            from_seq: 0,
            from_index: 0,
        })
        .await
        .expect("Subscribe failed")
        .into_inner();
    let watcher = tokio::spawn(async move {
        let mut seen: Vec<StatusChange> = Vec::new();
        let end = loop {
            match tokio::time::timeout(Duration::from_secs(30), changes.message()).await {
                Ok(Ok(Some(change))) => seen.push(change),
                Ok(Ok(None)) => break Ok(()),
                Ok(Err(status)) => break Err(status),
                Err(_) => break Err(tonic::Status::deadline_exceeded("the stream hung")),
            }
        };
        (seen.len(), end)
    });

    let acknowledged = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let mut ledger = client::ledger_client(plain_channel(&url).await);
        let scenario = scenario.clone();
        let acknowledged = acknowledged.clone();
        let enough = enough.clone();
        tasks.push(tokio::spawn(async move {
            let mut submitted = Submitted {
                receipts: Vec::new(),
                refused: None,
                hung: false,
            };
            for i in 0..PER_TASK {
                let signed = scenario
                    .observation()
                    .narrative(&format!("task {task} report {i}"))
                    .signed();
                match tokio::time::timeout(CALL_WAIT, ledger.submit(signed.clone())).await {
                    Ok(Ok(receipt)) => {
                        submitted.receipts.push((signed, receipt.into_inner()));
                        if acknowledged.fetch_add(1, Ordering::SeqCst) + 1
                            == RECEIPTS_BEFORE_SIGTERM
                        {
                            enough.notify_one();
                        }
                    }
                    Ok(Err(status)) => {
                        submitted.refused = Some(status);
                        break;
                    }
                    Err(_) => {
                        submitted.hung = true;
                        break;
                    }
                }
            }
            submitted
        }));
    }
    tokio::time::timeout(Duration::from_secs(30), enough.notified())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "only {} receipts within 30 s:\n{}",
                acknowledged.load(Ordering::SeqCst),
                serve.stderr()
            )
        });
    let at_sigterm = acknowledged.load(Ordering::SeqCst);
    let (status, stderr) = stop_serve(&mut serve).await;
    assert!(
        status.success(),
        "serve exited with {status} after SIGTERM:\n{stderr}"
    );

    let mut receipts = Vec::new();
    let mut refusals = Vec::new();
    for task in tasks {
        let submitted = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("a submitting task did not finish")
            .expect("a submitting task panicked");
        assert!(
            !submitted.hung,
            "a Submit call got no answer within {CALL_WAIT:?} during shutdown"
        );
        receipts.extend(submitted.receipts);
        refusals.extend(submitted.refused);
    }
    eprintln!(
        "{} receipts ({at_sigterm} at SIGTERM), {} calls refused: {:?}",
        receipts.len(),
        refusals.len(),
        refusals
            .iter()
            .map(|status| format!("{:?}: {}", status.code(), status.message()))
            .collect::<BTreeSet<_>>()
    );
    assert!(receipts.len() >= RECEIPTS_BEFORE_SIGTERM);
    for status in &refusals {
        // Refusals at shutdown are transport-level, never a verdict on the
        // event: every event here is valid.
        assert!(
            matches!(
                status.code(),
                Code::Unavailable | Code::Cancelled | Code::Unknown | Code::Internal
            ),
            "a valid event was refused with {status:?}"
        );
    }

    let (watched, end) = tokio::time::timeout(Duration::from_secs(30), watcher)
        .await
        .expect("the subscription reader did not finish")
        .unwrap();
    match end {
        Err(status) => assert_eq!(
            status.code(),
            Code::Unavailable,
            "the subscription ended with {status:?} after {watched} changes"
        ),
        Ok(()) => panic!("the subscription ended without a status after {watched} changes"),
    }

    // Every acknowledged entry is on disk, where its receipt says, and the
    // store verifies.
    let store = Store::open(&data).expect("cannot open the store after shutdown");
    let head = store.verify().expect("the store does not verify");
    let mut seqs = BTreeSet::new();
    for (signed, receipt) in &receipts {
        assert!(
            seqs.insert(receipt.seq),
            "seq {} acknowledged twice",
            receipt.seq
        );
        assert!(
            receipt.seq < head.size,
            "acknowledged seq {} is beyond the durable head {}",
            receipt.seq,
            head.size
        );
        let leaf = store
            .leaf(receipt.seq)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged entry {} is missing", receipt.seq));
        assert_eq!(
            leaf, receipt.leaf,
            "entry {} differs from its receipt",
            receipt.seq
        );
        assert_eq!(leaf_hash(&leaf).to_vec(), receipt.leaf_hash);
        assert_eq!(Leaf::decode(&leaf).unwrap().payload, signed.payload);
    }
    // Entries the log holds but no client heard of would be in-flight calls
    // whose answers were lost in the shutdown.
    let unacknowledged = head.size - BOOTSTRAP_ENTRIES - receipts.len() as u64;
    assert_eq!(
        unacknowledged, 0,
        "{unacknowledged} entries were committed but their Submit calls got an error"
    );
    drop(store);

    // And the ledger serves again from that directory, same tree.
    let keys = dev::ensure_dev_keys(&data).unwrap();
    assert_eq!(keys.operator.key.to_bytes(), scenario.operator().to_bytes());
    let mut config = node_config(&data, &scenario);
    config.bootstrap = Vec::new();
    let node = start(config).await;
    let mut ledger = client::ledger_client(plain_channel(&node.url()).await);
    let body = checkpoint(&mut ledger, &scenario.note_verifier()).await;
    assert_eq!(body.tree_size, head.size);
    assert_eq!(body.root_hash, head.root);
    drop(ledger);
    stop(node).await;
}

// ---------------------------------------------------------------------------
// 6. Configuration

fn toml_string(path: &Path) -> String {
    // A TOML literal string: no escapes (temporary paths hold no quote).
    let text = path.to_str().unwrap();
    assert!(!text.contains('\''));
    format!("'{text}'")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reads_its_config_file_and_flags_and_variables_win() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-file");
    let port = free_port().unwrap();
    let config = dir.path().join("ceasefire-ledger.toml");
    std::fs::write(
        &config,
        format!(
            "data-dir = {}\nlisten = \"127.0.0.1:{port}\"\nmax-batch = 64\n",
            toml_string(&data)
        ),
    )
    .unwrap();
    let mut serve = Serve::start(
        command(BINARY, &[&"serve", &"--dev", &"--config", &config]),
        format!("http://127.0.0.1:{port}"),
        dir.path().join("stderr-1.log"),
    )
    .expect("cannot run serve");
    serve
        .wait_ready(START_WAIT)
        .await
        .expect("serve did not start");
    assert!(
        data.join("dev-keys").join("operator.key").exists(),
        "the data directory of the file was not used"
    );
    let (status, stderr) = stop_serve(&mut serve).await;
    assert!(status.success(), "exit {status}:\n{stderr}");

    // The environment wins over the file.
    let other_port = free_port().unwrap();
    let mut serve_command = command(BINARY, &[&"serve", &"--dev", &"--config", &config]);
    serve_command.env("CEASEFIRE_LEDGER_LISTEN", format!("127.0.0.1:{other_port}"));
    let mut serve = Serve::start(
        serve_command,
        format!("http://127.0.0.1:{other_port}"),
        dir.path().join("stderr-2.log"),
    )
    .expect("cannot run serve");
    serve
        .wait_ready(START_WAIT)
        .await
        .expect("serve did not start");
    assert!(
        tree_size(&format!("http://127.0.0.1:{port}"))
            .await
            .is_err(),
        "the file's address was used although the environment set another"
    );
    let (status, stderr) = stop_serve(&mut serve).await;
    assert!(status.success(), "exit {status}:\n{stderr}");
}

#[test]
fn an_unknown_config_key_is_a_one_line_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        format!(
            "data-dir = {}\ndata-dri = 'oops'\n",
            toml_string(&dir.path().join("data"))
        ),
    )
    .unwrap();
    let output = command(BINARY, &[&"serve", &"--dev", &"--config", &config])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "an unknown key was accepted:\n{stderr}"
    );
    assert!(
        stderr.contains("data-dri"),
        "the key is not named:\n{stderr}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "serve acted on an invalid config file"
    );
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "the error is not one line:\n{stderr}");
}

#[test]
fn serve_help_names_the_environment_variables_and_the_defaults() {
    let output = command(BINARY, &[&"serve", &"--help"]).output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "CEASEFIRE_LEDGER_DATA_DIR",
        "CEASEFIRE_LEDGER_LISTEN",
        "CEASEFIRE_LEDGER_CONFIG",
        "CEASEFIRE_LEDGER_METRICS_LISTEN",
        "CEASEFIRE_LEDGER_TLS_CERT",
        "CEASEFIRE_LEDGER_TLS_CLIENT_CA",
        "[default: ceasefire-data]",
        "[default: 127.0.0.1:50051]",
        "--config",
        "--log-format",
    ] {
        assert!(
            help.contains(needle),
            "serve --help lacks {needle}:\n{help}"
        );
    }
}

// ---------------------------------------------------------------------------
// 7. JSON logs

/// Checks that every stderr line is a JSON object with a level and a
/// message; returns the messages.
fn json_lines(stderr: &str) -> Vec<String> {
    let mut messages = Vec::new();
    for line in stderr.lines().filter(|line| !line.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("stderr line is not JSON ({error}): {line}\n{stderr}"));
        assert!(value.is_object(), "not a JSON object: {line}");
        assert!(value["level"].is_string(), "no level: {line}");
        assert!(value["timestamp"].is_string(), "no timestamp: {line}");
        messages.push(
            value["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_json_writes_json_lines() {
    // A ledger made in-process, then served by the binary without --dev.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = dev::ensure_dev_keys(&data).unwrap();
    stop(start(node_config(&data, &dev::scenario(&keys))).await).await;
    let port = free_port().unwrap();
    let mut serve = Serve::start(
        command(
            BINARY,
            &[
                &"--log-format",
                &"json",
                &"serve",
                &"--data-dir",
                &data,
                &"--operator-key",
                &data.join("dev-keys").join("operator.key"),
                &"--listen",
                &format!("127.0.0.1:{port}"),
            ],
        ),
        format!("http://127.0.0.1:{port}"),
        dir.path().join("stderr.log"),
    )
    .expect("cannot run serve");
    serve
        .wait_ready(START_WAIT)
        .await
        .expect("serve did not start");
    let (status, stderr) = stop_serve(&mut serve).await;
    assert!(status.success(), "exit {status}:\n{stderr}");
    let messages = json_lines(&stderr);
    assert!(messages.len() >= 3, "too few log lines:\n{stderr}");
    for expected in ["store verified", "serving", "stopped"] {
        assert!(
            messages.iter().any(|message| message == expected),
            "no {expected:?} line in:\n{stderr}"
        );
    }
}

/// `--dev` with `--log-format json`: stderr must stay machine-readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_json_with_dev_writes_only_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port().unwrap();
    let mut serve = Serve::start(
        command(
            BINARY,
            &[
                &"serve",
                &"--log-format",
                &"json",
                &"--dev",
                &"--data-dir",
                &data,
                &"--listen",
                &format!("127.0.0.1:{port}"),
            ],
        ),
        format!("http://127.0.0.1:{port}"),
        dir.path().join("stderr.log"),
    )
    .expect("cannot run serve");
    serve
        .wait_ready(START_WAIT)
        .await
        .expect("serve did not start");
    let (status, stderr) = stop_serve(&mut serve).await;
    assert!(status.success(), "exit {status}:\n{stderr}");
    let messages = json_lines(&stderr);
    assert!(messages.len() >= 3, "too few log lines:\n{stderr}");
}
