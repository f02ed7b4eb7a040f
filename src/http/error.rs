//! The one place where roster's errors become the HTTP door's answers: Stream's error body
//! `{code, message, StatusCode, duration, more_info, details}` with its HTTP status and code.
//!
//! | roster error (gRPC code)                        | HTTP | code |
//! |-------------------------------------------------|------|------|
//! | invalid argument, failed precondition, range    | 400  | 4    |
//! | already exists                                  | 409  | 4    |
//! | not found                                       | 404  | 16   |
//! | unauthenticated                                 | 401  | 5    |
//! | unauthenticated: the token expired              | 401  | 40   |
//! | permission denied                               | 403  | 17   |
//! | resource exhausted (limits, load shedding)      | 429  | 9    |
//! | request body over the size limit                | 413  | 4    |
//! | unavailable, deadline exceeded                  | 503  | -1   |
//! | internal                                        | 500  | -1   |
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::domain::access::TokenRefusal;
use crate::domain::token::TimeProblem;
use crate::error::{
    Error, MAX_DESCRIPTION_BYTES, MAX_FIELD_BYTES, MAX_MESSAGE_BYTES, MAX_VIOLATIONS,
    TokenRejection, bounded,
};

/// Stream's error codes.
const INPUT: i32 = 4;
const AUTHENTICATION: i32 = 5;
const RATE_LIMITED: i32 = 9;
const NOT_FOUND: i32 = 16;
const NOT_ALLOWED: i32 = 17;
const TOKEN_EXPIRED: i32 = 40;
const INTERNAL: i32 = -1;

/// A refusal, as the HTTP door answers it.
#[derive(Debug, Clone)]
pub struct HttpError {
    pub status: StatusCode,
    pub code: i32,
    pub message: String,
    /// Field path to what is wrong with it (Stream's `exception_fields`).
    pub fields: Vec<(String, String)>,
}

impl HttpError {
    fn new(status: StatusCode, code: i32, message: impl Into<String>) -> Self {
        HttpError {
            status,
            code,
            message: bounded(message.into(), MAX_MESSAGE_BYTES),
            fields: Vec::new(),
        }
    }

    /// A server token that does not authenticate its caller.
    pub fn refused(refusal: TokenRefusal) -> Self {
        let code = match refusal {
            TokenRefusal::Time(TimeProblem::Expired) => TOKEN_EXPIRED,
            _ => AUTHENTICATION,
        };
        let message = match refusal {
            TokenRefusal::Missing => {
                "missing `Authorization: <server token>` (with `stream-auth-type: jwt`)".to_owned()
            }
            other => other.to_string(),
        };
        HttpError::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// `api_key` missing, or naming an app this server is not.
    pub fn wrong_api_key() -> Self {
        HttpError::new(
            StatusCode::UNAUTHORIZED,
            AUTHENTICATION,
            "api_key does not name this server's app",
        )
    }

    /// An authentication type other than a server JWT.
    pub fn wrong_auth_type() -> Self {
        HttpError::new(
            StatusCode::UNAUTHORIZED,
            AUTHENTICATION,
            "only server-side calls are served: send `stream-auth-type: jwt`",
        )
    }

    pub fn shed() -> Self {
        HttpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            RATE_LIMITED,
            "roster is at its concurrency limit; retry with backoff",
        )
    }

    pub fn timed_out() -> Self {
        HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            INTERNAL,
            "the request did not finish within the server's request timeout",
        )
    }

    pub fn body_too_large(limit: usize) -> Self {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            INPUT,
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// A malformed request (body, query string) named by where it is wrong.
    pub fn malformed(field: impl Into<String>, why: impl Into<String>) -> Self {
        HttpError::from(Error::invalid(field, why))
    }

    /// What axum answered on its own (no such route, a method the route does not take).
    pub fn from_status(status: StatusCode) -> Self {
        let code = match status {
            StatusCode::NOT_FOUND => NOT_FOUND,
            s if s.is_server_error() => INTERNAL,
            _ => INPUT,
        };
        let reason = status.canonical_reason().unwrap_or("error");
        HttpError::new(status, code, reason.to_lowercase())
    }

    /// The body Stream's SDKs decode as `APIError`.
    pub fn body(&self, duration: &str) -> Value {
        let fields: Map<String, Value> = self
            .fields
            .iter()
            .map(|(f, d)| (f.clone(), Value::String(d.clone())))
            .collect();
        json!({
            "code": self.code,
            "message": self.message,
            "StatusCode": self.status.as_u16(),
            "duration": duration,
            "more_info": "",
            "details": [],
            "exception_fields": fields,
        })
    }
}

impl From<Error> for HttpError {
    fn from(err: Error) -> HttpError {
        let message = err.to_string();
        let (status, code) = match &err {
            Error::InvalidArgument(violations) => {
                let mut answer = HttpError::new(StatusCode::BAD_REQUEST, INPUT, message);
                answer.fields = violations
                    .iter()
                    .take(MAX_VIOLATIONS)
                    .map(|v| {
                        (
                            bounded(v.field.clone(), MAX_FIELD_BYTES),
                            bounded(v.description.clone(), MAX_DESCRIPTION_BYTES),
                        )
                    })
                    .collect();
                return answer;
            }
            Error::UserNotFound(_)
            | Error::RoleNotFound(_)
            | Error::TaskNotFound(_)
            | Error::DeviceNotFound { .. } => (StatusCode::NOT_FOUND, NOT_FOUND),
            Error::UserDeleted(_)
            | Error::UserNotDeleted(_)
            | Error::UserPruned(_)
            | Error::RoleBuiltin(_)
            | Error::RoleInUse(_)
            | Error::TaskFinished(_)
            | Error::EventsPurged { .. }
            | Error::UserTokensDisabled => (StatusCode::BAD_REQUEST, INPUT),
            Error::RoleExists(_) => (StatusCode::CONFLICT, INPUT),
            Error::LimitExceeded(_) => (StatusCode::TOO_MANY_REQUESTS, RATE_LIMITED),
            Error::TokenRejected(TokenRejection::Expired(_)) => {
                (StatusCode::UNAUTHORIZED, TOKEN_EXPIRED)
            }
            Error::TokenRejected(_) => (StatusCode::UNAUTHORIZED, AUTHENTICATION),
            Error::UserForbidden { .. } | Error::MissingScope(_) => {
                (StatusCode::FORBIDDEN, NOT_ALLOWED)
            }
            Error::Unavailable(cause) => {
                tracing::warn!(error = %crate::error::Chain(cause.as_ref()), "database unavailable");
                return HttpError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    INTERNAL,
                    "database unavailable, retry later",
                );
            }
            Error::ShuttingDown(why) => {
                return HttpError::new(StatusCode::SERVICE_UNAVAILABLE, INTERNAL, *why);
            }
            Error::Database(cause) => {
                tracing::error!(error = %crate::error::Chain(cause.as_ref()), "database error");
                return HttpError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    INTERNAL,
                    "internal error",
                );
            }
            Error::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                return HttpError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    INTERNAL,
                    "internal error",
                );
            }
        };
        HttpError::new(status, code, message)
    }
}

/// The answer a handler gives, before the door adds `duration` (see `gate::answer`).
#[derive(Debug, Clone)]
pub enum Answer {
    Ok(Map<String, Value>),
    Err(HttpError),
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(Answer::Err(self));
        response
    }
}

/// A successful answer: a JSON object, to which the door adds `duration`.
pub struct Reply(pub Map<String, Value>);

impl Reply {
    /// `{}` (plus `duration`).
    pub fn empty() -> Self {
        Reply(Map::new())
    }

    /// An answer from a `json!({...})` object.
    pub fn of(value: Value) -> Self {
        match value {
            Value::Object(map) => Reply(map),
            other => Reply(Map::from_iter([("value".to_owned(), other)])),
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = StatusCode::OK.into_response();
        response.extensions_mut().insert(Answer::Ok(self.0));
        response
    }
}

pub type HttpResult<T = Reply> = Result<T, HttpError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_table() {
        let cases = [
            (Error::invalid("users", "bad"), 400, 4),
            (Error::UserNotFound("u".into()), 404, 16),
            (Error::LimitExceeded("x".into()), 429, 9),
            (
                Error::MissingScope(crate::domain::access::Scope::UsersRead.into()),
                403,
                17,
            ),
            (
                Error::TokenRejected(TokenRejection::Expired("u".into())),
                401,
                40,
            ),
        ];
        for (err, status, code) in cases {
            let answer = HttpError::from(err);
            assert_eq!((answer.status.as_u16(), answer.code), (status, code));
        }
        let expired = HttpError::refused(TokenRefusal::Time(TimeProblem::Expired));
        assert_eq!((expired.status.as_u16(), expired.code), (401, 40));
        let bad = HttpError::refused(TokenRefusal::Invalid);
        assert_eq!((bad.status.as_u16(), bad.code), (401, 5));
    }

    #[test]
    fn the_body_is_what_the_sdks_decode() {
        let body =
            HttpError::from(Error::invalid("users[u1].role", "must not be empty")).body("1.00ms");
        assert_eq!(body["code"], 4);
        assert_eq!(body["StatusCode"], 400);
        assert_eq!(body["duration"], "1.00ms");
        assert_eq!(body["details"], json!([]));
        assert_eq!(body["more_info"], "");
        assert_eq!(
            body["exception_fields"]["users[u1].role"],
            "must not be empty"
        );
    }
}
