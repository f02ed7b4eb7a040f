//! User ids: what a request may name a user, checked once for every door.
use crate::error::Error;

pub const MAX_ID_CHARS: usize = 255;

/// Why an id is not acceptable, if it is not.
pub fn id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("must not be empty".into());
    }
    let chars = id.chars().count();
    if chars > MAX_ID_CHARS {
        return Some(format!(
            "must be at most {MAX_ID_CHARS} characters, got {chars}"
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "@_-".contains(*c)))
    {
        return Some(format!("may contain only a-z A-Z 0-9 @ _ -, found {bad:?}"));
    }
    None
}

/// An id given in a request field of its own (`user_id`, `target_user_id`), checked.
pub fn check_id(field: &str, id: &str) -> Result<(), Error> {
    match id_problem(id) {
        Some(problem) => Err(Error::invalid(field, problem)),
        None => Ok(()),
    }
}
