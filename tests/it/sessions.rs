//! ECS Exec and port-forwarding sessions end to end: the launcher against the emulator
//! and a real PostgreSQL, with the stand-in session-manager-plugin that runs the
//! command in the task's environment and forwards TCP for real.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::emulator::{path_with_plugin, stack};
use crate::common::{both_streams, describe};

/// The emulator's task definition that takes ECS Exec sessions (it has a task role).
const EXEC_FAMILY: &str = "everruns-admin-exec";

/// A test database URL's password, for psql's own environment (the tunnel line has
/// none: the operator brings their credentials).
fn password_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    parsed.password().map(str::to_owned)
}

/// Waits up to `limit` for `done`.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    done()
}

#[test]
fn a_tunnel_reaches_the_database_and_ctrl_c_leaves_nothing_behind() {
    let (db, emu) = stack();
    let tunnel = emu.open_tunnel(&[
        "--task-definition",
        EXEC_FAMILY,
        "tunnel",
        "--local-port",
        "0",
    ]);
    assert!(
        tunnel.conninfo.contains(&format!("dbname={}", db.name)),
        "{}",
        tunnel.line
    );
    let password = password_of(&db.url);
    if let Some(password) = &password {
        assert!(!tunnel.line.contains(password.as_str()), "{}", tunnel.line);
    }
    let mut psql = Command::new("psql");
    psql.args([&tunnel.conninfo, "-AtXc", "select current_database()"]);
    if let Some(password) = &password {
        psql.env("PGPASSWORD", password);
    }
    let out = psql.output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        db.name,
        "{}",
        describe(&out)
    );
    assert_eq!(emu.running_tasks().len(), 1, "the tunnel's task runs");

    let port = tunnel.port;
    let (code, stderr) = tunnel.close();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("tunnel closed"), "{stderr}");
    if let Some(password) = &password {
        assert!(!stderr.contains(password.as_str()), "{stderr}");
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "something still listens on {port}"
    );
    assert!(
        eventually(Duration::from_secs(10), || emu.running_tasks().is_empty()),
        "a task is left running: {:?}\n{stderr}",
        emu.running_tasks()
    );
}

#[test]
fn a_local_port_in_use_is_refused_before_anything_is_launched() {
    let (_db, emu) = stack();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = emu
        .launcher()
        .env("PATH", path_with_plugin())
        .args([
            "--task-definition",
            EXEC_FAMILY,
            "tunnel",
            "--local-port",
            &port,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        both_streams(&out).contains(&format!("--local-port {port}")),
        "{}",
        describe(&out)
    );
    assert!(
        emu.authorizations()
            .iter()
            .all(|r| r.action != "ecs:RunTask"),
        "a task was launched"
    );
}

#[test]
fn shell_command_ends_with_the_remote_commands_status() {
    let (_db, emu) = stack();
    let shell = |command: &str| {
        emu.launcher()
            .env("PATH", path_with_plugin())
            .args([
                "--task-definition",
                EXEC_FAMILY,
                "shell",
                "--command",
                command,
            ])
            .output()
            .unwrap()
    };

    let out = shell("exit 3");
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));

    // Output passes through unchanged, the status marker taken out; the command runs
    // in the container's environment.
    let out = shell(r#"printf 'in %s\n' "$AWS_EXECUTION_ENV"; echo 'it'"'"'s'"#);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("in AWS_ECS_FARGATE\r\nit's\r\n"),
        "{}",
        describe(&out)
    );
    assert!(
        !stdout.contains("everruns-admin-exit-status"),
        "{}",
        describe(&out)
    );

    // The session breaks before the status comes back: the command may have run.
    let out = shell("kill -9 $PPID");
    assert_eq!(out.status.code(), Some(123), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("without the exit status"),
        "{}",
        describe(&out)
    );
    assert!(
        eventually(Duration::from_secs(10), || emu.running_tasks().is_empty()),
        "a shell task is left running"
    );
}
