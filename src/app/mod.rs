//! The composition root: the platform's processes, wired from one typed configuration.
//!
//! Everything that turns the library crates into ECS processes lives here and nowhere else:
//!
//! - [`settings`]: the environment, read once into [`Settings`] (one rule: values trimmed, empty
//!   means unset), which both runs the process and is what `--print-config` prints
//!   ([`Settings::report`]);
//! - [`store`]: choosing and opening the store (Postgres with TLS, or memory for `dev`);
//! - `ports`: the transport (SQS, or in-process for `dev`) and the leader lock;
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics` and the shutdown signal;
//! - [`telemetry`]: logs and span export over OTLP;
//! - one module per process: [`api`], [`scheduler`], [`worker`] (also the entry for your own
//!   handlers), [`dev`] and [`migrate`].
//!
//! The runtimes (`jobs-http`'s router, `jobs-scheduler`, `jobs-worker`) depend on `jobs-core`
//! alone; the adapters (`jobs-postgres`, `jobs-sqs`) and the sample handlers (`jobs-samples`)
//! meet them only here.
//!
//! **Exit codes** of a process started through [`main_with`] (the `async-jobs` binary and your
//! own worker binary): 0 after a clean stop, **2** when a setting is missing, malformed or
//! contradicts another (one line on stderr names the variable; nothing was started), 1 when the
//! process failed while starting or running (a database or queue it cannot reach, a port it
//! cannot bind).

pub mod api;
pub mod dev;
pub mod migrate;
pub mod ops;
mod ports;
mod print;
pub mod scheduler;
pub mod settings;
pub mod store;
pub mod telemetry;
pub mod worker;

use std::future::Future;
use std::process::ExitCode;

pub use ops::{shutdown_signal, spawn_ops};
pub use settings::{Overrides, Process, Settings, SettingsError};

/// Why a process could not start or run (each message names the setting or service at fault).
pub type AppError = Box<dyn std::error::Error + Send + Sync>;

/// The exit status for a bad setting.
pub const EXIT_BAD_SETTINGS: u8 = 2;
/// The exit status for a process that failed while starting or running.
pub const EXIT_FAILED: u8 = 1;

/// How a process binary was launched.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The process to read settings for.
    pub process: Process,
    /// What the command line sets beside the environment.
    pub overrides: Overrides,
    /// `--print-config`: print the settings and exit instead of running.
    pub print_config: bool,
    /// The prefix of the error line (the binary's name).
    pub name: String,
    /// Command-line arguments [`Launch::from_args`] did not recognise: the process refuses them
    /// (exit 2) instead of starting with a typo ignored.
    pub unrecognised: Vec<String>,
}

impl Launch {
    /// A launch of `process` by the `async-jobs` binary.
    pub fn new(process: Process) -> Self {
        Launch {
            process,
            overrides: Overrides::default(),
            print_config: false,
            name: "async-jobs".to_owned(),
            unrecognised: Vec::new(),
        }
    }

    /// A launch of `process` by your own binary: `--print-config` taken from its arguments (any
    /// other argument is refused, exit 2), its file name as the prefix of error lines.
    pub fn from_args(process: Process) -> Self {
        let mut args = std::env::args_os();
        let name = args
            .next()
            .and_then(|a| {
                std::path::Path::new(&a)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "async-jobs".to_owned());
        let (mut print_config, mut unrecognised) = (false, Vec::new());
        for arg in args {
            if arg == "--print-config" {
                print_config = true;
            } else {
                unrecognised.push(arg.to_string_lossy().chars().take(200).collect());
            }
        }
        Launch {
            process,
            overrides: Overrides::default(),
            print_config,
            name,
            unrecognised,
        }
    }
}

/// The whole life of a process binary: reads the [`Settings`] of `launch.process` once (a bad
/// setting: one line, exit 2), prints them and exits with `--print-config`, installs logging and
/// span export ([`telemetry::init`]), runs `body` with the settings on a multi-threaded runtime,
/// flushes the spans and returns the exit code (see the module docs).
pub fn main_with<F, Fut>(launch: Launch, body: F) -> ExitCode
where
    F: FnOnce(Settings) -> Fut,
    Fut: Future<Output = Result<(), AppError>>,
{
    let name = &launch.name;
    if let Some(arg) = launch.unrecognised.first() {
        eprintln!("{name}: unexpected argument {arg:?} (the only one is --print-config; settings come from the environment)");
        return ExitCode::from(EXIT_BAD_SETTINGS);
    }
    let settings = match Settings::from_env(launch.process, launch.overrides) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(EXIT_BAD_SETTINGS);
        }
    };
    if launch.print_config {
        return match serde_json::to_string_pretty(&settings.report()) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{name}: cannot print the settings: {e}");
                ExitCode::from(EXIT_FAILED)
            }
        };
    }
    let tracing = match telemetry::init(&settings.telemetry) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(EXIT_BAD_SETTINGS);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let code = match runtime.block_on(body(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {}", e.to_string().replace('\n', " "));
            if e.downcast_ref::<SettingsError>().is_some() {
                ExitCode::from(EXIT_BAD_SETTINGS)
            } else {
                ExitCode::from(EXIT_FAILED)
            }
        }
    };
    // Spans still queued go out before the process ends.
    tracing.shutdown();
    code
}

/// Runs one of the platform's own processes as `settings` say until `shutdown`: `dev` and
/// `worker` with the sample handlers (recording their runs when `sample_side_effects` is set),
/// `migrate` printing what it applied.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    if let Some(se) = &settings.side_effects {
        tracing::info!("sample handlers record their runs (side-effect log on)");
        jobs_samples::install_side_effect_log(se.log.clone());
    }
    match settings.process {
        Process::Dev => dev::run(settings, jobs_samples::sample_registry(), shutdown).await,
        Process::Api => api::run(settings, shutdown).await,
        Process::Scheduler => scheduler::run(settings, shutdown).await,
        Process::Worker => worker::run(settings, jobs_samples::sample_registry(), shutdown)
            .await
            .map(|_| ()),
        Process::Migrate => {
            let line = migrate::run(&settings).await?;
            println!("{line}");
            Ok(())
        }
    }
}
