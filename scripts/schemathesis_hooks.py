"""Schemathesis hooks for scripts/schemathesis.sh: the API's rules that JSON Schema cannot state.

A JSON Schema describes each value on its own; five rules of the enqueue API relate a value to
another one, or to the clock, so a request can match the OpenAPI document and still be refused
with a 400 that names the rule (each is written in the document's descriptions):

  - the Idempotency-Key header must equal the body's idempotency_key when both are given;
  - `queue`, when given, must be the queue of the request's own `use_case`;
  - backoff `cap_seconds` must be at least `base_seconds`;
  - `run_at` may be at most 366 days ahead (relative to now);
  - no string or key inside the free-form `payload` may contain NUL (U+0000).

Schedules (`/schedules`) add three: a cron expression's syntax (checked by the server, not by
JSON Schema), a name that must not be taken yet (409 `schedule_exists`), and the NUL rule inside
the template's payload. Positive cases get a valid expression, a fresh name and a clean payload.

For POSITIVE test cases only (those Schemathesis expects the API to accept) these hooks bend the
generated request to obey the rule; negative cases are left alone, and every check stays on.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import schemathesis
from schemathesis.generation import GenerationMode

HORIZON = _dt.timedelta(days=365)


def _positive(case: Any) -> bool:
    meta = getattr(case, "meta", None)
    generation = getattr(meta, "generation", None)
    mode = getattr(generation, "mode", None)
    return mode is None or mode == GenerationMode.POSITIVE


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    return value


def _fix_job(job: Any, header_key: str | None) -> None:
    if not isinstance(job, dict):
        return
    if header_key is not None and job.get("idempotency_key") is not None:
        job["idempotency_key"] = header_key
    if job.get("queue") is not None and isinstance(job.get("use_case"), str):
        job["queue"] = job["use_case"]
    backoff = job.get("backoff")
    if isinstance(backoff, dict):
        base, cap = backoff.get("base_seconds"), backoff.get("cap_seconds")
        if isinstance(base, (int, float)) and isinstance(cap, (int, float)) and cap < base:
            backoff["base_seconds"], backoff["cap_seconds"] = cap, base
    run_at = job.get("run_at")
    if isinstance(run_at, str):
        try:
            at = _dt.datetime.fromisoformat(run_at.replace("Z", "+00:00").replace("z", "+00:00"))
            if at.tzinfo is None:
                at = at.replace(tzinfo=_dt.timezone.utc)
            if at > _dt.datetime.now(_dt.timezone.utc) + HORIZON:
                job["run_at"] = (_dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(hours=1)).isoformat()
        except (ValueError, OverflowError):
            pass
    if "payload" in job:
        job["payload"] = _without_nul(job["payload"])


_SCHEDULE_SEQ = [0]


def _fix_schedule(case: Any) -> None:
    body = case.body
    if isinstance(body.get("cron"), str):
        body["cron"] = "*/5 * * * *"
    template = body.get("template")
    if isinstance(template, dict) and "payload" in template:
        template["payload"] = _without_nul(template["payload"])
    if isinstance(body.get("name"), str):
        _SCHEDULE_SEQ[0] += 1
        suffix = f"-{_SCHEDULE_SEQ[0]}"
        body["name"] = body["name"][: 128 - len(suffix)] + suffix


@schemathesis.hook
def map_case(context, case):
    if not _positive(case) or not isinstance(case.body, dict):
        return case
    path = getattr(getattr(case, "operation", None), "path", "") or ""
    if path.startswith("/schedules"):
        _fix_schedule(case)
        return case
    headers = case.headers or {}
    header_key = next((v for k, v in headers.items() if k.lower() == "idempotency-key"), None)
    if isinstance(case.body.get("jobs"), list):
        for job in case.body["jobs"]:
            _fix_job(job, None)
    else:
        _fix_job(case.body, header_key if isinstance(header_key, str) else None)
    return case
