mod common;
use ceasefire_ledger::client::{now_timestamp, random_nonce, sign};
use ceasefire_ledger::node::{self, NodeConfig};
use ceasefire_ledger::proto::{event::Body, Dispute, Event, Genesis, Party, RegisterParty, Role};
use ed25519_dalek::SigningKey;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}
fn public(key: &SigningKey) -> Vec<u8> {
    key.verifying_key().to_bytes().to_vec()
}
fn event(author: &str, body: Body) -> Event {
    Event {
        agreement_id: "accord".into(),
        author: author.into(),
        created_at: Some(now_timestamp()),
        nonce: random_nonce(),
        body: Some(body),
    }
}
fn genesis(keys: &[SigningKey], op: &SigningKey, author: &str) -> Event {
    event(
        author,
        Body::Genesis(Genesis {
            origin: "x.example/accord".into(),
            title: "t".into(),
            signatories: keys
                .iter()
                .enumerate()
                .map(|(i, k)| Party {
                    party_id: format!("s{i}"),
                    name: "n".into(),
                    role: Role::Signatory as i32,
                    public_keys: vec![public(k)],
                })
                .collect(),
            threshold: 2,
            operator_public_key: public(op),
            max_clock_skew_seconds: 0,
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe() {
    let op = key(1);
    let sigs = [key(2), key(3), key(4)];
    let dir = tempfile::tempdir().unwrap();
    let cfg = |b| NodeConfig {
        bootstrap: b,
        ..NodeConfig::new(
            dir.path().to_path_buf(),
            "127.0.0.1:0".parse().unwrap(),
            op.clone(),
        )
    };
    let g1 = sign(&genesis(&sigs, &op, "s0"), &[&sigs[0]]);
    match node::start(cfg(vec![g1])).await {
        Ok(_) => println!("PROBE below-threshold genesis ACCEPTED"),
        Err(e) => println!("PROBE below-threshold genesis refused: {e:#}"),
    }
    let t = std::time::Instant::now();
    loop {
        match ceasefire_ledger::storage::Store::open(dir.path()) {
            Ok(s) => {
                drop(s);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
        }
    }
    println!("PROBE store lock released after {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let g2 = sign(&genesis(&sigs, &op, "nobody"), &[&sigs[0], &sigs[1]]);
    match node::start(cfg(vec![g2])).await {
        Ok(_) => println!("PROBE non-signatory author ACCEPTED"),
        Err(e) => println!("PROBE nonsig author refused: {e:#}"),
    }
    loop {
        match ceasefire_ledger::storage::Store::open(dir.path()) {
            Ok(s) => {
                drop(s);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
        }
    }
    println!("PROBE store lock released after {:?}", t.elapsed());
    let g3 = sign(&genesis(&sigs, &op, "s2"), &[&sigs[0], &sigs[1]]);
    let node = match node::start(cfg(vec![g3])).await {
        Ok(n) => {
            println!("PROBE genesis by non-signing s2 accepted");
            n
        }
        Err(e) => panic!("PROBE good genesis refused after failures: {e:#}"),
    };
    let mut client = common::connect(&node).await;
    // governance authored by s2, signed by s0 and s1
    let m = key(9);
    let r = client
        .submit(sign(
            &event(
                "s2",
                Body::RegisterParty(RegisterParty {
                    party: Some(Party {
                        party_id: "m".into(),
                        name: "m".into(),
                        role: Role::Monitor as i32,
                        public_keys: vec![public(&m)],
                    }),
                }),
            ),
            &[&sigs[0], &sigs[1]],
        ))
        .await;
    println!(
        "PROBE gov authored by non-signer: {:?}",
        r.map(|r| r.into_inner().seq)
            .map_err(|s| (s.code(), s.message().to_string()))
    );
    // register a new signatory s3 via 2 sigs
    let s3 = key(10);
    let r = client
        .submit(sign(
            &event(
                "s0",
                Body::RegisterParty(RegisterParty {
                    party: Some(Party {
                        party_id: "s3".into(),
                        name: "s3".into(),
                        role: Role::Signatory as i32,
                        public_keys: vec![public(&s3)],
                    }),
                }),
            ),
            &[&sigs[0], &sigs[1]],
        ))
        .await;
    println!(
        "PROBE register new signatory: {:?}",
        r.map(|r| r.into_inner().seq)
            .map_err(|s| (s.code(), s.message().to_string()))
    );
    // dispute cosigned by two signatories
    let r = client
        .submit(sign(
            &event(
                "s0",
                Body::Dispute(Dispute {
                    target_seq: 0,
                    target_leaf_hash: vec![0; 32],
                    reason: "r".into(),
                }),
            ),
            &[&sigs[0], &sigs[1]],
        ))
        .await;
    println!(
        "PROBE cosigned dispute: {:?}",
        r.map(|r| r.into_inner().seq)
            .map_err(|s| (s.code(), s.message().to_string()))
    );
    // huge nonce 65
    let mut e = event("s0", Body::RegisterParty(RegisterParty { party: None }));
    e.nonce = vec![1; 65];
    let r = client.submit(sign(&e, &[&sigs[0], &sigs[1]])).await;
    println!(
        "PROBE nonce 65: {:?}",
        r.map(|r| r.into_inner().seq)
            .map_err(|s| (s.code(), s.message().to_string()))
    );
    node.shutdown().await.unwrap();
}
