//! Harness for the end-to-end tests: real `async-jobs scheduler` and `async-jobs worker` processes against
//! the real Postgres (`ASYNC_JOBS_TEST_DATABASE_URL`) and the SQS emulator (`AWS_ENDPOINT_URL_SQS`,
//! started by `scripts/test.sh`). Each test gets its own schema and its own queues.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jobs_core::{ApiStore, Job, JobId, JobService, JobStatus, PlatformConfig, UseCaseConfig};
use jobs_postgres::PgStore;
use jobs_sqs::SqsTransport;

pub use jobs_testdb::database_url;

fn sqs_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL_SQS").expect(
        "AWS_ENDPOINT_URL_SQS is not set: run `eval \"$(scripts/moto.sh start)\"` (scripts/test.sh does)",
    )
}

/// `target/<profile>/<name>`, next to the test binary's `deps/` folder.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .to_path_buf();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build --workspace --bins`",
        path.display()
    );
    path
}

/// One test's world: a schema, two queues, a store and a service.
pub struct World {
    pub schema: String,
    pub store: Arc<PgStore>,
    pub service: JobService,
    pub env: BTreeMap<String, String>,
    pub sqs: SqsTransport,
    queue_urls: Vec<String>,
    children: Vec<Proc>,
}

/// A child process that is killed when dropped.
pub struct Proc {
    pub name: String,
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{sig} {}", self.pid());
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const CAP: u32 = 5;

impl World {
    pub async fn new(tag: &str) -> World {
        jobs_testdb::admin_client().await;
        let schema = jobs_testdb::fresh_schema(&format!("e2e_{tag}"));
        let store = PgStore::connect(&database_url(), &schema).expect("store");
        store.migrate().await.expect("migrate");
        let sqs = SqsTransport::builder(BTreeMap::<String, String>::new())
            .endpoint_url(sqs_endpoint())
            .region("us-east-1")
            .static_credentials("test", "test")
            .build()
            .await
            .unwrap();
        let mut queue_urls = Vec::new();
        let mut urls = BTreeMap::new();
        for uc in ["notifications", "message_labeling"] {
            let url = sqs.create_queue(&format!("{schema}-{uc}")).await.unwrap();
            queue_urls.push(url.clone());
            urls.insert(uc.to_owned(), url);
        }
        let sqs = sqs.with_queue_urls(urls.clone());
        let mut platform = PlatformConfig::with_use_cases([
            UseCaseConfig::new("notifications", CAP, Duration::from_secs(300)),
            UseCaseConfig::new("message_labeling", 5, Duration::from_secs(600)),
        ]);
        for (uc, url) in &urls {
            if let Some(c) = platform.use_cases.get_mut(uc) {
                c.queue_url = Some(url.clone());
            }
        }
        let store = Arc::new(store);
        let service = JobService::new(store.clone(), Arc::new(platform));
        let mut env = BTreeMap::new();
        let mut set = |k: &str, v: &str| {
            env.insert(k.to_owned(), v.to_owned());
        };
        set("ASYNC_JOBS_DB_DSN", &database_url());
        set("ASYNC_JOBS_DB_SCHEMA", &schema);
        set("ASYNC_JOBS_SQS_QUEUE_NOTIFICATIONS", &urls["notifications"]);
        set(
            "ASYNC_JOBS_SQS_QUEUE_MESSAGE_LABELING",
            &urls["message_labeling"],
        );
        set("ASYNC_JOBS_NOTIFICATIONS_MAX_CONCURRENT", &CAP.to_string());
        set("ASYNC_JOBS_SCHEDULER_TICK_MS", "200");
        set("ASYNC_JOBS_DISPATCH_LEASE_SECONDS", "5");
        set("ASYNC_JOBS_LEADER_POLL_MS", "200");
        set("ASYNC_JOBS_WORKER_RECEIVE_WAIT_SECONDS", "1");
        set("ASYNC_JOBS_WORKER_HEARTBEAT_LEASE_SECONDS", "3");
        set("ASYNC_JOBS_WORKER_CONCURRENCY", "10");
        set("ASYNC_JOBS_SHUTDOWN_GRACE_SECONDS", "2");
        set("AWS_ENDPOINT_URL_SQS", &sqs_endpoint());
        set("AWS_REGION", "us-east-1");
        set("AWS_ACCESS_KEY_ID", "test");
        set("AWS_SECRET_ACCESS_KEY", "test");
        set("AWS_EC2_METADATA_DISABLED", "true");
        set("RUST_LOG", "info");
        // Many processes share this host: no fixed ops port unless a test asks for one.
        set("ASYNC_JOBS_HEALTH_ADDR", "off");
        World {
            schema,
            store,
            service,
            env,
            sqs,
            queue_urls,
            children: Vec::new(),
        }
    }

    /// Starts `async-jobs <command>` with the world's environment plus `extra`. Its output goes
    /// to `target/e2e-logs/<schema>-<name>.log`.
    pub fn spawn(&mut self, command: &str, name: &str, extra: &[(&str, &str)]) -> usize {
        self.spawn_args("async-jobs", &[command], name, extra)
    }

    /// Starts the binary `bin` (under the target directory, e.g. `examples/own_worker`) with
    /// `args`, like [`World::spawn`].
    pub fn spawn_args(
        &mut self,
        bin: &str,
        args: &[&str],
        name: &str,
        extra: &[(&str, &str)],
    ) -> usize {
        let log_dir = binary(bin).parent().unwrap().join("e2e-logs");
        std::fs::create_dir_all(&log_dir).unwrap();
        let log =
            std::fs::File::create(log_dir.join(format!("{}-{name}.log", self.schema))).unwrap();
        let mut cmd = Command::new(binary(bin));
        cmd.args(args)
            .envs(&self.env)
            .envs(extra.iter().map(|(k, v)| (*k, *v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd.spawn().unwrap();
        self.children.push(Proc {
            name: name.to_owned(),
            child,
        });
        self.children.len() - 1
    }

    pub fn scheduler(&mut self, name: &str) -> usize {
        self.spawn("scheduler", name, &[])
    }

    pub fn worker(&mut self, name: &str, extra: &[(&str, &str)]) -> usize {
        self.spawn("worker", name, extra)
    }

    pub fn proc(&mut self, i: usize) -> &mut Proc {
        &mut self.children[i]
    }

    pub async fn job(&self, id: JobId) -> Job {
        self.store.get(id).await.unwrap().expect("job exists")
    }

    /// Polls until the job is in `status` (or panics after `within`).
    pub async fn wait_status(&self, id: JobId, status: JobStatus, within: Duration) -> Job {
        let start = Instant::now();
        loop {
            let job = self.job(id).await;
            if job.status == status {
                return job;
            }
            assert!(
                start.elapsed() < within,
                "job {id} is {} (attempts {}, last error {:?}), expected {status} within {within:?}",
                job.status,
                job.attempts,
                job.last_error
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Jobs per status.
    pub async fn counts(&self) -> BTreeMap<JobStatus, u64> {
        let mut out = BTreeMap::new();
        for c in self.store.counts().await.unwrap() {
            *out.entry(c.status).or_default() += c.count;
        }
        out
    }

    pub async fn cleanup(mut self) {
        self.children.clear();
        for url in &self.queue_urls {
            let _ = self.sqs.delete_queue(url).await;
        }
        let (client, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.schema
            ))
            .await;
    }
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of a Prometheus counter line `name{labels…} value` summed over matching lines.
pub fn metric_sum(text: &str, name: &str, label_filter: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(name) && l.contains(label_filter))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// GETs `http://127.0.0.1:{port}{path}` and returns the body.
pub async fn http_get(port: u16, path: &str) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Runs `cmd` to its exit with stdout and stderr captured; kills it and fails the test if it is
/// still running after `within` (`what` names it in that failure).
pub fn output_within(
    mut cmd: std::process::Command,
    within: Duration,
    what: &str,
) -> std::process::Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > within {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "`{what}` was still running after {within:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}
