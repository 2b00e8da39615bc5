//! The subcommands a deployment runs: `migrate` (before the tasks roll) and `healthcheck` (the container's
//! health check), on SQLite and on a real PostgreSQL, next to the flag-only server invocation they must
//! not break.

mod support;

use support::{Postgres, Receiver};

/// Runs `link-receiver` with `args` to its end: exit code and stderr.
fn run(args: &[&str]) -> (i32, String) {
    support::receiver_exit(args)
}

/// Runs `link-receiver` with `args` and the environment a container gives every process in it (the
/// server's variables): exit code and stderr.
fn run_in_container_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_link-receiver"))
        .args(args)
        .envs(env.iter().copied())
        .env("LINK_RECEIVER_AUTH_MODE", "hmac-only")
        .env("PROVIDER_SIGNING_SECRET", support::SECRET)
        .env("LINK_RECEIVER_LOG_FORMAT", "json")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn migrate(database: &str) -> (i32, String) {
    run(&["migrate", "--database", database])
}

/// The migrations shipped in this crate, by version.
fn shipped_versions() -> Vec<i64> {
    let dir = format!("{}/migrations", env!("CARGO_MANIFEST_DIR"));
    let mut v: Vec<i64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.split('_').next()?.parse().ok()
        })
        .collect();
    v.sort_unstable();
    v
}

/// A first `migrate` applies every migration, a second one applies nothing and says so, and the server
/// then starts on the migrated database and stores a delivery.
async fn migrate_once_then_serve(database: &str) {
    let (code, stderr) = migrate(database);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("applied migrations {:?}", shipped_versions())),
        "{stderr}"
    );
    let (code, stderr) = migrate(database);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("schema is current"), "{stderr}");

    let receiver = Receiver::start(database, &[]);
    let http = support::http();
    let event = support::example("linked");
    let (status, body) =
        support::post(&http, &receiver.hook_url(), &support::Signed::of(&event)).await;
    assert_eq!(status, 200, "{body}");
    let link = &event.data.physical_resource_id;
    let (status, stored) =
        support::get(&http, &format!("{}/api/links/{link}", receiver.url), None).await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["linkId"], link.as_str(), "{stored}");
    // The server found nothing to migrate either: a third run still applies nothing.
    let (code, stderr) = migrate(database);
    assert_eq!(
        (code, stderr.contains("schema is current")),
        (0, true),
        "{stderr}"
    );
}

#[tokio::test]
async fn migrate_is_idempotent_on_sqlite() {
    migrate_once_then_serve(&support::sqlite_url("migrate")).await;
}

#[tokio::test]
async fn migrate_is_idempotent_on_postgres() {
    let pg = Postgres::start();
    migrate_once_then_serve(&pg.database("migrate")).await;
    assert_eq!(
        pg.query(
            "migrate",
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM _sqlx_migrations WHERE success"
        ),
        shipped_versions()
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
}

#[test]
fn migrate_names_a_bad_database_without_its_password() {
    let (code, stderr) = migrate("mysql://u:hunter2@h/db");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("sqlite://PATH") && !stderr.contains("hunter2"),
        "{stderr}"
    );
    let (code, stderr) = run(&[
        "migrate",
        "--database",
        "sqlite:///tmp/x.db",
        "--database-password",
        "hunter2",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--database-password") && !stderr.contains("hunter2"),
        "{stderr}"
    );
}

#[tokio::test]
async fn healthcheck_follows_the_receiver_and_its_database() {
    let mut pg = Postgres::start();
    let database = pg.database("health");
    let receiver = Receiver::start(&database, &[]);
    let listen = receiver.url.trim_start_matches("http://").to_string();
    let port = listen.rsplit(':').next().unwrap().to_string();

    let (code, stderr) = run(&["healthcheck", "--listen", &listen]);
    assert_eq!(code, 0, "{stderr}");
    // In a container the listen address and the rest come from the environment, which the subcommands
    // share with the server without conflict.
    let (code, stderr) = run_in_container_env(
        &["healthcheck"],
        &[
            ("LINK_RECEIVER_LISTEN", &listen),
            ("LINK_REGISTRY_DATABASE", &database),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr) = run_in_container_env(
        &["migrate"],
        &[
            ("LINK_RECEIVER_LISTEN", "0.0.0.0:8080"),
            ("LINK_REGISTRY_DATABASE", &database),
        ],
    );
    assert_eq!(
        (code, stderr.contains("schema is current")),
        (0, true),
        "{stderr}"
    );
    // The container's listen address is 0.0.0.0: asked on loopback.
    let (code, stderr) = run(&["healthcheck", "--listen", &format!("0.0.0.0:{port}")]);
    assert_eq!(code, 0, "{stderr}");

    // The database goes away: /healthz answers 503 once the pool needs a connection, and the check fails.
    pg.stop();
    // (The pool tries to connect for up to 10 s before /healthz answers 503: a long enough timeout.)
    let mut last = (0, String::new());
    for _ in 0..5 {
        last = run(&["healthcheck", "--listen", &listen, "--timeout", "20"]);
        if last.0 != 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(last.0, 1, "{}", last.1);
    assert!(last.1.contains("HTTP 503"), "{}", last.1);
    pg.restart();
    drop(receiver);

    // Nothing listening: the address is named.
    let free = support::free_port();
    let (code, stderr) = run(&[
        "healthcheck",
        "--listen",
        &format!("127.0.0.1:{free}"),
        "--timeout",
        "1",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{free}")), "{stderr}");
}

/// The statements that take something away from the schema a running (previous) release uses.
const CONTRACTING: &[&str] = &[
    "DROP TABLE",
    "DROP COLUMN",
    "RENAME",
    "ALTER COLUMN",
    "SET NOT NULL",
];

/// Expand, then contract: during a rolling upgrade the previous release keeps serving on the schema the
/// new one migrated, so a migration only adds (tables, columns that are nullable or have a default,
/// indexes). Taking something away is a later release's migration, once no running release uses it, and
/// says so on a `-- contract:` line. docs/provider-deploy.md, "Upgrade".
#[test]
fn migrations_only_expand_unless_marked_as_a_contraction() {
    let dir = format!("{}/migrations", env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let sql = std::fs::read_to_string(&path).unwrap();
        let marked = sql
            .lines()
            .any(|l| l.trim_start().starts_with("-- contract:"));
        let code: String = sql
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join(" ")
            .to_uppercase();
        let code = code.split_whitespace().collect::<Vec<_>>().join(" ");
        for statement in code.split(';') {
            let contracts = CONTRACTING.iter().find(|c| statement.contains(*c));
            // A new NOT NULL column without a default breaks the previous release's INSERTs.
            let strict_column = statement.contains("ADD COLUMN")
                && statement.contains("NOT NULL")
                && !statement.contains("DEFAULT");
            assert!(
                marked || (contracts.is_none() && !strict_column),
                "{}: '{}' takes from the schema the previous release uses; do it in a later \
                 release's migration with a '-- contract: <which release stopped using it>' line",
                path.display(),
                statement.trim()
            );
        }
        checked += 1;
    }
    assert!(checked >= 3);
}
