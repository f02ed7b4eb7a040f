//! The work of the scenarios both doors run (`upsert`, `partial`, `get`, `query`) at one
//! concurrency: sent to roster through one door, or the same SQL to the floor.
use crate::data::Population;
use crate::floor::Floor;
use crate::http_door::{self, HttpDoor};
use crate::load::Measured;
use crate::scenarios::{self, Clients};

/// Connections to roster through one door, fresh for each scenario.
pub enum Way {
    Grpc(Clients),
    /// Boxed: hyper's client is a few hundred bytes.
    Http(Box<HttpDoor>),
}

#[derive(Debug, Clone, Copy)]
pub enum Work {
    /// Creates users `first..first + users`, 100 a request.
    Upsert { first: u64, users: u64 },
    /// `updates` partial updates among users `0..users`.
    Partial { users: u64, updates: u64 },
    /// `reads` reads among users `0..users`.
    Get { users: u64, reads: u64 },
    /// `queries` queries.
    Query { queries: u64 },
}

impl Work {
    /// Items per request, as the rate counts them.
    pub fn items_per_request(self) -> u64 {
        match self {
            Work::Upsert { .. } => 100,
            Work::Partial { .. } | Work::Get { .. } | Work::Query { .. } => 1,
        }
    }

    pub async fn on_roster(
        self,
        way: &Way,
        population: &Population,
        concurrency: usize,
    ) -> anyhow::Result<Measured> {
        let c = concurrency;
        match (way, self) {
            (Way::Grpc(clients), Work::Upsert { first, users }) => {
                scenarios::upsert(clients, population, first, users, c).await
            }
            (Way::Grpc(clients), Work::Partial { users, updates }) => {
                scenarios::partial(clients, population, users, updates, c).await
            }
            (Way::Grpc(clients), Work::Get { users, reads }) => {
                scenarios::get(clients, population, users, reads, c).await
            }
            (Way::Grpc(clients), Work::Query { queries }) => {
                scenarios::query(clients, queries, c).await
            }
            (Way::Http(door), Work::Upsert { first, users }) => {
                http_door::upsert(door, population, first, users, c).await
            }
            (Way::Http(door), Work::Partial { users, updates }) => {
                http_door::partial(door, population, users, updates, c).await
            }
            (Way::Http(door), Work::Get { users, reads }) => {
                http_door::get(door, population, users, reads, c).await
            }
            (Way::Http(door), Work::Query { queries }) => http_door::query(door, queries, c).await,
        }
    }

    pub async fn on_floor(self, floor: &Floor, concurrency: usize) -> anyhow::Result<Measured> {
        match self {
            Work::Upsert { first, users } => floor.upsert(first, users, concurrency).await,
            Work::Partial { users, updates } => floor.partial(users, updates, concurrency).await,
            Work::Get { users, reads } => floor.get(users, reads, concurrency).await,
            Work::Query { queries } => floor.query(queries, concurrency).await,
        }
    }
}
