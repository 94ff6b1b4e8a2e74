//! How SDK failures become [`TransportError`]s, and the start-up configuration error.

use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use jobs_core::TransportError;

/// The transport could not be configured (at start-up).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqsConfigError {
    /// No AWS region was found by the SDK's provider chain.
    #[error("AWS_REGION is not set: the SQS transport needs a region (set AWS_REGION, or a profile's region)")]
    MissingRegion,
    /// No queue is configured.
    #[error("no SQS queue configured: set ASYNC_JOBS_SQS_QUEUE_<USE_CASE> to a queue URL for each use case")]
    NoQueues,
    /// A queue URL is empty or not an http(s) URL.
    #[error("ASYNC_JOBS_SQS_QUEUE_{use_case}: expected an http(s) queue URL, got '{url}'", use_case = .use_case.to_uppercase())]
    BadQueueUrl {
        /// The use case.
        use_case: String,
        /// What was given.
        url: String,
    },
    /// The platform configuration could not be read.
    #[error("{0}")]
    Platform(String),
}

/// What kind of failure a service error code and HTTP status mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    UnknownQueue,
    Unavailable,
    Rejected,
}

const NON_EXISTENT_QUEUE_CODES: &[&str] = &[
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
];

const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "SlowDown",
    "KMS.ThrottlingException",
    "RequestTimeout",
    "RequestTimeoutException",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
];

/// Classifies a service error by its code and HTTP status.
pub(crate) fn classify(code: Option<&str>, status: u16) -> ErrorClass {
    let code = code.unwrap_or_default();
    if NON_EXISTENT_QUEUE_CODES.contains(&code) {
        ErrorClass::UnknownQueue
    } else if THROTTLING_CODES.contains(&code) || status == 429 || status >= 500 {
        ErrorClass::Unavailable
    } else {
        ErrorClass::Rejected
    }
}

/// The service error code of an SDK error, if it is a service error.
pub(crate) fn service_code<E, R>(err: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    err.as_service_error().and_then(ProvideErrorMetadata::code)
}

/// Maps a failed SDK call on the queue of `use_case`.
pub(crate) fn map_sdk_error<E>(
    use_case: &str,
    err: &SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
) -> TransportError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = DisplayErrorContext(err).to_string();
    match err {
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code();
            match classify(code, ctx.raw().status().as_u16()) {
                ErrorClass::UnknownQueue => TransportError::UnknownQueue(use_case.to_owned()),
                ErrorClass::Unavailable => TransportError::Unavailable(detail),
                ErrorClass::Rejected => TransportError::Rejected(detail),
            }
        }
        // A request that could not be built is our input's fault; retrying will not help.
        SdkError::ConstructionFailure(_) => TransportError::Rejected(detail),
        // Timeouts, connection and I/O failures, unreadable responses, and any future variant.
        _ => TransportError::Unavailable(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(
            classify(Some("AWS.SimpleQueueService.NonExistentQueue"), 400),
            ErrorClass::UnknownQueue
        );
        assert_eq!(
            classify(Some("QueueDoesNotExist"), 400),
            ErrorClass::UnknownQueue
        );
        assert_eq!(
            classify(Some("ThrottlingException"), 400),
            ErrorClass::Unavailable
        );
        assert_eq!(
            classify(Some("RequestThrottled"), 403),
            ErrorClass::Unavailable
        );
        assert_eq!(classify(None, 503), ErrorClass::Unavailable);
        assert_eq!(classify(Some("Whatever"), 500), ErrorClass::Unavailable);
        assert_eq!(classify(None, 429), ErrorClass::Unavailable);
        assert_eq!(classify(Some("AccessDenied"), 403), ErrorClass::Rejected);
        assert_eq!(
            classify(Some("InvalidParameterValue"), 400),
            ErrorClass::Rejected
        );
        assert_eq!(classify(None, 400), ErrorClass::Rejected);
    }

    #[test]
    fn config_errors_name_the_variable() {
        let e = SqsConfigError::BadQueueUrl {
            use_case: "billing".into(),
            url: "x".into(),
        };
        assert!(
            e.to_string().starts_with("ASYNC_JOBS_SQS_QUEUE_BILLING:"),
            "{e}"
        );
        assert!(SqsConfigError::MissingRegion
            .to_string()
            .contains("AWS_REGION"));
    }
}
