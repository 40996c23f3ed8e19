//! Benchmark: `everruns-admin reencrypt` against the old tool's method and the floor.
//!
//! `cargo bench --bench reencrypt` seeds 200,000 `llm_providers` rows under the previous
//! key and times, from the same starting state each time:
//!
//! - baseline: what the old tool did: OFFSET pages of 100 ordered by id, one UPDATE per row;
//! - floor: one `UPDATE ... SET col = col || ''::bytea` (the database's own cost);
//! - reencrypt: the companion binary, default batch size.
//!
//! It prints rows/s, the ratios, the companion's peak RSS (VmHWM), and for the floor and
//! the companion what the server did (blocks read from outside shared buffers, pages
//! written to make room, WAL, HOT updates) and the CPU time spent by the server's
//! processes and by the companion: where time above the floor goes. Environment:
//! `EVERRUNS_BENCH_DATABASE_URL` uses that database instead of a throwaway cluster
//! (it is migrated, and its `llm_providers` and `mcp_servers` are EMPTIED);
//! `EVERRUNS_BENCH_ROWS` changes the row count; `EVERRUNS_BENCH_SKIP_BASELINE=1` skips the
//! slow baseline; `EVERRUNS_BENCH_1M=1` adds a 1,000,000-row run (floor and reencrypt);
//! `EVERRUNS_BENCH_BATCH` runs the companion with that `--batch-size`.

// A bench uses only part of the tests' fixtures.
#[allow(dead_code)]
#[path = "../tests/common/mod.rs"]
mod common;

use common::{KEK_V1, KEK_V2};

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use everruns_admin::envelope;
use everruns_admin::keyring::{Key, Keyring};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

const OLD_PAGE: i64 = 100;

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

fn main() {
    let rows: usize = std::env::var("EVERRUNS_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let url = match std::env::var("EVERRUNS_BENCH_DATABASE_URL") {
        Ok(url) => {
            let out = common::companion(&url).arg("migrate").output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{}", common::describe(&out));
            url
        }
        Err(_) => common::migrated_database().url,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench(&url, rows, !env_flag("EVERRUNS_BENCH_SKIP_BASELINE")));
    if env_flag("EVERRUNS_BENCH_1M") {
        runtime.block_on(bench(&url, 1_000_000, false));
    }
}

async fn bench(url: &str, rows: usize, with_baseline: bool) {
    let mut conn = PgConnection::connect(url).await.unwrap();
    println!("reencrypt benchmark: {rows} rows of llm_providers under the previous key");
    let started = Instant::now();
    seed_source(&mut conn, rows).await;
    println!("  seeded in {:.1} s", started.elapsed().as_secs_f64());

    let baseline = if with_baseline {
        reset(&mut conn).await;
        let t = old_tool(&mut conn).await;
        assert_all_on_primary(&mut conn, rows).await;
        report("baseline (OFFSET pages, UPDATE per row)", rows, t);
        Some(t)
    } else {
        None
    };

    reset(&mut conn).await;
    let before = Activity::read(&mut conn).await;
    let mut server_cpu = ServerCpu::start();
    let started = Instant::now();
    sqlx::query("UPDATE llm_providers SET api_key_encrypted = api_key_encrypted || ''::bytea")
        .execute(&mut conn)
        .await
        .unwrap();
    let floor = started.elapsed();
    server_cpu.sample();
    report("floor (one UPDATE of every row)", rows, floor);
    Activity::read(&mut conn).await.since(&before);
    println!("    CPU: server {:.2} s", server_cpu.seconds());

    reset(&mut conn).await;
    let before = Activity::read(&mut conn).await;
    let run = companion(url, rows);
    report(
        &format!("reencrypt (companion, batch {})", batch_size()),
        rows,
        run.took,
    );
    Activity::read(&mut conn).await.since(&before);
    println!(
        "    CPU: server {:.2} s, companion {:.2} s",
        run.server_cpu, run.companion_cpu
    );
    let (ours, peak_kib) = (run.took, run.peak_kib);
    assert_all_on_primary(&mut conn, rows).await;
    println!(
        "  companion peak RSS (VmHWM): {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
    if let Some(baseline) = baseline {
        println!(
            "  speed-up over baseline: {:.1}x",
            baseline.as_secs_f64() / ours.as_secs_f64()
        );
    }
    println!(
        "  reencrypt / floor time: {:.2}x",
        ours.as_secs_f64() / floor.as_secs_f64()
    );
    sqlx::query("DROP TABLE bench_source")
        .execute(&mut conn)
        .await
        .unwrap();
}

/// What the server did, from its cumulative statistics: where time above the floor can
/// go (pages read from outside shared buffers, dirty pages a backend had to write itself
/// to make room, WAL, HOT updates). `None` fields when this server's version lacks the
/// view (pg_stat_wal is PostgreSQL 14+, pg_stat_bgwriter's backend columns end at 16).
#[derive(Debug, Default)]
struct Activity {
    blocks_read: Option<i64>,
    blocks_hit: Option<i64>,
    written_by_backends: Option<i64>,
    written_by_checkpoints: Option<i64>,
    wal_bytes: Option<i64>,
    wal_full_page_images: Option<i64>,
    hot_updates: Option<i64>,
    updates: Option<i64>,
}

impl Activity {
    async fn read(conn: &mut PgConnection) -> Activity {
        // The statistics of a finished statement or process reach the views within a
        // second; this session's snapshot is dropped so the next read is fresh.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let _ = sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&mut *conn)
            .await;
        let one = async |conn: &mut PgConnection, sql: &str| -> Option<i64> {
            sqlx::query_scalar::<_, Option<i64>>(sql)
                .fetch_one(conn)
                .await
                .ok()
                .flatten()
        };
        Activity {
            blocks_read: one(
                conn,
                "SELECT (heap_blks_read + coalesce(idx_blks_read, 0))::bigint \
                 FROM pg_statio_user_tables WHERE relname = 'llm_providers'",
            )
            .await,
            blocks_hit: one(
                conn,
                "SELECT (heap_blks_hit + coalesce(idx_blks_hit, 0))::bigint \
                 FROM pg_statio_user_tables WHERE relname = 'llm_providers'",
            )
            .await,
            written_by_backends: one(
                conn,
                "SELECT (buffers_backend + buffers_clean)::bigint FROM pg_stat_bgwriter",
            )
            .await,
            written_by_checkpoints: one(
                conn,
                "SELECT buffers_checkpoint::bigint FROM pg_stat_bgwriter",
            )
            .await,
            wal_bytes: one(conn, "SELECT wal_bytes::bigint FROM pg_stat_wal").await,
            wal_full_page_images: one(conn, "SELECT wal_fpi::bigint FROM pg_stat_wal").await,
            hot_updates: one(
                conn,
                "SELECT n_tup_hot_upd::bigint FROM pg_stat_user_tables WHERE relname = 'llm_providers'",
            )
            .await,
            updates: one(
                conn,
                "SELECT n_tup_upd::bigint FROM pg_stat_user_tables WHERE relname = 'llm_providers'",
            )
            .await,
        }
    }

    /// Prints what happened between `before` and this reading.
    fn since(&self, before: &Activity) {
        let delta = |now: Option<i64>, then: Option<i64>| match (now, then) {
            (Some(now), Some(then)) => (now - then).to_string(),
            _ => "n/a".to_owned(),
        };
        println!(
            "    server: {} blocks read from outside shared buffers, {} hits; {} pages written \
             by backends and the background writer to make room, {} by checkpoints; WAL {} \
             bytes ({} full-page images); {} of {} updates HOT",
            delta(self.blocks_read, before.blocks_read),
            delta(self.blocks_hit, before.blocks_hit),
            delta(self.written_by_backends, before.written_by_backends),
            delta(self.written_by_checkpoints, before.written_by_checkpoints),
            delta(self.wal_bytes, before.wal_bytes),
            delta(self.wal_full_page_images, before.wal_full_page_images),
            delta(self.hot_updates, before.hot_updates),
            delta(self.updates, before.updates),
        );
    }
}

fn batch_size() -> u32 {
    std::env::var("EVERRUNS_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(everruns_admin::seam::DEFAULT_BATCH_SIZE)
}

fn report(what: &str, rows: usize, took: Duration) {
    println!(
        "  {what}: {:.2} s, {:.0} rows/s",
        took.as_secs_f64(),
        rows as f64 / took.as_secs_f64()
    );
}

/// Encrypts `rows` values under kek-v1 into `bench_source`, the state every run starts from.
async fn seed_source(conn: &mut PgConnection, rows: usize) {
    let old = Key::parse(KEK_V1).unwrap();
    sqlx::query("DROP TABLE IF EXISTS bench_source")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE bench_source (id UUID PRIMARY KEY, name TEXT, value BYTEA)")
        .execute(&mut *conn)
        .await
        .unwrap();
    for start in (0..rows).step_by(10_000) {
        let end = (start + 10_000).min(rows);
        let ids: Vec<Uuid> = (start..end).map(|_| Uuid::new_v4()).collect();
        let names: Vec<String> = (start..end).map(|i| format!("provider-{i}")).collect();
        let values: Vec<Vec<u8>> = (start..end)
            .map(|i| {
                envelope::encrypt(
                    format!("sk-bench-{i:012}-{}", "x".repeat(40)).as_bytes(),
                    &old,
                )
                .unwrap()
            })
            .collect();
        sqlx::query(
            "INSERT INTO bench_source SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bytea[])",
        )
        .bind(&ids)
        .bind(&names)
        .bind(&values)
        .execute(&mut *conn)
        .await
        .unwrap();
    }
}

/// Puts `llm_providers` back to the seeded state, vacuumed and checkpointed.
async fn reset(conn: &mut PgConnection) {
    for sql in [
        "TRUNCATE llm_providers, mcp_servers",
        "INSERT INTO llm_providers (id, name, provider_type, api_key_encrypted) \
         SELECT id, name, 'openai', value FROM bench_source",
        "VACUUM ANALYZE llm_providers",
        "CHECKPOINT",
    ] {
        sqlx::query(sql).execute(&mut *conn).await.unwrap();
    }
}

/// The old tool: pages by OFFSET, decrypt and re-encrypt, one UPDATE per row.
async fn old_tool(conn: &mut PgConnection) -> Duration {
    let ring = Keyring::parse(KEK_V2, Some(KEK_V1)).unwrap();
    let started = Instant::now();
    let mut offset = 0i64;
    loop {
        let page: Vec<(Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT id, api_key_encrypted FROM llm_providers \
             WHERE api_key_encrypted IS NOT NULL ORDER BY id LIMIT $1 OFFSET $2",
        )
        .bind(OLD_PAGE)
        .bind(offset)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        if page.is_empty() {
            break;
        }
        for (id, value) in &page {
            let new = envelope::rewrap(value, &ring).unwrap();
            sqlx::query("UPDATE llm_providers SET api_key_encrypted = $1 WHERE id = $2")
                .bind(&new)
                .bind(id)
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        offset += OLD_PAGE;
    }
    started.elapsed()
}

/// CPU time of the server's processes over a stretch, sampled from /proc: a backend
/// that ends during the stretch (the companion's, when it exits) counts up to its last
/// sample, so sampling is frequent.
struct ServerCpu {
    at_start: HashMap<u32, u64>,
    latest: HashMap<u32, u64>,
}

impl ServerCpu {
    fn start() -> Self {
        let at_start = Self::read();
        ServerCpu {
            latest: at_start.clone(),
            at_start,
        }
    }

    /// utime + stime, in clock ticks, of every process named `postgres`.
    fn read() -> HashMap<u32, u64> {
        let mut ticks = HashMap::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ...`: comm may hold spaces, so split after its ')'.
            let Some((head, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            if !head.ends_with("(postgres") {
                continue;
            }
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
            if let (Some(user), Some(system)) = (fields.get(11), fields.get(12)) {
                let (user, system): (u64, u64) =
                    (user.parse().unwrap_or(0), system.parse().unwrap_or(0));
                ticks.insert(pid, user + system);
            }
        }
        ticks
    }

    fn sample(&mut self) {
        for (pid, ticks) in Self::read() {
            self.latest.insert(pid, ticks);
        }
    }

    fn seconds(&self) -> f64 {
        let ticks: u64 = self
            .latest
            .iter()
            .map(|(pid, now)| now - self.at_start.get(pid).copied().unwrap_or(0).min(*now))
            .sum();
        ticks as f64 / clock_ticks_per_second()
    }
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// CPU time of this process's reaped children, in seconds.
fn children_cpu() -> f64 {
    // SAFETY: getrusage writes into the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// One companion run: wall time, peak RSS in KiB, and CPU seconds (server, companion).
struct CompanionRun {
    took: Duration,
    peak_kib: u64,
    server_cpu: f64,
    companion_cpu: f64,
}

/// Runs the companion; returns its wall time, peak RSS sampled from /proc while it runs
/// (VmHWM only grows, so the last sample is the peak), and the CPU it and the server
/// spent.
fn companion(url: &str, rows: usize) -> CompanionRun {
    let output = tempfile::NamedTempFile::new().unwrap();
    let children_before = children_cpu();
    let mut server_cpu = ServerCpu::start();
    let mut sampled = Instant::now();
    let started = Instant::now();
    let mut child = common::companion(url)
        .args(["reencrypt", "--batch-size", &batch_size().to_string()])
        .env("SECRETS_ENCRYPTION_KEY", KEK_V2)
        .env("SECRETS_ENCRYPTION_KEY_PREVIOUS", KEK_V1)
        .stdout(Stdio::from(output.reopen().unwrap()))
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if let Some(kib) = std::fs::read_to_string(&status_file)
            .ok()
            .and_then(|s| vm_hwm(&s))
        {
            peak_kib = peak_kib.max(kib);
        }
        if sampled.elapsed() > Duration::from_millis(50) {
            server_cpu.sample();
            sampled = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let took = started.elapsed();
    server_cpu.sample();
    let text = std::fs::read_to_string(output.path()).unwrap();
    assert_eq!(status.code(), Some(0), "{text}");
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(
        last["summary"]["tables"][0]["reencrypted"], rows as u64,
        "{last}"
    );
    CompanionRun {
        took,
        peak_kib,
        server_cpu: server_cpu.seconds(),
        companion_cpu: children_cpu() - children_before,
    }
}

fn vm_hwm(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

async fn assert_all_on_primary(conn: &mut PgConnection, rows: usize) {
    let on_primary: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM llm_providers \
         WHERE convert_from(api_key_encrypted, 'UTF8')::jsonb->>'key_id' = 'kek-v2'",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(on_primary, rows as i64);
    let ring = Keyring::parse(KEK_V2, None).unwrap();
    let sample: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT api_key_encrypted FROM llm_providers ORDER BY random() LIMIT 100",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    for value in sample {
        let plaintext = envelope::decrypt(&value, &ring).unwrap();
        assert!(plaintext.starts_with(b"sk-bench-"));
    }
}
