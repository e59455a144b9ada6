//! The only module that knows async-imap and tokio-rustls: connecting (TLS, STARTTLS,
//! plain, timeouts), logging in, and reading folders and messages without changing
//! anything. Everything above it sees [`Reader`], plain data types and [`ImapError`].

mod auth;
mod error;

mod namespace;
mod pipeline;
mod reader;
mod session;
mod tls;
mod transport;
mod wire;
mod writer;

/// Folder names cross this module as wire names (`crate::model::WireName`).
pub use crate::model::WireName;
pub use auth::Credentials;
pub use error::{ConnectReason, ImapError, Reason};
pub use namespace::Namespace;
pub use pipeline::{Examined, FetchItems, MailboxStatus, Overview};
pub use reader::{Arrival, BodiesOutcome, FetchedMeta, ListEntry, Piece, Reader};
pub use session::{
    classify_words, suggested_backoff, Backoff, DestinationSession, RetryPolicy, RetryStats,
    SessionConfig, SessionError, SourceSession, Transience,
};
pub use transport::Capabilities;
pub use writer::{AppendItem, AppendResult, Created, SelectInfo, StreamedAppend, Writer};

/// Caps on open connections per server (`max-connections`), shared by all accounts of a
/// run.
#[derive(Clone)]
pub struct ConnectionCaps {
    source: std::sync::Arc<tokio::sync::Semaphore>,
    destination: std::sync::Arc<tokio::sync::Semaphore>,
}

impl ConnectionCaps {
    pub fn new(settings: &crate::settings::Settings) -> ConnectionCaps {
        let cap = |s: &crate::settings::ServerSettings| {
            std::sync::Arc::new(tokio::sync::Semaphore::new(s.max_connections.max(1)))
        };
        ConnectionCaps {
            source: cap(&settings.source),
            destination: cap(&settings.destination),
        }
    }

    /// The semaphore of one side: hold a permit per open connection.
    pub fn of(&self, side: crate::model::Side) -> &tokio::sync::Semaphore {
        match side {
            crate::model::Side::Source => &self.source,
            crate::model::Side::Destination => &self.destination,
        }
    }
}
