//! The HTTP API suite over the in-memory store.

#![allow(clippy::unwrap_used)]

mod suite;

use std::sync::Arc;

use jobs_core::clock::SystemClock;
use jobs_core::memory::MemoryStore;

fn memory() -> Arc<dyn jobs_core::JobStore> {
    Arc::new(MemoryStore::new(Arc::new(SystemClock)))
}

api_suite!(memory();
    enqueue_get_and_idempotent_replay,
    batch_enqueue_is_all_or_none,
    list_filters_and_pages,
    list_rejects_bad_parameters,
    list_leaves_payloads_out_and_stops_at_the_byte_budget,
    list_scan_bound_gives_short_pages_with_a_cursor,
    cancel_and_retry,
    bad_bodies_are_json_errors,
    json_errors_name_the_field_and_follow_the_schema,
    bad_ids_and_routes_are_json_errors,
    quota_exceeded_is_429_with_retry_after,
    request_labels_are_bounded_and_responses_nosniff,
    fencing_tokens_stay_internal,
    metrics_scrapes_read_the_store_at_most_once_per_interval,
    retry_over_quota_is_429_with_retry_after,
    store_failures_map_to_503_and_500,
    bearer_token_guards_jobs_but_not_ops,
    tenant_keys_are_confined,
    metrics_count_enqueues_and_requests,
    nests_under_a_prefix,
);
