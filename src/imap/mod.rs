//! The only module that knows async-imap and tokio-rustls: connecting (TLS, STARTTLS,
//! plain, timeouts), logging in, and reading folders and messages without changing
//! anything. Everything above it sees [`Reader`], plain data types and [`ImapError`].

mod auth;
mod error;
pub mod mutf7;
mod namespace;
mod reader;
mod tls;
mod transport;
mod wire;
mod writer;

pub use auth::Credentials;
pub use error::{ConnectReason, ImapError};
pub use namespace::Namespace;
pub use reader::{probe, BodiesOutcome, FetchedMeta, ListEntry, Reader};
pub use transport::Capabilities;
pub use writer::{AppendItem, AppendResult, SelectInfo, Writer};
