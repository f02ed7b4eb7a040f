//! Reading requests: JSON bodies within the size limit, query parameters, and JSON in a query
//! parameter (`?payload=`). Every refusal is an `HttpError` naming where the input is wrong.
use axum::extract::{FromRequest, Request};
use axum::http::{Uri, header};
use serde::de::DeserializeOwned;

use super::error::HttpError;

/// The largest body a request may carry, set by the gate from `--max-message-bytes`.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyLimit(pub usize);

/// A JSON body decoded into `T`. An empty body reads as `{}` (the SDKs send none for calls whose
/// fields are all optional).
pub(super) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(request: Request, _: &S) -> Result<Self, HttpError> {
        let limit = request
            .extensions()
            .get::<BodyLimit>()
            .map_or(4 * 1024 * 1024, |l| l.0);
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(HttpError::body_too_large(limit));
        }
        let bytes = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| HttpError::body_too_large(limit))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return decode(b"{}", "body").map(JsonBody);
        }
        decode(&bytes, "body").map(JsonBody)
    }
}

/// `bytes` as JSON of type `T`; a refusal names the path of what does not fit (`body.users.u1.name`).
pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8], at: &str) -> Result<T, HttpError> {
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut json).map_err(|err| {
        let path = err.path().to_string();
        // `.` is the whole document, `?` a place the parser could not name (broken syntax).
        let field = if path == "." || path == "?" {
            at.to_owned()
        } else {
            format!("{at}.{path}")
        };
        HttpError::malformed(field, err.inner().to_string())
    })?;
    json.end()
        .map_err(|err| HttpError::malformed(at, err.to_string()))?;
    Ok(value)
}

/// The last value of query parameter `name`, percent-decoded.
pub(super) fn query_param(uri: &Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .last()
}

/// Query parameter `name`, required.
pub(super) fn required_param(uri: &Uri, name: &str) -> Result<String, HttpError> {
    query_param(uri, name).ok_or_else(|| HttpError::malformed(name, "is required"))
}

/// The JSON in query parameter `name` (URL-encoded, as `?payload=` carries it); `{}` when absent.
pub(super) fn json_param<T: DeserializeOwned>(uri: &Uri, name: &str) -> Result<T, HttpError> {
    match query_param(uri, name) {
        Some(text) => decode(text.as_bytes(), name),
        None => decode(b"{}", name),
    }
}
