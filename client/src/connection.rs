//! `Connection`: one TCP connection to a NameServer or broker, multiplexing requests by `opaque`.
//!
//! A writer task owns the socket's write half and batches queued frames into one flush; a reader
//! task routes each response to the waiter registered under its `opaque` (answers may come back
//! in any order) and hands requests from the server (NOTIFY_CONSUMER_IDS_CHANGED, ...) to a
//! handler. When the socket closes, every waiter gets [`ClientError::ConnectionClosed`].

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, FramedWrite};

use ferrum_protocol::{FrameError, RemotingCodec, RemotingCommand, ResponseCode, SerializeType};

use crate::error::{ClientError, Result};

/// How long [`Connection::connect`] waits for the TCP handshake.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The timeout RocketMQ clients use for most calls.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Answers a request the server sent to this client. `None` sends nothing back (the right
/// answer to a oneway request).
pub type RequestHandler = Arc<dyn Fn(&RemotingCommand) -> Option<RemotingCommand> + Send + Sync>;

/// Options for [`Connection::connect_with`].
#[derive(Clone)]
pub struct ConnectOptions {
    /// Header serialization of the requests this connection sends.
    pub serialize_type: SerializeType,
    pub connect_timeout: Duration,
    /// Handler for server→client requests; the default answers REQUEST_CODE_NOT_SUPPORTED to
    /// two-way requests and ignores oneway ones.
    pub handler: Option<RequestHandler>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            serialize_type: SerializeType::Json,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            handler: None,
        }
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("serialize_type", &self.serialize_type)
            .field("connect_timeout", &self.connect_timeout)
            .field("handler", &self.handler.is_some())
            .finish()
    }
}

type Waiter = oneshot::Sender<Result<RemotingCommand>>;

struct Shared {
    addr: String,
    pending: Mutex<HashMap<i32, Waiter>>,
    closed: AtomicBool,
    close_reason: Mutex<Option<String>>,
}

impl Shared {
    fn closed_error(&self) -> ClientError {
        ClientError::ConnectionClosed {
            addr: self.addr.clone(),
            reason: lock(&self.close_reason).clone(),
        }
    }

    /// Marks the connection closed and fails every waiter.
    fn close(&self, reason: Option<String>) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        *lock(&self.close_reason) = reason;
        let waiters: Vec<Waiter> = lock(&self.pending).drain().map(|(_, w)| w).collect();
        for waiter in waiters {
            let _ = waiter.send(Err(self.closed_error()));
        }
    }
}

/// Queues one command on the socket. A command the codec refuses (too long for a frame, a value
/// too wide for its header field) fails only its own caller: the encoder wrote nothing, so the
/// stream is still in step and the other requests on it are unharmed. I/O errors end the writer.
async fn feed_one(
    sink: &mut FramedWrite<tokio::net::tcp::OwnedWriteHalf, RemotingCodec>,
    cmd: RemotingCommand,
    shared: &Shared,
) -> std::result::Result<(), FrameError> {
    let (opaque, code, is_response) = (cmd.opaque, cmd.code, cmd.is_response());
    match sink.feed(cmd).await {
        Err(FrameError::Io(e)) => Err(FrameError::Io(e)),
        Err(refused) => {
            tracing::warn!(addr = %shared.addr, code, error = %refused, "frame not sent");
            let waiter = (!is_response)
                .then(|| lock(&shared.pending).remove(&opaque))
                .flatten();
            if let Some(waiter) = waiter {
                let _ = waiter.send(Err(ClientError::InvalidArgument(format!(
                    "request code {code} not sent: {refused}"
                ))));
            }
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

// A poisoned lock only means another task panicked while holding it; the map is still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

struct Tasks {
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

/// A multiplexing client connection. Cheap to clone; the socket closes when the last clone is
/// dropped.
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
    outbound: mpsc::UnboundedSender<RemotingCommand>,
    next_opaque: Arc<AtomicI32>,
    serialize_type: SerializeType,
    _tasks: Arc<Tasks>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.shared.addr)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Connection {
    /// Connects with JSON headers and the default handler.
    pub async fn connect(addr: &str) -> Result<Connection> {
        Self::connect_with(addr, ConnectOptions::default()).await
    }

    /// Connects to `addr` (`host:port`).
    pub async fn connect_with(addr: &str, options: ConnectOptions) -> Result<Connection> {
        if addr
            .rsplit_once(':')
            .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            return Err(ClientError::BadAddress(addr.to_owned()));
        }
        let stream =
            match tokio::time::timeout(options.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(cause)) => {
                    return Err(ClientError::Connect {
                        addr: addr.to_owned(),
                        cause,
                    });
                }
                Err(_) => {
                    return Err(ClientError::Connect {
                        addr: addr.to_owned(),
                        cause: std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("no answer within {:?}", options.connect_timeout),
                        ),
                    });
                }
            };
        // Requests are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let (read_half, write_half) = stream.into_split();
        let shared = Arc::new(Shared {
            addr: addr.to_owned(),
            pending: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            close_reason: Mutex::new(None),
        });
        let (outbound, mut queue) = mpsc::unbounded_channel::<RemotingCommand>();

        let writer_shared = shared.clone();
        let writer = tokio::spawn(async move {
            let mut sink = FramedWrite::new(write_half, RemotingCodec::default());
            while let Some(first) = queue.recv().await {
                let mut result = feed_one(&mut sink, first, &writer_shared).await;
                while result.is_ok() {
                    match queue.try_recv() {
                        Ok(next) => result = feed_one(&mut sink, next, &writer_shared).await,
                        Err(_) => break,
                    }
                }
                if let Err(e) = result.and(SinkExt::<RemotingCommand>::flush(&mut sink).await) {
                    writer_shared.close(Some(format!("write failed: {e}")));
                    return;
                }
            }
        });

        let reader_shared = shared.clone();
        let reply = outbound.clone();
        let handler = options.handler.clone();
        let reader = tokio::spawn(async move {
            let mut frames = FramedRead::new(read_half, RemotingCodec::default());
            let reason = loop {
                match frames.next().await {
                    None => break None,
                    Some(Err(e)) => break Some(e.to_string()),
                    Some(Ok(cmd)) if cmd.is_response() => {
                        let waiter = lock(&reader_shared.pending).remove(&cmd.opaque);
                        match waiter {
                            Some(waiter) => {
                                let _ = waiter.send(Ok(cmd));
                            }
                            None => tracing::debug!(
                                addr = %reader_shared.addr,
                                opaque = cmd.opaque,
                                "response for no waiting request (timed out?)"
                            ),
                        }
                    }
                    Some(Ok(cmd)) => {
                        let answer = match &handler {
                            Some(handler) => handler(&cmd),
                            None => default_handler(&cmd),
                        };
                        if let Some(answer) = answer
                            && !cmd.is_oneway()
                        {
                            let _ = reply.send(answer);
                        }
                    }
                }
            };
            reader_shared.close(reason);
        });

        Ok(Connection {
            shared,
            outbound,
            next_opaque: Arc::new(AtomicI32::new(1)),
            serialize_type: options.serialize_type,
            _tasks: Arc::new(Tasks { reader, writer }),
        })
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// True once the socket has closed; a closed connection never reopens.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    fn prepare(&self, mut cmd: RemotingCommand) -> RemotingCommand {
        cmd.opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        cmd.serialize_type = self.serialize_type;
        cmd
    }

    /// Sends `cmd` and waits for its answer, whatever its code. The opaque is assigned here.
    pub async fn invoke(&self, cmd: RemotingCommand, timeout: Duration) -> Result<RemotingCommand> {
        let cmd = self.prepare(cmd);
        let (code, opaque) = (cmd.code, cmd.opaque);
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.pending).insert(opaque, tx);
        // Checked after registering so a close racing with us either fails the waiter or is seen here.
        if self.is_closed() {
            lock(&self.shared.pending).remove(&opaque);
            return Err(self.shared.closed_error());
        }
        if self.outbound.send(cmd).is_err() {
            lock(&self.shared.pending).remove(&opaque);
            return Err(self.shared.closed_error());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.shared.closed_error()),
            Err(_) => {
                lock(&self.shared.pending).remove(&opaque);
                Err(ClientError::Timeout {
                    addr: self.shared.addr.clone(),
                    code,
                    timeout,
                })
            }
        }
    }

    /// Like [`invoke`](Self::invoke), but an answer other than SUCCESS becomes
    /// [`ClientError::Response`].
    pub async fn invoke_ok(
        &self,
        cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand> {
        let answer = self.invoke(cmd, timeout).await?;
        check_success(&self.shared.addr, answer)
    }

    /// Sends `cmd` marked oneway; the peer does not answer.
    pub async fn invoke_oneway(&self, cmd: RemotingCommand) -> Result<()> {
        let cmd = self.prepare(cmd).into_oneway();
        if self.is_closed() || self.outbound.send(cmd).is_err() {
            return Err(self.shared.closed_error());
        }
        Ok(())
    }
}

/// Turns a non-SUCCESS answer into [`ClientError::Response`].
pub fn check_success(addr: &str, answer: RemotingCommand) -> Result<RemotingCommand> {
    if answer.code == ResponseCode::SUCCESS.code() {
        Ok(answer)
    } else {
        Err(response_error(addr, &answer))
    }
}

/// The error for an answer with an error code.
pub fn response_error(addr: &str, answer: &RemotingCommand) -> ClientError {
    ClientError::Response {
        addr: addr.to_owned(),
        code: answer.code,
        remark: answer.remark.clone().unwrap_or_default(),
    }
}

fn default_handler(request: &RemotingCommand) -> Option<RemotingCommand> {
    tracing::debug!(code = request.code, "request from the server");
    if request.is_oneway() {
        return None;
    }
    Some(request.error_to(
        ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
        format!(
            "request code {} is not supported by this client",
            request.code
        ),
    ))
}

/// Connections by address, opened on first use and replaced once closed.
///
/// Each address has its own lock, so connecting to an unresponsive broker (up to the connect
/// timeout) never holds up requests to the others.
#[derive(Debug, Clone, Default)]
pub struct ConnectionPool {
    options: Arc<PoolOptions>,
    slots: Arc<Mutex<HashMap<String, Slot>>>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Connection>>>;

#[derive(Debug, Default)]
struct PoolOptions(ConnectOptions);

impl ConnectionPool {
    pub fn new(options: ConnectOptions) -> Self {
        ConnectionPool {
            options: Arc::new(PoolOptions(options)),
            slots: Default::default(),
        }
    }

    /// The open connection to `addr`, connecting if there is none.
    pub async fn get(&self, addr: &str) -> Result<Connection> {
        let slot = lock(&self.slots)
            .entry(addr.to_owned())
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(conn) = slot.as_ref()
            && !conn.is_closed()
        {
            return Ok(conn.clone());
        }
        let conn = Connection::connect_with(addr, self.options.0.clone()).await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// `invoke_ok` on the pooled connection to `addr`.
    pub async fn invoke_ok(
        &self,
        addr: &str,
        cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand> {
        self.get(addr).await?.invoke_ok(cmd, timeout).await
    }

    /// `invoke` on the pooled connection to `addr`.
    pub async fn invoke(
        &self,
        addr: &str,
        cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand> {
        self.get(addr).await?.invoke(cmd, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::serve;
    use ferrum_protocol::RequestCode;
    use futures::SinkExt;
    use tokio::net::TcpListener;
    use tokio_util::codec::Framed;

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn an_unencodable_request_fails_alone_and_the_connection_stays_up() {
        let addr = serve(|req| vec![req.success_to()]).await;
        let options = ConnectOptions {
            serialize_type: SerializeType::RocketMq,
            ..Default::default()
        };
        let conn = Connection::connect_with(&addr, options)
            .await
            .expect("connect");
        let mut wide = RemotingCommand::bare_request(RequestCode::GET_MAX_OFFSET);
        wide.ext_fields.insert("k".repeat(40_000), "v".into());
        let err = conn.invoke(wide, T).await.expect_err("refused");
        assert!(
            matches!(&err, ClientError::InvalidArgument(why) if why.contains("key length")),
            "{err}"
        );
        let mut big = RemotingCommand::bare_request(RequestCode::SEND_MESSAGE);
        big.body = bytes::Bytes::from(vec![0u8; ferrum_protocol::MAX_FRAME_LENGTH]);
        let err = conn.invoke(big, T).await.expect_err("refused");
        assert!(matches!(err, ClientError::InvalidArgument(_)), "{err}");
        assert!(!conn.is_closed());
        let answer = conn
            .invoke(
                RemotingCommand::bare_request(RequestCode::GET_MAX_OFFSET),
                T,
            )
            .await
            .expect("the connection still serves");
        assert_eq!(answer.code, ResponseCode::SUCCESS.code());
    }

    #[tokio::test]
    async fn answers_are_routed_by_opaque_even_out_of_order() {
        // The server holds the first request and answers it after the second.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let mut framed = Framed::new(stream, RemotingCodec::default());
            let first = framed.next().await.expect("first").expect("frame");
            let second = framed.next().await.expect("second").expect("frame");
            for req in [second, first] {
                let body = req.ext_fields.get("n").cloned().unwrap_or_default();
                framed
                    .send(req.success_to().with_body(body))
                    .await
                    .expect("send");
            }
            // Keep the socket open until the client is done.
            let _ = framed.next().await;
        });
        let conn = Connection::connect(&addr).await.expect("connect");
        let mut a = RemotingCommand::bare_request(RequestCode::GET_MAX_OFFSET);
        a.ext_fields.insert("n".into(), "one".into());
        let mut b = RemotingCommand::bare_request(RequestCode::GET_MAX_OFFSET);
        b.ext_fields.insert("n".into(), "two".into());
        let conn2 = conn.clone();
        let first = tokio::spawn(async move { conn2.invoke(a, T).await });
        // Make sure the first request is on the wire before the second.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = conn.invoke(b, T).await.expect("second answer");
        let first = first.await.expect("join").expect("first answer");
        assert_eq!(&first.body[..], b"one");
        assert_eq!(&second.body[..], b"two");
    }

    #[tokio::test]
    async fn timeout_then_the_connection_still_works() {
        let addr = serve(|req| {
            if req.code == RequestCode::GET_MIN_OFFSET.code() {
                vec![]
            } else {
                vec![req.success_to()]
            }
        })
        .await;
        let conn = Connection::connect(&addr).await.expect("connect");
        let err = conn
            .invoke(
                RemotingCommand::bare_request(RequestCode::GET_MIN_OFFSET),
                Duration::from_millis(100),
            )
            .await
            .expect_err("no answer");
        assert!(
            matches!(err, ClientError::Timeout { code: 31, .. }),
            "{err}"
        );
        let ok = conn
            .invoke(
                RemotingCommand::bare_request(RequestCode::GET_MAX_OFFSET),
                T,
            )
            .await
            .expect("answer");
        assert_eq!(ok.code, 0);
    }

    #[tokio::test]
    async fn a_closed_connection_fails_every_waiter() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let mut framed = Framed::new(stream, RemotingCodec::default());
            let _ = framed.next().await;
            let _ = framed.next().await;
            // Dropping the socket with two requests outstanding.
        });
        let conn = Connection::connect(&addr).await.expect("connect");
        let c1 = conn.clone();
        let c2 = conn.clone();
        let w1 = tokio::spawn(async move {
            c1.invoke(RemotingCommand::bare_request(RequestCode::HEART_BEAT), T)
                .await
        });
        let w2 = tokio::spawn(async move {
            c2.invoke(RemotingCommand::bare_request(RequestCode::HEART_BEAT), T)
                .await
        });
        for waiter in [w1, w2] {
            let err = waiter.await.expect("join").expect_err("closed");
            assert!(matches!(err, ClientError::ConnectionClosed { .. }), "{err}");
        }
        assert!(conn.is_closed());
        let err = conn
            .invoke(RemotingCommand::bare_request(RequestCode::HEART_BEAT), T)
            .await
            .expect_err("closed");
        assert!(matches!(err, ClientError::ConnectionClosed { .. }), "{err}");
    }

    #[tokio::test]
    async fn error_answers_carry_code_and_remark() {
        let addr =
            serve(|req| vec![req.error_to(ResponseCode::TOPIC_NOT_EXIST, "no such topic")]).await;
        let conn = Connection::connect(&addr).await.expect("connect");
        let err = conn
            .invoke_ok(
                RemotingCommand::bare_request(RequestCode::GET_MAX_OFFSET),
                T,
            )
            .await
            .expect_err("error answer");
        assert_eq!(err.response_code(), Some(17));
        assert!(err.to_string().contains("no such topic"), "{err}");
    }

    #[tokio::test]
    async fn oneway_and_binary_headers_reach_the_server() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let addr = serve(move |req| {
            let _ = tx.send((req.is_oneway(), req.serialize_type, req.code));
            vec![]
        })
        .await;
        let options = ConnectOptions {
            serialize_type: SerializeType::RocketMq,
            ..Default::default()
        };
        let conn = Connection::connect_with(&addr, options)
            .await
            .expect("connect");
        conn.invoke_oneway(RemotingCommand::bare_request(
            RequestCode::UPDATE_CONSUMER_OFFSET,
        ))
        .await
        .expect("oneway");
        let seen = tokio::time::timeout(T, rx.recv()).await.expect("in time");
        assert_eq!(seen, Some((true, SerializeType::RocketMq, 15)));
    }

    #[tokio::test]
    async fn server_requests_reach_the_handler_and_get_answers() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let mut framed = Framed::new(stream, RemotingCodec::default());
            let notify = RemotingCommand::bare_request(RequestCode::NOTIFY_CONSUMER_IDS_CHANGED)
                .with_opaque(7)
                .into_oneway();
            let info = RemotingCommand::bare_request(RequestCode::GET_CONSUMER_RUNNING_INFO)
                .with_opaque(8);
            let unknown = RemotingCommand::bare_request(9999).with_opaque(9);
            for cmd in [notify, info, unknown] {
                framed.send(cmd).await.expect("send");
            }
            let a = framed.next().await.expect("answer").expect("frame");
            let b = framed.next().await.expect("answer").expect("frame");
            (a, b)
        });
        let (tx, mut rx) = mpsc::unbounded_channel();
        let handler: RequestHandler = Arc::new(move |req: &RemotingCommand| {
            let _ = tx.send(req.code);
            if req.code == RequestCode::GET_CONSUMER_RUNNING_INFO.code() {
                Some(req.success_to().with_body("{}"))
            } else if req.is_oneway() {
                None
            } else {
                default_handler(req)
            }
        });
        let options = ConnectOptions {
            handler: Some(handler),
            ..Default::default()
        };
        let _conn = Connection::connect_with(&addr, options)
            .await
            .expect("connect");
        let (a, b) = tokio::time::timeout(T, server)
            .await
            .expect("in time")
            .expect("join");
        assert_eq!((a.opaque, a.code, a.is_response()), (8, 0, true));
        assert_eq!(
            (b.opaque, b.code),
            (9, ResponseCode::REQUEST_CODE_NOT_SUPPORTED.code())
        );
        let mut seen = Vec::new();
        while let Ok(code) = rx.try_recv() {
            seen.push(code);
        }
        assert_eq!(seen, vec![40, 307, 9999]);
    }

    #[tokio::test]
    async fn connect_errors_name_the_address() {
        let err = Connection::connect("nonsense")
            .await
            .expect_err("bad address");
        assert!(matches!(err, ClientError::BadAddress(_)), "{err}");
        let dead = crate::testutil::dead_addr().await;
        let err = Connection::connect(&dead).await.expect_err("refused");
        assert!(err.to_string().contains(&dead), "{err}");
    }

    #[tokio::test]
    async fn the_pool_replaces_a_closed_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            // Each connection answers one request and then closes.
            while let Ok((stream, _)) = listener.accept().await {
                let mut framed = Framed::new(stream, RemotingCodec::default());
                if let Some(Ok(req)) = framed.next().await {
                    let _ = framed.send(req.success_to()).await;
                }
            }
        });
        let pool = ConnectionPool::default();
        let first = pool.get(&addr).await.expect("connect");
        pool.invoke_ok(
            &addr,
            RemotingCommand::bare_request(RequestCode::HEART_BEAT),
            T,
        )
        .await
        .expect("first answer");
        for _ in 0..100 {
            if first.is_closed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(first.is_closed());
        pool.invoke_ok(
            &addr,
            RemotingCommand::bare_request(RequestCode::HEART_BEAT),
            T,
        )
        .await
        .expect("answer on a new connection");
    }
}
