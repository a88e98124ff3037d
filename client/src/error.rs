//! `ClientError`: everything a client call can fail with.

use std::time::Duration;

use ferrum_protocol::ResponseCode;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {cause}")]
    Connect { addr: String, cause: std::io::Error },
    #[error("invalid address '{0}': expected host:port")]
    BadAddress(String),
    #[error("request code {code} to {addr} timed out after {timeout:?}")]
    Timeout {
        addr: String,
        code: i32,
        timeout: Duration,
    },
    #[error("the connection to {addr} is closed{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    ConnectionClosed {
        addr: String,
        reason: Option<String>,
    },
    /// The peer answered with an error code; `remark` is its explanation.
    #[error("{addr} answered {} ({code}): {remark}", code_name(*.code))]
    Response {
        addr: String,
        code: i32,
        remark: String,
    },
    #[error("topic '{0}' does not exist (no route on the NameServer)")]
    TopicNotExist(String),
    #[error("topic '{0}' has no writable queue on any master broker")]
    NoWritableQueue(String),
    #[error("no NameServer address was given")]
    NoNameServer,
    #[error("every NameServer failed; last error: {0}")]
    AllNameServersFailed(Box<ClientError>),
    #[error("broker '{0}' is not in the route (no address known)")]
    BrokerNotFound(String),
    #[error("malformed answer from {addr}: {reason}")]
    BadResponse { addr: String, reason: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

fn code_name(code: i32) -> &'static str {
    ResponseCode::from_code(code).map_or("UNKNOWN", ResponseCode::name)
}

impl ClientError {
    /// The response code when the peer answered with an error.
    pub fn response_code(&self) -> Option<i32> {
        match self {
            ClientError::Response { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Errors of the transport (the peer may be down), as opposed to a definite answer.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            ClientError::Connect { .. }
                | ClientError::Timeout { .. }
                | ClientError::ConnectionClosed { .. }
        )
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
