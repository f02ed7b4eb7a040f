//! Page tokens and page sizes, the same for every paged list (QueryUsers, QueryBannedUsers,
//! ListTasks). A token is URL-safe base64 (padding tolerated on the way in) of a small JSON
//! document saying where the previous page ended. Callers treat it as opaque; it is checked on the
//! way in, so a forged token can only move where a page starts.
use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// Longest token accepted. Sort values are bounded by the 5 KiB of caller data per user, so real
/// tokens stay far below.
pub const MAX_PAGE_TOKEN_BYTES: usize = 64 * 1024;

const TOKEN_BASE64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The token that carries `cursor`.
pub fn encode(cursor: &impl Serialize) -> String {
    let json = serde_json::to_vec(cursor).expect("a cursor is plain JSON data");
    TOKEN_BASE64.encode(json)
}

/// The cursor `token` carries; `Ok(None)` for the empty token (the first page).
pub fn decode<T: DeserializeOwned>(token: &str) -> Result<Option<T>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    if token.len() > MAX_PAGE_TOKEN_BYTES {
        return Err(not_a_token());
    }
    let bytes = TOKEN_BASE64.decode(token).map_err(|_| not_a_token())?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|_| not_a_token())
}

/// What a token this service did not issue (or issued for another list) gets.
pub fn not_a_token() -> Error {
    Error::invalid("page_token", "not a page token of this service")
}

/// A page size: 0 asks for `default`; more than `max` is refused.
pub fn page_size(requested: u32, default: u64, max: u64) -> Result<u64, Error> {
    match u64::from(requested) {
        0 => Ok(default),
        n if n <= max => Ok(n),
        n => Err(Error::invalid(
            "limit",
            format!("must be 1 to {max} (0 means {default}), got {n}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_anything_else_is_refused_on_page_token() {
        let token = encode(&(1_767_323_045_123_456_i64, "u-1@x"));
        let back: Option<(i64, String)> = decode(&token).expect("a token of ours");
        assert_eq!(back, Some((1_767_323_045_123_456, "u-1@x".to_owned())));
        assert_eq!(decode::<(i64, String)>("").expect("empty"), None);
        for forged in ["not base64!", "e30", &"A".repeat(MAX_PAGE_TOKEN_BYTES + 1)] {
            let Err(Error::InvalidArgument(v)) = decode::<(i64, String)>(forged) else {
                panic!("{forged:.20} was accepted");
            };
            assert_eq!(v[0].field, "page_token");
        }
        // Padding is tolerated on the way in.
        let padded = format!("{token}{}", "=".repeat((4 - token.len() % 4) % 4));
        assert_eq!(decode::<(i64, String)>(&padded).expect("padded"), back);
    }

    #[test]
    fn page_sizes_default_and_cap() {
        assert_eq!(page_size(0, 30, 100).expect("default"), 30);
        assert_eq!(page_size(100, 30, 100).expect("max"), 100);
        let Err(Error::InvalidArgument(v)) = page_size(101, 30, 100) else {
            panic!("101 accepted");
        };
        assert_eq!(v[0].field, "limit");
        assert_eq!(v[0].description, "must be 1 to 100 (0 means 30), got 101");
    }
}
