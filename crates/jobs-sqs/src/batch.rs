//! Splitting calls into SQS batches and mapping per-entry results back to the caller's ids.
//!
//! SQS batch entries carry ids of at most 80 letters, digits, `-` and `_`, unique in the call. The
//! caller's ids are free-form, so each chunk uses its positions (`"0"` … `"9"`) as SQS ids and the
//! results are mapped back by position.

use aws_sdk_sqs::types::BatchResultErrorEntry;
use jobs_core::transport::{EntryFailure, OutgoingMessage, Receipt};

use crate::options::MAX_BATCH_ENTRIES;

/// Messages ready to send in chunks, and those refused before sending.
#[derive(Debug, Default)]
pub(crate) struct PreparedSend {
    pub(crate) chunks: Vec<Vec<OutgoingMessage>>,
    pub(crate) refused: Vec<EntryFailure>,
}

/// Refuses bodies SQS would refuse (empty, too large, characters outside XML's set) so that one bad
/// entry cannot fail its whole batch, then packs the rest into chunks of at most ten entries and
/// `max_bytes` bytes.
pub(crate) fn prepare_send(messages: Vec<OutgoingMessage>, max_bytes: usize) -> PreparedSend {
    let mut out = PreparedSend::default();
    let mut current: Vec<OutgoingMessage> = Vec::new();
    let mut current_bytes = 0usize;
    for m in messages {
        if let Some(reason) = refusal(&m.body, max_bytes) {
            out.refused.push(EntryFailure { id: m.id, reason });
            continue;
        }
        let bytes = m.body.len();
        if current.len() == MAX_BATCH_ENTRIES || current_bytes.saturating_add(bytes) > max_bytes {
            out.chunks.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += bytes;
        current.push(m);
    }
    if !current.is_empty() {
        out.chunks.push(current);
    }
    out
}

fn refusal(body: &str, max_bytes: usize) -> Option<String> {
    if body.is_empty() {
        return Some("empty body: SQS needs at least one character".to_owned());
    }
    if body.len() > max_bytes {
        return Some(format!(
            "body of {} bytes is over the {max_bytes}-byte message limit",
            body.len()
        ));
    }
    if let Some(c) = body.chars().find(|c| !is_sqs_char(*c)) {
        return Some(format!(
            "body contains U+{:04X}, which SQS does not accept",
            u32::from(c)
        ));
    }
    None
}

/// The characters SQS accepts in a body: `#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF`.
fn is_sqs_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Receipts in chunks of ten, duplicates dropped (deleting is idempotent, and SQS refuses a batch
/// that names one receipt twice).
pub(crate) fn chunk_receipts(receipts: Vec<Receipt>) -> Vec<Vec<Receipt>> {
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<Receipt> = receipts
        .into_iter()
        .filter(|r| seen.insert(r.0.clone()))
        .collect();
    unique
        .chunks(MAX_BATCH_ENTRIES)
        .map(<[Receipt]>::to_vec)
        .collect()
}

/// The SQS entry id of position `i` in a chunk.
pub(crate) fn entry_id(i: usize) -> String {
    i.to_string()
}

/// Maps a chunk's result back to the caller's ids: each `failed` entry, plus any entry SQS
/// reported neither as successful nor as failed.
pub(crate) fn entry_failures<'a>(
    caller_ids: &[String],
    successful: impl IntoIterator<Item = &'a str>,
    failed: &[BatchResultErrorEntry],
) -> Vec<EntryFailure> {
    let mut answered = vec![false; caller_ids.len()];
    let mut out = Vec::new();
    for id in successful {
        if let Some(seen) = id.parse::<usize>().ok().and_then(|i| answered.get_mut(i)) {
            *seen = true;
        }
    }
    for f in failed {
        let Some(i) = f
            .id()
            .parse::<usize>()
            .ok()
            .filter(|i| *i < caller_ids.len())
        else {
            tracing::warn!(
                entry = f.id(),
                "SQS reported a failure for an entry id it was not sent"
            );
            continue;
        };
        answered[i] = true;
        let fault = if f.sender_fault() {
            "sender"
        } else {
            "service"
        };
        let message = f.message().unwrap_or_default();
        out.push(EntryFailure {
            id: caller_ids[i].clone(),
            reason: format!("{} ({fault} fault): {message}", f.code()),
        });
    }
    for (i, seen) in answered.iter().enumerate() {
        if !seen {
            out.push(EntryFailure {
                id: caller_ids[i].clone(),
                reason: "SQS returned no result for this entry".to_owned(),
            });
        }
    }
    out
}

/// Every entry of the given chunks, failed for `reason`.
pub(crate) fn all_failed<'a>(
    ids: impl IntoIterator<Item = &'a str>,
    reason: &str,
) -> Vec<EntryFailure> {
    ids.into_iter()
        .map(|id| EntryFailure {
            id: id.to_owned(),
            reason: reason.to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, body: &str) -> OutgoingMessage {
        OutgoingMessage {
            id: id.into(),
            body: body.into(),
        }
    }

    #[test]
    fn chunks_of_ten_and_by_bytes() {
        let msgs: Vec<_> = (0..23).map(|i| msg(&format!("m{i}"), "x")).collect();
        let p = prepare_send(msgs, 1000);
        assert_eq!(
            p.chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![10, 10, 3]
        );
        assert!(p.refused.is_empty());
        assert_eq!(p.chunks[2][2].id, "m22");

        let big = "y".repeat(400);
        let p = prepare_send((0..5).map(|i| msg(&i.to_string(), &big)).collect(), 1000);
        assert_eq!(
            p.chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
    }

    #[test]
    fn refuses_what_sqs_would_refuse() {
        let p = prepare_send(
            vec![
                msg("ok", "fine"),
                msg("big", &"z".repeat(11)),
                msg("empty", ""),
                msg("nul", "a\u{0}b"),
                msg("emoji", "🦀\t\n"),
            ],
            10,
        );
        let refused: Vec<_> = p.refused.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(refused, vec!["big", "empty", "nul"]);
        assert_eq!(
            p.chunks
                .concat()
                .iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>(),
            vec!["ok", "emoji"]
        );
    }

    #[test]
    fn receipts_deduplicated_and_chunked() {
        let r: Vec<_> = (0..25).map(|i| Receipt(format!("r{}", i % 21))).collect();
        let chunks = chunk_receipts(r);
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![10, 10, 1]
        );
    }

    #[test]
    fn failures_map_back_to_caller_ids() {
        let ids: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let failed = vec![
            BatchResultErrorEntry::builder()
                .id("1")
                .code("InvalidMessageContents")
                .sender_fault(true)
                .message("bad")
                .build()
                .unwrap(),
            BatchResultErrorEntry::builder()
                .id("99")
                .code("X")
                .sender_fault(false)
                .build()
                .unwrap(),
        ];
        let f = entry_failures(&ids, ["0", "2"], &failed);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].id, "b");
        assert!(
            f[0].reason.contains("InvalidMessageContents") && f[0].reason.contains("bad"),
            "{}",
            f[0].reason
        );
        assert_eq!(f[1].id, "d", "unanswered entries count as failed");
        assert_eq!(all_failed(["x", "y"], "down").len(), 2);
    }
}
