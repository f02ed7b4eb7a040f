//! `round-trips`: how many times roster goes to the database for one RPC, beside the floor's
//! count for the same work. Counted on the wire (`wire`), one request at a time, so the figure
//! does not move with a noisy machine: it is what decides latency once the database is a network
//! hop away.
use std::time::Duration;

use anyhow::Context;
use roster::pb;
use serde_json::json;

use crate::data::Population;
use crate::floor::Floor;
use crate::report::RoundTripRow;
use crate::scenarios::{self, Clients};
use crate::wire::{Count, Counters};

/// Requests counted of each kind; the median of their counts is reported. A background poll of
/// roster's (the task worker looks for work every 500 ms) can fall into a window; the median
/// leaves such a window out.
const SAMPLES: u64 = 15;
/// After a request, time for its connection to go back to the pool, where sqlx pings it.
const SETTLE: Duration = Duration::from_millis(30);

/// Counts UpdateUsers (100 new users), UpdateUsersPartial (one user), GetUser, QueryUsers
/// (with `with_query`, once the database holds enough users for a full page), and a soft
/// DeleteUsers of 100 of those users watched to its end: the enqueue, the task worker's claim and
/// chunk, and WatchTask's reads, against the floor's UPDATE of the same 100 users.
pub async fn count(
    clients: &Clients,
    roster_wire: &Counters,
    floor: &Floor,
    floor_wire: &Counters,
    population: &Population,
    with_query: bool,
) -> anyhow::Result<Vec<RoundTripRow>> {
    let mut rows = Vec::new();

    let roster = windows(roster_wire, |k| {
        scenarios::upsert(clients, population, k * 100, 100, 1)
    })
    .await?;
    let floor_count = windows(floor_wire, |k| floor.upsert(k * 100, 100, 1)).await?;
    rows.push(RoundTripRow::new("UpdateUsers", 100, roster, floor_count));

    let users = SAMPLES * 100;
    let client = clients.users(0);
    let roster = windows(roster_wire, |k| {
        let mut client = client.clone();
        async move {
            let set = json!({ "score": k })
                .as_object()
                .map(roster::grpc::convert::json_to_struct)
                .unwrap_or_default();
            client
                .update_users_partial(pb::UpdateUsersPartialRequest {
                    users: vec![pb::UpdateUserPartialRequest {
                        id: population.id(k),
                        set: Some(set),
                        unset: Vec::new(),
                    }],
                })
                .await
                .context("UpdateUsersPartial")?;
            anyhow::Ok(())
        }
    })
    .await?;
    let floor_count = windows(floor_wire, |_| floor.partial(users, 1, 1)).await?;
    rows.push(RoundTripRow::new(
        "UpdateUsersPartial",
        1,
        roster,
        floor_count,
    ));

    let roster = windows(roster_wire, |k| {
        let mut client = client.clone();
        async move {
            client
                .get_user(pb::GetUserRequest {
                    id: population.id(k),
                    include_deleted: false,
                })
                .await
                .context("GetUser")?;
            anyhow::Ok(())
        }
    })
    .await?;
    let floor_count = windows(floor_wire, |_| floor.get(users, 1, 1)).await?;
    rows.push(RoundTripRow::new("GetUser", 1, roster, floor_count));

    if with_query {
        let roster = windows(roster_wire, |_| scenarios::query(clients, 1, 1)).await?;
        let floor_count = windows(floor_wire, |_| floor.query(1, 1)).await?;
        rows.push(RoundTripRow::new("QueryUsers", 1, roster, floor_count));
    }

    // Last: it deletes the users the counts above read and update.
    let roster = windows(roster_wire, |k| {
        scenarios::delete_task(clients, population, k * 100, 100, 1)
    })
    .await?;
    let floor_count = windows(floor_wire, |k| floor.delete(k * 100, 100)).await?;
    rows.push(RoundTripRow::new(
        "DeleteUsers task",
        100,
        roster,
        floor_count,
    ));
    Ok(rows)
}

/// Runs `op(k)` for k in `0..SAMPLES`, one at a time, and returns the median count of each
/// kind of round trip that one op caused.
async fn windows<F, Fut, T>(counters: &Counters, mut op: F) -> anyhow::Result<Count>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut seen = Vec::with_capacity(SAMPLES as usize);
    for k in 0..SAMPLES {
        let before = counters.now();
        op(k).await?;
        tokio::time::sleep(SETTLE).await;
        seen.push(counters.now().since(before));
    }
    Ok(median(&seen))
}

/// The median of each field on its own.
fn median(seen: &[Count]) -> Count {
    let field = |f: fn(&Count) -> u64| {
        let mut values: Vec<u64> = seen.iter().map(f).collect();
        values.sort_unstable();
        values.get(values.len() / 2).copied().unwrap_or_default()
    };
    Count {
        statements: field(|c| c.statements),
        prepares: field(|c| c.prepares),
        pings: field(|c| c.pings),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_odd_window_does_not_move_the_median() {
        let usual = Count {
            statements: 5,
            prepares: 0,
            pings: 1,
        };
        let polled = Count {
            statements: 8,
            prepares: 1,
            pings: 2,
        };
        assert_eq!(median(&[usual, polled, usual, usual, polled]), usual);
    }
}
