//! Limits on a group of caches together: every user's cache of one table on a shared
//! build server, filling one disk.
//!
//! Each cache's own limits apply as always. When the group's caches together exceed
//! `group_max_size`, or the disk holding them has less than `group_min_free` free,
//! the group's `group_policy` says who gives how much; each member then frees its
//! share through its own eviction, which takes its own oldest entries under its own
//! removal protocol and its owner's credentials. Only evictable entries count (not
//! pinned, past `min_age`, not held by a running go command, not age-only;
//! [`Cache::evictable`]).
//!
//! * **`fair-share`** (the default): the members furthest over an equal share give
//!   first. The group's sizes are cut from the top like water let out of a tank: a
//!   level is found such that every member above it gives what it has above it (as far
//!   as its evictable entries allow; what one cannot give, the others below give by a
//!   lower level), and members below the level give nothing. One user's 80 GiB pays
//!   before another's 2 GiB, whatever the times say — and times are the user's to
//!   set: `touch -d 2100-01-01` on every file made one user's entries newest for ever
//!   under plain LRU (issue #29; such times now count as "now", see `cache/mod.rs`).
//! * **`lru`**: the evictable entries of all members are merged and taken in (tier,
//!   last use) order until enough is freed: best for hit rates where every user is
//!   trusted.

use std::sync::Arc;

use serde::Serialize;

use crate::cache::Cache;
use crate::config::{GroupConfig, GroupPolicy};
use crate::plan::Reason;
use crate::report::{self, EvictionReport};
use crate::units;
use crate::UnixTime;

/// What a group's enforcement found and did.
#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    pub group: String,
    pub policy: GroupPolicy,
    pub dry_run: bool,
    /// The members' disk usage together, before.
    pub bytes_before: u64,
    pub max_size_bytes: Option<u64>,
    pub min_free_bytes: Option<u64>,
    pub available_bytes: Option<u64>,
    /// Bytes the group's limits asked to free (0: within its limits).
    pub to_free: u64,
    /// Why: `max-size` or `min-free` (the larger need).
    pub reason: Option<Reason>,
    /// Per member that gives anything: its share and what its eviction did.
    pub members: Vec<MemberShare>,
    /// The group's limits cannot be met by evicting what may be evicted.
    pub unmet: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberShare {
    pub cache: String,
    pub user: Option<String>,
    pub share_bytes: u64,
    pub eviction: EvictionReport,
}

/// Enforces `group`'s limits over `members` (the caches of its table that are running).
pub fn enforce(
    group: &GroupConfig,
    members: &[Arc<dyn Cache>],
    dry_run: bool,
    now: UnixTime,
) -> GroupReport {
    let statuses: Vec<_> = members.iter().map(|c| c.status(now)).collect();
    let bytes_before: u64 = statuses.iter().map(|s| s.disk_bytes).sum();
    let disk = statuses.iter().find_map(|s| s.disk);
    let total = disk.map_or(0, |d| d.total_bytes);
    let max_size_bytes = group.max_size.map(|l| l.resolve(total));
    let min_free_bytes = group.min_free.map(|l| l.resolve(total));
    let over_size = max_size_bytes.map_or(0, |m| bytes_before.saturating_sub(m));
    let under_free = match (min_free_bytes, disk) {
        (Some(min), Some(d)) => min.saturating_sub(d.available_bytes),
        _ => 0,
    };
    let (to_free, reason) = match (over_size, under_free) {
        (0, 0) => (0, None),
        (s, f) if s >= f => (s, Some(Reason::MaxSize)),
        (_, f) => (f, Some(Reason::MinFree)),
    };
    let mut report = GroupReport {
        group: group.name.clone(),
        policy: group.policy,
        dry_run,
        bytes_before,
        max_size_bytes,
        min_free_bytes,
        available_bytes: disk.map(|d| d.available_bytes),
        to_free,
        reason,
        members: Vec::new(),
        unmet: None,
    };
    let Some(reason) = reason else {
        return report;
    };
    let candidates: Vec<Vec<(u8, UnixTime, u64)>> =
        members.iter().map(|c| c.evictable(now)).collect();
    let (shares, freeable) = match group.policy {
        GroupPolicy::Lru => shares(&candidates, to_free),
        GroupPolicy::FairShare => {
            let sizes: Vec<u64> = statuses.iter().map(|s| s.disk_bytes).collect();
            let evictable: Vec<u64> = candidates
                .iter()
                .map(|c| c.iter().map(|e| e.2).sum())
                .collect();
            fair_shares(&sizes, &evictable, to_free)
        }
    };
    if freeable < to_free {
        report.unmet = Some(format!(
            "the group needs {} freed, but only {} may be evicted now (the rest is pinned, younger than min_age, held by a running go command or age-only)",
            crate::units::format_bytes(to_free),
            crate::units::format_bytes(freeable)
        ));
    }
    for ((cache, status), share) in members.iter().zip(&statuses).zip(shares) {
        if share == 0 {
            continue;
        }
        let eviction = cache.evict_for_group(share, reason, dry_run, now);
        report.members.push(MemberShare {
            cache: status.name.clone(),
            user: status.user.clone(),
            share_bytes: share,
            eviction,
        });
    }
    report
}

/// How many bytes each member gives so that `to_free` bytes go in global (tier, last
/// use) order; also the most that could be freed.
fn shares(candidates: &[Vec<(u8, UnixTime, u64)>], to_free: u64) -> (Vec<u64>, u64) {
    let mut merged: Vec<(u8, UnixTime, usize, u64)> = candidates
        .iter()
        .enumerate()
        .flat_map(|(member, c)| c.iter().map(move |&(t, l, b)| (t, l, member, b)))
        .collect();
    merged.sort_unstable();
    let mut shares = vec![0u64; candidates.len()];
    let mut freed = 0u64;
    for (_, _, member, bytes) in merged.iter().copied() {
        if freed >= to_free {
            break;
        }
        shares[member] += bytes;
        freed += bytes;
    }
    let freeable = merged.iter().map(|e| e.3).sum();
    (shares, freeable)
}

/// How many bytes each member gives under `fair-share`: every member above a common
/// level gives what it has above it, at most its `evictable` bytes, the level chosen
/// as high as frees `to_free` (see the module doc); also the most that could be freed.
fn fair_shares(sizes: &[u64], evictable: &[u64], to_free: u64) -> (Vec<u64>, u64) {
    let give = |level: u64| -> Vec<u64> {
        sizes
            .iter()
            .zip(evictable)
            .map(|(&size, &can)| size.saturating_sub(level).min(can))
            .collect()
    };
    let freeable: u64 = evictable.iter().sum();
    if to_free == 0 {
        return (vec![0; sizes.len()], freeable);
    }
    // The highest level that frees enough (giving is monotone in the level).
    let (mut low, mut high) = (0u64, sizes.iter().copied().max().unwrap_or(0));
    if give(0).iter().sum::<u64>() < to_free {
        return (give(0), freeable);
    }
    while low < high {
        let mid = low + (high - low).div_ceil(2);
        if give(mid).iter().sum::<u64>() >= to_free {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    (give(low), freeable)
}

/// What a group's enforcement did (or, dry, would do), for people: who gives how much.
pub fn summary(g: &GroupReport) -> String {
    let mut out = format!(
        "group {}: {} in its caches{}{}",
        g.group,
        units::format_bytes(g.bytes_before),
        g.max_size_bytes.map_or(String::new(), |m| format!(
            ", group_max_size {}",
            units::format_bytes(m)
        )),
        g.available_bytes
            .zip(g.min_free_bytes)
            .map_or(String::new(), |(a, m)| format!(
                ", {} free of group_min_free {}",
                units::format_bytes(a),
                units::format_bytes(m)
            )),
    );
    match g.reason {
        None => out.push_str(": within its limits\n"),
        Some(reason) => {
            let verb = if g.dry_run { "would free" } else { "freed" };
            out.push_str(&format!(
                ": {} to free ({}), {}\n",
                units::format_bytes(g.to_free),
                report::reason_text(reason),
                match g.policy {
                    GroupPolicy::FairShare => "the caches furthest over an equal share first",
                    GroupPolicy::Lru => "least recently used first across its caches",
                }
            ));
            let rows: Vec<Vec<String>> = g
                .members
                .iter()
                .map(|m| {
                    vec![
                        m.cache.clone(),
                        m.user.clone().unwrap_or_default(),
                        format!(
                            "{} {verb}",
                            units::format_bytes(m.eviction.freed_bytes.max(if g.dry_run {
                                m.share_bytes
                            } else {
                                0
                            }))
                        ),
                        m.eviction.evicted.len().to_string(),
                    ]
                })
                .collect();
            out.push_str(&report::table(
                &["CACHE", "USER", "SHARE", "ENTRIES"],
                &rows,
            ));
        }
    }
    if let Some(unmet) = &g.unmet {
        out.push_str(&format!("unmet: {unmet}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_entries_of_all_members_go_first() {
        // Member 0: one big, recent working set; member 1: a pile of old entries.
        let young = vec![(0, 1_000, 500), (0, 1_001, 500)];
        let old = vec![(0, 10, 100), (0, 20, 100), (0, 30, 100), (0, 2_000, 100)];
        let (given, freeable) = shares(&[young.clone(), old.clone()], 250);
        assert_eq!(
            given,
            vec![0, 300],
            "the three oldest of member 1, nothing of 0"
        );
        assert_eq!(freeable, 1_400);
        let (given, _) = shares(&[young, old], 700);
        assert_eq!(
            given,
            vec![500, 300],
            "then member 0's oldest, before member 1's newest"
        );
    }

    #[test]
    fn a_lower_tier_goes_first_whatever_its_age() {
        let trees = vec![(0, 5_000, 10)];
        let zips = vec![(1, 1, 10)];
        let (s, _) = shares(&[zips, trees], 10);
        assert_eq!(s, vec![0, 10]);
    }

    #[test]
    fn fair_share_cuts_the_largest_first_whatever_the_times() {
        // A toucher's 800 (all "recently used") against 300 and 100 of older entries.
        let sizes = [800, 300, 100];
        let (given, freeable) = fair_shares(&sizes, &sizes, 400);
        assert_eq!(given, vec![400, 0, 0], "down to a level of 400");
        assert_eq!(freeable, 1200);
        let (given, _) = fair_shares(&sizes, &sizes, 1000);
        assert_eq!(
            given,
            vec![734, 234, 34],
            "level 66: everyone above it gives"
        );
        assert!(given.iter().sum::<u64>() >= 1000);
    }

    #[test]
    fn what_one_member_cannot_give_the_others_give_by_a_lower_level() {
        // The largest may only evict 100 (the rest is young or pinned).
        let (given, _) = fair_shares(&[800, 300, 100], &[100, 300, 100], 300);
        assert_eq!(given, vec![100, 200, 0]);
        let (given, freeable) = fair_shares(&[800, 300], &[100, 50], 1000);
        assert_eq!((given, freeable), (vec![100, 50], 150), "all it can");
    }

    proptest::proptest! {
        #[test]
        fn fair_shares_free_enough_and_never_more_than_a_member_may_give(
            members in proptest::collection::vec((0u64..10_000, 0u64..10_000), 1..8),
            to_free in 0u64..40_000,
        ) {
            let sizes: Vec<u64> = members.iter().map(|m| m.0).collect();
            let evictable: Vec<u64> = members.iter().map(|m| m.1.min(m.0)).collect();
            let (given, freeable) = fair_shares(&sizes, &evictable, to_free);
            let total: u64 = given.iter().sum();
            proptest::prop_assert!(total >= to_free.min(freeable));
            for ((g, e), s) in given.iter().zip(&evictable).zip(&sizes) {
                proptest::prop_assert!(g <= e);
                // Nobody left below another who kept more and could still give.
                for ((g2, e2), s2) in given.iter().zip(&evictable).zip(&sizes) {
                    if s - g < s2 - g2 {
                        proptest::prop_assert!(g2 == e2 || s2 - g2 <= s - g + 1 || *g == 0,
                            "{s}-{g} left below {s2}-{g2}");
                    }
                }
            }
        }
    }

    #[test]
    fn nothing_to_free_takes_nothing() {
        let (s, _) = shares(&[vec![(0, 1, 10)]], 0);
        assert_eq!(s, vec![0]);
    }
}
