//! Weighted fair share between the tenants of a use case, inside earliest-deadline-first.
//!
//! The pick hands out **turns**. Each ready pending job carries a virtual tag, its tenant's turn:
//! a job enqueued due is tagged at its enqueue (from turns it reserves first, so one tenant's
//! concurrent enqueues take distinct turns); a job becoming due later, back in `pending` (a
//! failure, a release, a reap, a retry) or whose tag fell below the clock is tagged by the next
//! pick; a paused tenant's jobs when it resumes. It is tagged
//!
//! ```text
//! tag = max(V, the tenant's highest tag in the use case) + k · step,   step = 1 / weight
//! ```
//!
//! where `V`, the use case's virtual clock, is the highest tag the pick has handed out so far and
//! `k` counts the tenant's jobs becoming ready together (in deadline order). The pick takes the
//! lowest tags first (ties by deadline, priority, id) and gives each tenant's turns to that
//! tenant's **earliest deadlines**; when a turn goes to another job of the tenant than the one
//! holding its tag, the two swap tags ([`hand_over`]), so a tenant's remaining jobs hold exactly
//! the turns it has not used.
//!
//! What that gives:
//! - **Fair share.** Tenants with due work take turns in proportion to their weights: a tenant
//!   with weight 2 has tags twice as dense as one with weight 1. A tenant that sends more than its
//!   share queues behind its own tags; one that sends less is tagged at `V` and goes next.
//! - **Work-conserving.** Tags only order; the room under the cap is always filled while any
//!   tenant has due work, so a tenant alone takes every slot.
//! - **No banking.** An idle tenant's next job starts at `V`, not at the old tags it did not use;
//!   a paused tenant's jobs are tagged again from `V` when it resumes.
//! - **EDF within a tenant**, and plain EDF across tenants when every tag is 0: a use case with
//!   `fair_share = false` tags its jobs 0 ([`step`] of `None`).
//! - **Cost.** The pick reads as many tags as it leases, whatever the number of tenants or jobs
//!   waiting; an enqueue reserves its turns from the clock and the tenant's highest tag (two
//!   index probes and one short write of the tenant's reservation).
//!
//! Rate-limited tenants take their turns from their own lane (as many as their tokens allow, their
//! earliest deadlines) merged with the others by tag. Two enqueues of one tenant in callers' own
//! transactions open at once may read the same highest tag and tie (ties go by deadline); see
//! `docs/fairness.md`, "Limits". Fairness is an ordering, never a safety property: caps, quotas,
//! fencing and expiry do not depend on a tag.

/// The virtual-time step of one turn of a tenant with this weight: `1 / weight`, or 0 for plain
/// EDF (`None`). A weight of 0 counts as 1.
pub fn step(weight: Option<u32>) -> f64 {
    match weight {
        None => 0.0,
        Some(w) => 1.0 / f64::from(w.max(1)),
    }
}

/// The tag before the first of a tenant's jobs becoming ready now: the use case's clock, or the
/// tenant's highest tag when it is further on (it already holds turns past the clock).
pub fn base(clock: f64, tenant_highest: Option<f64>) -> f64 {
    match tenant_highest {
        Some(t) if t > clock => t,
        _ => clock,
    }
}

/// Tags for `n` jobs of one tenant becoming ready together, in the order given (deadline order):
/// `base + step, base + 2·step, …`; all 0 in plain EDF (`step == 0`).
pub fn tags(base: f64, step: f64, n: usize) -> Vec<f64> {
    if step <= 0.0 {
        return vec![0.0; n];
    }
    (1..=n).map(|k| base + k as f64 * step).collect()
}

/// The tag swaps after one tenant's turns went to its earliest deadlines.
///
/// `slots`: the tenant's jobs whose tags won turns, `chosen`: the jobs leased for those turns
/// (the tenant's earliest deadlines, as many). Every slot job that was not chosen takes the tag of
/// a chosen job that held no slot, lowest with lowest, so the tenant's remaining jobs keep the
/// tags it has not used. Returns `(job, new tag)` for the jobs whose tag changes.
pub fn hand_over<Id: Copy + Ord>(slots: &[(Id, f64)], chosen: &[(Id, f64)]) -> Vec<(Id, f64)> {
    let in_chosen = |id: &Id| chosen.iter().any(|(c, _)| c == id);
    let in_slots = |id: &Id| slots.iter().any(|(s, _)| s == id);
    let mut displaced: Vec<(Id, f64)> = slots
        .iter()
        .copied()
        .filter(|(id, _)| !in_chosen(id))
        .collect();
    let mut gained: Vec<(Id, f64)> = chosen
        .iter()
        .copied()
        .filter(|(id, _)| !in_slots(id))
        .collect();
    let order = |a: &(Id, f64), b: &(Id, f64)| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0));
    displaced.sort_by(order);
    gained.sort_by(order);
    displaced
        .into_iter()
        .zip(gained)
        .map(|((id, _), (_, tag))| (id, tag))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn steps_and_tags() {
        assert_eq!(step(None), 0.0);
        assert_eq!(step(Some(1)), 1.0);
        assert_eq!(step(Some(4)), 0.25);
        assert_eq!(step(Some(0)), 1.0);
        assert_eq!(tags(10.0, 0.5, 3), vec![10.5, 11.0, 11.5]);
        assert_eq!(tags(10.0, 0.0, 2), vec![0.0, 0.0]);
        assert_eq!(base(5.0, None), 5.0);
        assert_eq!(base(5.0, Some(3.0)), 5.0, "old turns are not banked");
        assert_eq!(base(5.0, Some(9.0)), 9.0, "a backlog queues behind itself");
    }

    #[test]
    fn hand_over_moves_unused_turns_to_the_jobs_left() {
        // Slots 1 (tag 1) and 2 (tag 2); the tenant's earliest deadlines are 2 and 3 (tag 3).
        let swaps = hand_over(&[(1, 1.0), (2, 2.0)], &[(2, 2.0), (3, 3.0)]);
        assert_eq!(swaps, vec![(1, 3.0)]);
        assert!(hand_over(&[(1, 1.0)], &[(1, 1.0)]).is_empty());
    }

    proptest! {
        /// The multiset of tags the tenant keeps is its old one minus the lowest |slots| tags.
        #[test]
        fn the_tenant_keeps_exactly_its_unused_turns(
            n in 1usize..12, take_slots in 1usize..12, picks in proptest::collection::vec(0usize..12, 12),
        ) {
            let take = take_slots.min(n);
            let jobs: Vec<(usize, f64)> = (0..n).map(|i| (i, i as f64 + 1.0)).collect();
            let slots: Vec<(usize, f64)> = jobs[..take].to_vec();
            // Any `take` distinct jobs as the chosen ones (deadline order is arbitrary).
            let mut order: Vec<usize> = (0..n).collect();
            for (i, p) in picks.iter().enumerate().take(n) {
                order.swap(i, p % n);
            }
            let chosen: Vec<(usize, f64)> = order[..take].iter().map(|&i| jobs[i]).collect();
            let swaps = hand_over(&slots, &chosen);
            let mut left: Vec<f64> = jobs
                .iter()
                .filter(|(id, _)| !chosen.iter().any(|(c, _)| c == id))
                .map(|&(id, tag)| swaps.iter().find(|(s, _)| *s == id).map_or(tag, |s| s.1))
                .collect();
            left.sort_by(f64::total_cmp);
            let want: Vec<f64> = jobs[take..].iter().map(|j| j.1).collect();
            prop_assert_eq!(left, want);
        }
    }
}
