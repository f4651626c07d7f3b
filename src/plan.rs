//! The eviction policy, as a pure function: entries + limits + free disk + now → which
//! entries to evict and why. No I/O, so every invariant is checked by property tests.
//!
//! Order of work:
//! 1. every evictable entry last used before `now - max_age` goes (reason `max-age`);
//! 2. then the rest oldest first, until the cache is within `max_size` (reason
//!    `max-size`) and the filesystem has `min_free` available (reason `min-free`).
//!
//! "Evictable" means not pinned by `keep` and last used at or before `now - min_age`:
//! `min_age` is the safety floor no limit overrides. Ties in last use are broken by id
//! (as cargo's gc does), so the same cache always yields the same plan.

use serde::{Deserialize, Serialize};

pub use crate::kinds::AGE_ONLY;
use crate::units::{format_bytes, format_duration};
use crate::UnixTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<I> {
    pub id: I,
    pub disk_bytes: u64,
    pub last_use: UnixTime,
    /// Matched a `keep` pattern: never evicted, still counted.
    pub pinned: bool,
    /// Eviction tier: under size or free-space pressure every evictable entry of a lower
    /// tier goes before any of a higher one (go-mod: extracted trees, rebuildable
    /// offline, before module zips). [`AGE_ONLY`] entries go only when past `max_age`.
    pub tier: u8,
    /// A running tool may still open it (`Kind::holds`): it stays, and the eviction is
    /// retried once that tool exits.
    pub held: bool,
    /// A Go toolchain beyond `keep_toolchains`: it goes once unused for
    /// [`PlanLimits::surplus_age_secs`], like `max_age` for it alone.
    pub surplus: bool,
}

/// Limits resolved to plain numbers (percentages already applied to the filesystem).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlanLimits {
    pub max_bytes: Option<u64>,
    pub max_age_secs: Option<i64>,
    pub min_free_bytes: Option<u64>,
    pub min_age_secs: i64,
    /// How long a `surplus` entry may stay unused (`keep_toolchains`).
    pub surplus_age_secs: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    MaxAge,
    MaxSize,
    MinFree,
    /// Named by a user (`evict --entry`, `--module`).
    Requested,
    /// A Go toolchain beyond `keep_toolchains`, unused for long enough.
    KeepToolchains,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned<I> {
    pub id: I,
    pub disk_bytes: u64,
    pub last_use: UnixTime,
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<I> {
    /// In eviction order: oldest first.
    pub evict: Vec<Planned<I>>,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Limits the plan cannot meet, because what remains is pinned or too young.
    pub unmet: Vec<String>,
    /// Entries old enough to evict but held because a running tool may open them; the
    /// eviction is retried once that tool exits.
    pub held_in_use: u64,
}

/// Plans an eviction. `available_bytes` is the filesystem's free space now (only needed
/// for `min_free`).
pub fn plan<I: Ord + Clone>(
    entries: &[Candidate<I>],
    limits: &PlanLimits,
    available_bytes: Option<u64>,
    now: UnixTime,
) -> Plan<I> {
    let bytes_before: u64 = entries.iter().map(|e| e.disk_bytes).sum();
    let protect_after = now.saturating_sub(limits.min_age_secs);
    let old_enough: Vec<&Candidate<I>> = entries
        .iter()
        .filter(|e| !e.pinned && e.last_use <= protect_after)
        .collect();
    let held_in_use = old_enough.iter().filter(|e| e.held).count() as u64;
    let evictable: Vec<&Candidate<I>> = old_enough.into_iter().filter(|e| !e.held).collect();

    let expired_before = limits.max_age_secs.map(|age| now.saturating_sub(age));
    let surplus_before = limits.surplus_age_secs.map(|age| now.saturating_sub(age));
    let past_max_age = |e: &Candidate<I>| expired_before.is_some_and(|t| e.last_use < t);
    let past_surplus_age =
        |e: &Candidate<I>| e.surplus && surplus_before.is_some_and(|t| e.last_use < t);
    let mut size = bytes_before;
    let mut freed = 0u64;
    let too_big = |size: u64| limits.max_bytes.is_some_and(|max| size > max);
    let too_full = |freed: u64| match (limits.min_free_bytes, available_bytes) {
        (Some(min), Some(avail)) => avail.saturating_add(freed) < min,
        _ => false,
    };

    // First everything past max_age, oldest first; then, under pressure, the rest by
    // tier and age.
    let (mut expired, mut rest): (Vec<&Candidate<I>>, Vec<&Candidate<I>>) = evictable
        .into_iter()
        .partition(|e| past_max_age(e) || past_surplus_age(e));
    expired.sort_by(|a, b| (a.last_use, &a.id).cmp(&(b.last_use, &b.id)));
    rest.retain(|e| e.tier != AGE_ONLY);
    rest.sort_by(|a, b| (a.tier, a.last_use, &a.id).cmp(&(b.tier, b.last_use, &b.id)));

    let mut evict = Vec::new();
    let mut take = |e: &Candidate<I>, reason, size: &mut u64, freed: &mut u64| {
        *size -= e.disk_bytes;
        *freed += e.disk_bytes;
        evict.push(Planned {
            id: e.id.clone(),
            disk_bytes: e.disk_bytes,
            last_use: e.last_use,
            reason,
        });
    };
    for e in expired {
        let reason = match past_max_age(e) {
            true => Reason::MaxAge,
            false => Reason::KeepToolchains,
        };
        take(e, reason, &mut size, &mut freed);
    }
    for e in rest {
        let reason = if too_big(size) {
            Reason::MaxSize
        } else if too_full(freed) {
            Reason::MinFree
        } else {
            break;
        };
        take(e, reason, &mut size, &mut freed);
    }

    let mut unmet = Vec::new();
    if too_big(size) || too_full(freed) {
        // The bytes still to free for both limits.
        let over = limits.max_bytes.map_or(0, |max| size.saturating_sub(max));
        let under = limits.min_free_bytes.map_or(0, |min| {
            min.saturating_sub(available_bytes.unwrap_or(0).saturating_add(freed))
        });
        let short = over.max(under);
        let why = what_stays(
            entries,
            &evict,
            limits,
            protect_after,
            expired_before,
            short,
        );
        if let (true, Some(max)) = (too_big(size), limits.max_bytes) {
            unmet.push(format!(
                "max_size: {} remain above the limit of {}: {why}",
                format_bytes(size),
                format_bytes(max)
            ));
        }
        if let (true, Some(min)) = (too_full(freed), limits.min_free_bytes) {
            unmet.push(format!(
                "min_free: the filesystem would have {} free, below {}: {why}",
                format_bytes(available_bytes.unwrap_or(0).saturating_add(freed)),
                format_bytes(min)
            ));
        }
    }
    Plan {
        evict,
        bytes_before,
        bytes_after: size,
        unmet,
        held_in_use,
    }
}

/// Why the entries a plan leaves are left: their bytes by reason, largest share first
/// (only the reasons that apply).
fn what_stays<I: Ord>(
    entries: &[Candidate<I>],
    evicted: &[Planned<I>],
    limits: &PlanLimits,
    protect_after: UnixTime,
    expired_before: Option<UnixTime>,
    short: u64,
) -> String {
    let mut gone: Vec<&I> = evicted.iter().map(|p| &p.id).collect();
    gone.sort_unstable();
    let (mut young, mut pinned, mut held, mut age_only) = (0u64, 0u64, 0u64, 0u64);
    let mut young_uses = Vec::new();
    for e in entries
        .iter()
        .filter(|e| gone.binary_search(&&e.id).is_err())
    {
        if e.pinned {
            pinned += e.disk_bytes;
        } else if e.last_use > protect_after {
            young += e.disk_bytes;
            if !e.held && e.tier != AGE_ONLY {
                young_uses.push((e.last_use, e.disk_bytes));
            }
        } else if e.held {
            held += e.disk_bytes;
        } else if e.tier == AGE_ONLY && expired_before.is_none_or(|t| e.last_use >= t) {
            age_only += e.disk_bytes;
        }
    }
    let min_age = format_duration(std::time::Duration::from_secs(
        limits.min_age_secs.max(0) as u64
    ));
    let mut parts = [
        (young, format!("used within min_age ({min_age})")),
        (pinned, "pinned by keep".to_string()),
        (
            held,
            "may still be opened by a running tool (retried when it exits)".to_string(),
        ),
        (age_only, "removed only by max_age".to_string()),
    ];
    parts.sort_by_key(|p| std::cmp::Reverse(p.0));
    let said: Vec<String> = parts
        .iter()
        .filter(|(bytes, _)| *bytes > 0)
        .map(|(bytes, why)| format!("{} {why}", format_bytes(*bytes)))
        .collect();
    let said = match said.is_empty() {
        true => "nothing left can be evicted".to_string(),
        false => format!("what is left is {}", said.join(", ")),
    };
    // When it will be met, if nothing is used meanwhile: once enough of what is young
    // has passed min_age (issue #30: "over the limit" said neither why nor until when).
    young_uses.sort_unstable();
    let mut freed = 0u64;
    let met_at = young_uses.iter().find_map(|&(last_use, bytes)| {
        freed += bytes;
        (freed >= short).then(|| last_use.saturating_add(limits.min_age_secs.max(0)))
    });
    match met_at {
        Some(at) => format!(
            "{said}; met from {} if none of it is used again",
            crate::units::local_time(at)
        ),
        None => format!("{said}; not met by waiting alone"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(id: u32, size: u64, t: i64) -> Candidate<u32> {
        Candidate {
            id,
            disk_bytes: size,
            last_use: t,
            pinned: false,
            tier: 0,
            held: false,
            surplus: false,
        }
    }

    const NOW: i64 = 1_000_000;

    #[test]
    fn max_age_then_oldest_first_until_under_max_size() {
        let entries = vec![
            c(1, 10, NOW - 100),
            c(2, 10, NOW - 5000),
            c(3, 10, NOW - 300),
            c(4, 10, NOW - 200),
        ];
        let limits = PlanLimits {
            max_bytes: Some(20),
            max_age_secs: Some(1000),
            min_free_bytes: None,
            min_age_secs: 50,
            surplus_age_secs: None,
        };
        let p = plan(&entries, &limits, None, NOW);
        let got: Vec<_> = p.evict.iter().map(|e| (e.id, e.reason)).collect();
        assert_eq!(got, [(2, Reason::MaxAge), (3, Reason::MaxSize)]);
        assert_eq!(p.bytes_after, 20);
        assert!(p.unmet.is_empty());
    }

    #[test]
    fn min_age_and_keep_are_never_evicted_and_unmet_is_explained() {
        let mut pinned = c(1, 100, NOW - 10_000);
        pinned.pinned = true;
        let entries = vec![pinned, c(2, 100, NOW - 10)];
        let limits = PlanLimits {
            max_bytes: Some(0),
            max_age_secs: Some(1),
            min_free_bytes: None,
            min_age_secs: 60,
            surplus_age_secs: None,
        };
        let p = plan(&entries, &limits, None, NOW);
        assert!(p.evict.is_empty());
        assert_eq!(p.unmet.len(), 1, "{:?}", p.unmet);
        assert_eq!(
            p.unmet[0],
            "max_size: 200 B remain above the limit of 0 B: what is left is 100 B used within min_age (1m), 100 B pinned by keep; not met by waiting alone"
        );
        // Without anything pinned, keep is not blamed, and the limit is met once the
        // young entry passes min_age (used at NOW - 10, min_age 60 s).
        let p = plan(&[c(2, 100, NOW - 10)], &limits, None, NOW);
        assert!(!p.unmet[0].contains("keep"), "{:?}", p.unmet);
        let met = format!(
            "met from {} if none of it is used again",
            crate::units::local_time(NOW + 50)
        );
        assert!(p.unmet[0].ends_with(&met), "{:?}", p.unmet);
    }

    #[test]
    fn min_free_evicts_until_enough_space() {
        let entries = vec![
            c(1, 100, NOW - 3000),
            c(2, 100, NOW - 2000),
            c(3, 100, NOW - 1000),
        ];
        let limits = PlanLimits {
            min_free_bytes: Some(1150),
            ..Default::default()
        };
        let p = plan(&entries, &limits, Some(1000), NOW);
        let got: Vec<_> = p.evict.iter().map(|e| (e.id, e.reason)).collect();
        assert_eq!(got, [(1, Reason::MinFree), (2, Reason::MinFree)]);
    }

    #[test]
    fn entries_a_running_tool_may_open_are_held() {
        // A go-build guard holds what was used since the oldest go started (2, 3); a
        // go-mod guard holds the versions of the running commands' build lists (4),
        // whatever their last use.
        let mut entries = vec![
            c(1, 10, NOW - 5000),
            c(2, 10, NOW - 4000),
            c(3, 10, NOW - 3000),
            c(4, 10, NOW - 9000),
        ];
        for e in &mut entries[1..] {
            e.held = true;
        }
        let limits = PlanLimits {
            max_bytes: Some(0),
            ..Default::default()
        };
        let p = plan(&entries, &limits, None, NOW);
        let ids: Vec<_> = p.evict.iter().map(|e| e.id).collect();
        assert_eq!(ids, [1]);
        assert_eq!(p.held_in_use, 3);
        assert!(p.unmet[0].contains("running tool"), "{:?}", p.unmet);
    }

    #[test]
    fn lower_tiers_go_first_under_pressure() {
        let mut tree = c(1, 10, NOW - 100);
        tree.tier = 0;
        let mut zip = c(2, 10, NOW - 5000);
        zip.tier = 1;
        let mut meta = c(3, 10, NOW - 9000);
        meta.tier = AGE_ONLY;
        let limits = PlanLimits {
            max_bytes: Some(15),
            ..Default::default()
        };
        let p = plan(&[tree, zip, meta], &limits, None, NOW);
        let ids: Vec<_> = p.evict.iter().map(|e| e.id).collect();
        assert_eq!(
            ids,
            [1, 2],
            "the newer tree goes before the older zip; meta stays"
        );
        assert_eq!(p.unmet.len(), 0);
    }

    #[test]
    fn ties_are_broken_by_id() {
        let entries = vec![
            c(3, 10, NOW - 500),
            c(1, 10, NOW - 500),
            c(2, 10, NOW - 500),
        ];
        let limits = PlanLimits {
            max_bytes: Some(10),
            ..Default::default()
        };
        let p = plan(&entries, &limits, None, NOW);
        let ids: Vec<_> = p.evict.iter().map(|e| e.id).collect();
        assert_eq!(ids, [1, 2]);
    }

    #[test]
    fn toolchains_beyond_keep_toolchains_go_once_unused_long_enough() {
        let mut entries = vec![
            c(1, 10, NOW - 40 * 86400),
            c(2, 10, NOW - 40 * 86400),
            c(3, 10, NOW - 5 * 86400),
        ];
        // 1 and 3 are surplus toolchains; 2 is kept (among the newest).
        entries[0].surplus = true;
        entries[2].surplus = true;
        let limits = PlanLimits {
            surplus_age_secs: Some(30 * 86400),
            ..Default::default()
        };
        let p = plan(&entries, &limits, None, NOW);
        let got: Vec<_> = p.evict.iter().map(|e| (e.id, e.reason)).collect();
        assert_eq!(got, [(1, Reason::KeepToolchains)]);
        // Held (a process executes from it): it stays.
        entries[0].held = true;
        assert!(plan(&entries, &limits, None, NOW).evict.is_empty());
    }

    fn arb_entries() -> impl Strategy<Value = Vec<Candidate<u32>>> {
        let tier = prop::sample::select(vec![0u8, 0, 1, AGE_ONLY]);
        prop::collection::vec(
            (
                0u64..1000,
                0i64..20_000,
                prop::bool::weighted(0.1),
                tier,
                prop::bool::weighted(0.1),
            ),
            0..60,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (size, age, pinned, tier, held))| Candidate {
                    id: i as u32,
                    disk_bytes: size,
                    last_use: NOW - age,
                    pinned,
                    tier,
                    held,
                    surplus: false,
                })
                .collect()
        })
    }

    fn arb_limits() -> impl Strategy<Value = PlanLimits> {
        (
            prop::option::of(0u64..30_000),
            prop::option::of(0i64..20_000),
            prop::option::of(0u64..40_000),
            0i64..5_000,
        )
            .prop_map(|(max_bytes, max_age_secs, min_free_bytes, min_age_secs)| {
                PlanLimits {
                    max_bytes,
                    max_age_secs,
                    min_free_bytes,
                    min_age_secs,
                    surplus_age_secs: None,
                }
            })
    }

    proptest! {
        #[test]
        fn plan_invariants(entries in arb_entries(), limits in arb_limits(), avail in 0u64..20_000) {
            let p = plan(&entries, &limits, Some(avail), NOW);
            let evicted: std::collections::HashSet<u32> = p.evict.iter().map(|e| e.id).collect();
            let protected = |e: &Candidate<u32>| {
                e.pinned || e.last_use > NOW - limits.min_age_secs || e.held
            };
            let kept: Vec<&Candidate<u32>> = entries.iter().filter(|e| !evicted.contains(&e.id)).collect();
            let size_after: u64 = kept.iter().map(|e| e.disk_bytes).sum();
            prop_assert_eq!(p.bytes_after, size_after);
            let freed = p.bytes_before - p.bytes_after;

            // Never a pinned entry or one younger than min_age.
            for e in entries.iter().filter(|e| evicted.contains(&e.id)) {
                prop_assert!(!protected(e));
            }
            // Every expired, evictable entry goes.
            if let Some(age) = limits.max_age_secs {
                for e in &kept {
                    prop_assert!(protected(e) || e.last_use >= NOW - age);
                }
            }
            // Limits hold afterwards, unless only protected entries remain.
            let evictable_left = kept.iter().any(|e| !protected(e) && e.tier != AGE_ONLY);
            if let Some(max) = limits.max_bytes {
                prop_assert!(size_after <= max || !evictable_left);
            }
            if let Some(min) = limits.min_free_bytes {
                prop_assert!(avail + freed >= min || !evictable_left);
            }
            // Evicted ⊆ oldest: any evictable entry kept (not age-only) comes after every
            // entry evicted for pressure in (tier, last use, id) order.
            let tier_of = |id: u32| entries[id as usize].tier;
            for k in kept.iter().filter(|e| !protected(e) && e.tier != AGE_ONLY) {
                for e in p.evict.iter().filter(|e| e.reason != Reason::MaxAge) {
                    prop_assert!((tier_of(e.id), e.last_use, e.id) < (k.tier, k.last_use, k.id));
                }
            }
            // Age-only entries go only for max_age.
            for e in &p.evict {
                prop_assert!(tier_of(e.id) != AGE_ONLY || e.reason == Reason::MaxAge);
            }
            // Minimal: without the last size/free eviction, a limit would be broken.
            if let Some(last) = p.evict.last().filter(|e| e.reason != Reason::MaxAge) {
                let over = limits.max_bytes.is_some_and(|m| size_after + last.disk_bytes > m);
                let short = limits.min_free_bytes.is_some_and(|m| avail + freed - last.disk_bytes < m);
                prop_assert!(over || short);
            }
            // Deterministic.
            prop_assert_eq!(&plan(&entries, &limits, Some(avail), NOW), &p);
            prop_assert_eq!(p.unmet.is_empty(), !((limits.max_bytes.is_some_and(|m| size_after > m)) || limits.min_free_bytes.is_some_and(|m| avail + freed < m)));
        }
    }
}
