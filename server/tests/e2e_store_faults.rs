//! The store under faults, through the real binary: a full disk (a small tmpfs), a database another
//! process holds locked, and a second gateway on the same data directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use open_clanker_store::{Role, Store};
use sea_orm::{ConnectionTrait as _, TransactionTrait as _};

/// A tmpfs mounted for the test, unmounted when dropped (also when the test panics).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "2m") on `path`; `Err` with the reason when that is not
    /// possible (not root, no `mount`).
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            // Still busy (a process being reaped): detach it now, freed when the last user goes.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// A tmpfs at `path`, or `None` (after saying why) when it cannot be mounted outside CI; under
/// CI (`CI` set) not being able to mount is a failure.
fn tmpfs_or_skip(path: &Path, size: &str) -> Option<Tmpfs> {
    match Tmpfs::mount(path, size) {
        Ok(t) => Some(t),
        Err(why) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED: this test needs a tmpfs (run it as root): {why}");
            None
        }
        Err(why) => panic!("this test needs a tmpfs (CI runs as root): {why}"),
    }
}

/// Appends zeros to `path` until the file system is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let block = vec![0u8; 4096];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // tmpfs may still take a last partial block.
    let _ = f.write(&block[..512]);
}

/// The stand-in's request counter (`GET /_standin/stats`).
fn provider_requests(provider_url: &str) -> u64 {
    let (line, body) = http_get(provider_url, "/_standin/stats");
    assert!(line.contains("200"), "{line} {body}");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    stats["requests"].as_u64().unwrap()
}

/// `GET /health`: the status line and the JSON body.
fn health(gw: &Gateway) -> (String, serde_json::Value) {
    let (line, body) = http_get(&gw.addr, "/health");
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    (line, json)
}

/// `open-clanker status --json`'s `store` object.
fn store_status(gw: &Gateway) -> serde_json::Value {
    gw.status_json()["store"].clone()
}

/// How often the tests here try again.
const EVERY: Duration = Duration::from_millis(200);

/// Issue 12, item 3: once the disk has room again the gateway writes again by itself (no
/// connection is left holding SQLite's write lock after a failed commit), and while it cannot
/// write it says so in `/health` and `GetStatus`. Item 4 on a real full disk: no provider request
/// for a message that was not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_degrades_the_gateway_and_it_recovers_without_a_restart() {
    let provider = standin().await;
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let Some(_tmpfs) = tmpfs_or_skip(&data, "2m") else {
        return;
    };
    let url = provider.anthropic_base_url();
    let env = standin_env(&url, &[]);
    // Declared after the tmpfs: dropped (killed) before it is unmounted.
    let gw = Gateway::start(home.path(), &env);
    let out = gw.cli(&["chat", "before the disk fills"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(health(&gw).0.contains("200"));

    let big = "x ".repeat(1500);
    let before = provider_requests(&url);
    for i in 0..6 {
        // Whatever the failed writes took is taken back: the disk stays full.
        fill(&data.join(format!("filler{i}")));
        let out = gw.cli(&["chat", &big]);
        assert!(!out.status.success(), "chat {i} succeeded on a full disk");
        let err = stderr(&out);
        assert!(
            err.contains("UNAVAILABLE") || err.contains("unavailable"),
            "chat {i}: {err}"
        );
        assert!(err.contains("store"), "chat {i}: not a store error: {err}");
    }
    assert_eq!(
        provider_requests(&url),
        before,
        "the provider was called for messages that were not stored"
    );

    // The store says it cannot write, in /health and GetStatus.
    let (line, body) = poll(Duration::from_secs(10), EVERY, "/health degraded", || {
        let (line, body) = health(&gw);
        assert!(line.contains("503"), "{line} {body}");
        if body["status"] == "degraded" {
            Some((line, body))
        } else {
            eprintln!("/health while the disk is full: {line} {body}");
            None
        }
    });
    assert!(line.contains("503"), "{line} {body}");
    let why = body["store"].as_str().unwrap_or_default();
    assert!(why.starts_with("cannot write"), "{body}");
    assert!(why.contains("full"), "{body}");
    let store = store_status(&gw);
    assert_eq!(store["writable"], false, "{store}");
    assert!(
        store["write_error"]
            .as_str()
            .unwrap_or_default()
            .contains("full"),
        "{store}"
    );
    let text = stdout(&gw.cli(&["status"]));
    assert!(text.contains("CANNOT WRITE"), "{text}");

    // Space comes back: the gateway writes again by itself, within a bounded time.
    for i in 0..6 {
        std::fs::remove_file(data.join(format!("filler{i}"))).unwrap();
    }
    let session = poll(
        Duration::from_secs(20),
        EVERY,
        "a chat after the disk was freed",
        || {
            let out = gw.cli(&["chat", "after the disk was freed"]);
            out.status.success().then(|| session_from(&stderr(&out)))
        },
    );
    // And keeps writing, durably: later chats succeed and their messages are committed.
    let mut sessions = vec![session];
    for i in 0..3 {
        let out = gw.cli(&["chat", &format!("later chat {i}")]);
        assert!(out.status.success(), "later chat {i}: {}", stderr(&out));
        sessions.push(session_from(&stderr(&out)));
    }
    poll(
        Duration::from_secs(20),
        EVERY,
        "/health back to 200",
        || health(&gw).0.contains("200").then_some(()),
    );
    assert_eq!(health(&gw).1["status"], "ok");
    let store = store_status(&gw);
    assert_eq!(store["writable"], true, "{store}");
    assert_eq!(store["write_error"], "", "{store}");
    assert!(!stdout(&gw.cli(&["status"])).contains("CANNOT WRITE"));

    let (status, _, log) = gw.terminate();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("the store cannot write"),
        "no warning when the writes started failing:\n{log}"
    );
    assert_eq!(
        log.matches("the store cannot write").count(),
        1,
        "warned more than once:\n{log}"
    );
    assert!(
        log.contains("the store can write again"),
        "no word when they recovered:\n{log}"
    );
    let store = Store::connect(&Store::sqlite_url_for_dir(&data))
        .await
        .unwrap();
    store.check_integrity().await.unwrap();
    for id in &sessions {
        let history = store.history(id, 0, None).await.unwrap().items;
        assert_eq!(history.len(), 2, "session {id}: {history:?}");
        assert_eq!(history[0].role, Role::User);
        assert_eq!(history[1].role, Role::Assistant);
    }
}

/// Issue 12, item 4: the provider is called only once the user's message is committed. Another
/// process holds SQLite's write lock, so storing the message fails (after the busy timeout): no
/// request may have reached the provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_provider_request_for_a_message_that_was_not_stored() {
    let s = Stack::start(&[]).await;
    let gw = &s.gw;
    let provider = &s.provider;
    let home = &s.home;
    let url = provider.anthropic_base_url();
    let out = gw.cli(&["chat", "first"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let session = session_from(&stderr(&out));

    // Another process (this test) takes the database's write lock and keeps it.
    let db_url = Store::sqlite_url_for_dir(&home.path().join("data"));
    let other = sea_orm::Database::connect(&db_url).await.unwrap();
    let txn = other.begin().await.unwrap();
    txn.execute_unprepared(
        "INSERT INTO sessions (id, key, title, created_at, updated_at, message_count, cost_micros) \
         VALUES ('held-by-the-test', NULL, '', 0, 0, 0, 0)",
    )
    .await
    .unwrap();

    let before = provider_requests(&url);
    for args in [
        vec!["chat", "a new session #tokens=5"],
        vec!["chat", "--session", &session, "an old session #tokens=5"],
    ] {
        let out = gw.cli(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(err.contains("locked"), "{args:?}: {err}");
        assert!(
            !err.contains("session "),
            "{args:?} was acknowledged: {err}"
        );
    }
    assert_eq!(
        provider_requests(&url),
        before,
        "the provider was called for messages that were not stored"
    );

    // The lock is let go: the next chat is stored, then answered.
    txn.rollback().await.unwrap();
    let out = poll(
        Duration::from_secs(20),
        EVERY,
        "a chat once the lock is gone",
        || {
            let out = gw.cli(&["chat", "--session", &session, "now it works"]);
            out.status.success().then_some(out)
        },
    );
    assert_eq!(stdout(&out), "echo: now it works\n");
    assert_eq!(provider_requests(&url), before + 1);
}

/// Issue 12: two gateways on one SQLite data directory would split a session key into two
/// sessions. The second refuses to start, naming the directory and the first one's pid; once the
/// first is gone (even by `kill -9`) another may start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gateway_on_the_same_data_dir_refuses_to_start() {
    let provider = standin().await;
    let home = tempfile::tempdir().unwrap();
    let url = provider.anthropic_base_url();
    let env = standin_env(&url, &[]);
    let mut first = Gateway::start(home.path(), &env);
    let data = home.path().join("data");

    let refused = |home: &Path| {
        let mut child = command(home)
            .arg("gateway")
            .env("OPEN_CLANKER_LISTEN", "127.0.0.1:0")
            .env("OPEN_CLANKER_DATA_DIR", &data)
            .env("ANTHROPIC_API_KEY", KEY)
            .env("ANTHROPIC_BASE_URL", &url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let began = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if began.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "a second gateway started on the same data directory:\n{}{}",
                    stdout(&out),
                    stderr(&out)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    };
    let out = refused(home.path());
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("another gateway is using"), "{err}");
    assert!(err.contains(&data.display().to_string()), "{err}");
    assert!(err.contains(&format!("pid {}", first.pid())), "{err}");
    assert!(err.contains("OPEN_CLANKER_DATA_DIR"), "{err}");

    // The first still serves, alone.
    let out = first.cli(&["chat", "still here"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // `kill -9` leaves the lock file behind, but not the lock: a new gateway starts.
    signal(first.pid(), "KILL");
    let _ = wait_timeout(&mut first.child, Duration::from_secs(10));
    let second = Gateway::start(home.path(), &env);
    let out = second.cli(&["chat", "after the first one died"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Each gateway with its own data directory runs beside it.
    let other_home = tempfile::tempdir().unwrap();
    let third = Gateway::start(other_home.path(), &env);
    assert!(third.cli(&["chat", "elsewhere"]).status.success());
    // And a gateway on an in-memory database takes no lock.
    let fourth = Gateway::start(
        home.path(),
        &standin_env(&url, &[("OPEN_CLANKER_DATABASE_URL", "sqlite::memory:")]),
    );
    assert!(fourth.cli(&["chat", "in memory"]).status.success());
}
