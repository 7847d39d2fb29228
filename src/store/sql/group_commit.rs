//! SQLite group commit: write transactions queued for SQLite's one writer share a
//! commit.
//!
//! SQLite runs one write transaction at a time, and most of a small write's cost
//! is its commit: every page it dirtied is copied into the WAL (about twenty for a
//! SCIM user, most of them the same index and table tail pages the next write
//! dirties again). So each write runs inside a savepoint of one open transaction;
//! when it is done and another writer is already waiting, it hands the connection
//! over instead of committing, and the last writer of the group commits for all.
//! Nobody is answered before the commit that holds their write: durability is
//! exactly that of a commit of their own (`synchronous = NORMAL` in WAL mode).
//!
//! A write that fails (or is dropped) rolls back its own savepoint only; the
//! group's earlier writes stand. A failed COMMIT fails every write of the group,
//! each told the database was unavailable (none of them landed). The steps that
//! send BEGIN, RELEASE, ROLLBACK or COMMIT run in tasks of their own, so a
//! cancelled request cannot leave the state disagreeing with what SQLite did.
//! A member whose hand-over was lost anyway (the runtime shutting down) commits
//! the group itself after [`FLUSH_AFTER`].
//!
//! Deferred constraints would be checked at the group's COMMIT and fail it whole:
//! the schema has none (its foreign keys are immediate).
//!
//! Single-statement writes outside a transaction (a session's last activity, a
//! login state's use) [`hold`](Writer::hold) the writer and run on its connection
//! in autocommit, once any open group is committed: they wait their turn in the
//! same queue instead of polling for SQLite's lock, which a group holds for many
//! writes at a time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor};
use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};
use tracing::Instrument;

/// Writes one commit holds at most: bounds a group's latency and its WAL append.
const MAX_GROUP: usize = 32;
/// A write that finds its group older than this commits instead of handing over,
/// so a burst of small writes answers within about this much. (A slow write handed
/// the group before that, a large PATCH, still delays the members' answers by its
/// own duration.)
const MAX_GROUP_AGE: Duration = Duration::from_millis(10);
/// How long a member waits for the group's commit before committing it itself.
const FLUSH_AFTER: Duration = Duration::from_millis(50);

type Outcome = Result<(), Arc<str>>;

/// The writer's connection and the open group, if any.
struct State {
    /// Held from the first write until [`Writer::close`]: its warm page cache is
    /// the point (SQLite drops a connection's cache whenever another one writes).
    conn: Option<PoolConnection<Any>>,
    /// A transaction is open (`BEGIN IMMEDIATE` ran, `COMMIT` has not).
    open: bool,
    /// When the open transaction began.
    opened_at: Instant,
    /// The store is closing: no more turns.
    closed: bool,
    /// Counts transactions opened, so a late flush never commits a later group.
    generation: u64,
    /// A member's savepoint is open and neither released nor rolled back.
    unsettled: bool,
    /// The writes done in this transaction whose owners wait for its commit.
    members: Vec<oneshot::Sender<Outcome>>,
}

/// SQLite's one writer. Cloning shares it.
#[derive(Clone)]
pub(super) struct Writer {
    state: Arc<Mutex<State>>,
    /// Writers waiting for their turn: a finished write hands over when this is
    /// non-zero.
    waiting: Arc<AtomicUsize>,
    pool: AnyPool,
}

/// Counts a writer as waiting until it has its turn (or is cancelled).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Writer {
    /// The writer over `pool`, a pool of one connection.
    pub(super) fn new(pool: AnyPool) -> Self {
        let state =
            State { conn: None, open: false, opened_at: Instant::now(), closed: false, generation: 0, unsettled: false, members: vec![] };
        Writer { state: Arc::new(Mutex::new(state)), waiting: Arc::new(AtomicUsize::new(0)), pool }
    }

    /// Waits for the writer, then opens this write's savepoint (and the group's
    /// transaction, when none is open).
    pub(super) async fn turn(&self) -> Result<Turn, sqlx::Error> {
        // Run to the end even if the request is cancelled meanwhile: a statement
        // handed to SQLite's worker runs anyway, so the state must follow it. An
        // abandoned turn is then dropped, and settled, like any other.
        let writer = self.clone();
        tokio::spawn(async move { writer.start_turn().await }.in_current_span()).await.map_err(worker_failed)?
    }

    /// The writer, once every writer queued before has had it; counted as waiting
    /// meanwhile.
    async fn queue(&self) -> Result<OwnedMutexGuard<State>, sqlx::Error> {
        let state = {
            let _waiting = Waiting::new(&self.waiting);
            self.state.clone().lock_owned().await
        };
        if state.closed {
            return Err(sqlx::Error::PoolClosed);
        }
        Ok(state)
    }

    async fn start_turn(self) -> Result<Turn, sqlx::Error> {
        let guard = self.queue().await?;
        let mut turn = Turn { guard: Some(guard), writer: self.clone() };
        let state = turn.state();
        // A savepoint an earlier write left open (its drop found no runtime): rolled
        // back first; if that fails, its group is abandoned and this write starts anew.
        let _ = settle(state).await;
        if state.conn.is_none() {
            state.conn = Some(self.pool.acquire().await?);
        }
        if !state.open {
            if let Err(e) = connection(state).execute("BEGIN IMMEDIATE").await {
                detach_if_broken(state, &e);
                return Err(e);
            }
            state.open = true;
            state.opened_at = Instant::now();
            state.generation += 1;
        }
        state.unsettled = true;
        if let Err(e) = connection(state).execute("SAVEPOINT write").await {
            state.unsettled = false;
            abandon_group(state, &e).await;
            return Err(e);
        }
        Ok(turn)
    }

    /// Waits for the writer and holds it, with nothing pending, for a
    /// single-statement write on its connection (in autocommit).
    pub(super) async fn hold(&self) -> Result<Held, sqlx::Error> {
        let writer = self.clone();
        tokio::spawn(
            async move {
                let mut state = writer.queue().await?;
                commit_pending(&mut state).await;
                if state.conn.is_none() {
                    state.conn = Some(writer.pool.acquire().await?);
                }
                Ok(Held(state))
            }
            .in_current_span(),
        )
        .await
        .map_err(worker_failed)?
    }

    /// Commits what is pending and gives the connection back to the pool; later
    /// turns fail (the pool is closing).
    pub(super) async fn close(&self) {
        let writer = self.clone();
        let _ = tokio::spawn(async move {
            let mut state = writer.state.lock().await;
            commit_pending(&mut state).await;
            state.closed = true;
            state.conn = None;
        })
        .await;
    }

    /// After a lost hand-over: commits the group `generation`, if still open.
    async fn flush(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state.open && state.generation == generation {
            commit_pending(&mut state).await;
        }
    }
}

/// The writer held, with no transaction open, until dropped: its connection
/// writes in autocommit meanwhile.
pub(super) struct Held(OwnedMutexGuard<State>);

impl std::ops::Deref for Held {
    type Target = AnyConnection;
    #[expect(clippy::expect_used, reason = "hold() returns only with the connection held")]
    fn deref(&self) -> &AnyConnection {
        self.0.conn.as_deref().expect("a hold keeps the writer's connection")
    }
}

impl std::ops::DerefMut for Held {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        connection(&mut self.0)
    }
}

/// One write's turn at the writer: a savepoint in the group's transaction.
pub(super) struct Turn {
    /// `None` only once committed or handed to the drop's settling task.
    guard: Option<OwnedMutexGuard<State>>,
    writer: Writer,
}

impl Turn {
    #[expect(clippy::expect_used, reason = "the guard is taken only by commit and drop, which consume the turn")]
    fn state(&mut self) -> &mut State {
        self.guard.as_mut().expect("a turn holds the writer until it ends")
    }

    pub(super) fn conn(&mut self) -> &mut AnyConnection {
        connection(self.state())
    }

    #[expect(clippy::expect_used, reason = "a turn holds the writer and its connection until it ends")]
    pub(super) fn conn_ref(&self) -> &AnyConnection {
        self.guard.as_ref().and_then(|state| state.conn.as_deref()).expect("a turn holds the writer's connection")
    }

    /// Releases this write's savepoint and returns once a commit holding it is
    /// durable (this one's, or the group's). Runs to the end even if the request
    /// is cancelled meanwhile (a COMMIT sent is not recalled: the members must
    /// hear how it went).
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        tokio::spawn(self.finish().in_current_span()).await.map_err(worker_failed)?
    }

    async fn finish(mut self) -> Result<(), sqlx::Error> {
        let waiting = self.writer.waiting.clone();
        let state = self.state();
        if let Err(e) = connection(state).execute("RELEASE write").await {
            // The savepoint is gone or the transaction failed: end the group.
            state.unsettled = false;
            abandon_group(state, &e).await;
            return Err(e);
        }
        state.unsettled = false;
        let hand_over =
            waiting.load(Ordering::SeqCst) > 0 && state.members.len() + 1 < MAX_GROUP && state.opened_at.elapsed() < MAX_GROUP_AGE;
        if !hand_over {
            let result = commit_group(state).await;
            self.guard = None;
            // Told as every member of the group is.
            return result.map_err(|e| group_failed(&e.to_string()));
        }
        let (sender, mut receiver) = oneshot::channel();
        state.members.push(sender);
        let generation = state.generation;
        self.guard = None;
        let outcome = match tokio::time::timeout(FLUSH_AFTER, &mut receiver).await {
            Ok(outcome) => outcome,
            Err(_) => {
                // Spawned: the group may be committed by its own last writer while
                // this flush still queues, and the answer must not wait for that queue.
                let writer = self.writer.clone();
                tokio::spawn(async move { writer.flush(generation).await }.in_current_span());
                receiver.await
            }
        };
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(group_failed(&why)),
            Err(_) => Err(group_failed("the group's transaction ended without a commit")),
        }
    }
}

impl Drop for Turn {
    /// A write dropped before its commit (an error, or its request cancelled), or
    /// a turn that failed to start: its savepoint is rolled back before anyone
    /// else writes, and the group is committed if nobody is waiting to continue it.
    fn drop(&mut self) {
        let Some(mut guard) = self.guard.take() else { return };
        let waiting = self.writer.waiting.clone();
        let nobody_continues = guard.open && waiting.load(Ordering::SeqCst) == 0;
        if !guard.unsettled && !nobody_continues {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = settle(&mut guard).await;
                if waiting.load(Ordering::SeqCst) == 0 {
                    commit_pending(&mut guard).await;
                }
            });
        }
        // Without a runtime the next turn settles it first.
    }
}

#[expect(clippy::expect_used, reason = "a turn exists only once the connection is held")]
fn connection(state: &mut State) -> &mut AnyConnection {
    state.conn.as_mut().expect("the writer's connection is held during a turn")
}

/// Rolls back a savepoint its write left open.
async fn settle(state: &mut State) -> Result<(), sqlx::Error> {
    if !state.unsettled {
        return Ok(());
    }
    let rolled_back = connection(state).execute("ROLLBACK TO write; RELEASE write").await;
    state.unsettled = false;
    if let Err(e) = rolled_back {
        // SQLite rolled back the whole transaction (an I/O error, a full disk): the
        // group's earlier writes are gone with it.
        abandon_group(state, &e).await;
        return Err(e);
    }
    Ok(())
}

/// Rolls back a savepoint left open, then commits the open group, if any. A failure
/// is the group's members' to hear; the writer is free of it either way.
async fn commit_pending(state: &mut State) {
    if settle(state).await.is_ok() && state.open {
        let _ = commit_group(state).await;
    }
}

/// Commits the group's transaction and tells its members.
async fn commit_group(state: &mut State) -> Result<(), sqlx::Error> {
    let committed = connection(state).execute("COMMIT").await.map(|_| ());
    match &committed {
        Ok(()) => {
            state.open = false;
            for member in state.members.drain(..) {
                let _ = member.send(Ok(()));
            }
        }
        Err(e) => abandon_group(state, e).await,
    }
    committed
}

/// Ends a group that cannot commit: whatever is left of it is rolled back and
/// every member is told its write did not land.
async fn abandon_group(state: &mut State, why: &sqlx::Error) {
    detach_if_broken(state, why);
    if state.conn.is_some() {
        // Fails harmlessly when SQLite has already rolled the transaction back.
        if let Err(e) = connection(state).execute("ROLLBACK").await {
            if !e.to_string().contains("no transaction is active") {
                detach(state);
            }
        }
    }
    state.open = false;
    let why: Arc<str> = why.to_string().into();
    for member in state.members.drain(..) {
        let _ = member.send(Err(why.clone()));
    }
}

/// What a member is told when the commit meant to hold its write failed: the
/// write did not land, and may be retried (the database is unavailable).
fn group_failed(why: &str) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::other(format!("the write was not committed: {why}")))
}

/// Drops a connection whose error says it no longer works, so the next turn takes
/// a fresh one from the pool (a connection held for good is never checked by it).
fn detach_if_broken(state: &mut State, e: &sqlx::Error) {
    if matches!(e, sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed | sqlx::Error::Protocol(_)) {
        detach(state);
    }
}

/// Closes the connection, ending whatever transaction it had open.
fn detach(state: &mut State) {
    if let Some(mut conn) = state.conn.take() {
        conn.close_on_drop();
    }
    state.open = false;
    state.unsettled = false;
}

fn worker_failed(e: tokio::task::JoinError) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::other(format!("the write's task failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::any::AnyPoolOptions;

    /// A writer over a fresh SQLite file, and a second pool to read what committed.
    async fn writer() -> (Writer, AnyPool, tempfile::TempDir) {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        let pool = AnyPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
        pool.execute("PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE)").await.unwrap();
        let readers = AnyPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
        (Writer::new(pool), readers, dir)
    }

    async fn insert(w: &Writer, v: &str) -> Result<(), sqlx::Error> {
        let mut turn = w.turn().await?;
        sqlx::query("INSERT INTO t (v) VALUES ($1)").bind(v).execute(turn.conn()).await?;
        turn.commit().await
    }

    async fn committed(readers: &AnyPool) -> Vec<String> {
        sqlx::query_scalar("SELECT v FROM t ORDER BY v").fetch_all(readers).await.unwrap()
    }

    async fn generation(w: &Writer) -> u64 {
        w.state.lock().await.generation
    }

    #[tokio::test]
    async fn queued_writes_share_commits_and_a_failure_undoes_only_its_own() {
        let (w, readers, _dir) = writer().await;
        // Forty writers at once, two of them breaking the unique rule.
        let names: Vec<String> = (0..40).map(|i| if i % 20 == 7 { "same".to_owned() } else { format!("v{i:02}") }).collect();
        let results = futures_util::future::join_all(names.iter().map(|v| insert(&w, v))).await;
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1, "one of the two `same` inserts fails");
        let stored = committed(&readers).await;
        assert_eq!(stored.len(), 39, "every write but the failed one is committed: {stored:?}");
        let commits = generation(&w).await;
        assert!(commits < 40, "writes queued together share a commit ({commits} transactions for 40 writes)");
        assert!(!w.state.lock().await.open, "nothing is left uncommitted once every writer has its answer");
    }

    /// Until `n` writers are queued for their turn.
    async fn until_waiting(w: &Writer, n: usize) {
        while w.waiting.load(Ordering::SeqCst) != n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn a_write_dropped_before_its_commit_leaves_the_group_intact() {
        let (w, readers, _dir) = writer().await;
        let mut first = w.turn().await.unwrap();
        sqlx::query("INSERT INTO t (v) VALUES ('kept')").execute(first.conn()).await.unwrap();
        let w2 = w.clone();
        let second = tokio::spawn(async move {
            let mut turn = w2.turn().await.unwrap();
            sqlx::query("INSERT INTO t (v) VALUES ('dropped')").execute(turn.conn()).await.unwrap();
            drop(turn);
        });
        // The second write is queued, so the first hands the open transaction over.
        until_waiting(&w, 1).await;
        first.commit().await.unwrap();
        second.await.unwrap();
        insert(&w, "after").await.unwrap();
        assert_eq!(committed(&readers).await, vec!["after", "kept"]);
        assert_eq!(generation(&w).await, 2, "`kept` was committed by the group the dropped write ended");
    }

    #[tokio::test]
    async fn a_lost_hand_over_is_committed_by_the_member_waiting_for_it() {
        let (w, readers, _dir) = writer().await;
        // A writer counted as waiting that never takes its turn (its task ended
        // with the runtime): the finished write hands over to nobody.
        w.waiting.fetch_add(1, Ordering::SeqCst);
        insert(&w, "alone").await.unwrap();
        assert_eq!(committed(&readers).await, vec!["alone"], "committed by the flush after FLUSH_AFTER");
        assert!(!w.state.lock().await.open);
    }

    #[tokio::test]
    async fn a_group_whose_transaction_is_lost_fails_every_member() {
        let (w, readers, _dir) = writer().await;
        let mut first = w.turn().await.unwrap();
        sqlx::query("INSERT INTO t (v) VALUES ('a')").execute(first.conn()).await.unwrap();
        let w2 = w.clone();
        let last = tokio::spawn(async move {
            let mut last = w2.turn().await.unwrap();
            sqlx::query("INSERT INTO t (v) VALUES ('b')").execute(last.conn()).await.unwrap();
            // Ends the group's transaction behind the writer's back (as SQLite does
            // after an I/O error): nothing of the group can be committed.
            last.conn().execute("ROLLBACK").await.unwrap();
            last.commit().await
        });
        until_waiting(&w, 1).await;
        let told = first.commit().await;
        assert!(told.is_err(), "the member is told its write did not land");
        assert!(last.await.unwrap().is_err());
        assert!(committed(&readers).await.is_empty());
        insert(&w, "next").await.unwrap();
        assert_eq!(committed(&readers).await, vec!["next"], "the writer works on after a failed group");
    }

    #[tokio::test]
    async fn a_hold_commits_the_open_group_and_keeps_writers_out_while_held() {
        let (w, readers, _dir) = writer().await;
        readers.execute("PRAGMA busy_timeout = 0").await.unwrap();
        let mut first = w.turn().await.unwrap();
        sqlx::query("INSERT INTO t (v) VALUES ('grouped')").execute(first.conn()).await.unwrap();
        let w2 = w.clone();
        let held = tokio::spawn(async move { w2.hold().await.unwrap() });
        until_waiting(&w, 1).await;
        // Handed over to the hold, which commits the group before it is held.
        first.commit().await.unwrap();
        let mut held = held.await.unwrap();
        // Held, the writer's connection writes in autocommit, and SQLite's lock is
        // free between its statements: a write elsewhere needs no wait.
        held.execute("INSERT INTO t (v) VALUES ('held')").await.unwrap();
        readers.execute("INSERT INTO t (v) VALUES ('elsewhere')").await.unwrap();
        let w3 = w.clone();
        let queued = tokio::spawn(async move { insert(&w3, "queued").await });
        until_waiting(&w, 1).await;
        assert!(!queued.is_finished(), "a turn waits while the writer is held");
        drop(held);
        queued.await.unwrap().unwrap();
        assert_eq!(committed(&readers).await, vec!["elsewhere", "grouped", "held", "queued"]);
    }
}
