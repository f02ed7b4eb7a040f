//! The feed's clock without a lock held to commit (PostgreSQL; SQLite has one writer at a time and
//! needs none of this).
//!
//! m0006's clock is a row: a writer moved it forward under the row's lock, which it held until
//! its commit, so every writer's commit, and the wait for its WAL flush, ran one at a time.
//! Here the clock is a sequence, `feed_clock_micros`, which is not transactional: what one writer
//! sets, the next one sees at once. `roster_feed_stamp(now_micros, n)` moves it forward to `now` (never
//! back) and draws the `n` event sequences under a session-level advisory lock that it releases
//! before it returns, so time and sequence are still drawn in one order, and the lock is held for
//! microseconds instead of until the commit. The writers' shared lock (`FEED_WRITERS_LOCK`, held
//! until the transaction ends, for the followers' gap rule) is taken first, as before.
//!
//! The function releases its lock on every way out: an error (or a cancel) inside it releases it
//! and raises again. The feed_clock row stays for binaries of the m0006 schema still running
//! during a rolling upgrade: until they stop, their events and the new binaries' events are each
//! in time order, but the two may interleave out of time order by up to the replicas' clock
//! difference (nothing is lost or reordered in sequence; only `at` may step back).
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

use crate::{FEED_STAMP_LOCK, FEED_WRITERS_LOCK};

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE SEQUENCE feed_clock_micros MINVALUE 0 START WITH 0; \
             SELECT setval('feed_clock_micros', GREATEST( \
                 (SELECT COALESCE(MAX(at), 0) FROM feed_clock), \
                 (SELECT COALESCE(MAX(at), 0) FROM user_events)))",
        )
        .await?;
        // The event sequence's name, resolved now, so the function does not look it up per call.
        let row = db
            .query_one_raw(sea_orm_migration::sea_orm::Statement::from_string(
                DatabaseBackend::Postgres,
                "SELECT pg_get_serial_sequence('user_events', 'sequence') AS name",
            ))
            .await?
            .ok_or_else(|| DbErr::Custom("user_events.sequence has no sequence".into()))?;
        let sequence: String = row.try_get("", "name")?;
        db.execute_unprepared(&format!(
            r#"
CREATE FUNCTION roster_feed_stamp(now_micros bigint, n integer)
RETURNS TABLE (stamp_ord bigint, stamp_seq bigint, stamp_at bigint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    stamped bigint;
    drawn bigint[];
BEGIN
    PERFORM pg_advisory_xact_lock_shared({FEED_WRITERS_LOCK});
    -- Lock, draw and unlock all inside the block, so that an error or a cancel at any point
    -- after the lock is asked for reaches the handler (unlocking a lock not held only warns).
    BEGIN
        PERFORM pg_advisory_lock({FEED_STAMP_LOCK});
        SELECT GREATEST(c.last_value, now_micros) INTO stamped FROM feed_clock_micros c;
        PERFORM setval('feed_clock_micros', stamped);
        SELECT array_agg(nextval('{sequence}') ORDER BY i) INTO drawn
            FROM generate_series(1, n) AS i;
        PERFORM pg_advisory_unlock({FEED_STAMP_LOCK});
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        PERFORM pg_advisory_unlock({FEED_STAMP_LOCK});
        RAISE;
    END;
    RETURN QUERY SELECT d.ord, d.seq, stamped FROM unnest(drawn) WITH ORDINALITY AS d(seq, ord);
END
$$"#
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared(
                "DROP FUNCTION IF EXISTS roster_feed_stamp(bigint, integer); \
                 DROP SEQUENCE IF EXISTS feed_clock_micros",
            )
            .await?;
        Ok(())
    }
}
