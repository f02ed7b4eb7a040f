//! Point reads of users by id (GetUser), coalesced: reads that arrive while earlier ones are
//! being answered wait for the next statement and share it, so that under load one statement,
//! one pooled connection and one round trip serve many reads.
//!
//! No read waits for a timer: with no statement on the way, a read is sent at once. A read only
//! joins a statement sent after it arrived, so it sees every write acknowledged before it was
//! asked. The statements run in their own tasks, so a caller that goes away does not take the
//! answers of the others with it.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::conn::Conn;
use tokio::sync::oneshot;

use super::user_rows::{USERS_BY_ID_PADDED, users_by_id};
use crate::domain::user::User;
use crate::error::{Error, Result};

/// Statements on the way at once. One lets the most reads share each statement: with
/// `roster-bench --addr ... --scenarios upsert,get --users 10000 --reads 40000` (PostgreSQL,
/// concurrency 16), two runs each, 1 gave 7.4-7.7K reads/s, 2 gave 6.3-7.0K, 4 gave 5.3-5.4K.
/// A point read by primary key waits for no lock, so one statement rarely holds up the next.
const MAX_IN_FLIGHT: usize = 1;
/// Ids in one statement at most: as many as `users_by_id` pads to, so every batch has one of a
/// few list lengths.
const MAX_BATCH: usize = USERS_BY_ID_PADDED;

type Answer = oneshot::Sender<Result<Option<User>>>;

#[derive(Default)]
pub(crate) struct PointReads {
    state: Mutex<Queue>,
    /// Statements sent so far (each answers one or more reads).
    statements: AtomicU64,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<(String, Answer)>,
    in_flight: usize,
}

impl PointReads {
    /// The user with this id, deleted or not; `None` when there is no such row.
    pub(crate) async fn read(self: &Arc<Self>, db: &Conn, id: &str) -> Result<Option<User>> {
        if let Some(slot) = self.take_idle_slot(db) {
            // Nothing on the way and nobody waiting: this read's statement goes out from the
            // caller's own task. A spawned sender would cost a task and a wakeup of another
            // worker thread, most of what a lone read costs roster at concurrency 1.
            self.statements.fetch_add(1, Ordering::Relaxed);
            let found = users_by_id(db, vec![id.to_owned()]).await;
            drop(slot);
            return found.map(|mut users| users.pop());
        }
        let (answer, answered) = oneshot::channel();
        let start_one = {
            let mut queue = self.queue();
            queue.waiting.push((id.to_owned(), answer));
            let start = queue.in_flight < MAX_IN_FLIGHT;
            if start {
                queue.in_flight += 1;
            }
            start
        };
        if start_one {
            tokio::spawn(Arc::clone(self).send_until_empty(db.clone()));
        }
        answered
            .await
            .map_err(|_| Error::Internal("a point read was dropped unanswered".into()))?
    }

    /// Sends statements for whatever is waiting until nothing is; the queue's lock makes sure
    /// that a read queued while this returns is seen by this sender or starts another.
    async fn send_until_empty(self: Arc<Self>, db: Conn) {
        loop {
            let batch: Vec<(String, Answer)> = {
                let mut queue = self.queue();
                if queue.waiting.is_empty() {
                    queue.in_flight -= 1;
                    return;
                }
                // Callers that gave up (a deadline, a closed stream) are not asked for.
                queue.waiting.retain(|(_, answer)| !answer.is_closed());
                let take = queue.waiting.len().min(MAX_BATCH);
                queue.waiting.drain(..take).collect()
            };
            if batch.is_empty() {
                continue;
            }
            self.statements.fetch_add(1, Ordering::Relaxed);
            // In a task of its own, so that a panic while answering fails only this batch's reads
            // (their answers drop unsent) and this sender goes on, its slot still counted.
            if let Ok(Some(unavailable)) = tokio::spawn(answer(db.clone(), batch)).await {
                // The database cannot be reached: every read waiting would wait as long again
                // for the same answer, batch after batch. They get it now.
                let waiting = std::mem::take(&mut self.queue().waiting);
                for (_, answer) in waiting {
                    let _ = answer.send(Err(shared(&unavailable)));
                }
            }
        }
    }

    /// The sending slot, when no statement is on the way and no read waits.
    fn take_idle_slot(self: &Arc<Self>, db: &Conn) -> Option<Slot> {
        let mut queue = self.queue();
        (queue.in_flight < MAX_IN_FLIGHT && queue.waiting.is_empty()).then(|| {
            queue.in_flight += 1;
            Slot {
                reads: Arc::clone(self),
                db: db.clone(),
            }
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Nothing panics while holding the lock; should something, the queue is still whole.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Statements sent so far.
    #[cfg(test)]
    pub(crate) fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }
}

/// A sending slot held by a read that sends its own statement. Let go (answered, failed, or
/// dropped with a caller that went away), it passes to a sender for the reads that queued behind
/// that statement, or is freed when there are none.
struct Slot {
    reads: Arc<PointReads>,
    db: Conn,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut queue = self.reads.queue();
        // Outside a runtime (only while one is torn down) nothing could answer the waiting
        // reads anyway; spawning there would panic.
        match (
            queue.waiting.is_empty(),
            tokio::runtime::Handle::try_current(),
        ) {
            (false, Ok(runtime)) => {
                drop(queue);
                runtime.spawn(Arc::clone(&self.reads).send_until_empty(self.db.clone()));
            }
            _ => queue.in_flight -= 1,
        }
    }
}

/// One statement for the batch; every waiter gets its user, its `None`, or the error. Returns the
/// error when it says the database is unavailable.
async fn answer(db: Conn, batch: Vec<(String, Answer)>) -> Option<Error> {
    let mut askers: HashMap<String, Vec<Answer>> = HashMap::with_capacity(batch.len());
    for (id, answer) in batch {
        askers.entry(id).or_default().push(answer);
    }
    let ids: Vec<String> = askers.keys().cloned().collect();
    match read_many(&db, ids).await {
        Ok(mut found) => {
            for (id, mut answers) in askers {
                let user = found.remove(&id);
                // An id asked more than once in the batch: each asker gets its own copy.
                let last = answers.pop().expect("every id has an asker");
                for answer in answers {
                    let _ = answer.send(Ok(user.clone()));
                }
                let _ = last.send(Ok(user));
            }
            None
        }
        Err(error) => {
            for answer in askers.into_values().flatten() {
                let _ = answer.send(Err(shared(&error)));
            }
            matches!(error, Error::Unavailable(_)).then_some(error)
        }
    }
}

/// The error of a statement, for each of the reads that shared it.
fn shared(error: &Error) -> Error {
    match error {
        Error::Unavailable(e) => Error::Unavailable(e.clone()),
        Error::Database(e) => Error::Database(e.clone()),
        other => Error::Internal(other.to_string()),
    }
}

/// The users with these ids, deleted or not, by id.
async fn read_many(db: &Conn, ids: Vec<String>) -> Result<HashMap<String, User>> {
    let users = users_by_id(db, ids).await?;
    Ok(users
        .into_iter()
        .map(|u| (u.fields.id.clone(), u))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// Reads that queue while a statement is on the way are answered together, by the next
    /// statement, each with its own answer (an id asked twice included).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_queued_behind_busy_statements_share_the_next_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("reads.db").display()
        );
        Store::migrate(&url).await.expect("migrate");
        let store = Store::connect(&url, 4).await.expect("connect");
        let reads = Arc::new(PointReads::default());
        // As if a statement were on the way: every read below queues.
        reads.state.lock().expect("queue").in_flight = MAX_IN_FLIGHT;
        let mut asked = tokio::task::JoinSet::new();
        for i in 0..64 {
            let (reads, db) = (Arc::clone(&reads), store.conn().clone());
            let id = format!("nobody-{}", i % 48);
            asked.spawn(async move { (id.clone(), reads.read(&db, &id).await) });
        }
        while reads.state.lock().expect("queue").waiting.len() < 64 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        // That statement comes back; its sender finds the queue and sends the rest.
        let sender = tokio::spawn(Arc::clone(&reads).send_until_empty(store.conn().clone()));
        let mut answered = 0;
        while let Some(joined) = asked.join_next().await {
            let (id, answer) = joined.expect("read task");
            assert!(matches!(answer, Ok(None)), "{id}: {answer:?}");
            answered += 1;
        }
        assert_eq!(answered, 64);
        assert_eq!(reads.statements(), 1, "64 queued reads, one statement");
        // The sender frees its slot once it finds the queue empty, which may be just after the
        // last answer went out.
        sender.await.expect("sender");
        assert_eq!(reads.state.lock().expect("queue").in_flight, 0);
    }

    /// A lone read sends its statement itself; reads that queued behind it are sent once it is
    /// answered, and the slot is free again afterwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_read_sends_its_own_statement_and_hands_over_to_those_queued_behind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("reads.db").display()
        );
        Store::migrate(&url).await.expect("migrate");
        let store = Store::connect(&url, 4).await.expect("connect");
        let reads = Arc::new(PointReads::default());
        let lone = reads.read(store.conn(), "nobody").await;
        assert!(matches!(lone, Ok(None)), "{lone:?}");
        assert_eq!(reads.statements(), 1);
        assert_eq!(
            reads.queue().in_flight,
            0,
            "the slot is free after a lone read"
        );

        // A read holding the slot (as if its statement were on the way), and reads queued
        // behind it: when it lets go, they are sent, together.
        let slot = reads.take_idle_slot(store.conn()).expect("an idle slot");
        let mut asked = tokio::task::JoinSet::new();
        for i in 0..8 {
            let (reads, db) = (Arc::clone(&reads), store.conn().clone());
            asked.spawn(async move { reads.read(&db, &format!("queued-{i}")).await });
        }
        while reads.queue().waiting.len() < 8 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        drop(slot);
        while let Some(joined) = asked.join_next().await {
            let answer = joined.expect("read task");
            assert!(matches!(answer, Ok(None)), "{answer:?}");
        }
        assert_eq!(
            reads.statements(),
            2,
            "the eight queued reads share one statement"
        );
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while reads.queue().in_flight != 0 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("the sender frees the slot once the queue is empty");
    }

    /// When the database cannot be reached, one failed statement answers every read waiting:
    /// none waits again, batch after batch, for the same answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_database_fails_every_waiting_read_at_once() {
        let mut options = sea_orm::ConnectOptions::new("postgres://roster@127.0.0.1:1/none");
        options
            .connect_lazy(true)
            .acquire_timeout(std::time::Duration::from_millis(500))
            .sqlx_logging(false);
        let db = sea_orm::Database::connect(options)
            .await
            .expect("lazy pool");
        let db = Conn::new(db, false);
        let reads = Arc::new(PointReads::default());
        reads.queue().in_flight = MAX_IN_FLIGHT;
        let mut asked = tokio::task::JoinSet::new();
        for i in 0..250 {
            let (reads, db) = (Arc::clone(&reads), db.clone());
            asked.spawn(async move { reads.read(&db, &format!("u{i}")).await });
        }
        while reads.queue().waiting.len() < 250 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        tokio::spawn(Arc::clone(&reads).send_until_empty(db));
        while let Some(joined) = asked.join_next().await {
            let answer = joined.expect("read task");
            assert!(matches!(answer, Err(Error::Unavailable(_))), "{answer:?}");
        }
        assert_eq!(
            reads.statements(),
            1,
            "250 reads waiting, one failed statement"
        );
    }
}
