//! The remoting server: accepts connections on listenPort and the VIP port (listenPort − 2),
//! reads frames, runs requests concurrently and writes the answers.
//!
//! Per connection there is one reader and one writer task. Every request is processed in its own
//! task so a slow request (a long-polled pull) does not hold up the ones behind it; the number of
//! requests in flight on one connection is capped by a semaphore the reader waits on, so a
//! client that floods us simply stops being read. Across connections a second, larger semaphore
//! caps work in progress; a request that cannot get a slot within `waitTimeMillsInSendQueue` is
//! answered SYSTEM_BUSY, as RocketMQ's fast-failure queue does.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferrum_protocol::codec::encode_header_frame;
use ferrum_protocol::{RemotingCodec, RemotingCommand, ResponseCode};
use futures::StreamExt;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_util::codec::{Encoder, FramedRead};

/// What a processor hands back.
#[derive(Debug)]
pub enum Reply {
    /// A complete answer.
    Command(RemotingCommand),
    /// An answer whose body is written from these slices after the header, without copying them
    /// into one buffer first (pull answers straight from the mapped commit log).
    HeaderAndBody(RemotingCommand, Vec<Bytes>),
    /// Nothing to send (oneway requests, or an answer that went out by other means).
    None,
}

impl From<RemotingCommand> for Reply {
    fn from(command: RemotingCommand) -> Self {
        Reply::Command(command)
    }
}

/// Something the writer task sends.
#[derive(Debug)]
enum Outgoing {
    Command(RemotingCommand),
    HeaderAndBody(RemotingCommand, Vec<Bytes>),
}

/// The server's handle on one client connection; processors keep it to send requests back
/// (NOTIFY_CONSUMER_IDS_CHANGED).
#[derive(Debug, Clone)]
pub struct Channel {
    pub id: u64,
    pub remote: SocketAddr,
    tx: mpsc::Sender<Outgoing>,
}

impl Channel {
    /// Queues a oneway request to the client. Returns false when the connection is gone or its
    /// queue is full; a notification is advisory, so it is dropped rather than waited for.
    pub fn send_oneway(&self, command: RemotingCommand) -> bool {
        self.tx
            .try_send(Outgoing::Command(command.into_oneway()))
            .is_ok()
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// A channel to nowhere, for calling processors without a connection (tests, fuzzing).
    pub fn detached(id: u64) -> Channel {
        let (tx, _rx) = mpsc::channel(1);
        Channel {
            id,
            remote: SocketAddr::from(([127, 0, 0, 1], 1)),
            tx,
        }
    }
}

/// Request dispatch, implemented by the broker's processor table (and by tests).
pub trait Handler: Send + Sync + 'static {
    /// `permit` is the request's slot in the global limit; a handler that is about to wait for
    /// something other than work (a long-polled pull) drops it so waiting is not overload.
    fn handle(
        &self,
        channel: &Channel,
        request: RemotingCommand,
        permit: WorkPermit,
    ) -> impl Future<Output = Reply> + Send;

    /// Called once when a connection ends, so client tables can forget it.
    fn connection_closed(&self, _channel: &Channel) {}

    /// Called once when a connection is accepted, before its first request.
    fn connection_opened(&self, _channel: &Channel) {}

    /// Called when a request is answered SYSTEM_BUSY because no slot freed up in time.
    fn busy_refused(&self) {}
}

/// A request's slot in the server's global limit, held until dropped.
#[derive(Debug)]
// The permit is held only for its Drop, which returns the slot.
pub struct WorkPermit(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl WorkPermit {
    /// A permit that limits nothing, for calling handlers outside the server.
    pub fn unlimited() -> Self {
        WorkPermit(None)
    }
}

/// Limits of the server.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub max_in_flight_per_connection: usize,
    pub global_capacity: usize,
    pub wait_for_slot: Duration,
}

/// Serves `handler` on the given listeners until `shutdown` turns true.
#[derive(Debug)]
pub struct RemotingServer<H> {
    handler: Arc<H>,
    limits: ServerLimits,
    global: Arc<Semaphore>,
    next_id: Arc<AtomicU64>,
}

impl<H> Clone for RemotingServer<H> {
    fn clone(&self) -> Self {
        RemotingServer {
            handler: self.handler.clone(),
            limits: self.limits,
            global: self.global.clone(),
            next_id: self.next_id.clone(),
        }
    }
}

const WRITE_QUEUE: usize = 1024;

impl<H: Handler> RemotingServer<H> {
    pub fn new(handler: Arc<H>, limits: ServerLimits) -> Self {
        RemotingServer {
            handler,
            limits,
            global: Arc::new(Semaphore::new(limits.global_capacity)),
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Accepts connections on `listener` until `shutdown` becomes true.
    pub async fn serve(self, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, remote)) => {
                        let server = self.clone();
                        tokio::spawn(server.connection(stream, remote, shutdown.clone()));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }

    async fn connection(
        self,
        stream: TcpStream,
        remote: SocketAddr,
        mut shutdown: watch::Receiver<bool>,
    ) {
        // Small answers dominate; leaving Nagle on would delay every one of them.
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let channel = Channel {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            remote,
            tx,
        };
        tracing::debug!(%remote, id = channel.id, "connection opened");
        self.handler.connection_opened(&channel);
        let writer = tokio::spawn(write_loop(write, rx));
        let mut frames = FramedRead::new(read, RemotingCodec::default());
        let per_connection = Arc::new(Semaphore::new(self.limits.max_in_flight_per_connection));
        loop {
            let frame = tokio::select! {
                frame = frames.next() => frame,
                _ = shutdown.changed() => break,
            };
            let request = match frame {
                None => break,
                Some(Ok(request)) => request,
                Some(Err(error)) => {
                    tracing::warn!(%remote, %error, "malformed frame, closing the connection");
                    break;
                }
            };
            if request.is_response() {
                // Answers to our oneway notifications never come; anything else is stray.
                continue;
            }
            let Ok(slot) = per_connection.clone().acquire_owned().await else {
                break;
            };
            let handler = self.handler.clone();
            let global = self.global.clone();
            let wait = self.limits.wait_for_slot;
            let capacity = self.limits.global_capacity;
            let channel = channel.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let oneway = request.is_oneway();
                let reply = match tokio::time::timeout(wait, global.clone().acquire_owned()).await {
                    Ok(Ok(permit)) => {
                        handler
                            .handle(&channel, request, WorkPermit(Some(permit)))
                            .await
                    }
                    _ => {
                        handler.busy_refused();
                        Reply::Command(request.error_to(
                            ResponseCode::SYSTEM_BUSY,
                            format!(
                                "[TIMEOUT_CLEAN_QUEUE]broker busy, start flow control for a while, \
                             period in queue: {}ms, size of queue: {}",
                                wait.as_millis(),
                                capacity.saturating_sub(global.available_permits())
                            ),
                        ))
                    }
                };
                if oneway {
                    return;
                }
                let outgoing = match reply {
                    Reply::Command(command) => Outgoing::Command(command),
                    Reply::HeaderAndBody(command, body) => Outgoing::HeaderAndBody(command, body),
                    Reply::None => return,
                };
                let _ = channel.tx.send(outgoing).await;
            });
        }
        self.handler.connection_closed(&channel);
        drop(channel);
        drop(frames);
        // The writer ends once every task holding a sender has finished.
        let _ = writer.await;
        tracing::debug!(%remote, "connection closed");
    }
}

async fn write_loop(write: tokio::net::tcp::OwnedWriteHalf, mut rx: mpsc::Receiver<Outgoing>) {
    let mut out = BufWriter::with_capacity(64 * 1024, write);
    let mut codec = RemotingCodec::default();
    let mut buf = bytes::BytesMut::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(item) = next.take() {
            if let Err(error) = write_one(&mut out, &mut codec, &mut buf, item).await {
                tracing::debug!(%error, "write failed, dropping the connection's answers");
                return;
            }
            next = rx.try_recv().ok();
        }
        if out.flush().await.is_err() {
            return;
        }
    }
}

async fn write_one(
    out: &mut BufWriter<tokio::net::tcp::OwnedWriteHalf>,
    codec: &mut RemotingCodec,
    buf: &mut bytes::BytesMut,
    item: Outgoing,
) -> std::io::Result<()> {
    match item {
        Outgoing::Command(command) => {
            buf.clear();
            if let Err(error) = codec.encode(&command, buf) {
                tracing::warn!(%error, code = command.code, "answer could not be encoded");
                return Ok(());
            }
            out.write_all(buf).await
        }
        Outgoing::HeaderAndBody(command, body) => {
            let length = body.iter().map(Bytes::len).sum();
            let header = encode_header_frame(&command, length)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            out.write_all(&header).await?;
            // Slices larger than the buffer go straight to the socket.
            for part in &body {
                out.write_all(part).await?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::SinkExt;
    use tokio_util::codec::Framed;

    struct Echo;

    impl Handler for Echo {
        async fn handle(
            &self,
            _channel: &Channel,
            request: RemotingCommand,
            permit: WorkPermit,
        ) -> Reply {
            if request.code == 3 {
                drop(permit);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            if request.code == 1 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            if request.code == 2 {
                let head = request.success_to();
                return Reply::HeaderAndBody(
                    head,
                    vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")],
                );
            }
            Reply::Command(request.success_to().with_body(request.body.clone()))
        }
    }

    async fn start(limits: ServerLimits) -> (SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = watch::channel(false);
        tokio::spawn(RemotingServer::new(Arc::new(Echo), limits).serve(listener, rx));
        (addr, tx)
    }

    const LIMITS: ServerLimits = ServerLimits {
        max_in_flight_per_connection: 16,
        global_capacity: 16,
        wait_for_slot: Duration::from_millis(50),
    };

    #[tokio::test]
    async fn answers_out_of_order_by_opaque_and_zero_copy_bodies() {
        let (addr, _stop) = start(LIMITS).await;
        let stream = TcpStream::connect(addr).await.expect("connect");
        let mut framed = Framed::new(stream, RemotingCodec::default());
        framed
            .send(RemotingCommand::bare_request(1).with_opaque(1))
            .await
            .expect("send");
        framed
            .send(RemotingCommand::bare_request(2).with_opaque(2))
            .await
            .expect("send");
        let first = tokio::time::timeout(Duration::from_secs(5), framed.next())
            .await
            .expect("in time")
            .expect("frame")
            .expect("decodes");
        assert_eq!(
            first.opaque, 2,
            "the fast request is not held behind the slow one"
        );
        assert_eq!(&first.body[..], b"abcd");
        let second = tokio::time::timeout(Duration::from_secs(5), framed.next())
            .await
            .expect("in time")
            .expect("frame")
            .expect("decodes");
        assert_eq!(second.opaque, 1);
    }

    #[tokio::test]
    async fn busy_only_when_global_capacity_is_exhausted() {
        let (addr, _stop) = start(ServerLimits {
            global_capacity: 1,
            ..LIMITS
        })
        .await;
        let stream = TcpStream::connect(addr).await.expect("connect");
        let mut framed = Framed::new(stream, RemotingCodec::default());
        framed
            .send(RemotingCommand::bare_request(1).with_opaque(1))
            .await
            .expect("send");
        framed
            .send(RemotingCommand::bare_request(5).with_opaque(2))
            .await
            .expect("send");
        let answer = tokio::time::timeout(Duration::from_secs(5), framed.next())
            .await
            .expect("in time")
            .expect("frame")
            .expect("decodes");
        assert_eq!(answer.opaque, 2);
        assert_eq!(answer.code, ResponseCode::SYSTEM_BUSY.code());
        assert!(
            answer
                .remark
                .as_deref()
                .is_some_and(|r| r.starts_with("[TIMEOUT_CLEAN_QUEUE]broker busy"))
        );
        let answer = tokio::time::timeout(Duration::from_secs(5), framed.next())
            .await
            .expect("in time")
            .expect("frame")
            .expect("decodes");
        assert_eq!((answer.opaque, answer.code), (1, 0));
    }

    #[tokio::test]
    async fn a_waiting_request_gives_its_slot_back() {
        let (addr, _stop) = start(ServerLimits {
            global_capacity: 1,
            ..LIMITS
        })
        .await;
        let stream = TcpStream::connect(addr).await.expect("connect");
        let mut framed = Framed::new(stream, RemotingCodec::default());
        framed
            .send(RemotingCommand::bare_request(3).with_opaque(1))
            .await
            .expect("send");
        framed
            .send(RemotingCommand::bare_request(5).with_opaque(2))
            .await
            .expect("send");
        for _ in 0..2 {
            let answer = tokio::time::timeout(Duration::from_secs(5), framed.next())
                .await
                .expect("in time")
                .expect("frame")
                .expect("decodes");
            assert_eq!(answer.code, 0, "opaque {} answered busy", answer.opaque);
        }
    }

    #[tokio::test]
    async fn oneway_gets_no_answer_and_garbage_closes() {
        let (addr, _stop) = start(LIMITS).await;
        let stream = TcpStream::connect(addr).await.expect("connect");
        let mut framed = Framed::new(stream, RemotingCodec::default());
        framed
            .send(
                RemotingCommand::bare_request(5)
                    .with_opaque(1)
                    .into_oneway(),
            )
            .await
            .expect("send");
        framed
            .send(RemotingCommand::bare_request(5).with_opaque(2))
            .await
            .expect("send");
        let answer = tokio::time::timeout(Duration::from_secs(5), framed.next())
            .await
            .expect("in time")
            .expect("frame")
            .expect("decodes");
        assert_eq!(answer.opaque, 2);

        let mut raw = TcpStream::connect(addr).await.expect("connect");
        raw.write_all(&[0, 0, 0, 8, 7, 0, 0, 0, 1, 2, 3, 4])
            .await
            .expect("write");
        let mut rest = Vec::new();
        let read = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read_to_end(&mut raw, &mut rest),
        )
        .await
        .expect("closed in time");
        assert!(read.is_ok() && rest.is_empty());
    }
}
