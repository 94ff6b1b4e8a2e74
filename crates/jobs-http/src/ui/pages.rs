//! The dashboard's pages: one handler each, reading and changing jobs only through
//! [`jobs_core::JobService`] with the session's scope, rendered with `maud` (every spliced value
//! escaped).
// A page's helpers answer the page or its error page: both are responses, boxing one gains nothing.
#![allow(clippy::result_large_err)]

use std::fmt::Write as _;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use jobs_core::activity::DEFAULT_ACTIVITY_MINUTES;
use jobs_core::bulk::{BulkAction, DEFAULT_BULK_LIMIT};
use jobs_core::{
    ChangeError, Job, JobFilter, JobId, JobStatus, PageRequest, PauseError, PauseScope, StoreError,
    TenantScope,
};
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;

use super::chart::{self, Bar};
use super::session::{self, Session};
use super::{unix_now, Base, Posted, Signed};
use crate::extract::{decode_cursor, encode_cursor};
use crate::state::AppState;

/// Jobs per page of the jobs list.
const PAGE_SIZE: u32 = 50;
/// Recent failures shown per use case on the overview.
const RECENT_FAILURES: u32 = 5;
/// Jobs the overview examines per use case to find its recent failures (newest first): a bound
/// on what each refresh costs the store.
const RECENT_FAILURES_SCAN: u32 = 2_000;

// ---------------------------------------------------------------------------------------------
// Layout and small pieces

fn respond(status: StatusCode, page: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page.into_string(),
    )
        .into_response()
}

fn who(scope: &TenantScope) -> String {
    match scope {
        TenantScope::All => "operator (all tenants)".to_owned(),
        TenantScope::Tenant(t) => format!("tenant {t}"),
    }
}

fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

fn layout(base: &Base, session: Option<&Session>, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · async-jobs" }
                link rel="stylesheet" href=(base.at("/assets/dashboard.css"));
                script src=(base.at("/assets/dashboard.js")) defer {}
            }
            body {
                a .skip href="#main" { "Skip to content" }
                header .top {
                    span .brand { "async-jobs" }
                    @if let Some(s) = session {
                        nav aria-label="Main" {
                            a href=(base.home()) { "Overview" }
                            a href=(base.at("/jobs")) { "Jobs" }
                        }
                        span .who { "Signed in as " (who(&s.scope)) }
                        label .live {
                            input #live-toggle type="checkbox" checked;
                            " Live refresh"
                        }
                        span #live-status .live-status aria-live="polite" {}
                        form .inline method="post" action=(base.at("/logout")) {
                            (csrf_field(s))
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main { h1 { (title) } (body) }
            }
        }
    }
}

/// An error page with `status`.
pub(crate) fn error_page(
    base: &Base,
    session: Option<&Session>,
    status: StatusCode,
    title: &str,
    message: &str,
) -> Response {
    respond(
        status,
        layout(
            base,
            session,
            title,
            html! {
                p .error role="alert" { (message) }
                p { a href=(base.home()) { "Back to the overview" } }
            },
        ),
    )
}

/// The 403 page of a form whose CSRF token or origin does not check out.
pub(crate) fn forbidden(base: &Base, session: Option<&Session>) -> Response {
    error_page(
        base,
        session,
        StatusCode::FORBIDDEN,
        "Request refused",
        "This form did not come from this dashboard's own pages, or it has expired \
         (the CSRF check failed). Reload the page and try again.",
    )
}

/// The dashboard's 404.
pub(crate) async fn not_found(base: Base) -> Response {
    error_page(
        &base,
        None,
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page.",
    )
}

fn store_failed(signed: &Signed, err: &StoreError) -> Response {
    tracing::warn!(error = %err, "dashboard: store call failed");
    error_page(
        &signed.base,
        Some(&signed.session),
        StatusCode::SERVICE_UNAVAILABLE,
        "Store unavailable",
        "The job store did not answer. Try again in a moment.",
    )
}

fn bad_query(signed: &Signed, rejection: &QueryRejection) -> Response {
    error_page(
        &signed.base,
        Some(&signed.session),
        StatusCode::BAD_REQUEST,
        "Bad request",
        &format!("The address is not one the dashboard understands: {rejection}"),
    )
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn hm(t: DateTime<Utc>) -> String {
    t.format("%H:%M").to_string()
}

/// A duration in words: `45s`, `3m 05s`, `2h 10m`, `3d 4h`.
fn span(d: chrono::TimeDelta) -> String {
    let s = d.num_seconds();
    let (sign, s) = if s < 0 { ("-", -s) } else { ("", s) };
    match s {
        0..=59 => format!("{sign}{s}s"),
        60..=3599 => format!("{sign}{}m {:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{sign}{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{sign}{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn status_badge(status: JobStatus) -> Markup {
    html! { span class={"status s-" (status.as_str())} { (status.as_str()) } }
}

/// A link to a job, showing the end of its id: a UUID v7 starts with its creation time, so jobs
/// made together share their first digits, and differ in their last (random) ones.
fn job_link(base: &Base, id: JobId) -> Markup {
    let text = id.to_string();
    let tail = &text[text.len() - 12..];
    html! { a href=(base.at(&format!("/jobs/{id}"))) title=(text) aria-label={"job " (text)} { code { "…" (tail) } } }
}

/// An empty form: actions that carry only the CSRF token.
#[derive(Debug, Deserialize)]
pub(crate) struct Empty {}

fn nonempty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

// ---------------------------------------------------------------------------------------------
// Login

fn login_form(base: &Base, state: &AppState, message: Option<&str>) -> Markup {
    let open = state.auth().is_open();
    layout(
        base,
        None,
        "Sign in",
        html! {
            @if let Some(m) = message { p .error role="alert" { (m) } }
            form .login method="post" action=(base.at("/login")) {
                @if open {
                    p { "This API runs without credentials: anyone who reaches it sees every tenant." }
                    input type="hidden" name="key" value="";
                    button type="submit" { "Continue" }
                } @else {
                    label for="key" { "Operator token or tenant API key" }
                    input #key type="password" name="key" autocomplete="current-password" required autofocus;
                    p .hint { "The same credential as the API's Bearer token. The dashboard keeps a signed session cookie, never the key." }
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

/// `GET /login`.
pub(crate) async fn login_page(State(state): State<AppState>, base: Base) -> Response {
    respond(StatusCode::OK, login_form(&base, &state, None))
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    key: Option<String>,
}

/// `POST /login`: a credential the API accepts opens a session.
pub(crate) async fn login(
    State(state): State<AppState>,
    base: Base,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !session::same_origin(&headers) {
        return forbidden(&base, None);
    }
    let Some(key) = state.ui().key() else {
        let page = login_form(
            &base,
            &state,
            Some("This server has no session key (the operating system gave no randomness), so no one can sign in."),
        );
        return respond(StatusCode::SERVICE_UNAVAILABLE, page);
    };
    let secret = serde_urlencoded::from_bytes::<LoginForm>(&body)
        .ok()
        .and_then(|f| f.key)
        .unwrap_or_default();
    match key.login(state.auth(), &secret, unix_now()) {
        Some((cookie, _)) => {
            let mut response = Redirect::to(&base.home()).into_response();
            if let Ok(v) = session::set_cookie(&cookie, base.cookie_path()).parse() {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
            response
        }
        None => respond(
            StatusCode::UNAUTHORIZED,
            login_form(&base, &state, Some("That key was not accepted.")),
        ),
    }
}

/// `POST /logout`.
pub(crate) async fn logout(posted: Posted<Empty>) -> Response {
    let base = &posted.signed.base;
    let mut response = Redirect::to(&base.at("/login")).into_response();
    if let Ok(v) = session::clear_cookie(base.cookie_path()).parse() {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Overview

#[derive(Debug, Default, Deserialize)]
pub(crate) struct OverviewQuery {
    tenant_id: Option<String>,
    done: Option<String>,
}

/// `GET /`: per use case, counts, in flight against the cap, pauses, charts, recent failures.
pub(crate) async fn overview(
    State(state): State<AppState>,
    signed: Signed,
    query: Result<Query<OverviewQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return bad_query(&signed, &e),
    };
    let service = state.service();
    let scope = signed.scope();
    let tenant = match scope {
        TenantScope::All => nonempty(query.tenant_id),
        TenantScope::Tenant(own) => Some(own.clone()),
    };
    let overview = match state.ui().overview(service, scope, tenant.clone()).await {
        Ok(o) => o,
        Err(e) => return store_failed(&signed, &e),
    };
    let activity = &overview.activity;
    let backlog = &overview.backlog;
    let pauses = match service.pauses(scope).await {
        Ok(p) => p,
        Err(e) => return store_failed(&signed, &e),
    };
    let base = &signed.base;
    let operator = *scope == TenantScope::All;
    let now = Utc::now();
    let mut cards = Vec::new();
    for (name, uc) in &service.config().use_cases {
        let count = |s: JobStatus| {
            activity
                .counts
                .iter()
                .filter(|c| &c.use_case == name && c.status == s)
                .map(|c| c.count)
                .sum::<u64>()
        };
        let filter = JobFilter {
            tenant_id: tenant.clone(),
            use_case: Some(name.clone()),
            status: Some(JobStatus::Dead),
            ..JobFilter::default()
        };
        let page = PageRequest {
            include_payload: false,
            max_scanned: Some(RECENT_FAILURES_SCAN),
            ..PageRequest::new(None, RECENT_FAILURES)
        };
        let failures = match service.list(filter, page, scope).await {
            Ok(p) => p.jobs,
            Err(e) => return store_failed(&signed, &e),
        };
        let whole = pauses
            .iter()
            .find(|p| &p.scope.use_case == name && p.scope.tenant_id.is_none());
        let paused_tenants: Vec<&str> = pauses
            .iter()
            .filter(|p| &p.scope.use_case == name)
            .filter_map(|p| p.scope.tenant_id.as_deref())
            .collect();
        let series = activity.series(name, DEFAULT_ACTIVITY_MINUTES);
        let throughput: Vec<Bar> = series
            .iter()
            .map(|(m, a)| Bar {
                label: hm(*m),
                good: a.succeeded,
                bad: a.dead + a.expired,
            })
            .collect();
        let deadlines: Vec<Bar> = series
            .iter()
            .map(|(m, a)| Bar {
                label: hm(*m),
                good: a.deadlines_met,
                bad: a.deadlines_missed,
            })
            .collect();
        let in_flight = count(JobStatus::Dispatched) + count(JobStatus::Running);
        let due: u64 = backlog
            .rows
            .iter()
            .filter(|r| &r.use_case == name)
            .map(|r| r.due)
            .sum();
        let oldest = backlog
            .rows
            .iter()
            .filter(|r| &r.use_case == name)
            .map(|r| r.oldest_run_at)
            .min();
        let dead = count(JobStatus::Dead);
        let id = format!("uc-{name}");
        cards.push(html! {
            section .card aria-labelledby=(id) {
                h2 #(id) {
                    (name)
                    @if whole.is_some() { " " span .badge.paused { "paused" } }
                }
                @if let Some(p) = whole {
                    p .paused-note { "Paused for every tenant since " (ts(p.paused_at)) " (" (span(now - p.paused_at)) "): pending jobs wait, running ones finish." }
                }
                @if !paused_tenants.is_empty() {
                    p .paused-note { "Paused tenants: " (paused_tenants.join(", ")) }
                }
                div .row {
                    div {
                        h3 { "Jobs by status" }
                        table .counts {
                            caption .sr-only { "Jobs of " (name) " by status" }
                            tbody {
                                @for s in JobStatus::ALL {
                                    tr {
                                        th scope="row" { (status_badge(s)) }
                                        td { a href=(jobs_href(base, name, s, tenant.as_deref())) { (count(s)) } }
                                    }
                                }
                            }
                        }
                    }
                    div {
                        h3 { "In flight" }
                        p {
                            label for=(format!("cap-{name}")) { (in_flight) " of " (uc.max_concurrent) " (dispatched + running against the cap)" }
                        }
                        meter #(format!("cap-{name}")) min="0" max=(uc.max_concurrent) value=(in_flight) {
                            (in_flight) " of " (uc.max_concurrent)
                        }
                        h3 { "Backlog" }
                        @match oldest {
                            Some(at) => p { (due) " due and waiting; the oldest for " strong { (span(backlog.at - at)) } " (due since " (ts(at)) ")." },
                            None => p { "Nothing due is waiting." },
                        }
                        h3 { "Last " (DEFAULT_ACTIVITY_MINUTES) " minutes" }
                        (chart::bars("Jobs finished per minute", "succeeded", "dead or expired", &throughput))
                        (chart::bars("Deadlines per minute (first start)", "met", "missed", &deadlines))
                        @if activity.truncated {
                            p .hint { "More jobs finished in this window than one look examines: the earliest minutes are incomplete." }
                        }
                    }
                }
                h3 { "Recent failures" }
                @if failures.is_empty() {
                    p .hint { "No dead jobs among the most recent." }
                } @else {
                    table .jobs {
                        thead { tr { th scope="col" { "Job" } th scope="col" { "Tenant" } th scope="col" { "Type" } th scope="col" { "Finished" } th scope="col" { "Last error" } } }
                        tbody {
                            @for j in &failures {
                                tr {
                                    td { (job_link(base, j.id)) }
                                    td { (j.tenant_id) }
                                    td { (j.kind) }
                                    td { (j.finished_at.map(ts).unwrap_or_default()) }
                                    td .error-text { (j.last_error.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
                div .actions {
                    @if dead > 0 {
                        a .button href=(bulk_href(base, name, tenant.as_deref())) { "Retry dead jobs…" }
                    }
                    @if operator {
                        form .inline method="post" action=(base.at("/pauses")) {
                            (csrf_field(&signed.session))
                            input type="hidden" name="use_case" value=(name);
                            @if whole.is_some() {
                                input type="hidden" name="action" value="resume";
                                button type="submit" { "Resume " (name) }
                            } @else {
                                input type="hidden" name="action" value="pause";
                                button type="submit" { "Pause " (name) }
                            }
                        }
                    }
                }
            }
        });
    }
    let body = html! {
        @if let Some(done) = query.done.as_deref() { p .notice role="status" { (done_text(done)) } }
        @if operator {
            form .filters method="get" action=(base.home()) {
                label for="ov-tenant" { "Tenant" }
                input #ov-tenant type="text" name="tenant_id" value=(tenant.clone().unwrap_or_default()) placeholder="all tenants";
                button type="submit" { "Show" }
            }
        }
        div #overview data-live {
            p .hint { "Since " (ts(activity.since)) " · times in UTC · refreshed " (ts(now)) }
            @for card in &cards { (card) }
        }
    };
    respond(
        StatusCode::OK,
        layout(base, Some(&signed.session), "Overview", body),
    )
}

fn jobs_href(base: &Base, use_case: &str, status: JobStatus, tenant: Option<&str>) -> String {
    let mut q = form_urlencoded(&[
        ("use_case", use_case),
        ("status", status.as_str()),
        ("tenant_id", tenant.unwrap_or("")),
    ]);
    if q.ends_with("tenant_id=") {
        q.truncate(q.len() - "&tenant_id=".len());
    }
    base.at(&format!("/jobs?{q}"))
}

fn bulk_href(base: &Base, use_case: &str, tenant: Option<&str>) -> String {
    let q = match tenant {
        Some(t) => form_urlencoded(&[("use_case", use_case), ("tenant_id", t)]),
        None => form_urlencoded(&[("use_case", use_case)]),
    };
    base.at(&format!("/bulk-retry?{q}"))
}

fn form_urlencoded(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

fn done_text(done: &str) -> &'static str {
    match done {
        "paused" => "Paused.",
        "resumed" => "Resumed: its due jobs join the next pick.",
        "retried" => "Retried: the job is pending again.",
        "cancelled" => "Cancelled.",
        "cancel_requested" => "Cancel requested: the worker stops the running job.",
        _ => "Done.",
    }
}

// ---------------------------------------------------------------------------------------------
// Jobs list

#[derive(Debug, Default, Deserialize)]
pub(crate) struct JobsQuery {
    tenant_id: Option<String>,
    use_case: Option<String>,
    status: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    created_after: Option<String>,
    created_before: Option<String>,
    cursor: Option<String>,
}

/// A time from a `datetime-local` field (`YYYY-MM-DDTHH:MM[:SS]`, read as UTC) or RFC 3339.
fn parse_time(name: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, String> {
    let Some(raw) = raw else { return Ok(None) };
    let text = match raw.len() {
        16 => format!("{raw}:00Z"),
        19 => format!("{raw}Z"),
        _ => raw.to_owned(),
    };
    jobs_core::rfc3339::parse(&text)
        .map(Some)
        .map_err(|e| format!("{name}: {e}"))
}

/// `GET /jobs`: the filtered, paged list.
pub(crate) async fn jobs(
    State(state): State<AppState>,
    signed: Signed,
    query: Result<Query<JobsQuery>, QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return bad_query(&signed, &e),
    };
    let scope = signed.scope().clone();
    let tenant = match &scope {
        TenantScope::All => nonempty(q.tenant_id),
        TenantScope::Tenant(own) => Some(own.clone()),
    };
    let use_case = nonempty(q.use_case);
    let status_raw = nonempty(q.status);
    let kind = nonempty(q.kind);
    let after_raw = nonempty(q.created_after);
    let before_raw = nonempty(q.created_before);
    let cursor_raw = nonempty(q.cursor);
    let mut problems = Vec::new();
    let status = status_raw.as_deref().and_then(|s| {
        s.parse::<JobStatus>()
            .map_err(|e| problems.push(e.to_string()))
            .ok()
    });
    let after = parse_time("Created after", after_raw.as_deref())
        .map_err(|e| problems.push(e))
        .ok()
        .flatten();
    let before = parse_time("Created before", before_raw.as_deref())
        .map_err(|e| problems.push(e))
        .ok()
        .flatten();
    let cursor = cursor_raw.as_deref().and_then(|c| {
        decode_cursor(c)
            .map_err(|_| problems.push("The page cursor is not one this dashboard made.".into()))
            .ok()
    });
    let base = &signed.base;
    let config = state.service().config();
    let form = html! {
        form .filters method="get" action=(base.at("/jobs")) aria-label="Filter jobs" {
            div {
                label for="f-tenant" { "Tenant" }
                @match &scope {
                    TenantScope::All => input #f-tenant type="text" name="tenant_id" value=(tenant.clone().unwrap_or_default()) placeholder="any";,
                    TenantScope::Tenant(own) => input #f-tenant type="text" value=(own) readonly;,
                }
            }
            div {
                label for="f-uc" { "Use case" }
                select #f-uc name="use_case" {
                    option value="" { "any" }
                    @for name in config.use_cases.keys() {
                        option value=(name) selected[use_case.as_deref() == Some(name.as_str())] { (name) }
                    }
                }
            }
            div {
                label for="f-status" { "Status" }
                select #f-status name="status" {
                    option value="" { "any" }
                    @for s in JobStatus::ALL {
                        option value=(s.as_str()) selected[status == Some(s)] { (s.as_str()) }
                    }
                }
            }
            div {
                label for="f-type" { "Type" }
                input #f-type type="text" name="type" value=(kind.clone().unwrap_or_default()) placeholder="any";
            }
            div {
                label for="f-after" { "Created after (UTC)" }
                input #f-after type="datetime-local" step="1" name="created_after" value=(after_raw.clone().unwrap_or_default());
            }
            div {
                label for="f-before" { "Created before (UTC)" }
                input #f-before type="datetime-local" step="1" name="created_before" value=(before_raw.clone().unwrap_or_default());
            }
            div { button type="submit" { "Filter" } " " a href=(base.at("/jobs")) { "Clear" } }
        }
    };
    if !problems.is_empty() {
        let body = html! {
            (form)
            div .error role="alert" { @for p in &problems { p { (p) } } }
        };
        return respond(
            StatusCode::BAD_REQUEST,
            layout(base, Some(&signed.session), "Jobs", body),
        );
    }
    let filter = JobFilter {
        tenant_id: tenant.clone(),
        use_case: use_case.clone(),
        status,
        kind: kind.clone(),
        created_after: after,
        created_before: before,
    };
    let page = PageRequest {
        include_payload: false,
        max_scanned: Some(state.settings().list_max_scanned),
        ..PageRequest::new(cursor, PAGE_SIZE)
    };
    let page = match state.service().list(filter, page, &scope).await {
        Ok(p) => p,
        Err(e) => return store_failed(&signed, &e),
    };
    let keep: Vec<(&str, String)> = [
        ("tenant_id", tenant.clone()),
        ("use_case", use_case),
        ("status", status_raw),
        ("type", kind),
        ("created_after", after_raw),
        ("created_before", before_raw),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let href = |cursor: Option<String>| {
        let mut pairs: Vec<(&str, &str)> = keep.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Some(c) = &cursor {
            pairs.push(("cursor", c.as_str()));
        }
        let mut out = base.at("/jobs");
        if !pairs.is_empty() {
            let _ = write!(out, "?{}", form_urlencoded(&pairs));
        }
        out
    };
    let now = Utc::now();
    let body = html! {
        (form)
        div #jobs data-live {
            @if page.jobs.is_empty() {
                p .hint { "No jobs on this page." @if page.next.is_some() { " Jobs further back may match: see the next page." } }
            } @else {
                table .jobs {
                    caption .sr-only { "Jobs, newest first" }
                    thead {
                        tr {
                            th scope="col" { "Job" } th scope="col" { "Status" } th scope="col" { "Tenant" }
                            th scope="col" { "Use case" } th scope="col" { "Type" } th scope="col" { "Attempts" }
                            th scope="col" { "Created" } th scope="col" { "Deadline" } th scope="col" { "Last error" }
                        }
                    }
                    tbody {
                        @for j in &page.jobs {
                            tr {
                                td { (job_link(base, j.id)) }
                                td { (status_badge(j.status)) }
                                td { (j.tenant_id) }
                                td { (j.use_case) }
                                td { (j.kind) }
                                td { (j.attempts) "/" (j.max_attempts) }
                                td { (ts(j.created_at)) }
                                td title=(ts(j.deadline_at)) { (deadline_words(j, now)) }
                                td .error-text { (j.last_error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
        nav .paging aria-label="Pages" {
            @if cursor.is_some() { a href=(href(None)) { "← First page" } }
            @if let Some(next) = page.next { a href=(href(Some(encode_cursor(next)))) rel="next" { "Next page →" } }
        }
    };
    respond(
        StatusCode::OK,
        layout(base, Some(&signed.session), "Jobs", body),
    )
}

fn deadline_words(job: &Job, now: DateTime<Utc>) -> String {
    match (job.status, job.first_started_at) {
        (JobStatus::Pending | JobStatus::Dispatched, _) if job.deadline_at < now => {
            format!("overdue by {}", span(now - job.deadline_at))
        }
        (JobStatus::Pending | JobStatus::Dispatched, _) => {
            format!("in {}", span(job.deadline_at - now))
        }
        _ => ts(job.deadline_at),
    }
}

// ---------------------------------------------------------------------------------------------
// One job

#[derive(Debug, Default, Deserialize)]
pub(crate) struct JobQuery {
    done: Option<String>,
}

fn parse_id(signed: &Signed, raw: &str) -> Result<JobId, Response> {
    uuid::Uuid::try_parse(raw).map_err(|_| {
        error_page(
            &signed.base,
            Some(&signed.session),
            StatusCode::NOT_FOUND,
            "No such job",
            "That is not a job id.",
        )
    })
}

fn no_such_job(signed: &Signed) -> Response {
    error_page(
        &signed.base,
        Some(&signed.session),
        StatusCode::NOT_FOUND,
        "No such job",
        "There is no such job, or it is not visible with this key.",
    )
}

/// `GET /jobs/{id}`.
pub(crate) async fn job(
    State(state): State<AppState>,
    signed: Signed,
    Path(raw): Path<String>,
    query: Result<Query<JobQuery>, QueryRejection>,
) -> Response {
    let done = query.ok().and_then(|Query(q)| q.done);
    let id = match parse_id(&signed, &raw) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let job = match state.service().get(id, signed.scope()).await {
        Ok(Some(job)) => job,
        Ok(None) => return no_such_job(&signed),
        Err(e) => return store_failed(&signed, &e),
    };
    let base = &signed.base;
    let payload =
        serde_json::to_string_pretty(&job.payload).unwrap_or_else(|_| job.payload.to_string());
    let can_retry = job.status.apply(jobs_core::Transition::Retry).is_ok();
    let can_cancel = matches!(
        job.status,
        JobStatus::Pending | JobStatus::Dispatched | JobStatus::Running
    ) && !job.cancel_requested;
    let body = html! {
        @if let Some(d) = done.as_deref() { p .notice role="status" { (done_text(d)) } }
        div #job data-live {
            p { "Job " code { (job.id) } " is " (status_badge(job.status))
                @if job.cancel_requested { " (cancel requested)" } }
            dl .fields {
                dt { "Tenant" } dd { (job.tenant_id) }
                dt { "Use case" } dd { (job.use_case) }
                dt { "Type" } dd { (job.kind) }
                dt { "Attempts" } dd { (job.attempts) " of " (job.max_attempts) }
                dt { "Priority" } dd { (job.priority) }
                dt { "Delay tolerance" } dd { (job.delay_tolerance.as_secs()) " s" }
                dt { "Timeout" } dd { (job.timeout.as_secs()) " s" }
                dt { "Expires at its deadline" } dd { (if job.expire_at_deadline { "yes" } else { "no" }) }
                @if let Some(k) = &job.idempotency_key { dt { "Idempotency key" } dd { code { (k) } } }
            }
            h2 { "Last error" }
            @match &job.last_error {
                Some(e) => pre .error-text { (e) },
                None => p .hint { "None." },
            }
            h2 { "Timeline" }
            (timeline(&job))
            div .actions {
                @if can_retry {
                    form .inline method="post" action=(base.at(&format!("/jobs/{}/retry", job.id))) {
                        (csrf_field(&signed.session))
                        button #retry type="submit" { "Retry" }
                    }
                }
                @if can_cancel {
                    form .inline method="post" action=(base.at(&format!("/jobs/{}/cancel", job.id))) {
                        (csrf_field(&signed.session))
                        button #cancel .danger type="submit" { "Cancel" }
                    }
                }
            }
        }
        h2 { "Payload" }
        pre #payload .payload { (payload) }
    };
    respond(
        StatusCode::OK,
        layout(base, Some(&signed.session), "Job", body),
    )
}

/// The job's moments in time order, each with its offset from creation.
fn timeline(job: &Job) -> Markup {
    let mut events: Vec<(DateTime<Utc>, &str, String)> = vec![
        (job.created_at, "Created", String::new()),
        (job.run_at, "Due (run at)", String::new()),
        (
            job.deadline_at,
            "Deadline",
            "latest start of the next attempt".into(),
        ),
    ];
    if let Some(t) = job.first_started_at {
        let note = match job.started_at == Some(t) {
            true if t > job.deadline_at => {
                format!("after the deadline, by {}", span(t - job.deadline_at))
            }
            true => "by the deadline".to_owned(),
            false => String::new(),
        };
        events.push((t, "First started", note));
    }
    if let Some(t) = job.dispatched_at {
        events.push((t, "Dispatched", "last dispatch".into()));
    }
    if let Some(t) = job.started_at {
        events.push((t, "Started", format!("attempt {}", job.attempts)));
    }
    if let Some(t) = job.finished_at {
        events.push((t, "Finished", job.status.as_str().to_owned()));
    }
    events.sort_by_key(|(t, _, _)| *t);
    html! {
        ol .timeline {
            @for (t, what, note) in &events {
                li {
                    span .what { (what) }
                    " "
                    time datetime=(t.to_rfc3339()) { (ts(*t)) }
                    " "
                    span .offset { "(+" (span(*t - job.created_at)) ")" }
                    @if !note.is_empty() { " — " span .note { (note) } }
                }
            }
        }
    }
}

fn change_failed(signed: &Signed, err: ChangeError) -> Response {
    let (status, title, message) = match err {
        ChangeError::NotFound(_) => return no_such_job(signed),
        ChangeError::Illegal(e) => (StatusCode::CONFLICT, "Not possible now", e.to_string()),
        ChangeError::QuotaExceeded {
            tenant_id,
            use_case,
            limit,
        } => (
            StatusCode::TOO_MANY_REQUESTS,
            "Quota full",
            format!(
                "Tenant {tenant_id} already holds {limit} unfinished {use_case} jobs, its quota: \
                 retry it once some have finished."
            ),
        ),
        ChangeError::Store(e) => return store_failed(signed, &e),
    };
    error_page(&signed.base, Some(&signed.session), status, title, &message)
}

/// `POST /jobs/{id}/retry`.
pub(crate) async fn retry(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    posted: Posted<Empty>,
) -> Response {
    let signed = &posted.signed;
    let id = match parse_id(signed, &raw) {
        Ok(id) => id,
        Err(r) => return r,
    };
    state.ui().forget();
    match state.service().retry(id, signed.scope()).await {
        Ok(_) => Redirect::to(&signed.base.at(&format!("/jobs/{id}?done=retried"))).into_response(),
        Err(e) => change_failed(signed, e),
    }
}

/// `POST /jobs/{id}/cancel`.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    posted: Posted<Empty>,
) -> Response {
    let signed = &posted.signed;
    let id = match parse_id(signed, &raw) {
        Ok(id) => id,
        Err(r) => return r,
    };
    state.ui().forget();
    match state.service().cancel(id, signed.scope()).await {
        Ok(job) => {
            let done = match job.status {
                JobStatus::Cancelled => "cancelled",
                _ => "cancel_requested",
            };
            Redirect::to(&signed.base.at(&format!("/jobs/{id}?done={done}"))).into_response()
        }
        Err(e) => change_failed(signed, e),
    }
}

// ---------------------------------------------------------------------------------------------
// Operations

#[derive(Debug, Deserialize)]
pub(crate) struct PauseForm {
    use_case: String,
    action: String,
}

/// `POST /pauses`: pause or resume a use case (the operator only, as on the JSON API).
pub(crate) async fn pause(State(state): State<AppState>, posted: Posted<PauseForm>) -> Response {
    let signed = &posted.signed;
    let scope = PauseScope::use_case(posted.form.use_case.clone());
    state.ui().forget();
    let outcome = match posted.form.action.as_str() {
        "pause" => state
            .service()
            .pause(scope, signed.scope())
            .await
            .map(|_| "paused"),
        "resume" => state
            .service()
            .resume(scope, signed.scope())
            .await
            .map(|_| "resumed"),
        _ => {
            return error_page(
                &signed.base,
                Some(&signed.session),
                StatusCode::BAD_REQUEST,
                "Bad form",
                "The action must be pause or resume.",
            )
        }
    };
    match outcome {
        Ok(done) => Redirect::to(&format!("{}?done={done}", signed.base.home())).into_response(),
        Err(PauseError::Forbidden) => error_page(
            &signed.base,
            Some(&signed.session),
            StatusCode::FORBIDDEN,
            "Operator only",
            "Only the operator token pauses and resumes use cases.",
        ),
        Err(PauseError::Invalid(e)) => error_page(
            &signed.base,
            Some(&signed.session),
            StatusCode::BAD_REQUEST,
            "Bad use case",
            &e.to_string(),
        ),
        Err(PauseError::Store(e)) => store_failed(signed, &e),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct BulkQuery {
    use_case: String,
    tenant_id: Option<String>,
    cursor: Option<String>,
}

/// The bulk form's scope: the use case must be configured; a tenant session acts on its own.
fn bulk_scope(
    state: &AppState,
    signed: &Signed,
    q: &BulkQuery,
) -> Result<(String, Option<String>), Response> {
    let Some(uc) = state.service().config().use_case(&q.use_case) else {
        return Err(error_page(
            &signed.base,
            Some(&signed.session),
            StatusCode::BAD_REQUEST,
            "Unknown use case",
            "No such use case is configured.",
        ));
    };
    let tenant = match signed.scope() {
        TenantScope::All => nonempty(q.tenant_id.clone()),
        TenantScope::Tenant(own) => Some(own.clone()),
    };
    Ok((uc.name.clone(), tenant))
}

/// `GET /bulk-retry`: the confirmation page.
pub(crate) async fn bulk_retry_confirm(
    State(state): State<AppState>,
    signed: Signed,
    query: Result<Query<BulkQuery>, QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return bad_query(&signed, &e),
    };
    let (use_case, tenant) = match bulk_scope(&state, &signed, &q) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let overview = match state
        .ui()
        .overview(state.service(), signed.scope(), tenant.clone())
        .await
    {
        Ok(o) => o,
        Err(e) => return store_failed(&signed, &e),
    };
    let dead: u64 = overview
        .activity
        .counts
        .iter()
        .filter(|c| c.use_case == use_case && c.status == JobStatus::Dead)
        .map(|c| c.count)
        .sum();
    let base = &signed.base;
    let whose = tenant
        .as_deref()
        .map_or_else(|| "every tenant".to_owned(), |t| format!("tenant {t}"));
    let body = html! {
        p { "Retry every dead " strong { (use_case) } " job of " (whose) "? About " strong { (dead) } " are dead now." }
        p .hint { "Each job goes back to pending with a fresh set of attempts, counted against its tenant's quota \
                   (a job that would exceed it is skipped). At most " (DEFAULT_BULK_LIMIT) " jobs per step." }
        form method="post" action=(base.at("/bulk-retry")) {
            (csrf_field(&signed.session))
            input type="hidden" name="use_case" value=(use_case);
            @if let Some(t) = &tenant { input type="hidden" name="tenant_id" value=(t); }
            button #confirm type="submit" .danger { "Yes, retry the dead jobs" }
            " "
            a href=(base.home()) { "No, go back" }
        }
    };
    respond(
        StatusCode::OK,
        layout(base, Some(&signed.session), "Retry dead jobs", body),
    )
}

/// `POST /bulk-retry`: one step of the bulk retry (continue with the cursor it answers).
pub(crate) async fn bulk_retry(
    State(state): State<AppState>,
    posted: Posted<BulkQuery>,
) -> Response {
    let signed = &posted.signed;
    let (use_case, tenant) = match bulk_scope(&state, signed, &posted.form) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let after = match nonempty(posted.form.cursor.clone()).map(|c| decode_cursor(&c)) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            return error_page(
                &signed.base,
                Some(&signed.session),
                StatusCode::BAD_REQUEST,
                "Bad form",
                "The continuation cursor is not one this dashboard made.",
            )
        }
    };
    let filter = JobFilter {
        tenant_id: tenant.clone(),
        use_case: Some(use_case.clone()),
        status: Some(JobStatus::Dead),
        ..JobFilter::default()
    };
    state.ui().forget();
    let outcome = match state
        .service()
        .bulk(
            BulkAction::Retry,
            filter,
            DEFAULT_BULK_LIMIT,
            after,
            signed.scope(),
        )
        .await
    {
        Ok(o) => o,
        Err(e) => return store_failed(signed, &e),
    };
    let base = &signed.base;
    let body = html! {
        p .notice role="status" { "Retried " strong { (outcome.changed) } " of " (outcome.matched) " dead jobs examined." }
        @if outcome.skipped_quota > 0 { p { (outcome.skipped_quota) " were left dead: their tenant's quota is full." } }
        @if outcome.skipped_status > 0 { p { (outcome.skipped_status) " had changed status meanwhile." } }
        @if let Some(next) = outcome.next {
            form method="post" action=(base.at("/bulk-retry")) {
                (csrf_field(&signed.session))
                input type="hidden" name="use_case" value=(use_case);
                @if let Some(t) = &tenant { input type="hidden" name="tenant_id" value=(t); }
                input type="hidden" name="cursor" value=(encode_cursor(next));
                button type="submit" { "Continue with the next " (DEFAULT_BULK_LIMIT) }
            }
        }
        p { a href=(jobs_href(base, &use_case, JobStatus::Pending, tenant.as_deref())) { "See the pending jobs" } " · " a href=(base.home()) { "Overview" } }
    };
    respond(
        StatusCode::OK,
        layout(base, Some(&signed.session), "Retry dead jobs", body),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_words() {
        let s = |n| span(chrono::TimeDelta::seconds(n));
        assert_eq!(s(0), "0s");
        assert_eq!(s(65), "1m 05s");
        assert_eq!(s(7260), "2h 01m");
        assert_eq!(s(90_000), "1d 1h");
        assert_eq!(s(-5), "-5s");
    }

    #[test]
    fn local_times_are_read_as_utc() {
        let t = parse_time("x", Some("2026-03-01T12:30")).unwrap().unwrap();
        assert_eq!(t.to_rfc3339(), "2026-03-01T12:30:00+00:00");
        assert!(parse_time("x", Some("2026-03-01T12:30:05"))
            .unwrap()
            .is_some());
        assert!(parse_time("x", Some("2026-03-01T12:30:05+02:00"))
            .unwrap()
            .is_some());
        assert!(parse_time("x", Some("yesterday")).is_err());
        assert_eq!(parse_time("x", None).unwrap(), None);
    }
}
