//! The users a run writes, and the bulk insert that tops a database up to a query size.
//!
//! Distribution: `role` uniformly among `user`, `admin`, `moderator`, `guest`; custom `team`
//! uniformly among `team-0` .. `team-19`; a few more custom keys so that a row carries a
//! realistic JSON document (about 300 bytes). Role and team are drawn independently (from a hash
//! of the user's number), so `role = user AND team = team-3` matches 1 user in 80.
use anyhow::Context;
use roster::domain::time::Micros;
use roster::domain::user::User;
use roster::pb;
use roster::store::entities::user;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, Database, DatabaseConnection, EntityTrait, IntoActiveModel,
};
use serde_json::{Map, Value, json};

pub const ROLES: [&str; 4] = ["user", "admin", "moderator", "guest"];
pub const TEAMS: u64 = 20;
/// The role that roster does not have built in.
pub const CUSTOM_ROLE: &str = "moderator";
/// What `query` looks for.
pub const QUERY_ROLE: &str = "user";
pub const QUERY_TEAM: &str = "team-3";

const COUNTRIES: [&str; 8] = ["DE", "FR", "US", "BR", "IN", "JP", "NG", "SE"];
const PLANS: [&str; 3] = ["free", "pro", "business"];
const SOURCES: [&str; 3] = ["web", "ios", "android"];

/// The ids of one run: distinct from any earlier run's, so `--addr` can target a used roster.
#[derive(Clone)]
pub struct Population {
    prefix: String,
}

impl Population {
    pub fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Population {
            prefix: format!("b{:x}", nanos % 0xffff_ffff),
        }
    }

    /// Another population of the same run, whose ids differ from this one's by `tag`.
    pub fn tagged(&self, tag: &str) -> Population {
        Population {
            prefix: format!("{}{tag}", self.prefix),
        }
    }

    /// The number of one of this population's ids.
    pub fn number(&self, id: &str) -> Option<u64> {
        id.strip_prefix(&self.prefix)?
            .strip_prefix('-')?
            .parse()
            .ok()
    }

    pub fn id(&self, n: u64) -> String {
        format!("{}-{n:07}", self.prefix)
    }

    /// User number `n`'s fields, whatever the door.
    fn fields(&self, n: u64) -> Fields {
        let h = mix(n);
        Fields {
            id: self.id(n),
            name: format!("Bench User {n}"),
            image: format!("https://images.example.com/avatars/{n}.png"),
            role: ROLES[(h % 4) as usize],
            custom: custom(n, h),
        }
    }

    /// User number `n` as UpdateUsers takes it.
    pub fn request(&self, n: u64) -> pb::UserRequest {
        let f = self.fields(n);
        pb::UserRequest {
            id: f.id,
            name: Some(f.name),
            image: Some(f.image),
            role: Some(f.role.to_owned()),
            custom: Some(roster::grpc::convert::json_to_struct(&f.custom)),
            language: "en".to_owned(),
            invisible: false,
            teams: Vec::new(),
            teams_role: Default::default(),
            privacy_settings: None,
            push_notifications: None,
        }
    }

    /// User number `n` as Stream's upsert takes it (the HTTP door's `UserRequest`): the same
    /// fields as `request`.
    pub fn stream_user(&self, n: u64) -> Value {
        let f = self.fields(n);
        json!({
            "id": f.id,
            "name": f.name,
            "image": f.image,
            "role": f.role,
            "custom": f.custom,
            "language": "en",
            "invisible": false,
        })
    }

    /// User number `n` as the row roster writes for it when it is created at `created_at`: the
    /// request goes through roster's own conversion and row mapping.
    pub fn row(&self, n: u64, created_at: Micros) -> anyhow::Result<user::Model> {
        let fields = roster::grpc::convert::user_fields(self.request(n), "seed")
            .map_err(|e| anyhow::anyhow!("seed user {n}: {e}"))?;
        Ok(user::Model::from(&User::new(fields, created_at)))
    }
}

/// What a user of the bench is made of, before either door's shape.
struct Fields {
    id: String,
    name: String,
    image: String,
    role: &'static str,
    custom: Map<String, Value>,
}

fn custom(n: u64, h: u64) -> Map<String, Value> {
    let team = (h >> 8) % TEAMS;
    let Value::Object(map) = json!({
        "team": format!("team-{team}"),
        "plan": PLANS[((h >> 16) % 3) as usize],
        "country": COUNTRIES[((h >> 20) % 8) as usize],
        "signup_source": SOURCES[((h >> 24) % 3) as usize],
        "score": (h >> 32) % 1000,
        "newsletter": (h >> 40).is_multiple_of(2),
        "external_ref": format!("crm-{:012x}", mix(n ^ 0x5eed) >> 16),
        "bio": "Likes long walks, short meetings and well-indexed queries.",
    }) else {
        unreachable!("json! of an object literal is an object")
    };
    map
}

/// SplitMix64: a well-spread hash of the user number, so role and team are independent.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Writes users `from..to` straight into a database that roster's migrations made, as roster
/// would have written them on creation (seeding is preparation, not a measured scenario). Each
/// user's `created_at` is `base + its number`, so the newest users are the ones written last.
/// Two chunks are in flight at once.
pub async fn seed(
    url: &str,
    population: &Population,
    from: u64,
    to: u64,
    base: Micros,
) -> anyhow::Result<()> {
    let db = Database::connect(url)
        .await
        .with_context(|| format!("connecting to {url} to seed users"))?;
    // 25 columns a row; both databases take 32766 binds in one statement.
    const CHUNK: u64 = 1000;
    let chunks: Vec<(u64, u64)> = (from..to)
        .step_by(CHUNK as usize)
        .map(|start| (start, (start + CHUNK).min(to)))
        .collect();
    let mut pending = tokio::task::JoinSet::new();
    for (start, end) in chunks {
        if pending.len() >= 2 {
            pending.join_next().await.context("seeding task")???;
        }
        let db = db.clone();
        let population = population.clone();
        pending.spawn(async move { insert_chunk(&db, &population, start, end, base).await });
    }
    while let Some(done) = pending.join_next().await {
        done??;
    }
    // A database that grew to this size would have been analyzed by autovacuum by now; without
    // it the planner would judge the query by an empty table's statistics.
    if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        db.execute_unprepared("ANALYZE users").await?;
    }
    db.close().await?;
    Ok(())
}

/// `ANALYZE users` on PostgreSQL (nothing on SQLite): statistics as autovacuum would have made
/// them by now.
pub async fn analyze(url: &str) -> anyhow::Result<()> {
    let db = Database::connect(url)
        .await
        .with_context(|| format!("connecting to {url} to analyze"))?;
    if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        db.execute_unprepared("ANALYZE users").await?;
    }
    db.close().await?;
    Ok(())
}

async fn insert_chunk(
    db: &DatabaseConnection,
    population: &Population,
    start: u64,
    end: u64,
    base: Micros,
) -> anyhow::Result<()> {
    let rows = (start..end)
        .map(|n| {
            let created_at = base + i64::try_from(n)?;
            let model = population.row(n, created_at)?;
            Ok(model.into_active_model().reset_all())
        })
        .collect::<anyhow::Result<Vec<user::ActiveModel>>>()?;
    user::Entity::insert_many(rows)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_teams_are_spread_independently() {
        let population = Population::new();
        let total = 8000;
        let matching = (0..total)
            .filter(|&n| {
                let row = population.row(n, 1).ok();
                row.is_some_and(|r| {
                    r.role == QUERY_ROLE && r.custom.get("team") == Some(&json!(QUERY_TEAM))
                })
            })
            .count();
        // 1 in 80 expected: 100 of 8000.
        assert!((60..140).contains(&matching), "{matching} of {total} match");
    }

    #[test]
    fn both_doors_send_the_same_user() {
        let population = Population::new();
        let request = population.request(42);
        let custom = request
            .custom
            .clone()
            .and_then(|s| roster::grpc::convert::struct_to_json(s, "custom").ok());
        let expected = json!({
            "id": request.id,
            "name": request.name,
            "image": request.image,
            "role": request.role,
            "custom": custom,
            "language": request.language,
            "invisible": request.invisible,
        });
        assert_eq!(population.stream_user(42), expected);
    }

    #[test]
    fn a_row_carries_a_realistic_json_document() {
        let row = Population::new().row(7, 1).ok();
        let bytes = row.map_or(0, |r| {
            serde_json::to_string(&r.custom).map_or(0, |s| s.len())
        });
        assert!((200..=400).contains(&bytes), "custom is {bytes} bytes");
    }
}
