//! Roles: who may hold what.
use super::time::Micros;

pub const MAX_CUSTOM_ROLES: u64 = 25;
pub const MAX_ROLE_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub builtin: bool,
    pub channel_level: bool,
    pub created_at: Micros,
}

/// Why a name cannot be a role's, if it cannot.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.chars().count() > MAX_ROLE_CHARS {
        return Some(format!("must be 1 to {MAX_ROLE_CHARS} characters"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-".contains(*c)))
    {
        return Some(format!("may contain only a-z A-Z 0-9 _ -, found {bad:?}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(name_problem("moderator_2").is_none());
        assert!(name_problem("").is_some());
        assert!(name_problem(&"r".repeat(65)).is_some());
        assert!(name_problem("a b").is_some());
    }
}
