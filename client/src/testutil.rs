//! A tiny in-test remoting server on 127.0.0.1.

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

use ferrum_protocol::{RemotingCodec, RemotingCommand};

/// Serves every connection with `answer`: each request gets the answers it returns, in order.
/// Returns the address; the server lives until the test's runtime ends.
pub(crate) async fn serve<F>(answer: F) -> String
where
    F: Fn(&RemotingCommand) -> Vec<RemotingCommand> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut framed = Framed::new(stream, RemotingCodec::default());
                while let Some(Ok(request)) = framed.next().await {
                    for reply in answer(&request) {
                        if framed.send(reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// An address nothing listens on.
pub(crate) async fn dead_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("local addr").to_string()
}
