//! Eviction: carrying out a plan (`plan.rs` decides what goes; this removes it through
//! the kind and keeps index, totals, churn and history in step), for the limits or for
//! entries a user names.
use super::*;
use crate::users;

impl<K: Kind> CacheOf<K> {
    /// Removes what a plan lists (or, for a dry run, only reports it) and keeps the
    /// index and history in step.
    pub(super) fn carry_out(
        &self,
        config: &CacheConfig,
        plan: plan::Plan<K::Id>,
        survivors: &Survivors,
        in_use: Option<crate::kinds::InUse>,
        dry_run: bool,
        now: UnixTime,
    ) -> EvictionReport {
        let started = Instant::now();
        let outcomes: Vec<Option<Removal>> = if dry_run {
            vec![None; plan.evict.len()]
        } else {
            self.start_progress(plan.evict.len());
            let owner = config.owner.as_ref();
            parallel::map_with(parallel::IO_THREADS, &plan.evict, |p| {
                let outcome = users::as_owner(owner, || {
                    self.kind
                        .remove(&p.id, p.last_use, Removing::Evict(survivors))
                })
                .unwrap_or_else(Removal::Failed);
                self.progress.0.fetch_add(1, Ordering::Relaxed);
                Some(outcome)
            })
        };

        let mut report = EvictionReport {
            cache: config.name.clone(),
            dry_run,
            at: now,
            bytes_before: plan.bytes_before,
            bytes_after_planned: plan.bytes_after,
            removed_entries: 0,
            freed_bytes: 0,
            evicted: Vec::new(),
            skipped: Vec::new(),
            unmet: plan.unmet.clone(),
            held_in_use: plan.held_in_use,
            in_use_since: in_use
                .as_ref()
                .map(|u| u.since)
                .filter(|&t| t != UnixTime::MAX),
            in_use_by: in_use.filter(|_| plan.held_in_use > 0).map(|u| u.by),
            duration_ms: 0,
            not_found: Vec::new(),
            failed: Vec::new(),
            bytes_after: 0,
        };
        let mut removed_by_reason = Vec::new();
        let mut failures: Vec<String> = Vec::new();
        let mut left_behind: Vec<u64> = Vec::new();
        {
            let mut index = self.index_mut();
            let mut gone: Vec<&K::Id> = Vec::new();
            for (planned, outcome) in plan.evict.iter().zip(outcomes) {
                let mut view = self.view(
                    config,
                    &planned.id,
                    planned.disk_bytes,
                    planned.last_use,
                    now,
                );
                view.pinned = false;
                match outcome {
                    None => report.evicted.push(EvictedView {
                        entry: view,
                        reason: planned.reason,
                    }),
                    Some(Removal::Removed { disk_bytes }) => {
                        // Part of it stays (go-build: an output others still name), or
                        // it named a shared part without carrying it: those others are
                        // settled below, as a scan would count them.
                        if let Some(m) = index.get(&planned.id).filter(|m| {
                            m.aux != 0
                                && (disk_bytes < planned.disk_bytes || self.kind.is_shared(m.aux))
                        }) {
                            left_behind.push(m.aux);
                        }
                        removed_by_reason.push((planned.reason, disk_bytes));
                        if matches!(
                            planned.reason,
                            plan::Reason::MaxSize | plan::Reason::MinFree
                        ) {
                            let key = crate::churn::key_of(&planned.id);
                            (self.churn.lock().unwrap()).evicted(
                                key,
                                disk_bytes,
                                planned.last_use,
                                now,
                            );
                        }
                        gone.push(&planned.id);
                        report.removed_entries += 1;
                        report.freed_bytes += disk_bytes;
                        report.evicted.push(EvictedView {
                            entry: view,
                            reason: planned.reason,
                        });
                    }
                    Some(Removal::Gone) => gone.push(&planned.id),
                    Some(Removal::Skipped(why) | Removal::LockBusy(why) | Removal::InUse(why)) => {
                        // Used since planning, or busy: refresh its metadata so the next
                        // plan sees the truth.
                        if let Ok(Some(aux)) = self.apply_one(&mut index, planned.id.clone()) {
                            left_behind.push(aux);
                        }
                        report.skipped.push(SkippedView {
                            entry: view.entry,
                            path: view.path,
                            reason: why,
                        });
                    }
                    Some(Removal::Failed(why)) => {
                        // Whatever part of it is left is still there: re-read it.
                        let _ = self.apply_one(&mut index, planned.id.clone());
                        failures.push(format!("{}: {why}", view.path));
                        report.failed.push(SkippedView {
                            entry: view.entry,
                            path: view.path,
                            reason: why,
                        });
                    }
                }
            }
            let gone: Vec<K::Id> = gone.into_iter().cloned().collect();
            index.remove_many(gone.iter());
            // Go may have put an entry anew between its removal and now, and the
            // watcher indexed it meanwhile: what is on disk again is read again, not
            // dropped with the removal (found on go 1.27, which rebuilds the standard
            // library into GOCACHE while evictions run).
            if !dry_run {
                for id in gone {
                    if let Ok(Some(aux)) = self.apply_one(&mut index, id) {
                        left_behind.push(aux);
                    }
                }
            }
            // What stays of a removed entry's shared part goes to the namer a full scan
            // would give it (the last used), not to any one of them.
            let left_behind: HashSet<u64> = left_behind.into_iter().collect();
            for e in self.settle_shared(&mut index, &left_behind) {
                failures.push(e);
            }
            report.bytes_after = if dry_run {
                plan.bytes_after
            } else {
                index.disk_bytes()
            };
        }
        for failure in failures.iter().take(RECENT) {
            self.record_error(format!("eviction: {failure}"), now);
        }
        if failures.len() > RECENT {
            self.record_error(
                format!("eviction: {} more removals failed", failures.len() - RECENT),
                now,
            );
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        if !dry_run {
            let mut history = self.history.lock().unwrap();
            history.evicted_entries_total += report.removed_entries;
            history.evicted_bytes_total += report.freed_bytes;
            for (reason, bytes) in &removed_by_reason {
                let count = history.evicted_by_reason.entry(*reason).or_default();
                count.0 += 1;
                count.1 += bytes;
            }
            if report.removed_entries > 0 || !report.skipped.is_empty() {
                history.last_eviction = Some(EvictionSummary {
                    at: now,
                    entries: report.removed_entries,
                    freed_bytes: report.freed_bytes,
                    skipped: report.skipped.len() as u64,
                });
            }
        }
        report
    }

    /// Evicts for the cache's own limits and, with `group`, to free that many bytes
    /// more for its group's limits (`group.rs`), labelled with the group's reason.
    pub(super) fn evict_over_limits(
        &self,
        group: Option<(u64, plan::Reason)>,
        dry_run: bool,
        now: UnixTime,
    ) -> EvictionReport {
        let _work = self.work.lock().unwrap();
        let config = self.cfg();
        let disk = self.disk();
        let in_use = self.kind.in_use();
        let mut limits = self.plan_limits(&config, disk);
        if let Some((free, _)) = group {
            // The group's share as a size limit: the plan then takes this cache's
            // oldest evictable entries, which are the ones the group's LRU chose.
            let target = self.totals().disk_bytes.saturating_sub(free);
            limits.max_bytes = Some(limits.max_bytes.map_or(target, |m| m.min(target)));
        }
        let (plan, survivors) = {
            // Planning borrows the ids: a candidate costs 32 bytes, not a copy of the id.
            let index = self.index.lock().unwrap();
            let surplus = self.surplus_toolchains(&config, &index);
            let candidates: Vec<Candidate<&K::Id>> = index
                .iter()
                .map(|(id, m)| Candidate {
                    id,
                    disk_bytes: m.disk_bytes,
                    last_use: m.last_use,
                    pinned: self.pinned(&config, id),
                    tier: tier_for(config.tiered_eviction, self.kind.tier(id)),
                    held: in_use
                        .as_ref()
                        .is_some_and(|u| self.kind.holds(u, id, m.last_use)),
                    surplus: !surplus.is_empty()
                        && self
                            .kind
                            .toolchain_of(id)
                            .is_some_and(|v| surplus.contains(&v)),
                })
                .collect();
            let borrowed = plan::plan(&candidates, &limits, disk.map(|d| d.available_bytes), now);
            drop(candidates);
            let plan = plan::Plan {
                evict: borrowed
                    .evict
                    .into_iter()
                    .map(|p| plan::Planned {
                        id: p.id.clone(),
                        disk_bytes: p.disk_bytes,
                        last_use: p.last_use,
                        reason: match (group, p.reason) {
                            (Some((_, why)), plan::Reason::MaxSize) => why,
                            (_, reason) => reason,
                        },
                    })
                    .collect(),
                bytes_before: borrowed.bytes_before,
                bytes_after: borrowed.bytes_after,
                unmet: borrowed.unmet,
                held_in_use: borrowed.held_in_use,
            };
            let survivors = survivors_of(&index, plan.evict.iter().map(|p| &p.id));
            (plan, survivors)
        };

        let mut report = self.carry_out(&config, plan, &survivors, in_use, dry_run, now);
        if !report.failed.is_empty() && self.over_size_or_free_limit() {
            report.unmet.push(format!(
                "{} removals failed (see failed), and a limit is still exceeded: {} left",
                report.failed.len(),
                crate::units::format_bytes(report.bytes_after)
            ));
        }
        if !dry_run {
            // The working set, while evicted entries come back (then doctor advises
            // max_size from it): a pass over the index, as the plan was.
            let churning = self.churn.lock().unwrap().recreated(now).entries > 0;
            let working_set = churning.then(|| {
                let recent = now - crate::churn::WINDOW;
                let cached: u64 = (self.index.lock().unwrap().iter())
                    .filter(|(_, m)| m.last_use >= recent)
                    .map(|(_, m)| m.disk_bytes)
                    .sum();
                self.churn.lock().unwrap().working_set(cached, now)
            });
            let mut history = self.history.lock().unwrap();
            if report.unmet.is_empty() {
                history.last_enforcement = Some(now);
            }
            history.unmet = report.unmet.clone();
            history.working_set = working_set;
            history.held = report.in_use_by.clone().map(|by| crate::report::HeldView {
                at: now,
                entries: report.held_in_use,
                by,
            });
        }
        parallel::release_freed_memory(); // planning copied every entry
        report
    }

    /// The Go toolchains beyond the `keep_toolchains` newest (empty without the setting).
    fn surplus_toolchains(&self, config: &CacheConfig, index: &Index<K::Id>) -> HashSet<String> {
        let Some(keep) = config
            .keep_toolchains
            .filter(|_| self.kind.holds_toolchains())
        else {
            return HashSet::new();
        };
        let mut versions: Vec<String> = index
            .iter()
            .filter_map(|(id, _)| self.kind.toolchain_of(id))
            .collect();
        versions.sort_by(|a, b| crate::golang::module::compare_go_versions(b, a));
        versions.dedup();
        versions.into_iter().skip(keep as usize).collect()
    }

    /// What an eviction for size or free space could take now, as (tier, last use,
    /// disk bytes): not pinned, past `min_age`, not held by a running tool, not
    /// age-only.
    pub(super) fn evictable_now(&self, now: UnixTime) -> Vec<(u8, UnixTime, u64)> {
        let config = self.cfg();
        let protect_after = now.saturating_sub(secs(config.limits.min_age));
        let in_use = self.kind.in_use();
        let index = self.index.lock().unwrap();
        index
            .iter()
            .filter(|(id, m)| {
                m.last_use <= protect_after
                    && in_use
                        .as_ref()
                        .is_none_or(|u| !self.kind.holds(u, id, m.last_use))
                    && !self.pinned(&config, id)
            })
            .map(|(id, m)| {
                let tier = tier_for(config.tiered_eviction, self.kind.tier(id));
                (tier, m.last_use, m.disk_bytes)
            })
            .filter(|(tier, _, _)| *tier != plan::AGE_ONLY)
            .collect()
    }

    pub(super) fn evict_named(
        &self,
        selection: &Selection,
        dry_run: bool,
        now: UnixTime,
    ) -> EvictionReport {
        let _work = self.work.lock().unwrap();
        let config = self.cfg();
        let in_use = self.kind.in_use();
        let young_after = now.saturating_sub(secs(config.limits.min_age));
        let mut refused = Vec::new();
        let mut matched: Vec<String> = Vec::new();
        let (plan, survivors) = {
            let index = self.index.lock().unwrap();
            let mut chosen: Vec<(u8, UnixTime, K::Id, u64)> = Vec::new();
            for (id, m) in index.iter() {
                let name = self.kind.name_of(id);
                if !selection.matches(&name) {
                    continue;
                }
                matched.push(name.clone());
                let why = if m.last_use > young_after {
                    Some(format!(
                        "used {} ago, within min_age ({}); removable from {}",
                        age(Some(now - m.last_use)),
                        crate::units::format_duration(config.limits.min_age),
                        crate::units::local_time(m.last_use + secs(config.limits.min_age))
                    ))
                } else if in_use
                    .as_ref()
                    .is_some_and(|u| self.kind.holds(u, id, m.last_use))
                {
                    Some(format!(
                        "may still be opened by {}",
                        in_use.as_ref().unwrap().by
                    ))
                } else {
                    None
                };
                match why {
                    Some(reason) => refused.push(SkippedView {
                        entry: name,
                        path: self.kind.path_of(id),
                        reason,
                    }),
                    None => chosen.push((self.kind.tier(id), m.last_use, id.clone(), m.disk_bytes)),
                }
            }
            chosen.sort();
            let going: HashSet<&K::Id> = chosen.iter().map(|c| &c.2).collect();
            let survivors = Survivors::new(
                index
                    .iter()
                    .filter(|(id, _)| !going.contains(id))
                    .map(|(_, m)| m.aux)
                    .collect(),
            );
            drop(going);
            let bytes_before = index.disk_bytes();
            let freed: u64 = chosen.iter().map(|c| c.3).sum();
            let plan = plan::Plan {
                evict: chosen
                    .into_iter()
                    .map(|(_, last_use, id, disk_bytes)| plan::Planned {
                        id,
                        disk_bytes,
                        last_use,
                        reason: plan::Reason::Requested,
                    })
                    .collect(),
                bytes_before,
                bytes_after: bytes_before - freed,
                unmet: Vec::new(),
                held_in_use: 0,
            };
            (plan, survivors)
        };
        let mut report = self.carry_out(&config, plan, &survivors, in_use, dry_run, now);
        report.skipped.extend(refused);
        report.not_found = selection.not_found(matched.iter().map(String::as_str));
        report
    }
}

/// The `aux` values of the entries that stay when `going` are removed: every entry's
/// `aux`, minus one occurrence per removed entry (a multiset difference on sorted
/// vectors — 8 bytes per entry, no hash set over millions of ids).
fn survivors_of<'a, I: Ord + std::hash::Hash + Clone + 'a>(
    index: &Index<I>,
    going: impl Iterator<Item = &'a I>,
) -> Survivors {
    let mut all: Vec<u64> = index.iter().map(|(_, m)| m.aux).collect();
    all.sort_unstable();
    let mut gone: Vec<u64> = going
        .filter_map(|id| index.get(id))
        .map(|m| m.aux)
        .collect();
    gone.sort_unstable();
    let mut kept = Vec::with_capacity(all.len());
    let mut g = gone.into_iter().peekable();
    for aux in all {
        while g.peek().is_some_and(|&x| x < aux) {
            g.next();
        }
        if g.peek() == Some(&aux) {
            g.next();
        } else {
            kept.push(aux);
        }
    }
    Survivors::new(kept)
}
