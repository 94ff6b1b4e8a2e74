//! Building the SDK client (timeouts, retries, credentials) and reading queue URLs.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_sqs::config::retry::RetryConfig;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, IdentityCache, Region};
use jobs_core::PlatformConfig;

use crate::error::SqsConfigError;
use crate::options::SqsOptions;

/// How long resolving credentials may take before the call fails. Bounds the instance metadata
/// probe on hosts that have none (its own client gives up after about 1 s per try).
const CREDENTIALS_LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The queue URL of each use case that has one (`ASYNC_JOBS_SQS_QUEUE_<USE_CASE>`, read by
/// [`PlatformConfig`]). Fails when none has a URL or a URL is not http(s).
pub fn queue_urls_from_config(
    config: &PlatformConfig,
) -> Result<BTreeMap<String, String>, SqsConfigError> {
    let urls: BTreeMap<String, String> = config
        .use_cases
        .values()
        .filter_map(|uc| {
            uc.queue_url
                .as_ref()
                .map(|url| (uc.name.clone(), url.clone()))
        })
        .collect();
    if urls.is_empty() {
        return Err(SqsConfigError::NoQueues);
    }
    check_urls(&urls)?;
    Ok(urls)
}

/// [`queue_urls_from_config`] over [`PlatformConfig::from_env`].
pub fn queue_urls_from_env() -> Result<BTreeMap<String, String>, SqsConfigError> {
    let config = PlatformConfig::from_env().map_err(|e| SqsConfigError::Platform(e.to_string()))?;
    queue_urls_from_config(&config)
}

pub(crate) fn check_urls(urls: &BTreeMap<String, String>) -> Result<(), SqsConfigError> {
    for (use_case, url) in urls {
        let url = url.trim();
        let has_host = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .is_some_and(|rest| !rest.is_empty());
        if !has_host {
            return Err(SqsConfigError::BadQueueUrl {
                use_case: use_case.chars().take(100).collect(),
                url: jobs_core::config::redact_url(url)
                    .chars()
                    .take(200)
                    .collect(),
            });
        }
    }
    Ok(())
}

/// The timeouts of a call whose attempts may take `attempt` each.
pub(crate) fn timeouts(options: &SqsOptions, attempt: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(options.connect_timeout)
        .operation_attempt_timeout(attempt)
        .build()
}

pub(crate) fn retries(options: &SqsOptions) -> RetryConfig {
    if options.max_attempts <= 1 {
        RetryConfig::disabled()
    } else {
        RetryConfig::standard()
            .with_max_attempts(options.max_attempts)
            .with_initial_backoff(Duration::from_millis(100))
            .with_max_backoff(Duration::from_secs(2))
    }
}

/// Overrides of the SDK's standard provider chain (for tests and explicit deployments).
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    pub(crate) endpoint_url: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) credentials: Option<(String, String)>,
}

/// Loads the SDK configuration: the standard chain (`AWS_REGION`, `AWS_ENDPOINT_URL_SQS`,
/// credentials chain) under our timeouts and retries, with the given overrides on top.
pub(crate) async fn load_client(
    options: &SqsOptions,
    overrides: Overrides,
) -> Result<aws_sdk_sqs::Client, SqsConfigError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts(options, options.request_timeout))
        .retry_config(retries(options))
        .identity_cache(
            IdentityCache::lazy()
                .load_timeout(CREDENTIALS_LOAD_TIMEOUT)
                .build(),
        );
    if let Some(url) = overrides.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(region) = overrides.region {
        loader = loader.region(Region::new(region));
    }
    if let Some((key, secret)) = overrides.credentials {
        loader = loader.credentials_provider(Credentials::new(
            key,
            secret,
            None,
            None,
            "jobs-sqs-static",
        ));
    }
    let sdk = loader.load().await;
    if sdk.region().is_none() {
        return Err(SqsConfigError::MissingRegion);
    }
    Ok(aws_sdk_sqs::Client::new(&sdk))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobs_core::UseCaseConfig;

    #[test]
    fn queue_urls_come_from_the_platform_config() {
        let config = PlatformConfig::from_vars([
            (
                "ASYNC_JOBS_SQS_QUEUE_NOTIFICATIONS",
                "http://127.0.0.1:5000/000000000000/n",
            ),
            (
                "ASYNC_JOBS_SQS_QUEUE_BILLING",
                "https://sqs.eu-west-1.amazonaws.com/1/billing",
            ),
        ])
        .unwrap();
        let urls = queue_urls_from_config(&config).unwrap();
        assert_eq!(urls.len(), 2);
        assert_eq!(
            urls["billing"],
            "https://sqs.eu-west-1.amazonaws.com/1/billing"
        );

        assert_eq!(
            queue_urls_from_config(&PlatformConfig::default()),
            Err(SqsConfigError::NoQueues)
        );
        let mut uc = UseCaseConfig::new("x", 1, Duration::ZERO);
        uc.queue_url = Some("ftp://nope".into());
        assert!(matches!(
            queue_urls_from_config(&PlatformConfig::with_use_cases([uc])),
            Err(SqsConfigError::BadQueueUrl { .. })
        ));
    }
}
