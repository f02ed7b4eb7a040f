//! `GetUser` and `QueryUsers`: filters, sorting, limits, pagination, hostile input.

use std::collections::HashSet;

use roster::pb::{QueryUsersRequest, SortField, User, UserRequest};
use serde_json::{Value as Json, json};
use tonic::Code;

use crate::support::*;

/// Five users covering built-in fields, custom data of mixed types, and teams.
async fn seed_people(srv: &Server) {
    srv.upsert_ok([
        user("alice")
            .with_name("Alice Smith")
            .with_role("admin")
            .with_language("en")
            .with_teams(&["red", "blue"])
            .with_custom(
                json!({"score": 10, "city": "Paris", "address": {"city": "Paris"}, "vip": true}),
            ),
        UserRequest {
            invisible: true,
            ..user("bob")
                .with_name("Bob Jones")
                .with_teams(&["blue"])
                .with_custom(json!({"score": 20, "city": "Lyon", "vip": false}))
        },
        user("carol")
            .with_name("Carol")
            .with_role("guest")
            .with_teams(&["green"])
            .with_custom(json!({"score": 30})),
        // A string score: never equal to, nor ordered against, the number 30.
        user("dave").with_custom(json!({"score": "30"})),
        user("erin").with_name("alicia keys").with_teams(&["red"]),
    ])
    .await;
}

/// Runs every filter and reports all mismatches at once.
async fn check_filters(srv: &Server, cases: Vec<(Json, Vec<&str>)>) {
    let mut failures = Vec::new();
    for (filter, expected) in cases {
        let expected = id_set(expected);
        match srv.find(filter.clone()).await {
            Ok(found) if sorted(found.clone()) == expected => {}
            Ok(found) => failures.push(format!(
                "{filter}: expected {expected:?}, got {:?}",
                sorted(found)
            )),
            Err(status) => failures.push(format!(
                "{filter}: expected {expected:?}, got {:?}: {}",
                status.code(),
                status.message()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} filter(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn get_user_of_an_unknown_id_is_not_found() {
    let srv = Launch::new().start().await;
    seed_people(&srv).await;

    let status = expect_err(srv.get("nobody").await);

    assert_reason(&status, Code::NotFound, "USER_NOT_FOUND");
}

#[tokio::test]
async fn query_returns_whole_users() {
    let srv = Launch::new().start().await;
    seed_people(&srv).await;

    let found = srv
        .query(filter_query(json!({"id": "alice"})))
        .await
        .expect("QueryUsers");

    assert_eq!(found.users, vec![srv.get_ok("alice").await]);
    assert_eq!(found.next_page_token, "");
}

#[tokio::test]
async fn empty_and_absent_filters_match_everyone() {
    let srv = Launch::new().start().await;
    seed_people(&srv).await;
    let everyone = id_set(["alice", "bob", "carol", "dave", "erin"]);

    let empty = srv.find(json!({})).await.expect("empty filter");
    let absent = srv
        .query(QueryUsersRequest {
            limit: 100,
            ..QueryUsersRequest::default()
        })
        .await
        .expect("absent filter");

    assert_eq!(sorted(empty), everyone);
    assert_eq!(sorted(ids(&absent.users)), everyone);
}

#[tokio::test]
async fn comparison_operators_on_built_in_fields() {
    let srv = Launch::new().start().await;
    seed_people(&srv).await;

    check_filters(
        &srv,
        vec![
            (json!({"id": "bob"}), vec!["bob"]),
            (json!({"id": {"$eq": "bob"}}), vec!["bob"]),
            (json!({"role": "admin"}), vec!["alice"]),
            (json!({"role": {"$ne": "user"}}), vec!["alice", "carol"]),
            (json!({"name": "Carol"}), vec!["carol"]),
            (json!({"language": "en"}), vec!["alice"]),
            (json!({"invisible": true}), vec!["bob"]),
            (
                json!({"invisible": false}),
                vec!["alice", "carol", "dave", "erin"],
            ),
            (json!({"id": {"$gt": "carol"}}), vec!["dave", "erin"]),
            (
                json!({"id": {"$gte": "carol"}}),
                vec!["carol", "dave", "erin"],
            ),
            (json!({"id": {"$lt": "bob"}}), vec!["alice"]),
            (json!({"id": {"$lte": "bob"}}), vec!["alice", "bob"]),
            (
                json!({"id": {"$gt": "alice", "$lt": "dave"}}),
                vec!["bob", "carol"],
            ),
            (
                json!({"id": {"$in": ["alice", "carol", "nobody"]}}),
                vec!["alice", "carol"],
            ),
            (
                json!({"id": {"$nin": ["alice", "carol"]}}),
                vec!["bob", "dave", "erin"],
            ),
            (
                json!({"role": {"$in": ["admin", "guest"]}}),
                vec!["alice", "carol"],
            ),
            (
                json!({"name": {"$exists": true}}),
                vec!["alice", "bob", "carol", "erin"],
            ),
            (json!({"name": {"$exists": false}}), vec!["dave"]),
            (json!({"id": "nobody"}), vec![]),
        ],
    )
    .await;
}

#[tokio::test]
async fn comparison_operators_on_custom_fields() {
    let srv = Launch::new().start().await;
    seed_people(&srv).await;

    check_filters(
        &srv,
        vec![
            (json!({"score": 10}), vec!["alice"]),
            (json!({"custom.score": 10}), vec!["alice"]),
            (json!({"score": {"$eq": 30}}), vec!["carol"]),
            (json!({"score": "30"}), vec!["dave"]),
            (json!({"score": {"$gt": 10}}), vec!["bob", "carol"]),
            (json!({"custom.score": {"$gt": 10}}), vec!["bob", "carol"]),
            (json!({"score": {"$gte": 20}}), vec!["bob", "carol"]),
            (json!({"score": {"$lt": 20}}), vec!["alice"]),
            (json!({"score": {"$lte": 20}}), vec!["alice", "bob"]),
            (json!({"custom.score": {"$gt": 15, "$lt": 25}}), vec!["bob"]),
            (json!({"score": {"$gt": "2"}}), vec!["dave"]),
            (json!({"score": {"$in": [10, 30]}}), vec!["alice", "carol"]),
            (json!({"score": {"$in": ["30"]}}), vec!["dave"]),
            (
                json!({"score": {"$nin": [10, 20]}}),
                vec!["carol", "dave", "erin"],
            ),
            (
                json!({"score": {"$ne": 10}}),
                vec!["bob", "carol", "dave", "erin"],
            ),
            (json!({"city": "Paris"}), vec!["alice"]),
            (
                json!({"city": {"$ne": "Paris"}}),
                vec!["bob", "carol", "dave", "erin"],
            ),
            (json!({"city": {"$exists": true}}), vec!["alice", "bob"]),
            (
                json!({"city": {"$exists": false}}),
                vec!["carol", "dave", "erin"],
            ),
            (json!({"city": null}), vec!["carol", "dave", "erin"]),
            (
                json!({"city": {"$eq": null}}),
                vec!["carol", "dave", "erin"],
            ),
            (json!({"address.city": "Paris"}), vec!["alice"]),
            (json!({"custom.address.city": "Paris"}), vec!["alice"]),
            (json!({"vip": true}), vec!["alice"]),
            (json!({"vip": false}), vec!["bob"]),
        ],
    )
    .await;
}

#[tokio::test]
async fn autocomplete_is_a_case_insensitive_prefix_match_on_id_and_name() {
    let srv = Launch::new().start().await;
    seed_people(&srv).await;

    check_filters(
        &srv,
        vec![
            (
                json!({"name": {"$autocomplete": "ali"}}),
                vec!["alice", "erin"],
            ),
            (
                json!({"name": {"$autocomplete": "ALI"}}),
                vec!["alice", "erin"],
            ),
            (json!({"name": {"$autocomplete": "Bob J"}}), vec!["bob"]),
            (json!({"id": {"$autocomplete": "ca"}}), vec!["carol"]),
            (json!({"id": {"$autocomplete": "CA"}}), vec!["carol"]),
            (json!({"id": {"$autocomplete": "e"}}), vec!["erin"]),
            (json!({"id": {"$autocomplete": "x"}}), vec![]),
            // The prefix is literal text, not a LIKE pattern.
            (json!({"name": {"$autocomplete": "%"}}), vec![]),
            (json!({"id": {"$autocomplete": "_"}}), vec![]),
            (json!({"id": {"$autocomplete": "_ob"}}), vec![]),
        ],
    )
    .await;
}

#[tokio::test]
async fn teams_operators() {
    let srv = Launch::new().start().await;
    seed_people(&srv).await;

    check_filters(
        &srv,
        vec![
            (
                json!({"teams": {"$contains": "red"}}),
                vec!["alice", "erin"],
            ),
            (json!({"teams": "blue"}), vec!["alice", "bob"]),
            (json!({"teams": {"$eq": "green"}}), vec!["carol"]),
            (
                json!({"teams": {"$in": ["green", "blue"]}}),
                vec!["alice", "bob", "carol"],
            ),
            (
                json!({"teams": {"$nin": ["red"]}}),
                vec!["bob", "carol", "dave"],
            ),
            (
                json!({"teams": {"$ne": "red"}}),
                vec!["bob", "carol", "dave"],
            ),
            (json!({"teams": {"$contains": "re"}}), vec![]),
        ],
    )
    .await;
}

#[tokio::test]
async fn logical_operators_and_implicit_and() {
    let srv = Launch::new().start().await;
    seed_people(&srv).await;

    check_filters(
        &srv,
        vec![
            (json!({"$and": [{"role": "user"}, {"invisible": true}]}), vec!["bob"]),
            (json!({"$or": [{"id": "alice"}, {"score": 30}]}), vec!["alice", "carol"]),
            (json!({"$nor": [{"role": "user"}, {"id": "alice"}]}), vec!["carol"]),
            (json!({"role": "user", "teams": "red"}), vec!["erin"]),
            (
                json!({"$or": [{"$and": [{"role": "user"}, {"teams": "blue"}]}, {"name": "Carol"}]}),
                vec!["bob", "carol"],
            ),
            (json!({"$and": [{"score": {"$gte": 10}}], "teams": "red"}), vec!["alice"]),
            (json!({"$nor": [{"teams": "red"}]}), vec!["bob", "carol", "dave"]),
        ],
    )
    .await;
}

#[tokio::test]
async fn timestamp_filters_take_rfc_3339_strings() {
    let srv = Launch::new().start().await;
    let first = srv.upsert_ok([user("t1"), user("t2")]).await;
    let second = srv.upsert_ok([user("t3")]).await;
    let t3 = &second["t3"];
    let first_latest = first
        .values()
        .max_by_key(|u| micros(&u.created_at))
        .expect("two users");
    assert!(
        micros(&t3.created_at) > micros(&first_latest.created_at),
        "a later write is later"
    );

    check_filters(
        &srv,
        vec![
            (
                json!({"created_at": {"$gte": rfc3339(&t3.created_at)}}),
                vec!["t3"],
            ),
            (
                json!({"created_at": {"$gt": rfc3339(&first_latest.created_at)}}),
                vec!["t3"],
            ),
            (
                json!({"created_at": {"$lt": rfc3339(&t3.created_at)}}),
                vec!["t1", "t2"],
            ),
            (
                json!({"created_at": {"$lte": rfc3339(&first_latest.created_at)}}),
                vec!["t1", "t2"],
            ),
            (json!({"created_at": rfc3339(&t3.created_at)}), vec!["t3"]),
            (
                json!({"created_at": {"$ne": rfc3339(&t3.created_at)}}),
                vec!["t1", "t2"],
            ),
            (
                json!({"updated_at": {"$gte": rfc3339(&t3.updated_at)}}),
                vec!["t3"],
            ),
            (
                json!({"created_at": {"$gt": "2000-01-01T00:00:00Z"}}),
                vec!["t1", "t2", "t3"],
            ),
            (
                json!({"created_at": {"$lt": "2000-01-01T00:00:00+02:00"}}),
                vec![],
            ),
            (
                json!({"deactivated_at": {"$exists": false}}),
                vec!["t1", "t2", "t3"],
            ),
        ],
    )
    .await;
}

/// `sort`, then run `filter` with it, giving the ids in order.
async fn sorted_ids(srv: &Server, filter: Json, sort: &[(&str, i32)]) -> Vec<String> {
    let request = QueryUsersRequest {
        sort: sort
            .iter()
            .map(|(field, direction)| SortField {
                field: (*field).to_owned(),
                direction: *direction,
            })
            .collect(),
        ..filter_query(filter.clone())
    };
    let response = srv
        .query(request)
        .await
        .unwrap_or_else(|status| panic!("QueryUsers {filter} sorted by {sort:?}: {status:?}"));
    ids(&response.users)
}

#[tokio::test]
async fn sort_on_custom_and_built_in_fields() {
    let srv = Launch::new().start().await;
    seed_people(&srv).await;
    let numeric = json!({"id": {"$in": ["alice", "bob", "carol"]}});

    assert_eq!(
        sorted_ids(&srv, numeric.clone(), &[("score", 1)]).await,
        ["alice", "bob", "carol"]
    );
    assert_eq!(
        sorted_ids(&srv, numeric.clone(), &[("score", -1)]).await,
        ["carol", "bob", "alice"]
    );
    assert_eq!(
        sorted_ids(&srv, numeric.clone(), &[("custom.score", -1)]).await,
        ["carol", "bob", "alice"]
    );
    assert_eq!(
        sorted_ids(&srv, numeric.clone(), &[("name", 0)]).await,
        ["alice", "bob", "carol"]
    );
    assert_eq!(
        sorted_ids(&srv, numeric, &[("name", -1)]).await,
        ["carol", "bob", "alice"]
    );
    assert_eq!(
        sorted_ids(&srv, json!({}), &[("role", 1), ("id", -1)]).await,
        ["alice", "carol", "erin", "dave", "bob"]
    );
    assert_eq!(
        sorted_ids(&srv, json!({}), &[("role", -1), ("id", 1)]).await,
        ["bob", "dave", "erin", "carol", "alice"]
    );
    // Ties on the sort key fall back to id descending.
    assert_eq!(
        sorted_ids(&srv, json!({"role": "user"}), &[("role", 1)]).await,
        ["erin", "dave", "bob"]
    );
}

#[tokio::test]
async fn at_most_5_sort_fields() {
    let srv = Launch::new().start().await;
    seed_people(&srv).await;
    let five = ["role", "name", "score", "created_at", "id"];
    let sort_by = |fields: &[&str]| QueryUsersRequest {
        sort: fields
            .iter()
            .map(|f| SortField {
                field: (*f).to_owned(),
                direction: 1,
            })
            .collect(),
        ..QueryUsersRequest::default()
    };

    srv.query(sort_by(&five))
        .await
        .expect("5 sort fields are fine");
    let status = expect_err(
        srv.query(sort_by(&[&five[..], &["language"]].concat()))
            .await,
    );

    assert_invalid(&status, "sort");
}

#[tokio::test]
async fn default_sort_is_created_at_descending_then_id_descending() {
    let srv = Launch::new().start().await;
    let mut created: Vec<User> = Vec::new();
    for batch in [&["a1", "a3", "a2"][..], &["b2", "b1"], &["c1"]] {
        created.extend(
            srv.upsert_ok(batch.iter().map(|id| user(id)))
                .await
                .into_values(),
        );
    }
    created.sort_by(|x, y| (micros(&y.created_at), &y.id).cmp(&(micros(&x.created_at), &x.id)));
    let expected = ids(&created);

    let found = srv
        .query(QueryUsersRequest::default())
        .await
        .expect("QueryUsers");

    assert_eq!(ids(&found.users), expected);
    assert_eq!(expected[0], "c1", "the newest user comes first");
    assert_eq!(
        sorted(expected[3..].to_vec()),
        id_set(["a1", "a2", "a3"]),
        "the oldest come last"
    );
}

#[tokio::test]
async fn limit_defaults_to_30_and_is_at_most_100() {
    let srv = Launch::new().start().await;
    srv.upsert_ok((0..35).map(|i| user(&format!("u{i:02}"))))
        .await;

    let default = srv
        .query(QueryUsersRequest::default())
        .await
        .expect("default limit");
    assert_eq!(default.users.len(), 30);
    assert!(!default.next_page_token.is_empty(), "more users remain");

    let hundred = srv
        .query(QueryUsersRequest {
            limit: 100,
            ..QueryUsersRequest::default()
        })
        .await
        .expect("limit 100");
    assert_eq!(hundred.users.len(), 35);
    assert_eq!(hundred.next_page_token, "", "nothing remains");

    let one = srv
        .query(QueryUsersRequest {
            limit: 1,
            ..QueryUsersRequest::default()
        })
        .await
        .expect("limit 1");
    assert_eq!(one.users.len(), 1);

    let status = expect_err(
        srv.query(QueryUsersRequest {
            limit: 101,
            ..QueryUsersRequest::default()
        })
        .await,
    );
    assert_invalid(&status, "limit");
}

#[tokio::test]
async fn offset_skips_users_up_to_1000() {
    let srv = Launch::new().start().await;
    srv.upsert_ok((0..5).map(|i| user(&format!("u{i}")))).await;
    let all = ids(&srv
        .query(QueryUsersRequest::default())
        .await
        .expect("QueryUsers")
        .users);

    let page = srv
        .query(QueryUsersRequest {
            offset: 2,
            limit: 2,
            ..QueryUsersRequest::default()
        })
        .await
        .expect("offset 2");
    assert_eq!(ids(&page.users), all[2..4]);

    let far = srv
        .query(QueryUsersRequest {
            offset: 1000,
            ..QueryUsersRequest::default()
        })
        .await
        .expect("offset 1000 is allowed");
    assert!(far.users.is_empty());

    let status = expect_err(
        srv.query(QueryUsersRequest {
            offset: 1001,
            ..QueryUsersRequest::default()
        })
        .await,
    );
    assert_invalid(&status, "offset");
}

#[tokio::test]
async fn offset_and_page_token_together_are_invalid() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1"), user("u2")]).await;
    let first = srv
        .query(QueryUsersRequest {
            limit: 1,
            ..QueryUsersRequest::default()
        })
        .await
        .expect("first page");
    assert!(!first.next_page_token.is_empty());

    let status = expect_err(
        srv.query(QueryUsersRequest {
            limit: 1,
            offset: 1,
            page_token: first.next_page_token,
            ..QueryUsersRequest::default()
        })
        .await,
    );

    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn a_bad_page_token_is_invalid() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1"), user("u2")]).await;

    // Not a token at all; base64 of `{"x":1}`; a real token cut short.
    let real = srv
        .query(QueryUsersRequest {
            limit: 1,
            ..QueryUsersRequest::default()
        })
        .await
        .expect("first page")
        .next_page_token;
    let truncated = real[..real.len() / 2].to_owned();
    for token in ["garbage!", "eyJ4IjoxfQ", "%%%", truncated.as_str()] {
        let status = expect_err(
            srv.query(QueryUsersRequest {
                page_token: token.to_owned(),
                ..QueryUsersRequest::default()
            })
            .await,
        );
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "page token {token:?}: {status:?}"
        );
    }
}

/// 1,000 users in 10 batches of 100; `bucket` takes 7 values, so a sort on it has many ties.
async fn seed_thousand(srv: &Server) {
    for batch in 0..10 {
        srv.upsert_ok(
            (batch * 100..batch * 100 + 100)
                .map(|i| user(&format!("p{i:04}")).with_custom(json!({"bucket": i % 7}))),
        )
        .await;
    }
}

/// Walks every page of `sort` with limit 100; every page must be non-empty.
async fn walk(srv: &Server, sort: &[(&str, i32)]) -> Vec<User> {
    let sort: Vec<SortField> = sort
        .iter()
        .map(|(field, direction)| SortField {
            field: (*field).to_owned(),
            direction: *direction,
        })
        .collect();
    let mut users = Vec::new();
    let mut page_token = String::new();
    for page_number in 0.. {
        assert!(page_number <= 20, "the walk does not end");
        let request = QueryUsersRequest {
            sort: sort.clone(),
            limit: 100,
            page_token: page_token.clone(),
            ..QueryUsersRequest::default()
        };
        let page = srv
            .query(request)
            .await
            .unwrap_or_else(|status| panic!("page {page_number} of {sort:?}: {status:?}"));
        assert!(
            !page.users.is_empty(),
            "page {page_number} is empty but the previous had a token"
        );
        assert!(page.users.len() <= 100);
        users.extend(page.users);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    users
}

#[track_caller]
fn assert_each_exactly_once(users: &[User]) {
    let mut seen = HashSet::new();
    let duplicates: Vec<&str> = users
        .iter()
        .filter(|u| !seen.insert(u.id.as_str()))
        .map(|u| u.id.as_str())
        .collect();
    assert!(
        duplicates.is_empty(),
        "returned more than once: {duplicates:?}"
    );
    let expected: HashSet<String> = (0..1000).map(|i| format!("p{i:04}")).collect();
    let returned: HashSet<String> = users.iter().map(|u| u.id.clone()).collect();
    let missing: Vec<&String> = expected.difference(&returned).collect();
    assert!(
        missing.is_empty(),
        "never returned: {} users, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(users.len(), 1000);
}

#[tokio::test]
async fn page_token_walk_with_the_default_sort_returns_each_user_once() {
    let srv = Launch::new().start().await;
    seed_thousand(&srv).await;

    let users = walk(&srv, &[]).await;

    assert_each_exactly_once(&users);
    let keys: Vec<(i64, &str)> = users
        .iter()
        .map(|u| (micros(&u.created_at), u.id.as_str()))
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] > w[1]),
        "order is created_at desc, id desc"
    );
}

#[tokio::test]
async fn page_token_walk_with_a_custom_sort_full_of_ties_returns_each_user_once() {
    let srv = Launch::new().start().await;
    seed_thousand(&srv).await;
    let bucket = |u: &User| custom_of(u)["bucket"].as_i64().expect("numeric bucket");

    let ascending = walk(&srv, &[("bucket", 1)]).await;
    assert_each_exactly_once(&ascending);
    let keys: Vec<(i64, &str)> = ascending
        .iter()
        .map(|u| (bucket(u), u.id.as_str()))
        .collect();
    assert!(
        keys.windows(2)
            .all(|w| w[0].0 < w[1].0 || (w[0].0 == w[1].0 && w[0].1 > w[1].1)),
        "order is bucket asc, then id desc"
    );

    let descending = walk(&srv, &[("custom.bucket", -1), ("created_at", 1)]).await;
    assert_each_exactly_once(&descending);
    let keys: Vec<(i64, i64, &str)> = descending
        .iter()
        .map(|u| (bucket(u), micros(&u.created_at), u.id.as_str()))
        .collect();
    assert!(
        keys.windows(2).all(|w| {
            let ((b0, c0, i0), (b1, c1, i1)) = (w[0], w[1]);
            b0 > b1 || (b0 == b1 && (c0 < c1 || (c0 == c1 && i0 > i1)))
        }),
        "order is bucket desc, created_at asc, then id desc"
    );
}

#[tokio::test]
async fn include_deactivated_users_changes_nothing_for_active_users() {
    let srv = Launch::new().start().await;
    seed_people(&srv).await;

    let without = srv
        .query(filter_query(json!({})))
        .await
        .expect("without deactivated");
    let with = srv
        .query(QueryUsersRequest {
            include_deactivated_users: true,
            ..filter_query(json!({}))
        })
        .await
        .expect("with deactivated");

    assert_eq!(with.users, without.users);
    assert_eq!(
        sorted(ids(&with.users)),
        id_set(["alice", "bob", "carol", "dave", "erin"])
    );
}

#[tokio::test]
async fn malformed_filters_are_invalid_argument() {
    let srv = Launch::new().start().await;
    seed_people(&srv).await;
    let mut nested = json!({"id": "alice"});
    // 12 levels: over the limit of 10, well under protobuf's own decoding limit.
    for _ in 0..12 {
        nested = json!({"$and": [nested]});
    }
    let too_many_values: Vec<u32> = (0..1001).collect();
    let cases = [
        json!({"$where": "1 == 1"}),
        json!({"name": {"$regex": ".*"}}),
        json!({"id": {"$where": "1"}}),
        json!({"created_at": {"$gt": 5}}),
        json!({"created_at": "not a time"}),
        json!({"invisible": "yes"}),
        json!({"score": {"$gt": {}}}),
        json!({"score": {"$lt": [1]}}),
        json!({"$and": {}}),
        json!({"$or": []}),
        json!({"$nor": [1]}),
        json!({"id": {"$in": "alice"}}),
        json!({"name": {"$exists": "yes"}}),
        json!({"teams": {"$contains": 5}}),
        json!({"name": {"$contains": "x"}}),
        json!({"score": {"$autocomplete": "1"}}),
        json!({"id": {"$eq": "a", "$bogus": 1}}),
        json!({"score": {"$in": too_many_values}}),
        nested,
    ];
    let mut failures = Vec::new();
    for filter in cases {
        match srv.find(filter.clone()).await {
            Err(status) if status.code() == Code::InvalidArgument => {}
            Err(status) => failures.push(format!(
                "{filter}: {:?} {}",
                status.code(),
                status.message()
            )),
            Ok(found) => failures.push(format!("{filter}: accepted, returned {found:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "not INVALID_ARGUMENT:\n{}",
        failures.join("\n")
    );

    let max_values: Vec<u32> = (0..1000).collect();
    srv.find(json!({"score": {"$in": max_values}}))
        .await
        .expect("1000 $in values are fine");
}

#[tokio::test]
async fn hostile_filters_are_rejected_or_match_nothing_and_change_nothing() {
    let srv = Launch::new().start().await;
    seed_people(&srv).await;
    let before = srv.all_users().await;
    let filters = [
        json!({"a\"b": 1}),
        json!({"custom.a\"b": {"$exists": true}}),
        json!({"name'; DROP TABLE users; --": 1}),
        json!({"x; DELETE FROM users": 1}),
        json!({"--": 1}),
        json!({"a--b": {"$eq": "x"}}),
        json!({"score') OR 1=1 --": {"$gt": 0}}),
        json!({"id": "' OR '1'='1"}),
        json!({"id": {"$in": ["x') OR ('1'='1"]}}),
        json!({"name": {"$eq": "x' OR 1=1 --"}}),
        json!({"name": {"$autocomplete": "' OR 1=1 --"}}),
        json!({"teams": {"$contains": "\" OR 1=1 --"}}),
        json!({"custom.$.x": 1}),
        json!({"a..b": 1}),
        json!({".": 1}),
        json!({"a\\b": 1}),
        json!({"a\u{0}b": 1}),
        json!({"name": "a\u{0}b"}),
        json!({"id": {"$where": "sleep(10)"}}),
        json!({"name": {"$regex": ".*"}}),
        json!({"created_at": {"$gt": 5}}),
        json!({"invisible": "yes"}),
        json!({"score": {"$gt": {}}}),
        json!({"$and": {}}),
    ];
    let mut failures = Vec::new();
    for filter in filters {
        match srv.find(filter.clone()).await {
            Err(status) if status.code() == Code::InvalidArgument => {}
            Ok(found) if found.is_empty() => {}
            Ok(found) => failures.push(format!("{filter}: matched {found:?}")),
            Err(status) => failures.push(format!(
                "{filter}: {:?} {}",
                status.code(),
                status.message()
            )),
        }
    }
    for field in ["name; DROP TABLE users", "a\"b", "x') --"] {
        let request = QueryUsersRequest {
            sort: vec![SortField {
                field: field.to_owned(),
                direction: 1,
            }],
            ..QueryUsersRequest::default()
        };
        match srv.query(request).await {
            Ok(_) => {}
            Err(status) if status.code() == Code::InvalidArgument => {}
            Err(status) => failures.push(format!(
                "sort {field:?}: {:?} {}",
                status.code(),
                status.message()
            )),
        }
    }

    assert!(
        failures.is_empty(),
        "hostile input got through:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        srv.all_users().await,
        before,
        "the users are all still there, unchanged"
    );
    assert_eq!(
        srv.get_ok("alice").await.name.as_deref(),
        Some("Alice Smith")
    );
}

/// `QueryUsers` sorted by `fields` (ascending), or its refusal.
async fn query_sorted_by(srv: &Server, fields: &[&str]) -> Result<Vec<String>, tonic::Status> {
    let response = srv
        .query(QueryUsersRequest {
            sort: fields
                .iter()
                .map(|f| SortField {
                    field: (*f).to_owned(),
                    direction: 1,
                })
                .collect(),
            limit: 100,
            ..QueryUsersRequest::default()
        })
        .await?;
    Ok(ids(&response.users))
}

#[tokio::test]
async fn banned_shadow_banned_and_online_filter_as_the_read_shows_them() {
    let srv = crate::tokens::server_with_secret(crate::tokens::SECRET).await;
    let decoy = json!({"banned": true, "shadow_banned": true, "online": true});
    srv.upsert_ok([
        user("forever"),
        user("brief"),
        user("shadow"),
        user("active"),
        user("hidden"),
        user("decoy").with_custom(decoy),
    ])
    .await;
    srv.update_partial_ok(partial("hidden", json!({"invisible": true}), &[]))
        .await;
    for (id, minutes, shadow) in [
        ("forever", 0, false),
        ("brief", 5, false),
        ("shadow", 0, true),
    ] {
        srv.moderation()
            .ban_user(roster::pb::BanUserRequest {
                target_user_id: id.to_owned(),
                timeout: minutes,
                shadow,
                ..Default::default()
            })
            .await
            .expect("BanUser");
    }
    for id in ["active", "hidden"] {
        let token = crate::tokens::token_ok(&srv, id).await;
        crate::tokens::verify(&srv, &token)
            .await
            .expect("VerifyUserToken");
    }
    let find = |filter: Json| {
        let srv = &srv;
        async move {
            sorted(
                srv.find(filter.clone())
                    .await
                    .unwrap_or_else(|e| panic!("{filter}: {e:?}")),
            )
        }
    };

    assert_eq!(find(json!({"banned": true})).await, ["brief", "forever"]);
    assert_eq!(
        find(json!({"banned": false})).await,
        ["active", "decoy", "hidden", "shadow"]
    );
    assert_eq!(find(json!({"shadow_banned": true})).await, ["shadow"]);
    assert_eq!(
        find(json!({"online": true})).await,
        ["active"],
        "invisible is never online"
    );
    assert_eq!(
        find(json!({"online": {"$ne": true}, "banned": {"$in": [false]}})).await,
        ["decoy", "hidden", "shadow"]
    );
    assert_eq!(
        find(json!({"$or": [{"banned": true}, {"shadow_banned": true}]})).await,
        ["brief", "forever", "shadow"]
    );
    assert_eq!(find(json!({"custom.banned": true})).await, ["decoy"]);
    assert_eq!(find(json!({"custom.online": true})).await, ["decoy"]);

    // Five minutes on, the brief ban has expired and presence (60 s window) has faded.
    srv.clock().advance(std::time::Duration::from_secs(5 * 60));
    assert_eq!(find(json!({"banned": true})).await, ["forever"]);
    assert_eq!(find(json!({"online": true})).await, Vec::<String>::new());
    assert_eq!(find(json!({"online": false})).await.len(), 6);
    let brief = srv.get_ok("brief").await;
    assert!(!brief.banned && !brief.online, "the read agrees: {brief:?}");
}

#[tokio::test]
async fn built_in_names_that_cannot_be_queried_are_refused_never_read_as_custom_keys() {
    let srv = Launch::new().start().await;
    let custom = json!({"devices": 2, "ban_expires": "x", "blocked_user_ids": 1, "banned": true});
    srv.upsert_ok([user("u1").with_custom(custom)]).await;

    for (filter, field) in [
        (json!({"devices": 2}), "filter.devices"),
        (
            json!({"ban_expires": {"$exists": true}}),
            "filter.ban_expires",
        ),
        (json!({"blocked_user_ids": 1}), "filter.blocked_user_ids"),
        (json!({"deleted_at": null}), "filter.deleted_at"),
        (json!({"devices.count": 1}), "filter.devices.count"),
        (json!({"banned": 1}), "filter.banned"),
        (json!({"online": {"$gt": false}}), "filter.online.$gt"),
    ] {
        let status = expect_err(srv.find(filter.clone()).await);
        assert_invalid(&status, field);
    }
    for field in [
        "devices",
        "ban_expires",
        "blocked_user_ids",
        "banned",
        "shadow_banned",
        "online",
    ] {
        let status = expect_err(query_sorted_by(&srv, &[field]).await);
        assert_invalid(&status, "sort[0].field");
    }

    assert_eq!(
        srv.find(json!({"custom.devices": 2, "custom.banned": true}))
            .await
            .expect("custom keys of those names"),
        ["u1"]
    );
    assert_eq!(
        query_sorted_by(&srv, &["custom.devices", "custom.online"])
            .await
            .expect("sorting on custom keys of those names"),
        ["u1"]
    );
}

#[tokio::test]
async fn custom_values_of_mixed_types_sort_in_one_documented_order() {
    let srv = Launch::new().start().await;
    // Ids run against the expected order, so only the values can put them in it.
    let values = [
        ("x13", None),
        ("x12", Some(json!(null))),
        ("x11", Some(json!("B"))),
        ("x10", Some(json!("a"))),
        ("x09", Some(json!("é"))),
        ("x08", Some(json!(-1))),
        ("x07", Some(json!(1))),
        ("x06", Some(json!(2.5))),
        ("x05", Some(json!(false))),
        ("x04", Some(json!(true))),
        ("x03", Some(json!([1]))),
        ("x02", Some(json!([]))),
        ("x01", Some(json!({"a": 1}))),
        ("x00", Some(json!({}))),
    ];
    srv.upsert_ok(values.iter().map(|(id, v)| match v {
        Some(v) => user(id).with_custom(json!({ "v": v })),
        None => user(id),
    }))
    .await;
    // Missing and null first (ties by id descending), strings by their bytes, numbers, false,
    // true, then arrays and then objects, each of those two kinds equal among themselves.
    let ascending = [
        "x13", "x12", "x11", "x10", "x09", "x08", "x07", "x06", "x05", "x04", "x03", "x02", "x01",
        "x00",
    ];
    let descending = [
        "x01", "x00", "x03", "x02", "x04", "x05", "x06", "x07", "x08", "x09", "x10", "x11", "x13",
        "x12",
    ];

    assert_eq!(sorted_ids(&srv, json!({}), &[("v", 1)]).await, ascending);
    assert_eq!(
        sorted_ids(&srv, json!({}), &[("custom.v", -1)]).await,
        descending
    );
    for (direction, expected) in [(1, &ascending), (-1, &descending)] {
        let mut walked = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = srv
                .query(QueryUsersRequest {
                    sort: vec![SortField {
                        field: "v".to_owned(),
                        direction,
                    }],
                    limit: 3,
                    page_token,
                    ..QueryUsersRequest::default()
                })
                .await
                .expect("QueryUsers page");
            walked.extend(ids(&page.users));
            if page.next_page_token.is_empty() || walked.len() > expected.len() {
                break;
            }
            page_token = page.next_page_token;
        }
        assert_eq!(&walked, expected, "page by page, direction {direction}");
    }
}
