//! The PostgreSQL backend: the storage contract in a database that several Switchboards can share.
//!
//! The traits are synchronous (the registrar calls writes from blocking
//! threads), while the client, `tokio-postgres` with a `deadpool` pool, is
//! async. So [`PostgresStorage`] owns a small tokio runtime of its own
//! (two threads, named `storage-pg`): each call sends its statement there
//! and waits for the answer on a channel, which works from any thread,
//! inside another runtime's blocking pool or outside any runtime.
//!
//! Every call is bounded by `query_timeout` in total (waiting for a pooled
//! connection, connecting, the statements). A database that cannot be
//! reached is [`Error::Unavailable`]: the registrar answers 503, and the
//! next call tries again, reconnecting through the pool (a connection that
//! the server closed is dropped when it is next taken from the pool), so
//! the store recovers by itself when the database returns.
//!
//! The schema is created and upgraded at [`PostgresStorage::open`], in one
//! transaction under an advisory lock (two nodes starting at once take
//! turns); `switchboard_schema` records the versions applied. Text keys are
//! `COLLATE "C"` so that rows come back in the byte order the other
//! backends use, and times are `numeric(20,0)` unix milliseconds, so every
//! `u64` (up to "never") is stored exactly and reads as itself.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Config, NoTls, Row};

use crate::Error;
use crate::cdr::{CdrEntry, CdrStore};
use crate::kv::{self, KvStore};
use crate::location::{self, Binding, LocationStore};

/// The schema, one migration per version (version = index + 1). Never edit
/// a shipped migration: add the next one.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE bindings (
    aor text COLLATE "C" NOT NULL,
    contact text COLLATE "C" NOT NULL,
    expires_at_ms numeric(20, 0) NOT NULL,
    binding jsonb NOT NULL,
    PRIMARY KEY (aor, contact)
);
CREATE INDEX bindings_expiry ON bindings (expires_at_ms);
CREATE TABLE kv (
    ns text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    value bytea NOT NULL,
    expires_at_ms numeric(20, 0),
    PRIMARY KEY (ns, key)
);
CREATE INDEX kv_expiry ON kv (expires_at_ms) WHERE expires_at_ms IS NOT NULL;
CREATE TABLE cdrs (
    id bigint PRIMARY KEY,
    record jsonb NOT NULL
);
"#];

/// The advisory lock key the migrations run under ("SWBD" in ASCII).
const MIGRATION_LOCK: i64 = 0x5357_4244;

/// How to reach the database (`[storage]` with `backend = "postgres"`).
#[derive(Clone)]
pub struct PostgresOptions {
    /// `postgres://user:password@host:port/dbname` (or libpq's
    /// `key=value` form). Never logged: [`describe_url`] gives the part
    /// that is.
    pub url: String,
    /// Most connections the pool opens.
    pub pool_size: usize,
    /// Longest wait for a new connection (TCP connect and login).
    pub connect_timeout: Duration,
    /// Longest a storage call may take in total, connection included.
    pub query_timeout: Duration,
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresOptions")
            .field(
                "url",
                &describe_url(&self.url).unwrap_or_else(|_| "(invalid)".to_owned()),
            )
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("query_timeout", &self.query_timeout)
            .finish()
    }
}

/// `user@host:port/dbname` for `url`, without its password: what logs,
/// errors and `switchboard check` show. An error says what is wrong with
/// the URL.
pub fn describe_url(url: &str) -> Result<String, Error> {
    parse_url(url).map(|(_, target)| target)
}

fn parse_url(url: &str) -> Result<(Config, String), Error> {
    let url = url.trim();
    if url.is_empty() {
        return Err(Error::BadUrl {
            reason: "empty; write postgres://user:password@host:port/dbname".to_owned(),
        });
    }
    let config = Config::from_str(url).map_err(|e| Error::BadUrl {
        reason: format!(
            "not a PostgreSQL connection URL ({e}); write postgres://user:password@host:port/dbname"
        ),
    })?;
    if config.get_hosts().is_empty() {
        return Err(Error::BadUrl {
            reason: "names no host; write postgres://user:password@host:port/dbname".to_owned(),
        });
    }
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = config
                .get_ports()
                .get(i)
                .or_else(|| config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            match host {
                tokio_postgres::config::Host::Tcp(h) => format!("{h}:{port}"),
                tokio_postgres::config::Host::Unix(p) => format!("{}:{port}", p.display()),
            }
        })
        .collect();
    let user = config.get_user().unwrap_or("(user)");
    let db = config.get_dbname().unwrap_or(user);
    let target = format!("{user}@{}/{db}", hosts.join(","));
    Ok((config, target))
}

/// Storage in a PostgreSQL database. `Send + Sync`; one per process, shared
/// by every task (it holds the connection pool).
pub struct PostgresStorage {
    /// The runtime the pool and its connections live on; `None` only
    /// while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    pool: Pool,
    target: Arc<str>,
    query_timeout: Duration,
}

impl fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStorage")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStorage {
    fn drop(&mut self) {
        // Dropping a runtime waits for its tasks, which is not allowed on
        // an async thread: stop it without waiting.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Which database and what was being done, for errors.
#[derive(Clone)]
struct Ctx {
    target: Arc<str>,
    action: &'static str,
}

impl Ctx {
    fn unavailable(&self, reason: String) -> Error {
        Error::Unavailable {
            target: self.target.to_string(),
            action: self.action,
            reason,
        }
    }

    fn pg(&self, e: tokio_postgres::Error) -> Error {
        if is_outage(&e) {
            self.unavailable(e.to_string())
        } else {
            Error::Postgres {
                target: self.target.to_string(),
                action: self.action,
                source: Box::new(e),
            }
        }
    }

    fn pool(&self, e: PoolError) -> Error {
        match e {
            PoolError::Backend(e) => self.pg(e),
            other => self.unavailable(other.to_string()),
        }
    }

    fn bad_row(&self, what: &'static str, key: String, reason: String) -> Error {
        Error::BadRow {
            target: self.target.to_string(),
            what,
            key,
            reason,
        }
    }

    fn binding(&self, row: &Row) -> Result<Binding, Error> {
        let value: serde_json::Value = row.try_get(0).map_err(|e| self.pg(e))?;
        serde_json::from_value(value.clone()).map_err(|e| {
            let key = value
                .get("aor")
                .and_then(|a| a.as_str())
                .unwrap_or("(no aor)")
                .to_owned();
            self.bad_row("binding", key, e.to_string())
        })
    }

    fn bindings(&self, rows: &[Row]) -> Result<Vec<Binding>, Error> {
        rows.iter().map(|r| self.binding(r)).collect()
    }
}

/// Whether `e` means the database is out of reach (as opposed to a
/// statement it refused): a closed or failed connection, or the server
/// shutting down, starting up or out of connections.
fn is_outage(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return code.code().starts_with("08")
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
            ]
            .contains(code);
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// A unix-millisecond time as the text a `numeric(20,0)` parameter takes.
fn ms(value: u64) -> String {
    value.to_string()
}

fn binding_json(b: &Binding) -> Result<serde_json::Value, Error> {
    serde_json::to_value(b).map_err(|e| Error::InvalidBinding {
        reason: format!(
            "binding of {} to {} cannot be encoded: {e}",
            b.aor, b.contact
        ),
    })
}

const PUT_BINDING: &str = "INSERT INTO bindings (aor, contact, expires_at_ms, binding) \
     VALUES ($1, $2, ($3::text)::numeric, $4) \
     ON CONFLICT (aor, contact) DO UPDATE \
     SET expires_at_ms = EXCLUDED.expires_at_ms, binding = EXCLUDED.binding";

/// Replaces the bindings of each AOR of `batch` inside `tx`; the old ones.
async fn replace_in(
    ctx: &Ctx,
    tx: &deadpool_postgres::Transaction<'_>,
    batch: &[(String, Vec<(Binding, serde_json::Value)>)],
) -> Result<Vec<Binding>, Error> {
    let lock = tx
        .prepare_cached("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .await
        .map_err(|e| ctx.pg(e))?;
    let delete = tx
        .prepare_cached("DELETE FROM bindings WHERE aor = $1 RETURNING binding")
        .await
        .map_err(|e| ctx.pg(e))?;
    let put = tx
        .prepare_cached(PUT_BINDING)
        .await
        .map_err(|e| ctx.pg(e))?;
    let mut old = Vec::new();
    for (aor, bindings) in batch {
        // Two nodes replacing one AOR take turns, so neither sees half of
        // the other's set.
        tx.execute(&lock, &[aor]).await.map_err(|e| ctx.pg(e))?;
        let rows = tx.query(&delete, &[aor]).await.map_err(|e| ctx.pg(e))?;
        old.extend(ctx.bindings(&rows)?);
        for (b, json) in bindings {
            let expires = ms(b.expires_at_ms);
            tx.execute(&put, &[&b.aor, &b.contact, &expires, json])
                .await
                .map_err(|e| ctx.pg(e))?;
        }
    }
    Ok(old)
}

impl PostgresStorage {
    /// Connects to the database `options` names and brings its schema up
    /// to date. Fails (with what to do) when the URL is invalid, the
    /// database cannot be reached within `connect_timeout`, or its schema
    /// is newer than this build.
    pub fn open(options: &PostgresOptions) -> Result<Self, Error> {
        let (mut config, target) = parse_url(&options.url)?;
        config.connect_timeout(options.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("switchboard");
        }
        let target: Arc<str> = Arc::from(target);
        let ctx = Ctx {
            target: target.clone(),
            action: "starting the database client",
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("storage-pg")
            .enable_all()
            .build()
            .map_err(|e| ctx.unavailable(e.to_string()))?;
        let manager = Manager::from_config(config, NoTls, ManagerConfig::default());
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.query_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| ctx.unavailable(e.to_string()))?;
        let store = PostgresStorage {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            pool,
            target,
            query_timeout: options.query_timeout.max(options.connect_timeout),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Where the database is, without credentials (`user@host:port/dbname`).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Runs `work` (built from the pool and the error context) on the
    /// backend's runtime, bounded by the query timeout, and waits for it.
    fn run<T, F, Fut>(&self, action: &'static str, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(Pool, Ctx) -> Fut,
        Fut: Future<Output = Result<T, Error>> + Send + 'static,
    {
        let ctx = Ctx {
            target: self.target.clone(),
            action,
        };
        let future = work(self.pool.clone(), ctx.clone());
        let timeout = self.query_timeout;
        let (tx, rx) = mpsc::sync_channel(1);
        let waiting = ctx.clone();
        self.handle.spawn(async move {
            let result = match tokio::time::timeout(timeout, future).await {
                Ok(result) => result,
                Err(_) => Err(ctx.unavailable(format!(
                    "no answer within the query timeout ({} ms)",
                    timeout.as_millis()
                ))),
            };
            // The caller may have gone (its thread panicked): nothing to do.
            let _ = tx.send(result);
        });
        rx.recv()
            .unwrap_or_else(|_| Err(waiting.unavailable("the database client stopped".to_owned())))
    }

    fn migrate(&self) -> Result<(), Error> {
        let (from, to) = self.run("upgrading the schema", move |pool, ctx| async move {
            let mut client = pool.get().await.map_err(|e| ctx.pool(e))?;
            let tx = client.transaction().await.map_err(|e| ctx.pg(e))?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(|e| ctx.pg(e))?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS switchboard_schema (\
                 version bigint PRIMARY KEY, \
                 applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .await
            .map_err(|e| ctx.pg(e))?;
            let row = tx
                .query_one(
                    "SELECT coalesce(max(version), 0)::bigint FROM switchboard_schema",
                    &[],
                )
                .await
                .map_err(|e| ctx.pg(e))?;
            let found: i64 = row.try_get(0).map_err(|e| ctx.pg(e))?;
            let supported = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
            if found > supported {
                return Err(Error::NewerSchema {
                    target: ctx.target.to_string(),
                    found,
                    supported,
                });
            }
            for (version, sql) in (1_i64..)
                .zip(MIGRATIONS)
                .skip(usize::try_from(found).unwrap_or(0))
            {
                tx.batch_execute(sql).await.map_err(|e| ctx.pg(e))?;
                tx.execute(
                    "INSERT INTO switchboard_schema (version) VALUES ($1)",
                    &[&version],
                )
                .await
                .map_err(|e| ctx.pg(e))?;
            }
            tx.commit().await.map_err(|e| ctx.pg(e))?;
            Ok((found, supported))
        })?;
        if from < to {
            tracing::info!(target = %self.target, from, to, "storage: PostgreSQL schema upgraded");
        }
        Ok(())
    }

    /// One statement that returns rows, outside a transaction.
    fn query(
        &self,
        action: &'static str,
        sql: &'static str,
        params: Vec<Box<dyn ToSql + Send + Sync>>,
    ) -> Result<Vec<Row>, Error> {
        self.run(action, move |pool, ctx| async move {
            let client = pool.get().await.map_err(|e| ctx.pool(e))?;
            let stmt = client.prepare_cached(sql).await.map_err(|e| ctx.pg(e))?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
            client.query(&stmt, &refs).await.map_err(|e| ctx.pg(e))
        })
    }

    /// One statement that returns a row count, outside a transaction.
    fn execute(
        &self,
        action: &'static str,
        sql: &'static str,
        params: Vec<Box<dyn ToSql + Send + Sync>>,
    ) -> Result<u64, Error> {
        self.run(action, move |pool, ctx| async move {
            let client = pool.get().await.map_err(|e| ctx.pool(e))?;
            let stmt = client.prepare_cached(sql).await.map_err(|e| ctx.pg(e))?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
            client.execute(&stmt, &refs).await.map_err(|e| ctx.pg(e))
        })
    }

    fn bindings_of(&self, action: &'static str, rows: &[Row]) -> Result<Vec<Binding>, Error> {
        Ctx {
            target: self.target.clone(),
            action,
        }
        .bindings(rows)
    }
}

impl LocationStore for PostgresStorage {
    fn put(&self, binding: &Binding) -> Result<(), Error> {
        let json = binding_json(binding)?;
        self.execute(
            "storing a binding",
            PUT_BINDING,
            vec![
                Box::new(binding.aor.clone()),
                Box::new(binding.contact.clone()),
                Box::new(ms(binding.expires_at_ms)),
                Box::new(json),
            ],
        )
        .map(drop)
    }

    fn replace_aor(&self, aor: &str, bindings: &[Binding]) -> Result<Vec<Binding>, Error> {
        location::check_same_aor(aor, bindings)?;
        let encoded = bindings
            .iter()
            .map(|b| Ok((b.clone(), binding_json(b)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let batch = vec![(aor.to_owned(), encoded)];
        let mut old = self.run(
            "replacing the bindings of an AOR",
            move |pool, ctx| async move {
                let mut client = pool.get().await.map_err(|e| ctx.pool(e))?;
                let tx = client.transaction().await.map_err(|e| ctx.pg(e))?;
                let old = replace_in(&ctx, &tx, &batch).await?;
                tx.commit().await.map_err(|e| ctx.pg(e))?;
                Ok(old)
            },
        )?;
        old.sort_by(|a, b| a.contact.cmp(&b.contact));
        Ok(old)
    }

    fn replace_aors(&self, batch: &[(String, Vec<Binding>)]) -> Result<(), Error> {
        for (aor, bindings) in batch {
            location::check_same_aor(aor, bindings)?;
        }
        if batch.is_empty() {
            return Ok(());
        }
        let encoded = batch
            .iter()
            .map(|(aor, bindings)| {
                let list = bindings
                    .iter()
                    .map(|b| Ok((b.clone(), binding_json(b)?)))
                    .collect::<Result<Vec<_>, Error>>()?;
                Ok((aor.clone(), list))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        self.run(
            "storing a batch of registrations",
            move |pool, ctx| async move {
                let mut client = pool.get().await.map_err(|e| ctx.pool(e))?;
                let tx = client.transaction().await.map_err(|e| ctx.pg(e))?;
                replace_in(&ctx, &tx, &encoded).await?;
                tx.commit().await.map_err(|e| ctx.pg(e))
            },
        )
    }

    fn remove(&self, aor: &str, contact: &str) -> Result<Option<Binding>, Error> {
        let action = "removing a binding";
        let rows = self.query(
            action,
            "DELETE FROM bindings WHERE aor = $1 AND contact = $2 RETURNING binding",
            vec![Box::new(aor.to_owned()), Box::new(contact.to_owned())],
        )?;
        Ok(self.bindings_of(action, &rows)?.pop())
    }

    fn remove_all(&self, aor: &str) -> Result<Vec<Binding>, Error> {
        let action = "removing the bindings of an AOR";
        let rows = self.query(
            action,
            "DELETE FROM bindings WHERE aor = $1 RETURNING binding",
            vec![Box::new(aor.to_owned())],
        )?;
        let mut removed = self.bindings_of(action, &rows)?;
        removed.sort_by(|a, b| a.contact.cmp(&b.contact));
        Ok(removed)
    }

    fn list(&self, aor: &str) -> Result<Vec<Binding>, Error> {
        let action = "reading the bindings of an AOR";
        let rows = self.query(
            action,
            "SELECT binding FROM bindings WHERE aor = $1 ORDER BY contact",
            vec![Box::new(aor.to_owned())],
        )?;
        self.bindings_of(action, &rows)
    }

    fn list_all(&self) -> Result<Vec<Binding>, Error> {
        let action = "reading every binding";
        let rows = self.query(
            action,
            "SELECT binding FROM bindings ORDER BY aor, contact",
            Vec::new(),
        )?;
        self.bindings_of(action, &rows)
    }

    fn sweep_expired(&self, now_unix_ms: u64) -> Result<Vec<Binding>, Error> {
        let action = "removing expired bindings";
        let rows = self.query(
            action,
            "DELETE FROM bindings WHERE expires_at_ms <= ($1::text)::numeric RETURNING binding",
            vec![Box::new(ms(now_unix_ms))],
        )?;
        let mut expired = self.bindings_of(action, &rows)?;
        expired.sort_by(|a, b| {
            (a.expires_at_ms, &a.aor, &a.contact).cmp(&(b.expires_at_ms, &b.aor, &b.contact))
        });
        Ok(expired)
    }
}

impl KvStore for PostgresStorage {
    fn kv_get(&self, ns: &str, key: &str, now_unix_ms: u64) -> Result<Option<Vec<u8>>, Error> {
        let action = "reading a key";
        let rows = self.query(
            action,
            "SELECT value FROM kv WHERE ns = $1 AND key = $2 \
             AND (expires_at_ms IS NULL OR expires_at_ms > ($3::text)::numeric)",
            vec![
                Box::new(ns.to_owned()),
                Box::new(key.to_owned()),
                Box::new(ms(now_unix_ms)),
            ],
        )?;
        let ctx = Ctx {
            target: self.target.clone(),
            action,
        };
        rows.first()
            .map(|row| row.try_get::<_, Vec<u8>>(0).map_err(|e| ctx.pg(e)))
            .transpose()
    }

    fn kv_set(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        now_unix_ms: u64,
    ) -> Result<(), Error> {
        let expires: Option<String> = kv::expiry(ttl, now_unix_ms).map(ms);
        self.execute(
            "storing a key",
            "INSERT INTO kv (ns, key, value, expires_at_ms) \
             VALUES ($1, $2, $3, ($4::text)::numeric) \
             ON CONFLICT (ns, key) DO UPDATE \
             SET value = EXCLUDED.value, expires_at_ms = EXCLUDED.expires_at_ms",
            vec![
                Box::new(ns.to_owned()),
                Box::new(key.to_owned()),
                Box::new(value.to_vec()),
                Box::new(expires),
            ],
        )
        .map(drop)
    }

    fn kv_delete(&self, ns: &str, key: &str) -> Result<bool, Error> {
        let n = self.execute(
            "deleting a key",
            "DELETE FROM kv WHERE ns = $1 AND key = $2",
            vec![Box::new(ns.to_owned()), Box::new(key.to_owned())],
        )?;
        Ok(n > 0)
    }

    fn kv_list(
        &self,
        ns: &str,
        prefix: &str,
        now_unix_ms: u64,
    ) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let action = "listing keys";
        let rows = self.query(
            action,
            "SELECT key, value FROM kv WHERE ns = $1 AND key >= $2 AND starts_with(key, $2) \
             AND (expires_at_ms IS NULL OR expires_at_ms > ($3::text)::numeric) ORDER BY key",
            vec![
                Box::new(ns.to_owned()),
                Box::new(prefix.to_owned()),
                Box::new(ms(now_unix_ms)),
            ],
        )?;
        let ctx = Ctx {
            target: self.target.clone(),
            action,
        };
        rows.iter()
            .map(|row| {
                let key: String = row.try_get(0).map_err(|e| ctx.pg(e))?;
                let value: Vec<u8> = row.try_get(1).map_err(|e| ctx.pg(e))?;
                Ok((key, value))
            })
            .collect()
    }

    fn kv_sweep_expired(&self, now_unix_ms: u64) -> Result<usize, Error> {
        let n = self.execute(
            "removing expired keys",
            "DELETE FROM kv WHERE expires_at_ms <= ($1::text)::numeric",
            vec![Box::new(ms(now_unix_ms))],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

impl CdrStore for PostgresStorage {
    fn append_cdr(&self, record: &serde_json::Value) -> Result<u64, Error> {
        let ids = self.append_cdrs(std::slice::from_ref(record))?;
        ids.first().copied().ok_or_else(|| Error::Unavailable {
            target: self.target.to_string(),
            action: "appending a CDR",
            reason: "no id came back".to_owned(),
        })
    }

    fn append_cdrs(&self, records: &[serde_json::Value]) -> Result<Vec<u64>, Error> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let records = records.to_vec();
        self.run("appending CDRs", move |pool, ctx| async move {
            let mut client = pool.get().await.map_err(|e| ctx.pool(e))?;
            let tx = client.transaction().await.map_err(|e| ctx.pg(e))?;
            // Ids are 1, 2, 3... with no gaps (a sequence would skip the
            // ids of a rolled-back batch): writers take turns, readers don't wait.
            tx.batch_execute("LOCK TABLE cdrs IN SHARE ROW EXCLUSIVE MODE")
                .await
                .map_err(|e| ctx.pg(e))?;
            let row = tx
                .query_one("SELECT coalesce(max(id), 0)::bigint FROM cdrs", &[])
                .await
                .map_err(|e| ctx.pg(e))?;
            let last: i64 = row.try_get(0).map_err(|e| ctx.pg(e))?;
            let insert = tx
                .prepare_cached("INSERT INTO cdrs (id, record) VALUES ($1, $2)")
                .await
                .map_err(|e| ctx.pg(e))?;
            let mut ids = Vec::with_capacity(records.len());
            for (id, record) in (last + 1..).zip(&records) {
                tx.execute(&insert, &[&id, record])
                    .await
                    .map_err(|e| ctx.pg(e))?;
                ids.push(u64::try_from(id).unwrap_or_default());
            }
            tx.commit().await.map_err(|e| ctx.pg(e))?;
            Ok(ids)
        })
    }

    fn recent_cdrs(&self, limit: usize) -> Result<Vec<CdrEntry>, Error> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let action = "reading CDRs";
        let rows = self.query(
            action,
            "SELECT id, record FROM cdrs ORDER BY id DESC LIMIT $1",
            vec![Box::new(i64::try_from(limit).unwrap_or(i64::MAX))],
        )?;
        let ctx = Ctx {
            target: self.target.clone(),
            action,
        };
        rows.iter()
            .map(|row| {
                let id: i64 = row.try_get(0).map_err(|e| ctx.pg(e))?;
                let record: serde_json::Value = row.try_get(1).map_err(|e| ctx.pg(e))?;
                Ok(CdrEntry {
                    id: u64::try_from(id).unwrap_or_default(),
                    record,
                })
            })
            .collect()
    }
}
