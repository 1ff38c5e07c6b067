//! One protocol-neutral error, mapped once per protocol by the adapters.
//!
//! The message of an [`Error`] is safe to show a client. Internal detail (storage errors,
//! I/O) is logged where it happens and replaced by a generic message of kind `Internal`.

use crate::identifier::ParseError;
use crate::record::RecordError;

/// What went wrong, as a client needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or breaks a rule (syntax, limits, template).
    InvalidArgument,
    /// The identifier, value, enterprise or template does not exist.
    NotFound,
    /// A create conflicts with something that exists with different content.
    AlreadyExists,
    /// The caller is authenticated but not allowed to do this.
    PermissionDenied,
    /// The request needs a valid token.
    Unauthenticated,
    /// A size, count or rate limit was hit.
    ResourceExhausted,
    /// A dependency (upstream, storage) cannot serve now; retrying may help.
    Unavailable,
    /// A bug or a storage failure; details are in the node's log.
    Internal,
}

impl ErrorKind {
    /// Its name in the `outcome` label of request metrics, the same on every interface
    /// (`ok` is the outcome without an error).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::ResourceExhausted => "resource_exhausted",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }

    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::InvalidArgument,
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::PermissionDenied,
        ErrorKind::Unauthenticated,
        ErrorKind::ResourceExhausted,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ];
}

/// Machine-readable detail beyond the kind, with the codes clients already act on: China's
/// national identifier software (IDIS) for refusals, the Handle protocol for values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// 603: the enterprise's request-rate limit.
    RequestLimit,
    /// 604: the enterprise's registration limit (total or per day).
    RegistrationLimit,
    /// 406: too many failed authentications from this client.
    AuthenticationLimit,
    /// Handle 200: the record exists but not the value (index) named.
    ValueNotFound,
    /// Handle 201: the record already has a value at that index.
    ValueExists,
    /// Handle 3: the node is serving as many requests as it takes; retry later.
    Busy,
}

impl Reason {
    pub fn code(self) -> u16 {
        match self {
            Reason::RequestLimit => 603,
            Reason::RegistrationLimit => 604,
            Reason::AuthenticationLimit => 406,
            Reason::ValueNotFound => 200,
            Reason::ValueExists => 201,
            Reason::Busy => 3,
        }
    }
}

/// An error with its kind and a client-safe message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// Why a limit refused the request, when one did.
    pub reason: Option<Reason>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            reason: None,
        }
    }

    /// A limit refused the request: `ResourceExhausted` with a machine-readable reason,
    /// whose code also prefixes the message (`[604] ...`).
    pub fn limit(reason: Reason, message: impl std::fmt::Display) -> Error {
        Error {
            kind: ErrorKind::ResourceExhausted,
            message: format!("[{}] {message}", reason.code()),
            reason: Some(reason),
        }
    }

    /// `NotFound` for a value of a record that exists.
    pub fn value_not_found(message: impl Into<String>) -> Error {
        Error {
            reason: Some(Reason::ValueNotFound),
            ..Error::new(ErrorKind::NotFound, message)
        }
    }

    /// `AlreadyExists` for a value index a record already has.
    pub fn value_exists(message: impl Into<String>) -> Error {
        Error {
            reason: Some(Reason::ValueExists),
            ..Error::new(ErrorKind::AlreadyExists, message)
        }
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotFound, message)
    }

    pub fn denied(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::PermissionDenied, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unauthenticated, message)
    }

    pub fn exhausted(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::ResourceExhausted, message)
    }

    /// Logs `detail` (never sent) and returns a generic internal error.
    pub fn internal(detail: impl std::fmt::Display) -> Error {
        tracing::error!(%detail, "internal error");
        Error::new(ErrorKind::Internal, "internal error (see the node's log)")
    }
}

impl From<ParseError> for Error {
    fn from(e: ParseError) -> Error {
        Error::invalid(format!("invalid identifier: {e}"))
    }
}

impl From<RecordError> for Error {
    fn from(e: RecordError) -> Error {
        match e {
            RecordError::TooManyValues { .. } | RecordError::TooLarge { .. } => {
                Error::exhausted(format!("invalid record: {e}"))
            }
            _ => Error::invalid(format!("invalid record: {e}")),
        }
    }
}
