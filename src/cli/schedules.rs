//! `async-jobs schedules list|get|create|update|delete`: cron schedules over the HTTP API, with
//! the connection flags, output formats and exit status of `async-jobs jobs` (a missing schedule
//! is 3, a refused one — invalid, name taken, declared in the configuration — is 5).

use std::process::ExitCode;

use async_jobs::core::{JobTemplate, MissedPolicy, NewSchedule, Schedule, ScheduleDefinition};
use clap::{Args, Subcommand};
use serde_json::json;

use super::jobs::{call, out, parse_json, table, time, Connection, Output};

/// The schedule commands.
#[derive(Debug, Subcommand)]
pub(crate) enum SchedulesCommand {
    /// List the schedules, by name, with each one's next run time.
    List,
    /// Show one schedule, with its template.
    Get {
        /// The schedule's name.
        name: String,
    },
    /// Create a schedule: each slot of CRON (in --timezone) enqueues one job from the template.
    Create {
        /// Unique name: A-Z a-z 0-9 . _ - (at most 128).
        name: String,
        #[command(flatten)]
        definition: DefinitionArgs,
    },
    /// Replace a schedule's definition (its next run time is kept unless the cron expression or
    /// time zone changes).
    Update {
        /// The schedule's name.
        name: String,
        #[command(flatten)]
        definition: DefinitionArgs,
    },
    /// Delete a schedule (the jobs it already enqueued stay).
    Delete {
        /// The schedule's name.
        name: String,
    },
}

/// A schedule's definition on the command line.
#[derive(Debug, Args)]
pub(crate) struct DefinitionArgs {
    /// Cron expression: "min hour day-of-month month day-of-week", or with leading seconds.
    #[arg(long)]
    cron: String,
    /// IANA time zone the expression is read in.
    #[arg(long, default_value = "UTC")]
    timezone: String,
    /// The jobs' tenant.
    #[arg(long)]
    tenant: String,
    /// The jobs' use case.
    #[arg(long)]
    use_case: String,
    /// The jobs' type (handler name).
    #[arg(long = "type")]
    kind: String,
    /// The jobs' payload, JSON [default: {}].
    #[arg(long, value_parser = parse_json)]
    payload: Option<serde_json::Value>,
    /// Start window after each slot, seconds [default: the use case's].
    #[arg(long)]
    delay_tolerance: Option<f64>,
    /// Priority among equal deadlines.
    #[arg(long)]
    priority: Option<i16>,
    /// Attempt budget.
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Per-attempt timeout, seconds.
    #[arg(long)]
    timeout: Option<f64>,
    /// Fire at most N missed slots (the most recent) instead of skipping them.
    #[arg(long, value_name = "N")]
    catch_up: Option<u32>,
}

impl DefinitionArgs {
    fn definition(self) -> ScheduleDefinition {
        let mut template = JobTemplate::new(
            self.tenant,
            self.use_case,
            self.kind,
            self.payload.unwrap_or_else(|| json!({})),
        );
        template.delay_tolerance_seconds = self.delay_tolerance;
        template.priority = self.priority;
        template.max_attempts = self.max_attempts;
        template.timeout_seconds = self.timeout;
        ScheduleDefinition {
            cron: self.cron,
            timezone: self.timezone,
            template,
            missed: self
                .catch_up
                .map_or(MissedPolicy::Skip, |max| MissedPolicy::CatchUp { max }),
        }
    }
}

/// Runs a schedule command.
pub(crate) fn run(conn: &Connection, command: SchedulesCommand) -> ExitCode {
    let output = conn.output;
    call(conn, |client| async move {
        match command {
            SchedulesCommand::List => {
                let schedules = client.schedules().await?;
                print_list(output, &schedules);
            }
            SchedulesCommand::Get { name } => {
                print_one(output, &client.schedule(&name).await?);
            }
            SchedulesCommand::Create { name, definition } => {
                let new = NewSchedule::from_definition(name, definition.definition());
                print_one(output, &client.create_schedule(&new).await?);
            }
            SchedulesCommand::Update { name, definition } => {
                let schedule = client
                    .update_schedule(&name, &definition.definition())
                    .await?;
                print_one(output, &schedule);
            }
            SchedulesCommand::Delete { name } => {
                client.delete_schedule(&name).await?;
                match output {
                    Output::Json => out(&format!("{}\n", json!({"name": name, "deleted": true}))),
                    Output::Table => out(&format!("deleted schedule {name}\n")),
                }
            }
        }
        Ok(())
    })
}

fn missed(m: MissedPolicy) -> String {
    match m {
        MissedPolicy::Skip => "skip".to_owned(),
        MissedPolicy::CatchUp { max } => format!("catch up {max}"),
    }
}

fn print_list(output: Output, schedules: &[Schedule]) {
    if output == Output::Json {
        out(&format!("{}\n", json!({"schedules": schedules})));
        return;
    }
    let header = [
        "NAME", "CRON", "TIMEZONE", "TENANT", "USE CASE", "TYPE", "NEXT RUN", "SOURCE",
    ];
    let rows: Vec<[String; 8]> = schedules
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                s.cron.clone(),
                s.timezone.clone(),
                s.template.tenant_id.clone(),
                s.template.use_case.clone(),
                s.template.kind.clone(),
                time(Some(s.next_run_at)),
                s.source.as_str().to_owned(),
            ]
        })
        .collect();
    let mut text = table(&header, &rows);
    text.push_str(&format!("({} schedules)\n", rows.len()));
    out(&text);
}

fn print_one(output: Output, s: &Schedule) {
    if output == Output::Json {
        out(&format!("{}\n", json!(s)));
        return;
    }
    let t = &s.template;
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    let fields = [
        ("name", s.name.clone()),
        ("cron", s.cron.clone()),
        ("timezone", s.timezone.clone()),
        ("next run", time(Some(s.next_run_at))),
        ("missed", missed(s.missed)),
        ("source", s.source.as_str().to_owned()),
        ("tenant", t.tenant_id.clone()),
        ("use case", t.use_case.clone()),
        ("type", t.kind.clone()),
        (
            "tolerance",
            opt(t.delay_tolerance_seconds.map(|v| format!("{v} s"))),
        ),
        ("priority", opt(t.priority.map(|v| v.to_string()))),
        ("attempts", opt(t.max_attempts.map(|v| v.to_string()))),
        ("timeout", opt(t.timeout_seconds.map(|v| format!("{v} s")))),
        ("created", time(Some(s.created_at))),
        ("updated", time(Some(s.updated_at))),
        (
            "payload",
            serde_json::to_string_pretty(&t.payload).unwrap_or_default(),
        ),
    ];
    let mut text = String::new();
    for (name, value) in fields {
        text.push_str(&format!("{name:<10} {value}\n"));
    }
    out(&text);
}
