//! The test database of the workspace's Postgres tests, in one place.
//!
//! Every test that needs PostgreSQL asks this crate for it:
//!
//! - [`database_url`] says where the test database is. `ASYNC_JOBS_TEST_DATABASE_URL` wins (CI and
//!   `scripts/test.sh` set it). Without it, when a Docker engine is reachable, a PostgreSQL container
//!   is started through testcontainers and shared by every test process of the run (nextest runs each
//!   test in a process of its own). Without either, the test fails with one line that says what to
//!   do. A missing database is a failure, never a skip.
//! - [`fresh_schema`] names a schema for one test, and [`sweep_stale`] drops the schemas that
//!   crashed or long-lived tests left behind. Every name carries one prefix and its creation time, so
//!   one sweep finds every area's leftovers.
//!
//! The container is named [`CONTAINER_NAME`] and is kept after the run so the next run starts in a
//! second; `docker rm -f async-jobs-test-postgres-15` removes it. Its port is published on
//! 127.0.0.1 only.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The variable that names the test database.
pub const URL_VAR: &str = "ASYNC_JOBS_TEST_DATABASE_URL";
/// The database the tests use, created on first use when missing.
pub const DATABASE: &str = "async_jobs_test";
/// The name of the PostgreSQL container started when no URL is given (a reused container is
/// found by name, so the name carries the major version: a new tag gets a new container).
pub const CONTAINER_NAME: &str = "async-jobs-test-postgres-15";
/// The PostgreSQL image tag of that container (the oldest major version the platform supports).
pub const IMAGE_TAG: &str = "15-alpine";
/// The prefix of every schema [`fresh_schema`] names.
pub const SCHEMA_PREFIX: &str = "ajt_";
/// How old a test schema must be before [`sweep_stale`] drops it.
pub const STALE_AFTER: Duration = Duration::from_secs(3600);

/// How long starting (and, the first time, pulling) the container may take.
const DOCKER_START_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a freshly started or reused container may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// What to do when no URL is given and no Docker engine is reachable: the one line a test prints.
pub const HOW_TO: &str = "no test database: set ASYNC_JOBS_TEST_DATABASE_URL (for example postgres://postgres@127.0.0.1:5432/async_jobs_test) or start a Docker engine so the tests can start PostgreSQL themselves; scripts/test.sh does the first";

/// Where the test database comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The URL given in [`URL_VAR`].
    Given(String),
    /// A PostgreSQL container, through the Docker engine at this address.
    Docker(String),
}

/// Decides where the test database comes from, from the environment (`env`) and the file system
/// (`exists`): the URL when given (and not empty), else a reachable Docker engine, else the
/// one-line [`HOW_TO`]. The Docker engine is looked for where testcontainers looks: `DOCKER_HOST`,
/// `/var/run/docker.sock`, and the rootless and Docker Desktop sockets under
/// `$XDG_RUNTIME_DIR` and `$HOME`.
pub fn locate(
    env: &dyn Fn(&str) -> Option<String>,
    exists: &dyn Fn(&Path) -> bool,
) -> Result<Source, String> {
    let nonempty = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if let Some(url) = nonempty(URL_VAR) {
        return Ok(Source::Given(url));
    }
    if let Some(host) = nonempty("DOCKER_HOST") {
        // A unix socket that does not exist is no engine; a TCP address may be one.
        return match host.strip_prefix("unix://") {
            Some(path) if !exists(Path::new(path)) => Err(format!(
                "{HOW_TO} (DOCKER_HOST names {path}, which does not exist)"
            )),
            _ => Ok(Source::Docker(host)),
        };
    }
    let mut sockets = vec![PathBuf::from("/var/run/docker.sock")];
    if let Some(dir) = nonempty("XDG_RUNTIME_DIR") {
        sockets.push(Path::new(&dir).join(".docker/run/docker.sock"));
    }
    if let Some(home) = nonempty("HOME") {
        sockets.push(Path::new(&home).join(".docker/run/docker.sock"));
        sockets.push(Path::new(&home).join(".docker/desktop/docker.sock"));
    }
    sockets
        .into_iter()
        .find(|p| exists(p))
        .map(|p| Source::Docker(format!("unix://{}", p.display())))
        .ok_or_else(|| HOW_TO.to_owned())
}

/// The test database URL: given, or of the shared container (started on first use). Fails the test
/// with one line when there is neither (see [`locate`]).
///
/// Safe to call from sync and async code: the container is started on a thread of its own.
pub fn database_url() -> String {
    match try_database_url() {
        Ok(url) => url,
        Err(line) => panic!("{line}"),
    }
}

/// Like [`database_url`], with the failure as a value.
pub fn try_database_url() -> Result<String, String> {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    URL.get_or_init(|| {
        let source = locate(&|name| std::env::var(name).ok(), &|p| p.exists())?;
        match source {
            Source::Given(url) => Ok(url),
            Source::Docker(host) => std::thread::spawn(move || start_container(&host))
                .join()
                .unwrap_or_else(|_| Err("starting the test database container panicked".into())),
        }
    })
    .clone()
}

/// Starts (or finds, when another test process started it) the shared PostgreSQL container and
/// waits until it accepts connections. Returns the URL of [`DATABASE`] in it.
fn start_container(host: &str) -> Result<String, String> {
    use testcontainers::runners::AsyncRunner;
    use testcontainers::{ImageExt, ReuseDirective};
    use testcontainers_modules::postgres::Postgres;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("test database: cannot build a runtime: {e}"))?;
    runtime.block_on(async {
        let fail = |what: &str| {
            format!("{HOW_TO} (the Docker engine at {host} did not start PostgreSQL: {what})")
        };
        let start = async {
            // Two test processes may race to create the container: the loser's create fails on
            // the name, and its second attempt finds the winner's container.
            let mut last = String::new();
            for _ in 0..3 {
                // Trust auth, so the port is published on loopback only: nobody on the
                // developer's network can reach this superuser-without-password server.
                let request = Postgres::default()
                    .with_host_auth()
                    .with_tag(IMAGE_TAG)
                    .with_container_name(CONTAINER_NAME)
                    .with_reuse(ReuseDirective::Always)
                    .with_host_config_modifier(|host| {
                        host.publish_all_ports = Some(false);
                        host.port_bindings = Some(
                            [(
                                "5432/tcp".to_owned(),
                                Some(vec![testcontainers::bollard::models::PortBinding {
                                    host_ip: Some("127.0.0.1".to_owned()),
                                    host_port: Some(String::new()),
                                }]),
                            )]
                            .into(),
                        );
                    });
                match request.start().await {
                    Ok(container) => {
                        return container
                            .get_host_port_ipv4(5432)
                            .await
                            .map_err(|e| e.to_string());
                    }
                    Err(e) => last = e.to_string(),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(last)
        };
        let port = tokio::time::timeout(DOCKER_START_TIMEOUT, start)
            .await
            .map_err(|_| fail("timed out"))?
            .map_err(|e| fail(&e))?;
        let url = format!("postgres://postgres@127.0.0.1:{port}/{DATABASE}");
        // A reused container is returned before it is ready, so wait for it here.
        let admin = admin_config(&url).map_err(|e| fail(&e))?;
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            match connect(&admin).await {
                Ok(_) => return Ok(url),
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(fail(&format!("not accepting connections: {e}")));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
}

/// The same server's `postgres` database, to create the test database in.
fn admin_config(url: &str) -> Result<tokio_postgres::Config, String> {
    let mut config = tokio_postgres::Config::from_str(url)
        .map_err(|e| format!("{URL_VAR} is not a valid DSN: {e}"))?;
    config.dbname("postgres");
    Ok(config)
}

/// Connects without TLS (the test servers are local) and drives the connection in a task.
pub async fn connect(
    config: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Creates the test database if it is missing (tests race to do it; losing is fine). Fails the
/// test when the server cannot be reached.
pub async fn ensure_database() {
    let url = database_url();
    let config = match tokio_postgres::Config::from_str(&url) {
        Ok(config) => config,
        Err(e) => panic!("{URL_VAR} is not a valid DSN: {e}"),
    };
    if connect(&config).await.is_ok() {
        return;
    }
    let db = config.get_dbname().unwrap_or(DATABASE).to_owned();
    let mut admin = config.clone();
    admin.dbname("postgres");
    let client = match connect(&admin).await {
        Ok(client) => client,
        Err(e) => panic!("cannot reach PostgreSQL at {url} ({URL_VAR}): {e}"),
    };
    if let Err(e) = client
        .batch_execute(&format!("CREATE DATABASE \"{db}\""))
        .await
    {
        let code = e.code().map(|c| c.code().to_owned()).unwrap_or_default();
        // 42P04: another test created it first; 23505: the same race seen in the catalog.
        assert!(
            code == "42P04" || code == "23505",
            "creating database {db}: {e}"
        );
    }
}

/// A client on the test database (created when missing); stale test schemas are swept first.
pub async fn admin_client() -> tokio_postgres::Client {
    ensure_database().await;
    let config = match tokio_postgres::Config::from_str(&database_url()) {
        Ok(config) => config,
        Err(e) => panic!("{URL_VAR} is not a valid DSN: {e}"),
    };
    let client = match connect(&config).await {
        Ok(client) => client,
        Err(e) => panic!("cannot reach the test database ({URL_VAR}): {e}"),
    };
    sweep_stale(&client).await;
    client
}

/// A fresh schema name for one test: `ajt_<area>_<unix seconds>_<random>`. `area` (lowercase
/// letters, digits and `_`) says which suite made it; the time lets [`sweep_stale`] drop it later.
pub fn fresh_schema(area: &str) -> String {
    assert!(
        !area.is_empty()
            && area
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "schema area {area:?}: use lowercase letters, digits and _"
    );
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let random = &uuid::Uuid::new_v4().simple().to_string()[..12];
    format!("{SCHEMA_PREFIX}{area}_{secs}_{random}")
}

/// When a schema named by [`fresh_schema`] was made, in Unix seconds.
pub fn schema_created_at(name: &str) -> Option<u64> {
    let rest = name.strip_prefix(SCHEMA_PREFIX)?;
    let mut parts = rest.rsplitn(3, '_');
    let _random = parts.next()?;
    let secs = parts.next()?;
    let _area = parts.next()?;
    secs.parse().ok()
}

/// Drops every test schema older than [`STALE_AFTER`]: those of tests that panicked, and of
/// suites whose stores outlive the test body. Errors are ignored (another process may be
/// dropping the same schema).
pub async fn sweep_stale(client: &tokio_postgres::Client) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let cutoff = now.saturating_sub(STALE_AFTER.as_secs());
    let Ok(rows) = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'ajt\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        if schema_created_at(&name).is_some_and(|s| s < cutoff) {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .await;
        }
    }
}

/// `url` with `application_name` set to `name` (URL or key/value form), so a test can find its
/// own backends in `pg_stat_activity`.
pub fn with_application_name(url: &str, name: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}application_name={name}")
    } else {
        format!("{url} application_name={name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn files(present: &[&str]) -> impl Fn(&Path) -> bool {
        let present: Vec<PathBuf> = present.iter().map(PathBuf::from).collect();
        move |p| present.iter().any(|q| q == p)
    }

    #[test]
    fn a_given_url_wins_over_docker() {
        let got = locate(
            &env(&[
                (URL_VAR, "postgres://db/x"),
                ("DOCKER_HOST", "tcp://d:2375"),
            ]),
            &files(&["/var/run/docker.sock"]),
        );
        assert_eq!(got, Ok(Source::Given("postgres://db/x".into())));
    }

    #[test]
    fn an_empty_url_counts_as_unset() {
        let got = locate(&env(&[(URL_VAR, " ")]), &files(&["/var/run/docker.sock"]));
        assert_eq!(
            got,
            Ok(Source::Docker("unix:///var/run/docker.sock".into()))
        );
    }

    #[test]
    fn docker_is_found_where_testcontainers_looks() {
        assert_eq!(
            locate(&env(&[("DOCKER_HOST", "tcp://d:2375")]), &files(&[])),
            Ok(Source::Docker("tcp://d:2375".into()))
        );
        assert_eq!(
            locate(
                &env(&[("HOME", "/home/me")]),
                &files(&["/home/me/.docker/desktop/docker.sock"])
            ),
            Ok(Source::Docker(
                "unix:///home/me/.docker/desktop/docker.sock".into()
            ))
        );
        assert_eq!(
            locate(
                &env(&[("XDG_RUNTIME_DIR", "/run/user/1000")]),
                &files(&["/run/user/1000/.docker/run/docker.sock"])
            ),
            Ok(Source::Docker(
                "unix:///run/user/1000/.docker/run/docker.sock".into()
            ))
        );
    }

    #[test]
    fn neither_is_one_line_that_says_what_to_do() {
        let err = locate(&env(&[("HOME", "/home/me")]), &files(&[])).unwrap_err();
        assert_eq!(err, HOW_TO);
        assert!(!err.contains('\n'));
        assert!(err.contains(URL_VAR) && err.contains("Docker"));
        let err = locate(
            &env(&[("DOCKER_HOST", "unix:///nowhere.sock")]),
            &files(&[]),
        )
        .unwrap_err();
        assert!(err.starts_with(HOW_TO) && err.contains("/nowhere.sock") && !err.contains('\n'));
    }

    #[test]
    fn schema_names_carry_their_area_and_time() {
        let name = fresh_schema("e2e_retry");
        assert!(name.starts_with("ajt_e2e_retry_"));
        let secs = schema_created_at(&name).unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now - secs < 60);
        assert_eq!(schema_created_at("ajt_x_12_abc"), Some(12));
        assert_eq!(schema_created_at("ajt_x_y"), None);
        assert_eq!(schema_created_at("public"), None);
        // Postgres truncates identifiers at 63 bytes: the time and random part must survive.
        assert!(fresh_schema("a_rather_long_area_name_here").len() <= 63);
    }

    #[test]
    fn application_name_goes_into_either_form() {
        assert_eq!(
            with_application_name("postgres://h/db", "t1"),
            "postgres://h/db?application_name=t1"
        );
        assert_eq!(
            with_application_name("postgres://h/db?sslmode=disable", "t1"),
            "postgres://h/db?sslmode=disable&application_name=t1"
        );
        assert_eq!(
            with_application_name("host=h dbname=db", "t1"),
            "host=h dbname=db application_name=t1"
        );
    }
}
