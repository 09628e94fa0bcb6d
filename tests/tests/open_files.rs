//! Both binaries raise their soft limit on open files to the hard one: started
//! under the 1,024 a container often gets (here 256), a data plane still holds
//! more connections at once than that, and so could a control plane's streams.
//!
//! One test in its own process: it lowers the limit of the process that
//! starts the gateway, which its children inherit.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rlimit::Resource;
use sluice_tests::gateway::{Gateway, chat_body};
use tokio::net::TcpStream;

const LOW_SOFT_LIMIT: u64 = 256;
const CONNECTIONS: usize = 400;

/// `(soft, hard)` of process `pid`.
fn open_files_limit(pid: u32) -> (u64, u64) {
    let (mut soft, mut hard) = (0, 0);
    let pid = i32::try_from(pid).expect("a pid");
    rlimit::prlimit(pid, Resource::NOFILE, None, Some((&mut soft, &mut hard))).expect("prlimit");
    (soft, hard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_low_open_files_limit_is_raised_so_connections_are_not_refused() {
    let (soft, hard) = Resource::NOFILE.get().expect("getrlimit");
    assert!(
        hard > CONNECTIONS as u64 * 3,
        "this machine's hard limit ({hard}) is too low for the test"
    );
    Resource::NOFILE
        .set(LOW_SOFT_LIMIT, hard)
        .expect("lowering the soft limit");
    let (gw, key) = Gateway::serving("gpt-4o", "gpt-4o-2024-08-06").await;
    // The test itself needs more than the low limit for its own clients.
    Resource::NOFILE
        .set(soft, hard)
        .expect("restoring the limit");

    for (what, pid) in [
        ("data plane", gw.planes[0].pid()),
        ("control plane", gw.cp.pid()),
    ] {
        let (soft, hard) = open_files_limit(pid.expect("running"));
        assert_eq!(soft, hard, "the {what}'s soft limit was not raised");
    }

    // Every connection is opened, and kept, before any request is sent: the
    // data plane holds them all at once.
    let mut senders = Vec::new();
    for _ in 0..CONNECTIONS {
        let stream = TcpStream::connect(("127.0.0.1", gw.planes[0].port()))
            .await
            .expect("connects");
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(connection);
        senders.push(sender);
    }
    let body = chat_body("gpt-4o").to_string();
    let answers = futures::future::join_all(senders.iter_mut().map(|sender| {
        let request = hyper::Request::post("/v1/chat/completions")
            .header("host", "localhost")
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.clone())))
            .expect("request");
        async move {
            let answer = tokio::time::timeout(Duration::from_secs(20), async {
                let answer = sender.send_request(request).await?;
                let status = answer.status().as_u16();
                answer.into_body().collect().await?;
                Ok::<_, hyper::Error>(status)
            })
            .await;
            match answer {
                Ok(Ok(status)) => status.to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer within 20 s".to_owned(),
            }
        }
    }))
    .await;
    let answered = answers.iter().filter(|a| *a == "200").count();
    assert_eq!(
        answered,
        CONNECTIONS,
        "answers: {:?}",
        answers
            .iter()
            .filter(|a| *a != "200")
            .take(3)
            .collect::<Vec<_>>()
    );
    drop(senders);
}
