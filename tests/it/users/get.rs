//! GetUser under concurrency: reads asked together are answered together (see store/reads.rs),
//! and none may get another's answer or miss a write acknowledged before it was asked.
use tonic::Code;

use crate::support::*;

#[tokio::test]
async fn concurrent_reads_each_get_their_own_user() {
    let srv = Launch::new().start().await;
    let batch: Vec<_> = (0..40)
        .map(|i| user(&format!("u{i}")).with_name(&format!("name of u{i}")))
        .collect();
    srv.upsert_ok(batch).await;
    // 40 users asked three times each, and 10 ids that do not exist, all at once.
    let asked: Vec<String> = (0..150)
        .map(|i| {
            if i % 15 == 14 {
                format!("missing{}", i % 10)
            } else {
                format!("u{}", i % 40)
            }
        })
        .collect();
    let mut reads = tokio::task::JoinSet::new();
    for id in asked {
        let mut users = srv.users();
        reads.spawn(async move {
            let answer = users
                .get_user(roster::pb::GetUserRequest {
                    id: id.clone(),
                    include_deleted: false,
                })
                .await;
            (id, answer)
        });
    }
    let mut answered = 0;
    while let Some(joined) = reads.join_next().await {
        let (id, answer) = joined.expect("read task");
        answered += 1;
        if id.starts_with("missing") {
            let status = expect_err(answer);
            assert_reason(&status, Code::NotFound, "USER_NOT_FOUND");
            assert!(status.message().contains(&id), "{id}: {status:?}");
        } else {
            let user = answer.expect("GetUser").into_inner().user.expect("user");
            assert_eq!(user.id, id);
            assert_eq!(user.name, Some(format!("name of {id}")));
        }
    }
    assert_eq!(answered, 150);
    srv.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_read_sees_every_write_acknowledged_before_it_while_others_read() {
    let srv = Launch::new().start().await;
    let batch: Vec<_> = (0..8).map(|i| user(&format!("r{i}"))).collect();
    srv.upsert_ok(batch).await;
    srv.upsert_ok(vec![user("w").with_name("0")]).await;
    // Readers of other users keep statements on the way the whole time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = tokio::task::JoinSet::new();
    for i in 0..8 {
        let mut users = srv.users();
        let stop = stop.clone();
        readers.spawn(async move {
            let mut reads = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let answer = users
                    .get_user(roster::pb::GetUserRequest {
                        id: format!("r{i}"),
                        include_deleted: false,
                    })
                    .await
                    .expect("GetUser of a reader's user");
                assert_eq!(answer.into_inner().user.expect("user").id, format!("r{i}"));
                reads += 1;
            }
            reads
        });
    }
    for round in 1..=40 {
        srv.upsert_ok(vec![user("w").with_name(&round.to_string())])
            .await;
        let seen = srv.get_ok("w").await;
        assert_eq!(seen.name, Some(round.to_string()), "round {round}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while let Some(reads) = readers.join_next().await {
        assert!(reads.expect("reader") > 0);
    }
    srv.stop().await.expect("clean stop");
}
