//! Benchmark of a sharded re-encryption through the emulator and a local PostgreSQL:
//! `cargo bench --bench shards`.
//!
//! Seeds 1,000,000 `llm_providers` values under the previous key (`EVERRUNS_BENCH_ROWS`
//! changes it), then for `--shards 1`, `2` and `4` puts them back under the previous key
//! and times `run-admin-task reencrypt --shards N` from launch to exit. Prints the wall
//! time, rows/s and each shard's peak RSS (the companion's, measured by a wrapper the
//! emulator runs as the container). Every task, the database and the launcher share
//! this machine's cores, so the figures show what that allows, not what Fargate would.

// A bench uses only part of the tests' fixtures.
#[allow(dead_code)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::emulator::{Emulator, Secrets};
use common::{KEK_V1, KEK_V2, describe, psql};
use everruns_admin::envelope;
use everruns_admin::keyring::Key;

fn main() {
    let rows: u64 = std::env::var("EVERRUNS_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let db = common::cluster().create_database();
    let work = tempfile::tempdir().unwrap();
    let peaks = work.path().join("peaks");
    // The container: the companion run by a parent that records its peak RSS (KiB).
    let wrapper = work.path().join("companion");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec python3 -c 'import resource, subprocess, sys\n\
             code = subprocess.run(sys.argv[1:]).returncode\n\
             print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=open(\"{}\", \"a\"))\n\
             sys.exit(code)' {} \"$@\"\n",
            peaks.display(),
            env!("CARGO_BIN_EXE_everruns-admin")
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let emu = Emulator::start_with(
        &Secrets {
            database_url: &db.url,
            key: KEK_V2,
            previous: Some(KEK_V1),
        },
        &["--companion", wrapper.to_str().unwrap()],
    );
    let out = emu.launcher().arg("migrate").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    let old = Key::parse(KEK_V1).unwrap();
    let payload = envelope::encrypt(b"sk-bench-shards-0123456789abcdef", &old).unwrap();
    let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
    println!("sharded reencrypt benchmark: {rows} rows of llm_providers, through the emulator");
    for shards in [1u32, 2, 4] {
        let seeded = Instant::now();
        // One statement per call: psql runs a multi-statement -c in one transaction,
        // where VACUUM cannot run.
        for sql in [
            "TRUNCATE llm_providers, mcp_servers".to_string(),
            format!(
                "INSERT INTO llm_providers (id, name, provider_type, api_key_encrypted) \
                 SELECT gen_random_uuid(), 'p' || i, 'openai', '\\x{hex}' \
                 FROM generate_series(1, {rows}) i"
            ),
            "VACUUM ANALYZE llm_providers".to_string(),
            "CHECKPOINT".to_string(),
        ] {
            psql(&db.url, &sql);
        }
        let _ = std::fs::remove_file(&peaks);
        let seeded = seeded.elapsed().as_secs_f64();
        let started = Instant::now();
        let out = emu
            .launcher()
            .args(["--output", "json", "--quiet", "reencrypt", "--shards"])
            .arg(shards.to_string())
            .output()
            .unwrap();
        let took = started.elapsed().as_secs_f64();
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["totals"]["reencrypted"], rows, "{doc}");
        let peaks: Vec<String> = std::fs::read_to_string(&peaks)
            .unwrap_or_default()
            .lines()
            .map(|kib| format!("{:.1}", kib.parse::<f64>().unwrap_or(0.0) / 1024.0))
            .collect();
        println!(
            "  --shards {shards}: {took:.1} s, {:.0} rows/s, peak RSS per shard (MiB): {} (seeded in {seeded:.1} s)",
            rows as f64 / took,
            peaks.join(", ")
        );
    }
}
