//! The bad-input corpus (`chaos::bad_input`) against the real stack: every malformed or hostile
//! request gets its exact status and error code from the gateway, nothing crashes, only what the
//! door lets through reaches the log; the same bodies produced straight into Kafka each become a
//! decision with the same status, and a valid record after them in every partition is still
//! decided (nothing stalls). Connection-level abuse (slow bodies, many idle connections) does
//! not keep other clients from being served.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chaos::bad_input::{BODY_LIMIT, Case, DISABLED_TENANT, SECRET, TENANT, corpus};
use chaos::checker::status_of;
use chaos::deployment::{Deployment, TestTenant};
use chaos::process::FlkProcess;
use chaos::records::signed_record;
use chaos::wait_until;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn deployment() -> Deployment {
    let mut disabled = TestTenant::signed(DISABLED_TENANT, SECRET);
    disabled.enabled = false;
    let mut deployment =
        Deployment::new(vec![TestTenant::signed(TENANT, SECRET), disabled]).unwrap();
    deployment.max_body_bytes = BODY_LIMIT;
    deployment
}

/// What a case got, when it is not what it must get.
fn mismatch(case: &Case, status: u16, body: &Value) -> Option<String> {
    let error_ok = case
        .error_opt
        .is_none_or(|code| body["error"].as_str() == Some(code));
    let text = body["message"]
        .as_str()
        .or_else(|| body["reason"].as_str())
        .unwrap_or_default();
    let says_ok = text.contains(case.says);
    (status != case.status || !error_ok || !says_ok).then(|| {
        let shown: String = body.to_string().chars().take(300).collect();
        format!(
            "{}: want {} {:?} saying {:?}, got {status} {shown}",
            case.name, case.status, case.error_opt, case.says
        )
    })
}

/// Sends only a request head declaring `length` bytes and reads the answer (status, JSON body).
async fn send_head_only(url: &str, length: usize) -> (u16, Value) {
    let address = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /v1/pcs/submit HTTP/1.1\r\nHost: {address}\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .expect("an answer without the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_default();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn send(client: &reqwest::Client, url: &str, case: &Case) -> (u16, Value) {
    if let Some(length) = case.declared_only_opt {
        return send_head_only(url, length).await;
    }
    let mut request = client
        .post(format!("{url}/v1/pcs/submit"))
        .body(case.body.clone());
    if let Some(tenant) = &case.tenant_opt {
        request = request.header(
            "X-Tenant-Id",
            reqwest::header::HeaderValue::from_bytes(tenant).unwrap(),
        );
    }
    for (name, value) in &case.headers {
        request = request.header(*name, value);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|error| panic!("{}: {error:?}", case.name));
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_request_gets_its_exact_answer_and_only_the_door_keeps_bodies_out() {
    let deployment = deployment();
    let mut flk = FlkProcess::start(&deployment, "gateway,shard,projector", "corpus").unwrap();
    let client = reqwest::Client::new();
    let cases = corpus(500_000);
    assert!(cases.len() >= 80, "the corpus has {} cases", cases.len());
    let mut wrong = Vec::new();
    let mut logged = 0i64;
    for case in &cases {
        let (status, body) = send(&client, flk.url(), case).await;
        if let Some(problem) = mismatch(case, status, &body) {
            wrong.push(problem);
        }
        if ![403, 408, 413, 415, 429].contains(&status) {
            logged += 1;
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases answered wrongly:\n{}\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n"),
        flk.log()
    );
    assert!(flk.is_running(), "the gateway survived the corpus");
    let after = signed_record(499_999, SECRET);
    let (status, _) = send(
        &client,
        flk.url(),
        &Case {
            name: "a valid record afterwards".into(),
            tenant_opt: None,
            headers: Vec::new(),
            body: serde_json::to_vec(&after).unwrap(),
            status: 200,
            error_opt: None,
            says: "",
            in_kafka: true,
            declared_only_opt: None,
        },
    )
    .await;
    assert_eq!(status, 200);
    logged += 1;
    // I1 with the door: every answered body but the 403, 408, 413, 415 and 429 ones is in the log, and the
    // audit log accounts for each.
    assert_eq!(
        chaos::history::wal_record_count(&deployment).unwrap(),
        logged
    );
    let report = chaos::history::check(&deployment, &[]).await.unwrap();
    assert_eq!(report.audit_entries, logged);
    println!(
        "bad input over HTTP: {} cases, every one answered as expected; {logged} reached the log",
        cases.len()
    );
    drop(flk);
    deployment.cleanup().await;
}

/// Produces `body` to `partition` with the tenant header as given; `(partition, offset)`.
async fn produce(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    body: &[u8],
    tenant_opt: Option<&[u8]>,
) -> (i32, i64) {
    let mut headers = OwnedHeaders::new();
    if let Some(tenant) = tenant_opt {
        headers = headers.insert(Header {
            key: "flk-tenant",
            value: Some(tenant),
        });
    }
    let record = FutureRecord::<(), [u8]>::to(topic)
        .partition(partition)
        .payload(body)
        .headers(headers);
    let delivered = producer
        .send(record, Duration::from_secs(30))
        .await
        .map_err(|(error, _)| error)
        .unwrap();
    (delivered.partition, delivered.offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_straight_into_kafka_becomes_decisions_and_stalls_no_partition() {
    let deployment = deployment();
    let flk = FlkProcess::start(&deployment, "shard,projector", "corpus-kafka").unwrap();
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &deployment.stack.brokers)
        .set("enable.idempotence", "true")
        .set("message.max.bytes", "10000000")
        .create()
        .unwrap();
    let topic = deployment.submissions_topic();
    let cases: Vec<Case> = corpus(600_000)
        .into_iter()
        .filter(|case| case.in_kafka)
        .collect();
    let mut at = BTreeMap::new();
    for (index, case) in cases.iter().enumerate() {
        let partition = index as i32 % deployment.partitions;
        let delivered = produce(
            &producer,
            &topic,
            partition,
            &case.body,
            case.tenant_opt.as_deref(),
        )
        .await;
        at.insert(delivered, case);
    }
    // After the corpus, one valid record in every partition: each must still be decided.
    let mut sentinels = Vec::new();
    for partition in 0..deployment.partitions {
        let body = serde_json::to_vec(&signed_record(700_000 + partition as u64, SECRET)).unwrap();
        sentinels.push(produce(&producer, &topic, partition, &body, None).await);
    }
    let client = deployment.postgres().await.unwrap();
    let decided = || async {
        client
            .query(
                "SELECT source_partition, source_offset, outcome_code FROM audit_log \
                 WHERE source_topic = $1",
                &[&topic],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| ((row.get(0), row.get(1)), status_of(row.get(2))))
            .collect::<BTreeMap<(i32, i64), u16>>()
    };
    let all = at.len() + sentinels.len();
    let waited = wait_until(
        "a decision for every corpus record and every sentinel",
        Duration::from_secs(120),
        || async { (decided().await.len() == all).then_some(()) },
    )
    .await;
    let statuses = decided().await;
    if let Err(error) = waited {
        let missing: Vec<String> = at
            .iter()
            .filter(|(coordinates, _)| !statuses.contains_key(coordinates))
            .map(|(coordinates, case)| format!("{coordinates:?} {}", case.name))
            .chain(
                sentinels
                    .iter()
                    .filter(|coordinates| !statuses.contains_key(coordinates))
                    .map(|coordinates| format!("{coordinates:?} sentinel")),
            )
            .collect();
        panic!(
            "{error}; not decided:\n{}\n{}",
            missing.join("\n"),
            flk.log()
        );
    }
    for sentinel in &sentinels {
        assert_eq!(statuses.get(sentinel), Some(&200), "sentinel {sentinel:?}");
    }
    let wrong: Vec<String> = at
        .iter()
        .filter_map(|(coordinates, case)| {
            let status = statuses.get(coordinates).copied().unwrap_or_default();
            (status != case.status)
                .then(|| format!("{}: want {}, decided {status}", case.name, case.status))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} records decided wrongly:\n{}",
        wrong.len(),
        at.len(),
        wrong.join("\n")
    );
    println!(
        "bad input into Kafka: {} records, each decided with the status the gateway answers; \
         {} sentinels decided after them",
        at.len(),
        sentinels.len()
    );
    drop(flk);
    deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_and_idle_connections_do_not_keep_others_from_being_served() {
    let deployment = deployment();
    let flk = FlkProcess::start(&deployment, "gateway,shard,projector", "connections").unwrap();
    let address = flk.url().trim_start_matches("http://").to_owned();
    // Many idle connections, and slow bodies that trickle one byte at a time.
    let mut idle = Vec::new();
    for _ in 0..500 {
        idle.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream
            .write_all(
                format!(
                    "POST /v1/pcs/submit HTTP/1.1\r\nHost: {address}\r\nContent-Length: 1000\r\n\r\n{{"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        slow.push(stream);
    }
    let client = reqwest::Client::new();
    let started = Instant::now();
    let record = signed_record(800_000, SECRET);
    let answer = chaos::http::submit_json(&client, flk.url(), None, &record)
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    println!(
        "a valid record beside 500 idle connections and 20 slow bodies: answered in {} ms",
        started.elapsed().as_millis()
    );
    // A body that never completes is answered 408 once the body deadline passes, and the
    // connection is closed; its bytes never reach the log.
    let mut stream = slow.pop().unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
        .await
        .expect("the gateway closes a slow body's connection")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert_eq!(chaos::history::wal_record_count(&deployment).unwrap(), 1);
    drop(idle);
    drop(slow);
    drop(flk);
    deployment.cleanup().await;
}
