//! The one error type of the client and the commands, and the Kafka error names.

use std::fmt;
use std::io;

use kafka_protocol::error::ResponseError;

/// Everything that can go wrong talking to a cluster or reading the user's input.
/// Each variant displays as one line that says where and why.
#[derive(Debug)]
pub enum Error {
    /// No address of the bootstrap list could be resolved or reached.
    NoBrokerReachable { brokers: String, last: Box<Error> },
    /// TCP connect failed or timed out.
    Connect { addr: String, source: io::Error },
    /// A read or write on an open connection failed or timed out.
    Io { addr: String, source: io::Error },
    /// The broker sent a frame larger than we accept.
    FrameTooLarge { addr: String, len: i64, max: usize },
    /// Something other than a Kafka listener answered (an HTTP port, a proxy).
    NotKafka { addr: String, what: &'static str },
    /// A response did not decode, or a request did not encode.
    Codec { api: &'static str, reason: String },
    /// The broker supports no version of an API that this client speaks.
    Unsupported { api: &'static str, addr: String },
    /// The broker answered with a Kafka error code.
    Kafka { code: i16, context: String, message: Option<String> },
    /// A broker id that the metadata does not list.
    UnknownBroker(i32),
    /// A topic or partition that the metadata does not list.
    UnknownPartition { topic: String, partition: i32 },
    /// Record data that could not be decoded or encoded.
    Records(String),
    /// Input from the user that the command cannot use.
    Usage(String),
    /// Writing our own output failed (for example a closed pipe).
    Output(io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A Kafka error for `code`, or None for 0.
    pub fn from_code(code: i16, context: impl Into<String>, message: Option<String>) -> Option<Error> {
        (code != 0).then(|| Error::Kafka { code, context: context.into(), message })
    }

    /// The Kafka error code, if this is a Kafka error.
    pub fn kafka_code(&self) -> Option<i16> {
        match self {
            Error::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether retrying after a metadata refresh may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { code, .. } => ResponseError::try_from_code(*code).is_some_and(|e| e.is_retriable()),
            Error::UnknownPartition { .. } => true,
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoBrokerReachable { brokers, last } => write!(f, "no broker reachable at {brokers}: {last}"),
            Error::Connect { addr, source } => write!(f, "cannot connect to {addr}: {}", io_reason(source)),
            Error::Io { addr, source } => write!(f, "connection to {addr} failed: {}", io_reason(source)),
            Error::FrameTooLarge { addr, len, max } => {
                write!(f, "{addr} sent a response of {len} bytes (at most {max} accepted)")
            }
            Error::NotKafka { addr, what } => write!(f, "{addr} is not a Kafka listener: {what} answered"),
            Error::Codec { api, reason } => write!(f, "{api}: cannot encode or decode: {reason}"),
            Error::Unsupported { api, addr } => write!(f, "{addr} supports no version of {api} that fjord speaks"),
            Error::Kafka { code, context, message } => {
                write!(f, "{context}: {}", error_name(*code))?;
                match message {
                    Some(m) if !m.is_empty() => write!(f, ": {m}"),
                    _ => Ok(()),
                }
            }
            Error::UnknownBroker(id) => write!(f, "broker {id} is not in the cluster metadata"),
            Error::UnknownPartition { topic, partition } => {
                write!(f, "{topic}/{partition}: UNKNOWN_TOPIC_OR_PARTITION (not in the cluster metadata)")
            }
            Error::Records(r) => write!(f, "records: {r}"),
            Error::Usage(u) => f.write_str(u),
            Error::Output(e) => write!(f, "cannot write output: {e}"),
        }
    }
}

impl std::error::Error for Error {}

fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timed out".to_string(),
        io::ErrorKind::UnexpectedEof => "the broker closed the connection".to_string(),
        _ => e.to_string(),
    }
}

/// Kafka's name for an error code, as the Java client prints it: `TOPIC_ALREADY_EXISTS`.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(c)) => format!("UNKNOWN_ERROR_CODE_{c}"),
        Some(e) => screaming_snake(&e.to_string()),
    }
}

/// `TopicAlreadyExists` -> `TOPIC_ALREADY_EXISTS`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_follow_kafka() {
        // The names printed on stderr are the ones Kafka's own tools print.
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(9999), "UNKNOWN_ERROR_CODE_9999");
    }
}
