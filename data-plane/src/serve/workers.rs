//! The request workers: one thread per core, each running its own
//! single-threaded runtime and its own upstream connection pool, as in
//! Envoy. One acceptor hands new client connections to the workers in turn,
//! so connections are spread evenly however they arrive (a burst of a pool's
//! connections at start-up included); a connection then stays on its
//! worker.
//!
//! Why not one work-stealing runtime: reading a request's body in the
//! handler wakes the connection's own task (hyper hands the body over from
//! the same task), and a multi-threaded tokio runtime answers every such
//! wake by waking another worker to steal it. At moderate load that was
//! ~1.8 futex calls and a cross-core hop per request, and ~40 µs of added
//! median latency. Here the request path shares with other threads only the
//! config (lock-free), the metrics (atomics behind read-locked label maps)
//! and the log buffer (one short lock per line); no task moves and no other
//! thread is woken.
//!
//! The acceptor, the config stream, the snapshot cache and signals run on
//! the binary's main runtime.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::http::{self, Accepting, HttpState};

/// A connection on its way to a worker.
type Handed = (std::net::TcpStream, SocketAddr);

/// How many workers to run when not told: the cores this process may use
/// (its CPU affinity and cgroup quota included).
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Running workers.
pub struct Workers {
    threads: Vec<JoinHandle<()>>,
    acceptor: tokio::task::JoinHandle<()>,
    ended: mpsc::UnboundedReceiver<usize>,
}

/// Why workers could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("starting worker {worker}: {source}")]
    Thread {
        worker: usize,
        source: std::io::Error,
    },
    #[error("worker {worker}'s upstream client: {source}")]
    State {
        worker: usize,
        source: crate::upstream::InitError,
    },
}

impl Workers {
    /// Starts one worker per state from `states` (each with its own
    /// upstream client) and an acceptor on `listener`, on the current
    /// runtime, handing them connections until `stopped` turns true; each
    /// then drains its requests as [`http::serve`] does.
    pub fn start(
        listener: TcpListener,
        states: impl IntoIterator<Item = Result<HttpState, crate::upstream::InitError>>,
        stopped: watch::Receiver<bool>,
    ) -> Result<Workers, StartError> {
        let (ended_tx, ended) = mpsc::unbounded_channel();
        let mut threads = Vec::new();
        let mut inboxes = Vec::new();
        for (worker, state) in states.into_iter().enumerate() {
            let state = state.map_err(|source| StartError::State { worker, source })?;
            let (inbox, handed) = mpsc::unbounded_channel::<Handed>();
            let stop = until(stopped.clone());
            let thread = spawn(worker, &ended_tx, move || {
                run(worker, Accepting::Handed(handed), state, stop)
            })
            .map_err(|source| StartError::Thread { worker, source })?;
            threads.push(thread);
            inboxes.push(inbox);
        }
        let acceptor = tokio::spawn(accept(listener, inboxes, until(stopped)));
        Ok(Workers {
            threads,
            acceptor,
            ended,
        })
    }

    /// How many are running.
    pub fn count(&self) -> usize {
        self.threads.len()
    }

    /// Resolves when a worker has stopped (after a stop, or because it
    /// failed), with its number.
    pub async fn one_ended(&mut self) -> Option<usize> {
        self.ended.recv().await
    }

    /// Waits for every worker to finish draining.
    pub async fn join(self) {
        let _ = self.acceptor.await;
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

/// Accepts connections and hands them to the workers in turn until `stop`;
/// dropping the inboxes then tells every worker no more will come.
async fn accept(
    listener: TcpListener,
    inboxes: Vec<mpsc::UnboundedSender<Handed>>,
    stop: impl Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    let mut next = 0;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = http::accept(&listener) => accepted,
            () = &mut stop => return,
        };
        let Ok(mut stream) = stream.into_std() else {
            continue;
        };
        // The next worker still running takes it.
        let mut tries = 0;
        while let Err(mpsc::error::SendError(back)) = inboxes[next].send((stream, peer)) {
            (stream, _) = back;
            next = (next + 1) % inboxes.len();
            tries += 1;
            if tries == inboxes.len() {
                return;
            }
        }
        next = (next + 1) % inboxes.len();
    }
}

/// Runs `work` on worker `worker`'s thread; its end, however it ends (a
/// panic included), is sent on `ended`.
fn spawn(
    worker: usize,
    ended: &mpsc::UnboundedSender<usize>,
    work: impl FnOnce() + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    let ended = Ended {
        worker,
        tx: ended.clone(),
    };
    std::thread::Builder::new()
        .name(format!("sluice-worker-{worker}"))
        .spawn(move || {
            let _ended = ended;
            work();
        })
}

/// One worker's thread: its runtime, serving until stopped.
fn run(worker: usize, accepting: Accepting, state: HttpState, stop: impl Future<Output = ()>) {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(http::serve(accepting, Arc::new(state), stop)),
        Err(e) => tracing::error!(worker, error = %e, "cannot start a worker's runtime"),
    }
}

/// Tells the main thread a worker ended: sent on drop, so a panic sends it
/// too.
struct Ended {
    worker: usize,
    tx: mpsc::UnboundedSender<usize>,
}

impl Drop for Ended {
    fn drop(&mut self) {
        let _ = self.tx.send(self.worker);
    }
}

async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::applied::AppliedConfig;
    use crate::metrics::Metrics;
    use std::io::{Read, Write};
    use std::time::Duration;

    fn states(n: usize) -> Vec<Result<HttpState, crate::upstream::InitError>> {
        let metrics = Arc::new(Metrics::new());
        let applied = Arc::new(AppliedConfig::new(Arc::clone(&metrics)));
        (0..n)
            .map(|_| HttpState::new(Arc::clone(&applied), Arc::clone(&metrics), None))
            .collect()
    }

    fn liveness(port: u16) -> String {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"GET /health/liveness HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    }

    #[tokio::test]
    async fn workers_serve_connections_and_stop_when_told() {
        let (listener, address) = http::bind("127.0.0.1:0").await.unwrap();
        let port = address.port();
        let (stop, stopped) = watch::channel(false);
        let mut workers = Workers::start(listener, states(3), stopped).expect("start");
        assert_eq!(workers.count(), 3);
        let answers = tokio::task::spawn_blocking(move || {
            (0..30).map(|_| liveness(port)).collect::<Vec<_>>()
        })
        .await
        .unwrap();
        for answer in answers {
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
        stop.send(true).unwrap();
        for _ in 0..3 {
            let ended = tokio::time::timeout(Duration::from_secs(20), workers.one_ended())
                .await
                .expect("every worker stops");
            assert!(ended.is_some());
        }
        workers.join().await;
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "nothing accepts after the stop"
        );
    }

    async fn received(inbox: &mut mpsc::UnboundedReceiver<Handed>, n: usize) {
        for _ in 0..n {
            tokio::time::timeout(Duration::from_secs(10), inbox.recv())
                .await
                .expect("handed a connection")
                .expect("open");
        }
    }

    #[tokio::test]
    async fn connections_are_handed_out_in_turn_skipping_stopped_workers() {
        let (listener, address) = http::bind("127.0.0.1:0").await.unwrap();
        let (tx, mut rx): (Vec<_>, Vec<_>) = (0..3).map(|_| mpsc::unbounded_channel()).unzip();
        let (stop, stopped) = watch::channel(false);
        let acceptor = tokio::spawn(accept(listener, tx, until(stopped)));
        let mut clients = Vec::new();
        for _ in 0..6 {
            clients.push(tokio::net::TcpStream::connect(address).await.unwrap());
        }
        for inbox in &mut rx {
            received(inbox, 2).await;
        }
        // Worker 1 stops: its turns go to the others.
        drop(rx.remove(1));
        for _ in 0..4 {
            clients.push(tokio::net::TcpStream::connect(address).await.unwrap());
        }
        for inbox in &mut rx {
            received(inbox, 2).await;
        }
        stop.send(true).unwrap();
        acceptor.await.unwrap();
        assert!(
            rx[0].recv().await.is_none(),
            "the inboxes close with the acceptor"
        );
    }

    #[tokio::test]
    async fn a_worker_that_panics_is_reported() {
        let (tx, ended) = mpsc::unbounded_channel();
        let mut workers = Workers {
            threads: Vec::new(),
            acceptor: tokio::spawn(async {}),
            ended,
        };
        // Its panic message shows in the test's output.
        let thread = spawn(4, &tx, || panic!("a worker's bug")).expect("spawned");
        let ended = tokio::time::timeout(Duration::from_secs(10), workers.one_ended()).await;
        assert_eq!(ended.expect("reported"), Some(4));
        assert!(thread.join().is_err(), "it panicked");
    }
}
