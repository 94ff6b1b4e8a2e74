//! Keeps `deploy/` honest without Docker or AWS: the compose file, the ECS task definitions, the
//! IAM policy and the Dockerfile are parsed and checked against the code.
//!
//! - every service runs a subcommand the `async-jobs` binary has (its `--help` when the binary is
//!   built, else the documented list), and health checks use its `healthcheck` subcommand on the
//!   port the process actually serves;
//! - every `ASYNC_JOBS_*` variable set is one the code reads: a string literal in the sources
//!   under `crates/*/src` and `src/`, a prefix literal (`"ASYNC_JOBS_SQS_QUEUE_"`) or a per-use-case
//!   template (`"ASYNC_JOBS_{upper}_MAX_CONCURRENT"`) for a use case the same service defines;
//! - `stop_grace_period` / `stopTimeout` exceed the worker's drain grace;
//! - the binary accepts each service's configuration (`--print-config`), and the API requires
//!   credentials;
//! - the task role allows the SQS actions the processes call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

/// The subcommands `async-jobs --help` lists (used when the binary is not part of this build).
const DOCUMENTED_SUBCOMMANDS: &[&str] = &[
    "dev",
    "api",
    "scheduler",
    "worker",
    "migrate",
    "healthcheck",
];
/// The use cases every deployment defines.
const USE_CASES: &[&str] = &["NOTIFICATIONS", "MESSAGE_LABELING"];
/// The processes that serve health on `ASYNC_JOBS_HEALTH_ADDR` (default `0.0.0.0:9090`).
const DEFAULT_HEALTH_PORT: u16 = 9090;
/// `ASYNC_JOBS_API_ADDR`'s port in containers.
const API_PORT: u16 = 8080;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The worker's default drain grace (what `ASYNC_JOBS_SHUTDOWN_GRACE_SECONDS` defaults to).
fn default_grace() -> Duration {
    #[cfg(feature = "worker")]
    {
        async_jobs::worker::config::DEFAULT_SHUTDOWN_GRACE
    }
    #[cfg(not(feature = "worker"))]
    {
        Duration::from_secs(25)
    }
}

// ---- what the binary offers -----------------------------------------------------------------

/// The subcommands of `async-jobs`: parsed from `--help` when the binary is built with these
/// tests, else the documented list.
fn subcommands() -> BTreeSet<String> {
    let Some(bin) = option_env!("CARGO_BIN_EXE_async-jobs") else {
        return DOCUMENTED_SUBCOMMANDS
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
    };
    let out = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .expect("running async-jobs --help");
    assert!(out.status.success(), "async-jobs --help failed: {out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    let commands: BTreeSet<String> = help
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect();
    assert!(
        !commands.is_empty(),
        "no Commands: section in async-jobs --help:\n{help}"
    );
    commands
}

#[test]
fn the_binary_lists_the_documented_subcommands() {
    let have = subcommands();
    for want in DOCUMENTED_SUBCOMMANDS {
        assert!(
            have.contains(*want),
            "async-jobs has no `{want}` subcommand (has {have:?})"
        );
    }
}

// ---- which variables the code reads ---------------------------------------------------------

/// Every `"ASYNC_JOBS_…"` string literal in the Rust sources of the workspace (not its tests/).
struct KnownVars {
    literals: BTreeSet<String>,
}

impl KnownVars {
    fn scan() -> Self {
        let mut files = Vec::new();
        rust_files(&root().join("src"), &mut files);
        for entry in std::fs::read_dir(root().join("crates")).unwrap() {
            rust_files(&entry.unwrap().path().join("src"), &mut files);
        }
        assert!(files.len() > 10, "found only {} source files", files.len());
        let mut literals = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (start, _) in text.match_indices("\"ASYNC_JOBS_") {
                let rest = &text[start + 1..];
                if let Some(end) = rest.find('"') {
                    literals.insert(rest[..end].to_owned());
                }
            }
        }
        KnownVars { literals }
    }

    /// Why `name` is read, or `None` if nothing reads it. `use_cases` are the upper-case use case
    /// names the service defines.
    fn explain(&self, name: &str, use_cases: &BTreeSet<String>) -> Option<String> {
        if self.literals.contains(name) {
            return Some(format!("literal \"{name}\""));
        }
        for lit in &self.literals {
            // A prefix such as "ASYNC_JOBS_SQS_QUEUE_" (not the bare namespace "ASYNC_JOBS_").
            if lit.ends_with('_') && lit != "ASYNC_JOBS_" && !lit.contains('{') {
                if let Some(suffix) = name.strip_prefix(lit.as_str()) {
                    if !suffix.is_empty() {
                        return Some(format!("prefix \"{lit}\""));
                    }
                }
            }
            // A template such as "ASYNC_JOBS_{upper}_MAX_CONCURRENT".
            if let (Some(open), Some(close)) = (lit.find('{'), lit.find('}')) {
                let (before, after) = (&lit[..open], &lit[close + 1..]);
                if let Some(middle) = name
                    .strip_prefix(before)
                    .and_then(|rest| rest.strip_suffix(after))
                {
                    if use_cases.contains(middle) {
                        return Some(format!("template \"{lit}\" for use case {middle}"));
                    }
                }
            }
        }
        None
    }

    /// Panics unless every `ASYNC_JOBS_*` name in `env` is read by the code.
    fn check(&self, what: &str, env: &BTreeMap<String, String>) {
        let use_cases: BTreeSet<String> = env
            .keys()
            .filter_map(|k| k.strip_prefix("ASYNC_JOBS_SQS_QUEUE_"))
            .map(str::to_owned)
            .chain(USE_CASES.iter().map(|s| (*s).to_owned()))
            .collect();
        let unknown: Vec<&String> = env
            .keys()
            .filter(|k| k.starts_with("ASYNC_JOBS_"))
            .filter(|k| self.explain(k, &use_cases).is_none())
            .collect();
        assert!(
            unknown.is_empty(),
            "{what} sets variables no code under crates/*/src or src/ reads: {unknown:?}"
        );
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_scan_finds_the_variables_the_readme_documents() {
    // Guards the scanner itself: these are read today, so an empty or broken scan fails here.
    let known = KnownVars::scan();
    let env: BTreeMap<String, String> = [
        "ASYNC_JOBS_DB_DSN",
        "ASYNC_JOBS_SQS_QUEUE_BILLING",
        "ASYNC_JOBS_BILLING_MAX_CONCURRENT",
        "ASYNC_JOBS_NOTIFICATIONS_DEFAULT_DELAY_TOLERANCE_SECONDS",
        "ASYNC_JOBS_PER_TENANT_QUOTAS",
        "ASYNC_JOBS_SHUTDOWN_GRACE_SECONDS",
    ]
    .into_iter()
    .map(|k| (k.to_owned(), String::new()))
    .collect();
    known.check("the README's table", &env);
    let none = BTreeSet::new();
    assert!(known.explain("ASYNC_JOBS_NO_SUCH_SETTING", &none).is_none());
    assert!(known
        .explain("ASYNC_JOBS_UNDEFINED_MAX_CONCURRENT", &none)
        .is_none());
}

// ---- small helpers --------------------------------------------------------------------------

/// The port of a `host:port` address or of a URL's authority.
fn port_of(addr: &str) -> u16 {
    let authority = addr.split("://").last().unwrap().split('/').next().unwrap();
    authority
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"))
}

/// The port a process serves its health endpoints on.
fn health_port(role: &str, env: &BTreeMap<String, String>) -> u16 {
    match role {
        "api" => env
            .get("ASYNC_JOBS_API_ADDR")
            .map_or(API_PORT, |a| port_of(a)),
        _ => env
            .get("ASYNC_JOBS_HEALTH_ADDR")
            .map_or(DEFAULT_HEALTH_PORT, |a| port_of(a)),
    }
}

/// Checks an exec-form health check `[CMD, async-jobs, healthcheck, --url, URL]` and returns URL.
fn check_healthcheck(what: &str, test: &[String], subcommands: &BTreeSet<String>) -> String {
    assert!(
        test.len() == 5
            && test[0] == "CMD"
            && test[1] == "async-jobs"
            && test[2] == "healthcheck"
            && test[3] == "--url",
        "{what}: health check should be [CMD, async-jobs, healthcheck, --url, URL], is {test:?}"
    );
    assert!(
        subcommands.contains("healthcheck"),
        "async-jobs has no healthcheck subcommand"
    );
    let url = test[4].clone();
    assert!(
        url.starts_with("http://127.0.0.1:")
            && (url.ends_with("/healthz") || url.ends_with("/readyz")),
        "{what}: health check URL {url}"
    );
    url
}

fn grace_of(env: &BTreeMap<String, String>) -> Duration {
    env.get("ASYNC_JOBS_SHUTDOWN_GRACE_SECONDS")
        .map_or_else(default_grace, |s| Duration::from_secs(s.parse().unwrap()))
}

/// `30s`, `1m30s`, `45` (seconds) as compose writes durations.
fn compose_duration(text: &str) -> Duration {
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number
            .parse()
            .unwrap_or_else(|_| panic!("bad duration {text:?}"));
        number.clear();
        total += match c {
            'h' => n * 3600,
            'm' => n * 60,
            's' => n,
            _ => panic!("unsupported duration unit in {text:?}"),
        };
    }
    if !number.is_empty() {
        total += number.parse::<u64>().unwrap();
    }
    Duration::from_secs(total)
}

// ---- docker-compose.yml ---------------------------------------------------------------------

/// A compose service, with YAML merge keys (`<<: *anchor`) applied.
struct Service {
    name: String,
    map: BTreeMap<String, Yaml>,
}

/// Applies `<<` merge keys (compose honours them; yaml-rust2 leaves them as plain keys).
fn merged(hash: &yaml_rust2::yaml::Hash) -> BTreeMap<String, Yaml> {
    let mut out = BTreeMap::new();
    if let Some(base) = hash.get(&Yaml::String("<<".to_owned())) {
        let base = base.as_hash().expect("<< must merge a mapping");
        out.extend(merged(base));
    }
    for (k, v) in hash {
        let k = k.as_str().expect("string keys");
        if k != "<<" {
            out.insert(k.to_owned(), v.clone());
        }
    }
    out
}

impl Service {
    fn get(&self, key: &str) -> Option<&Yaml> {
        self.map.get(key)
    }

    fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Yaml::as_str)
    }

    fn strings(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Some(Yaml::Array(items)) => items.iter().map(scalar).collect(),
            Some(Yaml::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            None => Vec::new(),
            Some(other) => panic!("{}: {key} is {other:?}", self.name),
        }
    }

    fn env(&self) -> BTreeMap<String, String> {
        match self.get("environment") {
            None => BTreeMap::new(),
            Some(Yaml::Hash(h)) => merged(h)
                .into_iter()
                .map(|(k, v)| (k, scalar(&v)))
                .collect(),
            Some(Yaml::Array(items)) => items
                .iter()
                .map(|i| {
                    let s = scalar(i);
                    let (k, v) = s.split_once('=').unwrap_or((s.as_str(), ""));
                    (k.to_owned(), v.to_owned())
                })
                .collect(),
            Some(other) => panic!("{}: environment is {other:?}", self.name),
        }
    }

    fn depends_on(&self) -> BTreeMap<String, String> {
        let Some(Yaml::Hash(h)) = self.get("depends_on") else {
            return BTreeMap::new();
        };
        merged(h)
            .into_iter()
            .map(|(k, v)| {
                let cond = v.as_hash().and_then(|c| {
                    c.get(&Yaml::String("condition".to_owned()))
                        .and_then(Yaml::as_str)
                        .map(str::to_owned)
                });
                (k, cond.unwrap_or_default())
            })
            .collect()
    }

    fn healthcheck_test(&self) -> Option<Vec<String>> {
        let Yaml::Hash(h) = self.get("healthcheck")? else {
            return None;
        };
        match h.get(&Yaml::String("test".to_owned()))? {
            Yaml::Array(items) => Some(items.iter().map(scalar).collect()),
            other => panic!("{}: healthcheck.test is {other:?}", self.name),
        }
    }

    /// Runs the project's image (rather than postgres, moto or the AWS CLI).
    fn is_app(&self) -> bool {
        self.get("build").is_some()
            || self
                .str("image")
                .is_some_and(|i| i.starts_with("async-jobs"))
    }
}

fn scalar(y: &Yaml) -> String {
    match y {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

fn compose_services() -> BTreeMap<String, Service> {
    let docs = YamlLoader::load_from_str(&read("deploy/docker-compose.yml"))
        .expect("deploy/docker-compose.yml is valid YAML");
    let services = docs[0]["services"].as_hash().expect("a services mapping");
    services
        .iter()
        .map(|(k, v)| {
            let name = k.as_str().unwrap().to_owned();
            let map = merged(
                v.as_hash()
                    .unwrap_or_else(|| panic!("service {name} is a mapping")),
            );
            (name.clone(), Service { name, map })
        })
        .collect()
}

#[test]
fn compose_has_the_whole_stack() {
    let services = compose_services();
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    for want in [
        "postgres",
        "sqs",
        "sqs-init",
        "migrate",
        "api",
        "scheduler",
        "worker-1",
        "worker-2",
    ] {
        assert!(
            names.contains(want),
            "docker-compose.yml has no `{want}` service ({names:?})"
        );
    }
    assert!(services["postgres"]
        .str("image")
        .unwrap()
        .starts_with("postgres:15"));
    assert!(services["sqs"]
        .str("image")
        .unwrap()
        .starts_with("motoserver/moto"));
    let init = &services["sqs-init"];
    assert!(init.str("image").unwrap().starts_with("amazon/aws-cli"));
    let script = init.strings("command").join(" ");
    for queue in ["notifications", "message_labeling"] {
        assert!(
            script.contains(queue),
            "sqs-init does not create the {queue} queue: {script}"
        );
    }
    assert_eq!(
        init.depends_on().get("sqs").map(String::as_str),
        Some("service_healthy")
    );
}

#[test]
fn compose_services_run_real_subcommands_and_read_variables() {
    let subcommands = subcommands();
    let known = KnownVars::scan();
    let services = compose_services();
    let mut roles = BTreeMap::new();
    for svc in services.values().filter(|s| s.is_app()) {
        let command = svc.strings("command");
        let role = command
            .first()
            .unwrap_or_else(|| panic!("{} has no command", svc.name));
        assert!(
            subcommands.contains(role),
            "service {} runs `async-jobs {role}`, which is not a subcommand ({subcommands:?})",
            svc.name
        );
        roles.insert(svc.name.clone(), role.clone());
        let env = svc.env();
        known.check(&format!("compose service {}", svc.name), &env);

        // Every process reaches the same database and queues.
        let dsn = &env["ASYNC_JOBS_DB_DSN"];
        assert!(dsn.contains("@postgres:5432/"), "{}: DSN {dsn}", svc.name);
        for uc in USE_CASES {
            let url = env
                .get(&format!("ASYNC_JOBS_SQS_QUEUE_{uc}"))
                .unwrap_or_else(|| panic!("{} does not define use case {uc}", svc.name));
            assert!(
                url.starts_with("http://sqs:5000/"),
                "{}: queue URL {url}",
                svc.name
            );
            assert!(
                url.ends_with(&uc.to_lowercase()),
                "{}: queue URL {url}",
                svc.name
            );
        }
        for aws in [
            "AWS_ENDPOINT_URL_SQS",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ] {
            assert!(env.contains_key(aws), "{} does not set {aws}", svc.name);
        }

        let stop = compose_duration(svc.str("stop_grace_period").unwrap_or("10s"));
        assert!(
            stop > grace_of(&env),
            "{}: stop_grace_period {stop:?} must exceed the drain grace {:?}",
            svc.name,
            grace_of(&env)
        );

        let deps = svc.depends_on();
        assert_eq!(
            deps.get("postgres").map(String::as_str),
            Some("service_healthy"),
            "{}",
            svc.name
        );
        if role == "migrate" {
            assert_eq!(svc.str("restart"), Some("no"), "migrate is one-shot");
            assert!(
                svc.healthcheck_test().is_none(),
                "a one-shot needs no health check"
            );
            continue;
        }
        assert_eq!(
            deps.get("migrate").map(String::as_str),
            Some("service_completed_successfully"),
            "{} must start after the migration",
            svc.name
        );
        assert_eq!(
            deps.get("sqs-init").map(String::as_str),
            Some("service_completed_successfully"),
            "{} must start after the queues exist",
            svc.name
        );
        let test = svc
            .healthcheck_test()
            .unwrap_or_else(|| panic!("{} has no health check", svc.name));
        let url = check_healthcheck(&svc.name, &test, &subcommands);
        assert_eq!(
            port_of(&url),
            health_port(role, &env),
            "{}: health check port",
            svc.name
        );
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for role in roles.values() {
        *counts.entry(role).or_default() += 1;
    }
    assert_eq!(counts.get("migrate"), Some(&1), "{roles:?}");
    assert_eq!(counts.get("api"), Some(&1), "{roles:?}");
    assert_eq!(counts.get("scheduler"), Some(&1), "{roles:?}");
    assert_eq!(counts.get("worker"), Some(&2), "{roles:?}");
    assert!(
        services["api"]
            .strings("ports")
            .iter()
            .any(|p| p.ends_with("8080:8080")),
        "the API is published on 8080"
    );
}

// ---- ECS task definitions -------------------------------------------------------------------

fn task_definitions() -> BTreeMap<String, Value> {
    let dir = root().join("deploy/ecs");
    let mut defs = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(role) = name
            .strip_prefix("task-definition-")
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap();
        let json: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        defs.insert(role.to_owned(), json);
    }
    defs
}

fn name_values(v: &Value, value_key: &str) -> BTreeMap<String, String> {
    v.as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    (
                        i["name"].as_str().unwrap().to_owned(),
                        i[value_key].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn ecs_task_definitions_are_fargate_services_of_the_binary() {
    let subcommands = subcommands();
    let known = KnownVars::scan();
    let defs = task_definitions();
    let roles: BTreeSet<&str> = defs.keys().map(String::as_str).collect();
    assert_eq!(
        roles,
        BTreeSet::from(["api", "migrate", "scheduler", "worker"])
    );

    for (role, def) in &defs {
        let what = format!("task-definition-{role}.json");
        assert_eq!(def["networkMode"], "awsvpc", "{what}");
        assert!(
            def["requiresCompatibilities"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c == "FARGATE"),
            "{what}"
        );
        assert!(
            def["cpu"].is_string() && def["memory"].is_string(),
            "{what}: Fargate sizes"
        );
        assert!(
            def["taskRoleArn"]
                .as_str()
                .unwrap()
                .starts_with("arn:aws:iam::"),
            "{what}"
        );
        assert!(
            def["executionRoleArn"]
                .as_str()
                .unwrap()
                .starts_with("arn:aws:iam::"),
            "{what}"
        );
        let containers = def["containerDefinitions"].as_array().unwrap();
        assert_eq!(containers.len(), 1, "{what}: one container");
        let c = &containers[0];

        let command: Vec<&str> = c["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            command.first().copied(),
            Some(role.as_str()),
            "{what}: command"
        );
        assert!(
            subcommands.contains(role),
            "{what}: `{role}` is not a subcommand"
        );

        let log = &c["logConfiguration"];
        assert_eq!(log["logDriver"], "awslogs", "{what}");
        for opt in ["awslogs-group", "awslogs-region", "awslogs-stream-prefix"] {
            assert!(
                log["options"][opt].is_string(),
                "{what}: awslogs option {opt}"
            );
        }

        let env = name_values(&c["environment"], "value");
        let secrets = name_values(&c["secrets"], "valueFrom");
        let mut all = env.clone();
        all.extend(secrets.clone());
        known.check(&what, &all);
        assert!(
            !env.contains_key("ASYNC_JOBS_DB_DSN"),
            "{what}: the DSN belongs in secrets"
        );
        assert!(
            secrets
                .get("ASYNC_JOBS_DB_DSN")
                .is_some_and(|arn| arn.starts_with("arn:aws:secretsmanager:")),
            "{what}: ASYNC_JOBS_DB_DSN from Secrets Manager"
        );

        let stop = Duration::from_secs(c["stopTimeout"].as_u64().unwrap_or(30));
        assert!(
            stop > grace_of(&env),
            "{what}: stopTimeout {stop:?} must exceed the drain grace {:?}",
            grace_of(&env)
        );
        assert!(
            stop <= Duration::from_secs(120),
            "{what}: Fargate caps stopTimeout at 120 s"
        );

        if role == "migrate" {
            continue;
        }
        for uc in USE_CASES {
            let url = env
                .get(&format!("ASYNC_JOBS_SQS_QUEUE_{uc}"))
                .unwrap_or_else(|| panic!("{what} does not define use case {uc}"));
            assert!(url.starts_with("https://sqs."), "{what}: queue URL {url}");
        }
        let test: Vec<String> = c["healthCheck"]["command"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no healthCheck"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        let url = check_healthcheck(&what, &test, &subcommands);
        let port = health_port(role, &env);
        assert_eq!(port_of(&url), port, "{what}: health check port");
        assert!(
            c["portMappings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["containerPort"] == port),
            "{what}: port {port} is mapped"
        );
    }
}

#[test]
fn task_role_allows_the_sqs_actions() {
    let policy: Value = serde_json::from_str(&read("deploy/ecs/task-role-policy.json")).unwrap();
    let actions: BTreeSet<&str> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| {
            s["Action"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
        })
        .collect();
    for want in [
        "sqs:SendMessage",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
    ] {
        assert!(actions.contains(want), "task-role-policy.json lacks {want}");
    }
    let exec: Value = serde_json::from_str(&read("deploy/ecs/execution-role-policy.json")).unwrap();
    assert!(exec.to_string().contains("secretsmanager:GetSecretValue"));
}

// ---- Dockerfile -----------------------------------------------------------------------------

/// The `ASYNC_JOBS_*` and `RUST_LOG` variables the image's `ENV` sets (`ENV A=1 \` lines).
fn image_env() -> BTreeMap<String, String> {
    read("deploy/Dockerfile")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| k.starts_with("ASYNC_JOBS_") || *k == "RUST_LOG")
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn dockerfile_builds_the_one_binary_and_runs_it_unprivileged() {
    let dockerfile = read("deploy/Dockerfile");
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    assert!(has("FROM rust:1-bookworm AS builder"));
    assert!(has("--mount=type=cache,target=/usr/local/cargo/registry"));
    assert!(has("cargo build --release --locked --bin async-jobs"));
    // Your own handlers: an example of the workspace built into the same image on request.
    assert!(has(r#"ARG WORKER_EXAMPLE="""#));
    assert!(has(
        r#"cargo build --release --locked --example "$WORKER_EXAMPLE""#
    ));
    assert!(has("/out/bin/async-jobs-worker"));
    assert!(has("COPY --from=builder /out/bin/ /usr/local/bin/"));
    assert!(
        root().join("examples/own_worker.rs").exists(),
        "the documented WORKER_EXAMPLE is missing"
    );
    assert!(has("FROM debian:bookworm-slim"));
    assert!(has("ca-certificates"));
    assert!(has(r#"ENTRYPOINT ["async-jobs"]"#));
    assert!(has("ASYNC_JOBS_LOG_FORMAT=json"));
    let user = lines
        .iter()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("a USER line");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "runs as {user}"
    );
    let cmd = lines
        .iter()
        .filter_map(|l| l.strip_prefix("CMD "))
        .next_back()
        .expect("a CMD line");
    let cmd: Vec<String> = serde_json::from_str(cmd).expect("exec-form CMD");
    assert!(subcommands().contains(&cmd[0]), "default CMD {cmd:?}");

    // Variables the image sets must be read too.
    let env = image_env();
    assert!(env.contains_key("ASYNC_JOBS_LOG_FORMAT"));
    KnownVars::scan().check("deploy/Dockerfile", &env);
    assert_eq!(port_of(&env["ASYNC_JOBS_API_ADDR"]), API_PORT);
    assert_eq!(port_of(&env["ASYNC_JOBS_HEALTH_ADDR"]), DEFAULT_HEALTH_PORT);
}

// ---- the binary accepts each service's configuration ----------------------------------------

/// Runs `async-jobs <role> --print-config` with the image's `ENV` overridden by `env` (and nothing
/// else) and returns the printed JSON, or
/// `None` when the binary is not part of this build.
fn print_config(what: &str, role: &str, env: &BTreeMap<String, String>) -> Option<Value> {
    let bin = option_env!("CARGO_BIN_EXE_async-jobs")?;
    let out = std::process::Command::new(bin)
        .args([role, "--print-config"])
        .env_clear()
        .envs(image_env())
        .envs(env)
        .output()
        .expect("running async-jobs --print-config");
    assert!(
        out.status.success(),
        "{what}: `async-jobs {role}` rejects its configuration: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: --print-config printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    }))
}

fn assert_both_use_cases(what: &str, config: &Value) {
    let names: BTreeSet<&str> = config["use_cases"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no use_cases in {config}"))
        .iter()
        .filter(|uc| uc["queue_url"].is_string())
        .map(|uc| uc["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["message_labeling", "notifications"]),
        "{what}"
    );
}

#[test]
fn the_binary_accepts_every_service_configuration() {
    for svc in compose_services().values().filter(|s| s.is_app()) {
        let role = svc.strings("command")[0].clone();
        let what = format!("compose service {}", svc.name);
        let Some(config) = print_config(&what, &role, &svc.env()) else {
            return;
        };
        assert_eq!(config["command"], role.as_str(), "{what}");
        if role != "migrate" {
            assert_both_use_cases(&what, &config);
        }
        assert_api_requires_credentials(&what, &role, &config);
    }
    // The health-check command runs inside every container, under the image's environment.
    if let Some(config) = print_config("healthcheck", "healthcheck", &BTreeMap::new()) {
        assert_eq!(config["command"], "healthcheck");
    }
    for (role, def) in task_definitions() {
        let what = format!("task-definition-{role}.json");
        let c = &def["containerDefinitions"][0];
        let mut env = name_values(&c["environment"], "value");
        // Secrets resolve at task start; stand in plausible values.
        for name in name_values(&c["secrets"], "valueFrom").keys() {
            let value = match name.as_str() {
                "ASYNC_JOBS_DB_DSN" => "postgres://async_jobs:secret@db.internal:5432/async_jobs",
                _ => "secret-value",
            };
            env.insert(name.clone(), value.to_owned());
        }
        let Some(config) = print_config(&what, &role, &env) else {
            return;
        };
        if role != "migrate" {
            assert_both_use_cases(&what, &config);
        }
        assert_api_requires_credentials(&what, &role, &config);
    }
}

/// A deployed API requires credentials (it would refuse to start without, so `--print-config`
/// would already have failed; this also rules out `ASYNC_JOBS_AUTH=none`).
fn assert_api_requires_credentials(what: &str, role: &str, config: &Value) {
    if role == "api" {
        assert_eq!(
            config["auth"]["mode"], "required",
            "{what}: the API must require credentials: {config}"
        );
    }
}

// ---- .env.example ---------------------------------------------------------------------------
// `.env.example` lists every setting the code reads, and nothing it does not (issue 15, item 7).
// The per-use-case families (`ASYNC_JOBS_SQS_QUEUE_<USE_CASE>`, `ASYNC_JOBS_<USE_CASE>_MAX_CONCURRENT`,
// `ASYNC_JOBS_<USE_CASE>_DEFAULT_DELAY_TOLERANCE_SECONDS`, `ASYNC_JOBS_<USE_CASE>_DB_DSN`) are
// covered by their examples.

/// Every `ASYNC_JOBS_…` name in `text` (a name ending in `_` is a prefix, not a setting).
fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("ASYNC_JOBS_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        if !name.ends_with('_') {
            out.insert(name.to_owned());
        }
        rest = &tail[end..];
    }
    out
}

/// The Rust files under `crates/*/<sub>`.
fn crates_files(sub: &str, out: &mut Vec<PathBuf>) {
    for krate in std::fs::read_dir(root().join("crates")).unwrap() {
        rust_files(&krate.unwrap().path().join(sub), out);
    }
}

/// A name of a per-use-case family.
fn per_use_case(name: &str) -> bool {
    name.starts_with("ASYNC_JOBS_SQS_QUEUE_")
        || name.ends_with("_MAX_CONCURRENT")
        || name.ends_with("_DEFAULT_DELAY_TOLERANCE_SECONDS")
        || (name.ends_with("_DB_DSN") && name != "ASYNC_JOBS_DB_DSN")
}

#[test]
fn env_example_lists_every_setting_and_only_real_ones() {
    let example = std::fs::read_to_string(root().join(".env.example")).unwrap();
    let listed = names(&example);

    let mut sources = Vec::new();
    rust_files(&root().join("src"), &mut sources);
    crates_files("src", &mut sources);
    let mut read = BTreeSet::new();
    for file in &sources {
        read.extend(names(&std::fs::read_to_string(file).unwrap()));
    }
    let missing: Vec<_> = read
        .iter()
        .filter(|n| !per_use_case(n) && !listed.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "settings read by the code but not in .env.example: {missing:?}"
    );
    for family in [
        "ASYNC_JOBS_SQS_QUEUE_",
        "_MAX_CONCURRENT",
        "_DEFAULT_DELAY_TOLERANCE_SECONDS",
        "_DB_DSN",
    ] {
        assert!(
            listed.iter().any(|n| n.contains(family)),
            ".env.example has no example of {family}"
        );
    }

    // And nothing stale: every listed name is read somewhere (sources or tests).
    let mut everything = sources;
    rust_files(&root().join("tests"), &mut everything);
    crates_files("tests", &mut everything);
    let mut anywhere = read;
    for file in &everything {
        anywhere.extend(names(&std::fs::read_to_string(file).unwrap()));
    }
    let stale: Vec<_> = listed
        .iter()
        .filter(|n| !per_use_case(n) && !anywhere.contains(*n))
        .collect();
    assert!(
        stale.is_empty(),
        "listed in .env.example but read nowhere: {stale:?}"
    );
}

// ---- Autoscaling on the backlog signal ------------------------------------------------------

/// The metric the scheduler's leader exports as the scaling signal (`jobs_scheduler::BACKLOG_SECONDS`).
const SCALING_METRIC: &str = "async_jobs_backlog_seconds";

fn ecs_json(file: &str) -> Value {
    serde_json::from_str(&read(&format!("deploy/ecs/{file}")))
        .unwrap_or_else(|e| panic!("{file} is not JSON: {e}"))
}

/// `deploy/ecs/autoscaling-worker-*.json` (Application Auto Scaling inputs) and
/// `adot-metrics-container.json` (the scheduler's metrics sidecar) fit together and with the
/// code: the collector scrapes the scheduler's `/metrics` port and publishes the signal under the
/// namespace and `use_case` dimension the policies read, one policy per use case the scheduler
/// runs, on the worker service, with the `Maximum` statistic (only the leader reports a
/// non-zero value), and no more tasks than the use cases' caps can keep busy.
#[test]
fn the_worker_autoscaling_tracks_the_signal_the_scheduler_exports() {
    assert!(
        read("crates/jobs-scheduler/src/backlog.rs").contains(&format!("\"{SCALING_METRIC}\"")),
        "the scheduler no longer exports {SCALING_METRIC}"
    );
    let defs = task_definitions();
    let scheduler = &defs["scheduler"]["containerDefinitions"][0];
    let scheduler_env = name_values(&scheduler["environment"], "value");
    let worker = &defs["worker"]["containerDefinitions"][0];
    let worker_env = name_values(&worker["environment"], "value");

    // The sidecar: scrapes the scheduler's health port, keeps and publishes the signal.
    let sidecar = ecs_json("adot-metrics-container.json");
    let config_text = name_values(&sidecar["environment"], "value")
        .remove("AOT_CONFIG_CONTENT")
        .expect("the collector's configuration in AOT_CONFIG_CONTENT");
    let config = YamlLoader::load_from_str(&config_text).unwrap().remove(0);
    let scrape = &config["receivers"]["prometheus"]["config"]["scrape_configs"][0];
    let target = scrape["static_configs"][0]["targets"][0].as_str().unwrap();
    assert_eq!(
        port_of(target),
        health_port("scheduler", &scheduler_env),
        "the collector scrapes the scheduler's /metrics"
    );
    let keep = regex_lite_match(
        scrape["metric_relabel_configs"][0]["regex"]
            .as_str()
            .unwrap(),
    );
    assert!(keep(SCALING_METRIC), "the scrape drops {SCALING_METRIC}");
    let emf = &config["exporters"]["awsemf"];
    let namespace = emf["namespace"].as_str().unwrap();
    let declaration = &emf["metric_declarations"][0];
    assert_eq!(
        declaration["dimensions"][0][0].as_str(),
        Some("use_case"),
        "published with the use_case dimension alone"
    );
    assert!(declaration["metric_name_selectors"]
        .as_vec()
        .unwrap()
        .iter()
        .any(|s| s.as_str() == Some(&format!("^{SCALING_METRIC}$"))));

    // The scalable target: the worker service, 1..=ceil(sum of caps / worker concurrency).
    let target = ecs_json("autoscaling-worker-target.json");
    let resource = target["ResourceId"].as_str().unwrap();
    let family = defs["worker"]["family"].as_str().unwrap();
    assert!(
        resource.starts_with("service/") && resource.ends_with(&format!("/{family}")),
        "{resource}"
    );
    assert_eq!(target["ScalableDimension"], "ecs:service:DesiredCount");
    let caps: u64 = USE_CASES
        .iter()
        .map(|uc| {
            scheduler_env[&format!("ASYNC_JOBS_{uc}_MAX_CONCURRENT")]
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    let concurrency: u64 = worker_env["ASYNC_JOBS_WORKER_CONCURRENCY"].parse().unwrap();
    let (min, max) = (
        target["MinCapacity"].as_u64().unwrap(),
        target["MaxCapacity"].as_u64().unwrap(),
    );
    assert!(
        min >= 1,
        "at least one worker: target tracking does not scale out from zero"
    );
    assert!(
        min <= max && max <= caps.div_ceil(concurrency),
        "more than {} workers cannot be kept busy under caps summing to {caps}",
        caps.div_ceil(concurrency)
    );

    // One target-tracking policy per use case, on the same target and metric.
    for uc in USE_CASES {
        let name = uc.to_lowercase();
        let policy = ecs_json(&format!(
            "autoscaling-worker-{}.json",
            name.replace('_', "-")
        ));
        assert_eq!(policy["ResourceId"], resource);
        assert_eq!(policy["PolicyType"], "TargetTrackingScaling");
        let config = &policy["TargetTrackingScalingPolicyConfiguration"];
        assert!(config["TargetValue"].as_f64().unwrap() > 0.0);
        let metric = &config["CustomizedMetricSpecification"];
        assert_eq!(metric["MetricName"], SCALING_METRIC);
        assert_eq!(metric["Namespace"], namespace);
        assert_eq!(metric["Statistic"], "Maximum");
        assert_eq!(
            metric["Dimensions"],
            serde_json::json!([{"Name": "use_case", "Value": name}])
        );
    }
}

/// A matcher for the relabel regex `prefix(a|b|c)` (anchored, as Prometheus anchors it).
fn regex_lite_match(regex: &str) -> impl Fn(&str) -> bool + '_ {
    move |name: &str| {
        let (prefix, rest) = regex.split_once('(').expect("prefix(alternatives)");
        let alternatives = rest.strip_suffix(')').expect("prefix(alternatives)");
        name.strip_prefix(prefix)
            .is_some_and(|tail| alternatives.split('|').any(|a| a == tail))
    }
}
