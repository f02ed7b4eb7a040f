//! Retention: purged sequences, replays after a purge, the purge loop, and a follower it
//! overtakes.

use super::*;

/// Five users, one event each; their sequences.
async fn five_events(ch: &Channel) -> Vec<i64> {
    for i in 1..=5 {
        upsert_named(ch, &format!("p{i}"), "x").await;
    }
    Feed::after(ch, 0)
        .await
        .take(5, LIVE)
        .await
        .iter()
        .map(|e| e.sequence)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_for_a_purged_sequence_is_out_of_range_events_purged() {
    let srv = Launch::new().start().await;
    let ch = srv.channel();
    let seqs = five_events(&ch).await;
    let raw = raw_db(srv.db().url()).await;
    purge_events_through(&raw, seqs[2]).await;

    let status = watch_error(&ch, watch_request(seqs[1], &[], &[]), LIVE).await;
    assert_reason(&status, Code::OutOfRange, "EVENTS_PURGED");
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(
        info.metadata.get("purged_through").map(String::as_str),
        Some(seqs[2].to_string().as_str()),
        "the error says how far the feed was purged"
    );

    // From the horizon on, nothing is missing.
    let kept = Feed::after(&ch, seqs[2]).await.take(2, LIVE).await;
    assert_eq!(
        kept.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        seqs[3..].to_vec()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_from_zero_after_a_purge_replays_what_is_kept() {
    // The proto: "0 replays everything still kept".
    let srv = Launch::new().start().await;
    let ch = srv.channel();
    let seqs = five_events(&ch).await;
    let raw = raw_db(srv.db().url()).await;
    purge_events_through(&raw, seqs[2]).await;
    let mut feed = Feed::after(&ch, 0).await;
    let got = match feed.try_next(LIVE).await {
        Ok(Some(first)) => {
            let mut got = vec![first.sequence];
            got.extend(feed.take(1, LIVE).await.iter().map(|e| e.sequence));
            got
        }
        Ok(None) => panic!("nothing replayed from 0 after a purge"),
        Err(status) => panic!(
            "after_sequence 0 should replay the events still kept (the proto: \"0 replays \
             everything still kept\"), got {status:?}"
        ),
    };
    assert_eq!(got, seqs[3..].to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_purge_loop_removes_events_past_retention() {
    // Retention 0: the purge loop runs every second and removes every event older than now.
    let srv = Launch::new()
        .config(|c| c.event_retention_hours = 0)
        .start()
        .await;
    let ch = srv.channel();
    upsert_named(&ch, "old", "x").await;
    upsert_named(&ch, "old", "y").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        let mut feed = match Feed::open(&ch, watch_request(1, &[], &[])).await {
            Err(status) => break status,
            Ok(feed) => feed,
        };
        if let Err(status) = feed.try_next(Duration::from_millis(200)).await {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "events were not purged within 15 s with event_retention_hours = 0"
        );
        tokio::time::sleep(POLL).await;
    };
    assert_reason(&status, Code::OutOfRange, "EVENTS_PURGED");
    let info = status.get_details_error_info().expect("ErrorInfo");
    let through: i64 = info.metadata["purged_through"]
        .parse()
        .expect("purged_through is a number");
    assert!(through >= 2, "both events purged: {through}");
    // From the horizon the feed opens fine.
    Feed::open(&ch, watch_request(through, &[], &[]))
        .await
        .expect("following from the purge horizon");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_overtaken_by_the_purge_is_told_instead_of_skipping() {
    let mut addr = None;
    let srv = Launch::new()
        .config(|c| addr = Some(c.listen))
        .start()
        .await;
    let addr = addr.expect("the server's address");
    let ch = srv.channel();
    // 1,000 events of about 3 KB each: a page of 500 is far more than the stream buffers hold
    // (the slow follower's connection has 64 KiB HTTP/2 windows, not hyper's 2 MiB default).
    let padding = "p".repeat(3000);
    let mut client = UserServiceClient::new(ch.clone());
    for batch in 0..10 {
        let users = (0..100)
            .map(|i| {
                let id = format!("big-{batch}-{i:03}");
                let u = user(&id).with_custom(json!({"padding": padding}));
                (id, u)
            })
            .collect();
        client
            .update_users(UpdateUsersRequest { users })
            .await
            .expect("UpdateUsers with padding");
    }
    let all: Vec<i64> = Feed::after(&ch, 0)
        .await
        .take(1000, RUN)
        .await
        .iter()
        .map(|e| e.sequence)
        .collect();

    // A follower that reads one event, then stalls (its stream is full) while retention purges
    // past its position.
    let small_windows = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .expect("connect with small windows");
    let mut slow = Feed::after(&small_windows, 0).await;
    let mut got = vec![slow.next(LIVE).await.sequence];
    let raw = raw_db(srv.db().url()).await;
    purge_events_through(&raw, all[899]).await;
    let outcome = loop {
        match slow.try_next(LIVE).await {
            Ok(Some(e)) => {
                got.push(e.sequence);
                if got.len() == all.len() {
                    break None;
                }
            }
            Ok(None) => break None,
            Err(status) => break Some(status),
        }
    };
    if let Some(i) = (0..got.len()).find(|&i| all.get(i) != Some(&got[i])) {
        panic!(
            "the follower skipped events: after sequence {:?} it received {} where {:?} was \
             expected ({} received in all); events it never got were purged under it",
            i.checked_sub(1).map(|j| got[j]),
            got[i],
            all.get(i),
            got.len()
        );
    }
    let status = outcome.unwrap_or_else(|| {
        panic!(
            "the follower received {} events and no EVENTS_PURGED error although events \
             {}..={} were purged under it",
            got.len(),
            got.last().map_or(0, |s| s + 1),
            all[899]
        )
    });
    assert_reason(&status, Code::OutOfRange, "EVENTS_PURGED");
}
