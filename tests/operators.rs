//! What an operator meets running the real binary (issue 14, operators):
//! latency histograms per RPC and process metrics, submissions in the
//! logs, error messages said once, logs without colour codes in files and
//! pipes, host names and scheme-less server addresses, TLS mismatches
//! named, every `serve` flag a config key, and the README's certificate
//! recipe.
//!
//! Each test runs `ceasefire-ledger` as a child process through the test
//! kit's harness, on a real data directory in a temporary directory; every
//! wait is bounded.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ceasefire_grpc::client::{self, ClientTls};
use ceasefire_ledger::dev;
use ceasefire_testkit::harness::{command, free_port, run_bounded, Serve};
use ceasefire_testkit::scenario::Scenario;
use prost::Message as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BINARY: &str = env!("CARGO_BIN_EXE_ceasefire-ledger");

/// The longest any single call may take before the test calls it a hang.
const CALL_WAIT: Duration = Duration::from_secs(10);
/// How long the binary may take to start serving (a first `--dev` start
/// writes keys and the bootstrap entries).
const START_WAIT: Duration = Duration::from_secs(30);
/// How long the binary may take to exit after SIGTERM.
const EXIT_WAIT: Duration = Duration::from_secs(10);
/// How long a one-shot command (`status`, `keygen`) may run.
const COMMAND_WAIT: Duration = Duration::from_secs(30);

/// `serve --dev` on a fresh data directory under `dir` with `extra` flags,
/// served and ready.
async fn serve_dev(dir: &Path, extra: &[&str]) -> Serve {
    let mut flags = vec!["--dev"];
    flags.extend_from_slice(extra);
    let mut serve = Serve::spawn(BINARY, &dir.join("data"), &flags, dir.join("serve.stderr"))
        .expect("cannot run serve");
    serve
        .wait_ready(START_WAIT)
        .await
        .expect("serve did not start");
    serve
}

/// SIGTERM, a clean exit, and everything the server wrote to stderr.
async fn stop(mut serve: Serve) -> String {
    let status = serve
        .terminate(EXIT_WAIT)
        .await
        .expect("serve did not stop");
    let stderr = serve.stderr();
    assert!(status.success(), "serve exited with {status}:\n{stderr}");
    stderr
}

/// The dev ledger's scenario (its keys) that `serve --dev` made in `dir`.
fn dev_scenario(dir: &Path) -> Scenario {
    dev::scenario(&dev::ensure_dev_keys(&dir.join("data")).expect("no dev keys"))
}

async fn ledger(
    url: &str,
) -> ceasefire_grpc::proto::ledger_client::LedgerClient<tonic::transport::Channel> {
    tokio::time::timeout(CALL_WAIT, client::connect(url))
        .await
        .expect("connecting hung")
        .expect("cannot connect")
}

// ---------------------------------------------------------------------------
// Metrics: latency per RPC, the process

/// `GET /metrics` on `address`: the body of a 200 answer.
async fn scrape(address: SocketAddr) -> String {
    tokio::time::timeout(CALL_WAIT, async {
        let mut socket = tokio::net::TcpStream::connect(address)
            .await
            .expect("cannot connect to the metrics port");
        socket
            .write_all(format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut response = String::new();
        socket.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("no end of headers");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        body.to_string()
    })
    .await
    .expect("GET /metrics hung")
}

/// The value of one series (`name{labels}`), 0 when it is not there (a
/// histogram series appears with its first observation).
fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix(' ')?;
            value.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0.0)
}

/// A series of the latency histogram of a Ledger RPC: `suffix` is
/// count, sum or bucket (then with its bound, which comes first).
fn rpc_series(suffix: &str, method: &str, code: &str, bucket: Option<&str>) -> String {
    let le = bucket.map(|le| format!("le=\"{le}\",")).unwrap_or_default();
    format!(
        "ceasefire_ledger_grpc_request_duration_seconds_{suffix}{{{le}method=\"ceasefire.v1.Ledger/{method}\",code=\"{code}\"}}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_time_each_rpc_by_method_and_code_and_report_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    let serve = serve_dev(dir.path(), &["--metrics-listen", &metrics.to_string()]).await;
    let scenario = dev_scenario(dir.path());
    // The harness's readiness probe called GetCheckpoint already: count
    // from what is there now.
    let before = scrape(metrics).await;

    let mut ledger = ledger(&serve.url).await;
    for _ in 0..3 {
        ledger
            .get_checkpoint(ceasefire_grpc::proto::GetCheckpointRequest::default())
            .await
            .expect("GetCheckpoint failed");
    }
    ledger
        .submit(scenario.observation().narrative("timed").signed())
        .await
        .expect("submit refused");
    let mut forged = scenario.observation().narrative("forged").signed();
    forged.signatures[0].signature[0] ^= 1;
    let refused = ledger
        .submit(forged)
        .await
        .expect_err("a forged signature was accepted");
    let refused_code = format!("{:?}", refused.code());

    let expected = [
        ("GetCheckpoint", "Ok", 3.0),
        ("Submit", "Ok", 1.0),
        ("Submit", refused_code.as_str(), 1.0),
    ];
    // A call is observed when its response has ended, which the client
    // may see a moment before the server: poll, within a bound.
    let deadline = Instant::now() + CALL_WAIT;
    let after = loop {
        let after = scrape(metrics).await;
        let counted = |(method, code, _): &(&str, &str, f64)| {
            series(&after, &rpc_series("count", method, code, None))
                - series(&before, &rpc_series("count", method, code, None))
        };
        if expected.iter().all(|call| counted(call) >= call.2) {
            for call in &expected {
                assert_eq!(counted(call), call.2, "{call:?} counted:\n{after}");
            }
            break after;
        }
        assert!(
            Instant::now() < deadline,
            "the calls were not all counted:\n{after}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (method, code, _) in &expected {
        let count = series(&after, &rpc_series("count", method, code, None));
        let infinite = series(&after, &rpc_series("bucket", method, code, Some("+Inf")));
        assert_eq!(infinite, count, "{method} {code}: +Inf bucket vs count");
        let sum = series(&after, &rpc_series("sum", method, code, None));
        assert!(sum > 0.0, "{method} {code}: sum {sum}");
        // Buckets are cumulative: the smallest is at most the count.
        let smallest = series(&after, &rpc_series("bucket", method, code, Some("0.0001")));
        assert!(smallest <= count, "{method} {code}: buckets not cumulative");
    }
    assert!(
        after.contains("# TYPE ceasefire_ledger_grpc_request_duration_seconds histogram"),
        "{after}"
    );

    // The process, as /proc/self sees it.
    let resident = series(&after, "process_resident_memory_bytes");
    assert!(
        resident > 1_000_000.0,
        "resident memory {resident}:\n{after}"
    );
    let cpu = series(&after, "process_cpu_seconds_total");
    assert!(cpu > 0.0, "CPU seconds {cpu}:\n{after}");
    let fds = series(&after, "process_open_fds");
    // stdin, stdout, stderr, the listeners, the store's files.
    assert!(fds >= 5.0, "open fds {fds}:\n{after}");
    assert!(series(&after, "process_max_fds") >= fds, "{after}");
    let started = series(&after, "process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // Started by this test: within the last few minutes, not in the future
    // (the kernel counts start time in 10 ms ticks).
    assert!(
        started > now - 600.0 && started <= now + 1.0,
        "start time {started}, now {now}"
    );

    drop(ledger);
    stop(serve).await;
}

// ---------------------------------------------------------------------------
// Logs

/// The byte that starts every ANSI escape sequence (colours, bold, italics).
const ESCAPE: char = '\x1b';

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_written_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    // The harness sends serve's stderr to a file.
    let serve = serve_dev(dir.path(), &[]).await;
    let stderr = stop(serve).await;
    assert!(stderr.contains("serving"), "no serving line:\n{stderr}");
    assert!(
        !stderr.contains(ESCAPE),
        "escape codes in a log file:\n{stderr:?}"
    );
}

#[test]
fn logs_written_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let mut child = command(
        BINARY,
        &[
            &"serve",
            &"--dev",
            &"--data-dir",
            &dir.path().join("data"),
            &"--listen",
            &format!("127.0.0.1:{port}"),
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("cannot run serve");
    let pipe = child.stderr.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + START_WAIT;
    let mut seen = Vec::new();
    while !seen.iter().any(|line: &String| line.contains("serving")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    seen.extend(received.try_iter());
    let text = seen.join("\n");
    assert!(
        text.contains("serving"),
        "serve did not log serving:\n{text}"
    );
    assert!(
        !text.contains(ESCAPE),
        "escape codes in a piped log:\n{text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_and_refused_submissions_are_logged_with_author_and_seq_or_reason() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_dev(dir.path(), &[]).await;
    let scenario = dev_scenario(dir.path());
    let mut ledger = ledger(&serve.url).await;
    let accepted = scenario.observation().narrative("logged").signed();
    let author = ceasefire_grpc::proto::Event::decode(accepted.payload.as_slice())
        .unwrap()
        .author;
    let seq = ledger
        .submit(accepted)
        .await
        .expect("submit refused")
        .into_inner()
        .seq;
    let mut forged = scenario.observation().narrative("forged").signed();
    forged.signatures[0].signature[0] ^= 1;
    let refusal = ledger
        .submit(forged)
        .await
        .expect_err("a forged signature was accepted");
    let reason = ceasefire_grpc::errors::error_info(&refusal)
        .expect("the refusal names no reason")
        .0;
    drop(ledger);
    let stderr = stop(serve).await;

    // A line at info with the outcome as its message and these fields
    // (the bootstrap entries of --dev are logged as accepted too).
    let logged = |outcome: &str, fields: &[String]| {
        stderr.lines().any(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            words.contains(&"INFO")
                && line.contains(&format!(": {outcome} "))
                && fields.iter().all(|field| words.contains(&field.as_str()))
        })
    };
    assert!(
        logged(
            "accepted",
            &[format!("author={author}"), format!("seq={seq}")]
        ),
        "no accepted line with author {author} and seq {seq}:\n{stderr}"
    );
    assert!(
        logged("refused", &[format!("author={author}")]) && stderr.contains(&reason),
        "no refused line with author {author} and reason {reason}:\n{stderr}"
    );
}

// ---------------------------------------------------------------------------
// Error messages

/// Runs the binary with `args` to its end; its output.
fn run(dir: &Path, args: &[&str]) -> ceasefire_testkit::harness::Output {
    let args: Vec<&dyn AsRef<std::ffi::OsStr>> = args
        .iter()
        .map(|arg| arg as &dyn AsRef<std::ffi::OsStr>)
        .collect();
    run_bounded(command(BINARY, &args), dir, COMMAND_WAIT)
}

/// The one line a failed command printed on stderr, checked to say no
/// part twice (the parts of a cause chain are joined with ": ").
fn one_error_line(output: &ceasefire_testkit::harness::Output) -> String {
    assert!(!output.status.success(), "it succeeded:\n{}", output.stderr);
    let lines: Vec<&str> = output
        .stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "not one line:\n{}", output.stderr);
    let parts: Vec<&str> = lines[0].split(": ").collect();
    for (index, part) in parts.iter().enumerate() {
        assert!(
            !parts[index + 1..].contains(part),
            "{part:?} is said twice in: {}",
            lines[0]
        );
    }
    lines[0].to_string()
}

#[test]
fn an_unreachable_server_is_named_once_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let closed = free_port().unwrap();
    let url = format!("http://127.0.0.1:{closed}");
    let line = one_error_line(&run(dir.path(), &["status", "--server", &url]));
    assert!(
        line.contains(&url) && line.contains("Connection refused"),
        "{line}"
    );
    // A name that does not resolve.
    let line = one_error_line(&run(
        dir.path(),
        &["status", "--server", "http://nowhere.invalid:50051"],
    ));
    assert!(line.contains("dns error"), "{line}");
}

// ---------------------------------------------------------------------------
// Addresses: host names to listen on, servers without a scheme

/// `serve --dev` on a fresh data directory under `dir` with `flags`, whose
/// readiness the caller checks (its gRPC URL may need TLS settings).
fn spawn_serve(dir: &Path, name: &str, flags: &[&str]) -> Serve {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"serve", &"--dev", &"--data-dir"];
    let data = dir.join(name);
    args.push(&data);
    for flag in flags {
        args.push(flag);
    }
    Serve::start(
        command(BINARY, &args),
        String::new(),
        dir.join(format!("{name}.stderr")),
    )
    .expect("cannot run serve")
}

/// Polls until a channel to `url` with `tls` opens (the server serves).
async fn wait_serving(serve: &Serve, url: &str, tls: &ClientTls) {
    let deadline = Instant::now() + START_WAIT;
    loop {
        if let Ok(Ok(_)) = tokio::time::timeout(CALL_WAIT, client::channel(url, tls)).await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not serve within {START_WAIT:?}:\n{}",
            serve.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_listens_on_a_host_name_and_clients_take_host_and_port() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let metrics_port = free_port().unwrap();
    let listen = format!("localhost:{port}");
    let metrics_listen = format!("localhost:{metrics_port}");
    let serve = spawn_serve(
        dir.path(),
        "data",
        &["--listen", &listen, "--metrics-listen", &metrics_listen],
    );
    wait_serving(&serve, &listen, &ClientTls::default()).await;
    // `localhost:PORT`, no scheme: plaintext.
    let output = run(dir.path(), &["status", "--server", &listen]);
    assert!(output.status.success(), "{}", output.stderr);
    assert!(output.stdout.contains("as of entry"), "{}", output.stdout);
    // The metrics listen on the name's first address, as the server's port.
    let metrics = std::net::ToSocketAddrs::to_socket_addrs(&metrics_listen)
        .unwrap()
        .next()
        .unwrap();
    assert!(scrape(metrics).await.contains("ceasefire_ledger_tree_size"));
    stop(serve).await;

    // A name that does not resolve: one line naming it, nothing made.
    let output = run(
        dir.path(),
        &[
            "serve",
            "--dev",
            "--data-dir",
            dir.path().join("never").to_str().unwrap(),
            "--listen",
            "nowhere.invalid:50051",
        ],
    );
    assert!(!output.status.success());
    assert!(
        output
            .stderr
            .contains("cannot listen on \"nowhere.invalid:50051\""),
        "{}",
        output.stderr
    );
    assert!(!dir.path().join("never").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_a_scheme_is_reached_over_tls_when_a_ca_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(&dir.path().join("pki"));
    let listen = format!("127.0.0.1:{}", free_port().unwrap());
    let serve = spawn_serve(
        dir.path(),
        "data",
        &[
            "--listen",
            &listen,
            "--tls-cert",
            pki.server_cert.to_str().unwrap(),
            "--tls-key",
            pki.server_key.to_str().unwrap(),
        ],
    );
    let trusting = ClientTls {
        ca: Some(pki.ca.clone()),
        ..ClientTls::default()
    };
    wait_serving(&serve, &listen, &trusting).await;
    assert!(client::server_url(&listen, &trusting).starts_with("https://"));
    let output = run(
        dir.path(),
        &[
            "status",
            "--server",
            &listen,
            "--ca",
            pki.ca.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{}", output.stderr);
    assert!(output.stdout.contains("as of entry"), "{}", output.stdout);
    stop(serve).await;
}

// ---------------------------------------------------------------------------
// TLS mismatches

fn borrowed(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

/// PEM files of a CA, a server certificate it signed for "localhost" and
/// 127.0.0.1, a client certificate it signed, and an unrelated CA with a
/// client certificate of its own.
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
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// An end-entity certificate and its key (PEM), signed by `issuer`.
fn new_leaf(
    names: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'static, KeyPair>,
) -> (String, String) {
    let mut params = CertificateParams::new(names).unwrap();
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
        vec!["localhost".into(), "127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
        &ca,
    );
    let (client_cert, client_key) = new_leaf(Vec::new(), ExtendedKeyUsagePurpose::ClientAuth, &ca);
    let (other_ca_pem, other_ca) = new_ca("unrelated CA");
    let (other_client_cert, other_client_key) =
        new_leaf(Vec::new(), ExtendedKeyUsagePurpose::ClientAuth, &other_ca);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tls_mismatch_is_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(&dir.path().join("pki"));
    let path = |path: &PathBuf| path.to_str().unwrap().to_string();
    let (ca, other_ca) = (path(&pki.ca), path(&pki.other_ca));
    let (cert, key) = (path(&pki.client_cert), path(&pki.client_key));
    let (other_cert, other_key) = (path(&pki.other_client_cert), path(&pki.other_client_key));
    let tls_port = free_port().unwrap();
    let mutual_port = free_port().unwrap();
    let plain_port = free_port().unwrap();
    let tls_flags = |port: u16| {
        vec![
            "--listen".to_string(),
            format!("127.0.0.1:{port}"),
            "--tls-cert".to_string(),
            path(&pki.server_cert),
            "--tls-key".to_string(),
            path(&pki.server_key),
        ]
    };
    let tls_only = tls_flags(tls_port);
    let tls_server = spawn_serve(dir.path(), "tls", &borrowed(&tls_only));
    let mut mutual = tls_flags(mutual_port);
    mutual.extend(["--tls-client-ca".to_string(), ca.clone()]);
    let mutual_server = spawn_serve(dir.path(), "mutual", &borrowed(&mutual));
    let plain_listen = format!("127.0.0.1:{plain_port}");
    let plain_server = spawn_serve(dir.path(), "plain", &["--listen", &plain_listen]);
    let trusting = ClientTls {
        ca: Some(pki.ca.clone()),
        ..ClientTls::default()
    };
    let with_certificate = ClientTls {
        cert: Some(pki.client_cert.clone()),
        cert_key: Some(pki.client_key.clone()),
        ..trusting.clone()
    };
    let tls_url = format!("https://localhost:{tls_port}");
    let mutual_url = format!("https://localhost:{mutual_port}");
    wait_serving(&tls_server, &tls_url, &trusting).await;
    wait_serving(&mutual_server, &mutual_url, &with_certificate).await;
    wait_serving(&plain_server, &plain_listen, &ClientTls::default()).await;

    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![format!("http://localhost:{tls_port}")],
            "the server speaks TLS: use https://",
        ),
        (
            vec![format!("localhost:{tls_port}")],
            "the server speaks TLS: use https://",
        ),
        (
            vec![format!("https://localhost:{plain_port}"), "--ca".into(), ca.clone()],
            "the server speaks plaintext, not TLS: use http://",
        ),
        (
            vec![mutual_url.clone(), "--ca".into(), ca.clone()],
            "requires a client certificate (mutual TLS) does: give --cert FILE and --cert-key FILE",
        ),
        (
            vec![
                mutual_url.clone(),
                "--ca".into(),
                ca.clone(),
                "--cert".into(),
                other_cert,
                "--cert-key".into(),
                other_key,
            ],
            "the server refused this client's certificate (--cert)",
        ),
        (
            vec![tls_url.clone(), "--ca".into(), other_ca.clone()],
            "the server's certificate is not signed by the CA in",
        ),
        (
            vec![tls_url.clone()],
            "not signed by a public CA this client trusts: give the CA that signed it with --ca FILE",
        ),
    ];
    for (server, expected) in cases {
        let mut args = vec!["status", "--server"];
        args.extend(server.iter().map(String::as_str));
        let line = one_error_line(&run(dir.path(), &args));
        assert!(
            line.contains(expected),
            "status --server {}: expected {expected:?} in: {line}",
            server.join(" ")
        );
    }
    // And the right settings are served.
    let output = run(
        dir.path(),
        &[
            "status",
            "--server",
            &mutual_url,
            "--ca",
            &ca,
            "--cert",
            &cert,
            "--cert-key",
            &key,
        ],
    );
    assert!(output.status.success(), "{}", output.stderr);

    for server in [tls_server, mutual_server, plain_server] {
        stop(server).await;
    }
}

// ---------------------------------------------------------------------------
// The config file: a key for every flag, spelled as the flag

/// Every long flag `serve --help` shows, from clap's own description of
/// the command line (so a new flag cannot be missed): serve's own and the
/// global ones, but not --help, --version and --config itself.
fn serve_flags() -> std::collections::BTreeSet<String> {
    use clap::CommandFactory as _;
    let cli = ceasefire_ledger::cli::Cli::command();
    let serve = cli.find_subcommand("serve").expect("no serve subcommand");
    let global = cli.get_arguments().filter(|arg| arg.is_global_set());
    serve
        .get_arguments()
        .chain(global)
        .filter_map(|arg| arg.get_long())
        .filter(|long| !["help", "version", "config"].contains(long))
        .map(str::to_string)
        .collect()
}

/// The TOML literal string of a path.
fn toml_path(path: &Path) -> String {
    let text = path.to_str().unwrap();
    assert!(!text.contains('\''));
    format!("'{text}'")
}

#[test]
fn every_serve_flag_is_a_key_of_the_example_config() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/ceasefire-ledger.toml"
    ))
    .unwrap();
    let keys: Vec<&str> = example
        .lines()
        .filter_map(|line| {
            let line = line.trim_start_matches('#').trim();
            let (key, _) = line.split_once(" = ")?;
            (!key.contains(' ')).then_some(key)
        })
        .collect();
    let flags = serve_flags();
    assert!(
        flags.contains("log-format") && flags.contains("data-dir"),
        "{flags:?}"
    );
    for flag in &flags {
        assert!(
            keys.contains(&flag.as_str()),
            "--{flag} has no key in deploy/ceasefire-ledger.toml (keys: {keys:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_with_every_key_is_read_and_each_key_takes_effect() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(&dir.path().join("pki"));
    // A ledger's keys and its signed genesis, made as `init` and `sign`
    // would (the dev scenario's).
    let keys = dev::ensure_dev_keys(&dir.path().join("keys")).unwrap();
    let genesis_event = dev::bootstrap_events(&keys).remove(0);
    let genesis = dir.path().join("genesis.json");
    ceasefire_ledger::signed_file::SignedEventFile {
        event: ceasefire_grpc::proto::Event::decode(genesis_event.payload.as_slice()).unwrap(),
        signed: genesis_event,
    }
    .save(&genesis)
    .unwrap();
    let data = dir.path().join("data");
    let tiles = dir.path().join("tiles");
    let port = free_port().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    // Every key, spelled as its flag; a flag without a line here fails.
    let lines = [
        ("data-dir", toml_path(&data)),
        ("listen", format!("'localhost:{port}'")),
        ("dev", "false".to_string()),
        ("genesis", toml_path(&genesis)),
        (
            "operator-key",
            toml_path(&dev::dev_keys_dir(&dir.path().join("keys")).join("operator.key")),
        ),
        ("max-batch", "7".to_string()),
        ("batch-delay-ms", "3".to_string()),
        ("startup-check", "'head'".to_string()),
        ("max-payload-bytes", "1000".to_string()),
        ("metrics-listen", format!("'{metrics}'")),
        ("tls-cert", toml_path(&pki.server_cert)),
        ("tls-key", toml_path(&pki.server_key)),
        ("tls-client-ca", toml_path(&pki.ca)),
        ("tiles-dir", toml_path(&tiles)),
        ("log-format", "'json'".to_string()),
    ];
    let keys_given: std::collections::BTreeSet<String> =
        lines.iter().map(|(key, _)| key.to_string()).collect();
    assert_eq!(
        keys_given,
        serve_flags(),
        "the keys here and the flags differ"
    );
    let config = dir.path().join("ceasefire-ledger.toml");
    let text: String = lines
        .iter()
        .map(|(key, value)| format!("{key} = {value}\n"))
        .collect();
    std::fs::write(&config, text).unwrap();

    let serve = Serve::start(
        command(BINARY, &[&"serve", &"--config", &config]),
        String::new(),
        dir.path().join("serve.stderr"),
    )
    .expect("cannot run serve");
    // listen, tls-cert, tls-key, tls-client-ca: served by name, over
    // mutual TLS only.
    let url = format!("https://localhost:{port}");
    let mutual = ClientTls {
        ca: Some(pki.ca.clone()),
        cert: Some(pki.client_cert.clone()),
        cert_key: Some(pki.client_key.clone()),
    };
    wait_serving(&serve, &url, &mutual).await;
    let without_certificate = ClientTls {
        ca: Some(pki.ca.clone()),
        ..ClientTls::default()
    };
    assert!(client::channel(&url, &without_certificate).await.is_err());
    // data-dir, genesis, operator-key: a ledger of the genesis alone.
    assert!(
        data.read_dir().unwrap().next().is_some(),
        "the ledger is not in the data-dir"
    );
    let mut ledger = client::ledger_client(client::channel(&url, &mutual).await.unwrap());
    let checkpoint = ledger
        .get_checkpoint(ceasefire_grpc::proto::GetCheckpointRequest::default())
        .await
        .expect("GetCheckpoint failed")
        .into_inner();
    assert_eq!(checkpoint.tree_size, 1);
    // max-payload-bytes: a payload over 1000 bytes is refused naming it.
    let big = dev::scenario(&keys)
        .observation()
        .narrative(&"x".repeat(1500))
        .signed();
    let refused = ledger
        .submit(big)
        .await
        .expect_err("a payload over the cap");
    assert!(
        refused.message().contains("over the limit of 1000"),
        "{refused:?}"
    );
    drop(ledger);
    // metrics-listen.
    assert!(scrape(metrics)
        .await
        .contains("ceasefire_ledger_tree_size 1"));
    // tiles-dir: the mirror's checkpoint (published as batches commit).
    let deadline = Instant::now() + CALL_WAIT;
    while !tiles.join("checkpoint").exists() {
        assert!(
            Instant::now() < deadline,
            "no tiles mirror in {}",
            tiles.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stderr = stop(serve).await;
    // log-format: JSON lines only; max-batch, batch-delay-ms, startup-check:
    // in the settings line.
    let mut settings = None;
    for line in stderr.lines().filter(|line| !line.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"));
        if value["fields"]["message"] == "settings" {
            settings = Some(value["fields"].clone());
        }
    }
    let settings = settings.unwrap_or_else(|| panic!("no settings line:\n{stderr}"));
    assert_eq!(settings["max_batch"], 7, "{settings}");
    assert_eq!(settings["batch_delay_ms"], 3, "{settings}");
    assert_eq!(settings["startup_check"], "Head", "{settings}");
    assert_eq!(settings["max_payload_bytes"], 1000, "{settings}");
    assert_eq!(settings["mutual_tls"], true, "{settings}");
}

#[test]
fn an_old_spelling_of_a_key_is_refused_naming_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("old.toml");
    std::fs::write(&config, "listen = '127.0.0.1:1'\nlog_format = 'json'\n").unwrap();
    let line = one_error_line(&run(
        dir.path(),
        &["serve", "--dev", "--config", config.to_str().unwrap()],
    ));
    assert!(
        line.contains("log_format") && line.contains("line 2"),
        "{line}"
    );
}

// ---------------------------------------------------------------------------
// The README's certificate recipe

/// The shell block after `<!-- tls-recipe -->` in README.md, as it is.
fn readme_tls_recipe() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let after = readme
        .split_once("<!-- tls-recipe -->")
        .expect("README.md has no tls-recipe block")
        .1;
    let block = after
        .trim_start()
        .strip_prefix("```sh\n")
        .expect("the tls-recipe marker is not followed by a sh block");
    block
        .split_once("\n```")
        .expect("the tls-recipe block does not end")
        .0
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_certificate_recipe_makes_a_working_mutual_tls_setup() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("openssl is not installed: the README's recipe is not run");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir(&pki).unwrap();
    let made = std::process::Command::new("sh")
        .args(["-e", "-c", &readme_tls_recipe()])
        .current_dir(&pki)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "the recipe failed:\n{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let file = |name: &str| pki.join(name).to_str().unwrap().to_string();
    let listen = format!("localhost:{}", free_port().unwrap());
    let serve = spawn_serve(
        dir.path(),
        "data",
        &[
            "--listen",
            &listen,
            "--tls-cert",
            &file("server.pem"),
            "--tls-key",
            &file("server.key"),
            "--tls-client-ca",
            &file("ca.pem"),
        ],
    );
    let client_tls = ClientTls {
        ca: Some(pki.join("ca.pem")),
        cert: Some(pki.join("client.pem")),
        cert_key: Some(pki.join("client.key")),
    };
    wait_serving(&serve, &listen, &client_tls).await;
    let output = run(
        dir.path(),
        &[
            "status",
            "--server",
            &listen,
            "--ca",
            &file("ca.pem"),
            "--cert",
            &file("client.pem"),
            "--cert-key",
            &file("client.key"),
        ],
    );
    assert!(output.status.success(), "{}", output.stderr);
    assert!(output.stdout.contains("as of entry"), "{}", output.stdout);
    // The same client without its certificate is refused, naming why.
    let line = one_error_line(&run(
        dir.path(),
        &["status", "--server", &listen, "--ca", &file("ca.pem")],
    ));
    assert!(line.contains("requires a client certificate"), "{line}");
    stop(serve).await;
}
