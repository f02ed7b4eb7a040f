//! The `QueryUsers` filter language: any JSON object either parses into a filter whose SQL can
//! be built for both databases, or is refused with field violations under `filter`. Never a
//! panic, whatever the nesting, numbers, unicode or key names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster::domain::filter::{Field, Filter, parse_filter};
use roster::domain::presence::{AsOf, Presence};
use roster::domain::query::parse_query;
use roster::error::Error;
use roster::store::query_sql::select_users;
use sea_orm::DatabaseBackend;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(filter)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    match parse_filter(&filter) {
        Ok(parsed) => {
            check_fields(&parsed);
            // The same filter through the whole request parser, then into SQL for both backends.
            let query = parse_query(Some(&filter), &[], 0, 0, "", false)
                .expect("a filter that parses alone parses in a query");
            let as_of = AsOf {
                at: 1_700_000_000_000_000,
                presence: Presence::default(),
            };
            for backend in [DatabaseBackend::Sqlite, DatabaseBackend::Postgres] {
                let _ = select_users(&query, backend, as_of);
            }
        }
        Err(Error::InvalidArgument(violations)) => {
            assert!(!violations.is_empty(), "a refusal names what is wrong");
            for violation in violations {
                assert!(
                    violation.field.starts_with("filter"),
                    "violation outside the filter: {}",
                    violation.field
                );
            }
        }
        Err(other) => panic!("parsing a filter can only refuse it as invalid, got {other:?}"),
    }
});

/// Every field of a parsed filter has a canonical name that parses back to itself.
fn check_fields(filter: &Filter) {
    match filter {
        Filter::All | Filter::State { .. } => {}
        Filter::And(all) | Filter::Or(all) | Filter::Nor(all) => all.iter().for_each(check_fields),
        Filter::Leaf { field, .. } => {
            let name = field.to_string();
            assert_eq!(
                Field::parse(&name).as_ref(),
                Ok(field),
                "canonical name {name:?} does not parse back"
            );
        }
    }
}
