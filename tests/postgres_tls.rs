//! TLS to Postgres (issue 15, item 1), against real servers:
//!
//! 1. the shared test cluster (TLS on, Debian's self-signed snakeoil certificate): every
//!    connection of a real `async-jobs scheduler` (pool, LISTEN, leader lock) is encrypted with
//!    `sslmode=require`, and none with `sslmode=disable`;
//! 2. `verify-full` refuses that self-signed certificate: `async-jobs migrate` and `async-jobs api`
//!    exit non-zero with one line naming the host and the mode;
//! 3. a throwaway cluster on a free port with a certificate for `localhost` signed by a CA this
//!    test generates: `verify-full` and `verify-ca` pass, `verify-full` by a name the certificate
//!    lacks fails, and `ASYNC_JOBS_DB_CA_FILE` reaches the real binary.
//!
//! Needs the binary (`cargo build --bin async-jobs --all-features`), the test database
//! (`ASYNC_JOBS_TEST_DATABASE_URL`) and, for 3, PostgreSQL's server binaries
//! (`/usr/lib/postgresql/<version>/bin`, run as the `postgres` user when the test runs as root).
//! Changes nothing on the shared cluster but a schema of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use jobs_postgres::PgConnector;

/// How long a process may take to refuse, or to open its connections.
const WITHIN: Duration = Duration::from_secs(20);

fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_owned()
}

/// `url` with `params` appended to its query.
fn with_params(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

/// `async-jobs <args>` with a cleared environment plus `env`.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(common::binary("async-jobs"));
    cmd.args(args)
        .env_clear()
        .env("RUST_LOG", "warn")
        .env("ASYNC_JOBS_HEALTH_ADDR", "off")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd
}

/// Runs `async-jobs <args>` to its exit (killed after [`WITHIN`]).
fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> Output {
    common::output_within(
        command(args, env),
        WITHIN,
        &format!("async-jobs {}", args.join(" ")),
    )
}

/// Asserts that `async-jobs <args>` fails with exactly one error line containing every one of
/// `expect`; returns that line.
fn assert_one_line_failure(args: &[&str], env: &[(&str, &str)], expect: &[&str]) -> String {
    let out = run_to_exit(args, env);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "`async-jobs {}` succeeded: {stderr}",
        args.join(" ")
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("async-jobs: "))
        .collect();
    assert_eq!(lines.len(), 1, "one error line expected: {stderr}");
    for text in expect {
        assert!(lines[0].contains(text), "{text:?} missing from {stderr}");
    }
    lines[0].to_owned()
}

/// Every backend whose application_name starts with `name`, with whether it uses TLS.
async fn backends(admin: &tokio_postgres::Client, name: &str) -> Vec<(String, bool)> {
    admin
        .query(
            "SELECT a.application_name, s.ssl FROM pg_stat_activity a \
             JOIN pg_stat_ssl s ON s.pid = a.pid \
             WHERE a.application_name LIKE $1 || '%' ORDER BY 1",
            &[&name],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Starts `async-jobs scheduler` on `sslmode`, waits until its pool, LISTEN and leader-lock
/// connections are all open, and returns them (stopping the process).
async fn scheduler_backends(admin: &tokio_postgres::Client, sslmode: &str) -> Vec<(String, bool)> {
    let tag = suffix();
    let name = format!("tls_{sslmode}_{tag}");
    // A fresh schema from the one helper, so a crashed run's is swept like every other.
    let schema = jobs_testdb::fresh_schema("tls");
    let dsn = with_params(
        &common::database_url(),
        &format!("sslmode={sslmode}&application_name={name}"),
    );
    // The scheduler needs queue URLs but sends nothing while the schema has no jobs: no SQS.
    let env = [
        ("ASYNC_JOBS_DB_DSN", dsn.as_str()),
        ("ASYNC_JOBS_DB_SCHEMA", schema.as_str()),
        (
            "ASYNC_JOBS_SQS_QUEUE_NOTIFICATIONS",
            "http://127.0.0.1:9/q/n",
        ),
        (
            "ASYNC_JOBS_SQS_QUEUE_MESSAGE_LABELING",
            "http://127.0.0.1:9/q/m",
        ),
        ("ASYNC_JOBS_SCHEDULER_TICK_MS", "100"),
        ("ASYNC_JOBS_LEADER_POLL_MS", "100"),
        ("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:9"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let log = common::binary("async-jobs")
        .parent()
        .unwrap()
        .join("e2e-logs");
    std::fs::create_dir_all(&log).unwrap();
    let log = std::fs::File::create(log.join(format!("{name}.log"))).unwrap();
    let child = command(&["scheduler"], &env)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut proc = common::Proc {
        name: name.clone(),
        child,
    };
    let start = Instant::now();
    let seen = loop {
        let seen = backends(admin, &name).await;
        let leader = seen.iter().any(|(n, _)| n.ends_with("-leader"));
        let others = seen.iter().filter(|(n, _)| *n == name).count();
        // The pool (at least one connection) and the LISTEN connection, plus the leader lock.
        if leader && others >= 2 {
            break seen;
        }
        if let Some(status) = proc.child.try_wait().unwrap() {
            panic!("the scheduler exited ({status}); see target/*/e2e-logs/{name}.log");
        }
        assert!(
            start.elapsed() < WITHIN,
            "the scheduler's connections did not all open within {WITHIN:?}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    proc.signal("TERM");
    proc.wait_exit(Duration::from_secs(10));
    drop(proc);
    let _ = admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await;
    seen
}

async fn admin() -> tokio_postgres::Client {
    PgConnector::new(&common::database_url(), None)
        .unwrap()
        .connect_spawned()
        .await
        .unwrap()
}

/// Item 1: with `sslmode=require` every connection of the process is encrypted; with
/// `sslmode=disable` none is (so the check can fail).
#[tokio::test]
async fn every_connection_of_a_process_follows_sslmode() {
    let admin = admin().await;
    let encrypted = scheduler_backends(&admin, "require").await;
    assert!(encrypted.len() >= 3, "{encrypted:?}");
    assert!(encrypted.iter().all(|(_, ssl)| *ssl), "{encrypted:?}");
    let plain = scheduler_backends(&admin, "disable").await;
    assert!(plain.len() >= 3, "{plain:?}");
    assert!(plain.iter().all(|(_, ssl)| !*ssl), "{plain:?}");
}

/// A test CA and a server certificate it signs for `names`.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki(names: &[&str]) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "async-jobs test CA");
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, names[0]);
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("async-jobs-{tag}-{}", suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Item 2: `verify-full` against the shared cluster's self-signed certificate fails, one line.
#[test]
fn verify_full_refuses_a_certificate_it_cannot_trust() {
    let dir = TempDir::new("tls-untrusted");
    // A CA that did not sign the server's certificate.
    let other_ca = dir.write("other-ca.pem", &pki(&["localhost"]).ca_pem);
    let dsn = with_params(&common::database_url(), "sslmode=verify-full");
    let host = {
        let c = PgConnector::new(&dsn, None).unwrap();
        match &c.config().get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            other => panic!("the test database is not on TCP: {other:?}"),
        }
    };
    let not_trusted =
        format!("database TLS: certificate for {host} not trusted (sslmode=verify-full");
    let ca = other_ca.display().to_string();
    for (args, extra) in [
        (
            &["migrate"][..],
            vec![("ASYNC_JOBS_DB_CA_FILE", ca.as_str())],
        ),
        (&["migrate"], vec![]),
        (
            &["api", "--addr", "127.0.0.1:0"],
            vec![
                ("ASYNC_JOBS_DB_CA_FILE", ca.as_str()),
                ("ASYNC_JOBS_AUTH", "none"),
            ],
        ),
    ] {
        let mut env = vec![("ASYNC_JOBS_DB_DSN", dsn.as_str())];
        env.extend(extra);
        let line = assert_one_line_failure(args, &env, &[&not_trusted]);
        eprintln!("{}: {line}", args[0]);
    }
    // --print-config reports the mode and the roots the command would connect with.
    let out = run_to_exit(
        &["--print-config", "migrate"],
        &[("ASYNC_JOBS_DB_DSN", &dsn), ("ASYNC_JOBS_DB_CA_FILE", &ca)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(config["store"]["sslmode"], "verify-full");
    assert_eq!(config["store"]["ca_file"], ca.as_str());
    assert_eq!(
        config["store"]["tls_roots"],
        format!("ASYNC_JOBS_DB_CA_FILE {ca}").as_str()
    );
    // `require` with a CA file checks the chain (libpq's rule) and fails the same way.
    let require = with_params(&common::database_url(), "sslmode=require");
    assert_one_line_failure(
        &["migrate"],
        &[
            ("ASYNC_JOBS_DB_DSN", &require),
            ("ASYNC_JOBS_DB_CA_FILE", &ca),
        ],
        &["not trusted (sslmode=verify-ca", "issuer"],
    );
    // Bad settings: one line naming the setting, before any connection.
    let bad_mode = with_params(&common::database_url(), "sslmode=verify");
    assert_one_line_failure(
        &["migrate"],
        &[("ASYNC_JOBS_DB_DSN", &bad_mode)],
        &["invalid ASYNC_JOBS_DB_DSN", "sslmode"],
    );
    let missing = dir.0.join("missing.pem").display().to_string();
    for args in [&["migrate"][..], &["--print-config", "scheduler"]] {
        assert_one_line_failure(
            args,
            &[
                ("ASYNC_JOBS_DB_DSN", &dsn),
                ("ASYNC_JOBS_DB_CA_FILE", &missing),
            ],
            &["invalid ASYNC_JOBS_DB_CA_FILE", "cannot read"],
        );
    }
    let empty = dir
        .write("empty.pem", "no certificates here\n")
        .display()
        .to_string();
    assert_one_line_failure(
        &["migrate"],
        &[
            ("ASYNC_JOBS_DB_DSN", &dsn),
            ("ASYNC_JOBS_DB_CA_FILE", &empty),
        ],
        &["invalid ASYNC_JOBS_DB_CA_FILE", "no PEM certificate"],
    );
}

/// A PostgreSQL cluster of this test's own, on a free port, with TLS on; stopped and deleted on
/// drop.
struct Cluster {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
}

/// Runs `bin args…` as the `postgres` user when we are root (initdb and postgres refuse root).
fn as_postgres(bin: &Path, args: &[&str]) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(bin).args(args);
        cmd
    } else {
        let mut cmd = Command::new(bin);
        cmd.args(args);
        cmd
    }
}

fn pg_bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("initdb under /usr/lib/postgresql/*/bin")
}

impl Cluster {
    fn start(pki: &Pki) -> Cluster {
        let dir = TempDir::new("tls-cluster");
        let bin = pg_bin_dir();
        let cert = dir.write("server.crt", &pki.cert_pem);
        let key = dir.write("server.key", &pki.key_pem);
        dir.write("ca.pem", &pki.ca_pem);
        let data = dir.0.join("data");
        let sock = dir.0.join("sock");
        std::fs::create_dir_all(&sock).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // The server reads its key as the postgres user.
        let status = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(&dir.0)
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("chown postgres failed (not root?); continuing as the current user");
        }
        let out = as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "--auth=trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = common::free_port();
        let cluster = Cluster { dir, bin, port };
        let opts = format!(
            "-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c ssl=on -c ssl_cert_file={} -c ssl_key_file={} -c fsync=off",
            sock.display(),
            cert.display(),
            key.display()
        );
        let log = cluster.dir.0.join("server.log");
        let out = as_postgres(
            &cluster.bin.join("pg_ctl"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "30",
                "start",
            ],
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {} {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        cluster
    }

    fn ca(&self) -> PathBuf {
        self.dir.0.join("ca.pem")
    }

    /// A URL to this cluster by `host` (connecting to 127.0.0.1 whatever the name).
    fn url(&self, host: &str, params: &str) -> String {
        format!(
            "postgres://postgres@{host}:{}/postgres?hostaddr=127.0.0.1&{params}",
            self.port
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.0.join("data");
        let _ = as_postgres(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                data.to_str().unwrap_or(""),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    }
}

async fn ssl_of(connector: &PgConnector) -> Result<bool, String> {
    let client = connector.connect_spawned().await?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

/// Item 3: a server whose certificate a CA we hold signed, for `localhost` only.
#[tokio::test]
async fn verify_modes_against_a_server_with_our_own_ca() {
    let pki = pki(&["localhost"]);
    let cluster = Cluster::start(&pki);
    let ca = cluster.ca().display().to_string();

    // verify-full by the certificate's name passes, with the CA from sslrootcert or the file.
    let full = PgConnector::new(
        &cluster.url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        None,
    )
    .unwrap();
    assert_eq!(ssl_of(&full).await, Ok(true));
    let full = PgConnector::new(
        &cluster.url("localhost", "sslmode=verify-full"),
        Some(&cluster.ca()),
    )
    .unwrap();
    assert_eq!(ssl_of(&full).await, Ok(true));

    // verify-ca accepts any name; verify-full does not.
    let ca_only = PgConnector::new(
        &cluster.url("127.0.0.1", "sslmode=verify-ca"),
        Some(&cluster.ca()),
    )
    .unwrap();
    assert_eq!(ssl_of(&ca_only).await, Ok(true));
    let wrong_name = PgConnector::new(
        &cluster.url("127.0.0.1", "sslmode=verify-full"),
        Some(&cluster.ca()),
    )
    .unwrap();
    let err = ssl_of(&wrong_name).await.unwrap_err();
    assert!(
        err.starts_with("database TLS: certificate for 127.0.0.1 not trusted (sslmode=verify-full"),
        "{err}"
    );
    assert!(err.contains("localhost"), "{err}");
    assert!(!err.contains('\n'), "{err}");

    // Another CA: the chain fails under verify-ca too.
    let dir = TempDir::new("tls-other-ca");
    let other = dir.write("other.pem", &self::pki(&["localhost"]).ca_pem);
    let stranger =
        PgConnector::new(&cluster.url("localhost", "sslmode=verify-ca"), Some(&other)).unwrap();
    let err = ssl_of(&stranger).await.unwrap_err();
    assert!(err.contains("not trusted (sslmode=verify-ca"), "{err}");

    // The real binary: ASYNC_JOBS_DB_CA_FILE and verify-full reach `async-jobs migrate`.
    let dsn = cluster.url("localhost", "sslmode=verify-full");
    let out = run_to_exit(
        &["migrate"],
        &[("ASYNC_JOBS_DB_DSN", &dsn), ("ASYNC_JOBS_DB_CA_FILE", &ca)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wrong = cluster.url("127.0.0.1", "sslmode=verify-full");
    assert_one_line_failure(
        &["migrate"],
        &[
            ("ASYNC_JOBS_DB_DSN", &wrong),
            ("ASYNC_JOBS_DB_CA_FILE", &ca),
        ],
        &["database TLS: certificate for 127.0.0.1 not trusted (sslmode=verify-full"],
    );
    drop(cluster);
}
