//! Extractors that turn every malformed input into an [`ApiError`] with a stable code: JSON bodies
//! (content type, size, syntax), job ids in the path, and the list query with its cursor.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use jobs_core::{EnqueueRequest, JobFilter, JobId, JobStatus, PageRequest};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::error::{codes, ApiError};
use crate::state::AppState;

/// Default page size of `GET /jobs`.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page size of `GET /jobs`.
pub const MAX_LIMIT: u32 = 500;

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        codes::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than {limit} bytes"),
    )
}

/// Reads a JSON body of at most `limit` bytes into `T`.
pub(crate) async fn read_json<T: DeserializeOwned>(
    req: Request,
    limit: usize,
) -> Result<T, ApiError> {
    if !is_json(req.headers()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codes::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json",
        ));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let bytes = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|err| {
            let inner = err.into_inner();
            if inner.is::<http_body_util::LengthLimitError>() {
                too_large(limit)
            } else if crate::server::BodyTimeout::is_cause_of(inner.as_ref()) {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    codes::BODY_TIMEOUT,
                    "the request body did not arrive in time",
                )
            } else {
                // The only other failure is a broken or malformed body stream.
                ApiError::bad_request(
                    codes::INVALID_BODY,
                    format!("could not read the request body: {inner}"),
                )
            }
        })?;
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(json_error)?;
    de.end().map_err(|err| {
        ApiError::bad_request(
            codes::INVALID_JSON,
            format!(
                "invalid JSON body: trailing characters after the JSON value at line {} column {}",
                err.line(),
                err.column()
            ),
        )
    })?;
    Ok(value)
}

/// The 400 `invalid_json` for a body that is not JSON, or not the endpoint's JSON. A value of the
/// wrong shape is named by its path (`run_at: expected an RFC 3339 date-time …, got an empty
/// string`, `jobs[2].max_attempts: …`) in plain words; broken JSON by its line and column.
fn json_error(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    use serde_json::error::Category;
    let path = err.path().to_string();
    let inner = err.into_inner();
    let text = inner.to_string();
    let position = format!(" at line {} column {}", inner.line(), inner.column());
    let bare = text.strip_suffix(&position).unwrap_or(&text);
    let message = match inner.classify() {
        Category::Eof if inner.line() == 1 && inner.column() == 0 => {
            "the request body is empty: expected a JSON object".to_owned()
        }
        Category::Data => {
            let at = if path == "." { "body" } else { path.as_str() };
            format!("{at}: {}", plain_types(bare))
        }
        Category::Syntax | Category::Eof | Category::Io => {
            let within = if path == "." {
                String::new()
            } else {
                format!(" (in {path})")
            };
            format!("invalid JSON body{position}{within}: {bare}")
        }
    };
    ApiError::bad_request(codes::INVALID_JSON, message)
}

/// serde's Rust type names in an error message, in the API's words.
fn plain_types(message: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        ("expected f64", "expected a number"),
        (
            "expected struct EnqueueRequest",
            "expected a JSON object (a job)",
        ),
        (
            "expected struct BatchRequest",
            "expected a JSON object with `jobs`",
        ),
        (
            "expected struct Backoff",
            "expected a JSON object (a backoff policy)",
        ),
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected a JSON object"),
    ];
    let mut out = message.to_owned();
    for (from, to) in WORDS {
        if out.ends_with(from) {
            out.truncate(out.len() - from.len());
            out.push_str(to);
        }
    }
    out
}

/// The body of `POST /jobs`.
#[derive(Debug)]
pub struct EnqueueBody(pub EnqueueRequest);

impl FromRequest<AppState> for EnqueueBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        read_json(req, state.settings().body_limit)
            .await
            .map(EnqueueBody)
    }
}

/// The body of `POST /jobs/batch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The jobs, enqueued all or none.
    pub jobs: Vec<EnqueueRequest>,
}

impl FromRequest<AppState> for BatchRequest {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, Self::Rejection> {
        read_json(req, state.settings().batch_body_limit).await
    }
}

/// A job id from the path; anything but a UUID is 400 `invalid_id`.
#[derive(Debug, Clone, Copy)]
pub struct JobIdPath(pub JobId);

impl<S: Send + Sync> FromRequestParts<S> for JobIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let invalid = || ApiError::bad_request(codes::INVALID_ID, "the job id must be a UUID");
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| invalid())?;
        uuid::Uuid::try_parse(&raw)
            .map(JobIdPath)
            .map_err(|_| invalid())
    }
}

/// Query parameters of `GET /jobs`. Unknown parameters are refused (400 `invalid_query`).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this tenant's jobs (a tenant-scoped key only ever sees its own).
    pub tenant_id: Option<String>,
    /// Only this use case.
    pub use_case: Option<String>,
    /// Only this status: pending, dispatched, running, succeeded, dead, cancelled or expired.
    pub status: Option<String>,
    /// Only this job type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    /// `created_at >= created_after` (RFC 3339).
    pub created_after: Option<String>,
    /// `created_at < created_before` (RFC 3339).
    pub created_before: Option<String>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50), in decimal digits.
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
    /// `true` to include each job's `payload` (default `false`: the key is left out). A page
    /// with payloads stops at the server's byte budget (4 MiB by default) with a `next_cursor`.
    #[param(value_type = Option<bool>)]
    pub include_payload: Option<String>,
}

/// A parsed list request.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Filters.
    pub filter: JobFilter,
    /// Page.
    pub page: PageRequest,
}

pub(crate) fn timestamp(
    name: &str,
    raw: Option<String>,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    raw.map(|s| {
        jobs_core::rfc3339::parse(&s).map_err(|message| {
            ApiError::bad_request(codes::INVALID_TIMESTAMP, format!("{name}: {message}"))
        })
    })
    .transpose()
}

impl ListParams {
    /// Checks and converts the parameters.
    pub fn parse(self) -> Result<ListQuery, ApiError> {
        let status = self
            .status
            .map(|s| {
                s.parse::<JobStatus>()
                    .map_err(|e| ApiError::bad_request(codes::INVALID_STATUS, e.to_string()))
            })
            .transpose()?;
        let limit = match self.limit {
            None => DEFAULT_LIMIT,
            Some(raw) => Some(raw)
                .filter(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|r| r.parse::<u32>().ok())
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        codes::INVALID_LIMIT,
                        format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
                    )
                })?,
        };
        let after = self.cursor.map(|c| decode_cursor(&c)).transpose()?;
        let include_payload = match self.include_payload.as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                return Err(ApiError::bad_request(
                    codes::INVALID_QUERY,
                    "include_payload must be true or false",
                ))
            }
        };
        Ok(ListQuery {
            filter: JobFilter {
                tenant_id: self.tenant_id,
                use_case: self.use_case,
                status,
                kind: self.kind,
                created_after: timestamp("created_after", self.created_after)?,
                created_before: timestamp("created_before", self.created_before)?,
            },
            page: PageRequest {
                include_payload,
                ..PageRequest::new(after, limit)
            },
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ListQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(params) = Query::<ListParams>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(codes::INVALID_QUERY, e.body_text()))?;
        params.parse()
    }
}

/// The opaque cursor for the page after `id`: base64url (no padding) of the UUID's 16 bytes.
pub fn encode_cursor(id: JobId) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// Decodes a cursor made by [`encode_cursor`]; anything else is 400 `invalid_cursor`.
pub fn decode_cursor(cursor: &str) -> Result<JobId, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            codes::INVALID_CURSOR,
            "the cursor is not one this API issued",
        )
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.as_bytes())
        .map_err(|_| invalid())?;
    let bytes: [u8; 16] = bytes.try_into().map_err(|_| invalid())?;
    Ok(uuid::Uuid::from_bytes(bytes))
}

/// A page of jobs as `GET /jobs` answers it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct JobList {
    /// Jobs, newest first.
    #[schema(value_type = Vec<crate::openapi::ListedJobSchema>)]
    pub jobs: Vec<jobs_core::Job>,
    /// Pass as `cursor` for the next page; absent on the last page. A page can be short, or even
    /// empty, and still have one (cut at the byte budget, or the scan window ended).
    pub next_cursor: Option<String>,
    /// Whether the jobs carry their payloads (`include_payload=true`). When false each job's
    /// JSON leaves the `payload` key out (not `null`: a payload can be `null`). Not itself part
    /// of the JSON; a deserialized page has it false.
    #[serde(skip)]
    pub payloads: bool,
}

/// A job of a list page without its payload: the job's JSON minus the `payload` key.
struct WithoutPayload<'a>(&'a jobs_core::Job);

impl serde::Serialize for WithoutPayload<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut value = serde_json::to_value(self.0).map_err(serde::ser::Error::custom)?;
        if let Some(fields) = value.as_object_mut() {
            fields.remove("payload");
        }
        value.serialize(serializer)
    }
}

impl serde::Serialize for JobList {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeSeq as _, SerializeStruct as _};

        struct Jobs<'a>(&'a [jobs_core::Job], bool);
        impl serde::Serialize for Jobs<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
                for job in self.0 {
                    if self.1 {
                        seq.serialize_element(job)?;
                    } else {
                        seq.serialize_element(&WithoutPayload(job))?;
                    }
                }
                seq.end()
            }
        }

        let mut page = serializer.serialize_struct("JobList", 2)?;
        page.serialize_field("jobs", &Jobs(&self.jobs, self.payloads))?;
        page.serialize_field("next_cursor", &self.next_cursor)?;
        page.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let id = jobs_core::job::new_job_id();
        assert_eq!(decode_cursor(&encode_cursor(id)).unwrap(), id);
        for bad in [
            "",
            "abc",
            "!!!!",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "' OR 1=1 --",
            &"A".repeat(10_000),
        ] {
            assert_eq!(
                decode_cursor(bad).unwrap_err().code,
                codes::INVALID_CURSOR,
                "{bad}"
            );
        }
    }
}
