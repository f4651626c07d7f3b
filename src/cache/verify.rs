//! Verification sweeps: every entry checked by its kind, problems recorded, and the
//! proven-broken ones repaired (removed through the kind) when asked.
use super::*;
use crate::kinds::Finding;
use crate::users;

impl<K: Kind> CacheOf<K> {
    pub(super) fn verify_all(&self, repair: bool, now: UnixTime) -> VerifyReport {
        let _work = self.work.lock().unwrap();
        let config = self.cfg();
        let started = Instant::now();
        let ids: Vec<(K::Id, UnixTime)> = {
            let index = self.index.lock().unwrap();
            index
                .iter()
                .map(|(id, m)| (id.clone(), m.last_use))
                .collect()
        };
        self.start_progress(ids.len());
        let owner = config.owner.as_ref();
        let findings = parallel::map_with(parallel::IO_THREADS, &ids, |(id, _)| {
            let found = users::as_owner(owner, || self.kind.verify(id)).unwrap_or_else(|e| {
                vec![Finding {
                    problem: "unreadable",
                    detail: e,
                }]
            });
            self.progress.0.fetch_add(1, Ordering::Relaxed);
            found
        });
        let young_after = now.saturating_sub(secs(config.limits.min_age));
        let waits_for_min_age = self.kind.repair_waits_for_min_age();
        let mut problems = Vec::new();
        // Removals run without the index lock (as eviction's do): watch events and
        // listings go on meanwhile; the repaired entries leave the index afterwards.
        let mut repaired = Vec::new();
        for ((id, last_use), mut found) in ids.iter().zip(findings) {
            if found.is_empty() {
                continue;
            }
            // Why a broken entry stays (see README, "Repair"), or `None`: repaired.
            let unrepaired: Option<Unrepaired> = if !repair {
                Some(not_requested())
            } else if self.pinned(&config, id) {
                Some(Unrepaired::new("pinned", "pinned by keep"))
            } else if waits_for_min_age && *last_use > young_after {
                Some(Unrepaired::new(
                    "within-min-age",
                    format!(
                        "used {} ago, within min_age {}",
                        age(Some(now - last_use)),
                        crate::units::format_duration(config.limits.min_age)
                    ),
                ))
            } else if let Some(in_use) = self
                .kind
                .in_use()
                .filter(|u| self.kind.holds(u, id, *last_use))
            {
                // Checked per entry, just before its removal: a go command that starts
                // during the sweep is seen.
                Some(Unrepaired::new(
                    "go-running",
                    format!("a go command is running: {}", in_use.by),
                ))
            } else {
                // Checked again just before the repair: a sweep of a big cache takes
                // minutes, and an entry replaced since its first check (or while it
                // was being hashed) must not be removed on the old evidence.
                found = users::as_owner(owner, || self.kind.verify(id)).unwrap_or(found);
                if found.is_empty() {
                    tracing::debug!(entry = %self.kind.path_of(id), "healthy when checked again before its repair");
                    continue;
                }
                let used_before = if waits_for_min_age {
                    young_after
                } else {
                    UnixTime::MAX
                };
                let removal = users::as_owner(owner, || {
                    self.kind.remove(id, used_before, Removing::Repair(&found))
                })
                .unwrap_or_else(Removal::Failed);
                match removal {
                    Removal::Removed { .. } | Removal::Gone => {
                        repaired.push(id);
                        None
                    }
                    Removal::Skipped(why) => Some(Unrepaired::new("skipped", why)),
                    Removal::LockBusy(why) => Some(Unrepaired::new("lock-busy", why)),
                    Removal::InUse(why) => Some(Unrepaired::new("go-running", why)),
                    Removal::Failed(why) => {
                        self.record_error(
                            format!("repair of {}: {why}", self.kind.path_of(id)),
                            now,
                        );
                        Some(Unrepaired::new("removal-failed", why))
                    }
                }
            };
            for f in found {
                let mut p = self.problem_view(&config, id, f.problem, f.detail);
                p.repaired = unrepaired.is_none();
                p.unrepaired = unrepaired.clone();
                problems.push(p);
            }
        }
        if !repaired.is_empty() {
            let mut index = self.index_mut();
            for id in repaired {
                index.remove(id);
            }
        }
        let report = VerifyReport {
            cache: config.name.clone(),
            at: now,
            checked: ids.len() as u64,
            duration_ms: started.elapsed().as_millis() as u64,
            problems,
        };
        let mut history = self.history.lock().unwrap();
        history.last_verify = Some(now);
        history.last_verify_duration_ms = Some(report.duration_ms);
        history.problems_found_total += report.problems.len() as u64;
        history.open_problems = report
            .problems
            .iter()
            .filter(|p| !p.repaired)
            .cloned()
            .collect();
        drop(history);
        parallel::release_freed_memory(); // the sweep listed every entry
        report
    }
}

/// Why a problem found without repairing stays: the CLI repairs only with `--repair`,
/// the daemon on its sweeps with `on_problem = "repair"` (issue #30: the old text
/// suggested a config that was already set).
fn not_requested() -> Unrepaired {
    Unrepaired::new(
        "not-requested",
        "not repaired by this check: `cachewarden verify` repairs only with --repair, the daemon on its verify_schedule sweeps when on_problem = \"repair\"",
    )
}

impl<K: Kind> CacheOf<K> {
    /// Checks again the entries at `paths` (relative to the root) and those with open
    /// problems, and updates the open problems and the index with what it finds: a
    /// one-shot `cachewarden verify` tells the daemon what it found and repaired, so
    /// status is not stale until the next sweep (issue #30). Never repairs. Returns the
    /// entries checked.
    pub(super) fn recheck_paths(&self, paths: &[String], now: UnixTime) -> usize {
        let _work = self.work.lock().unwrap();
        let config = self.cfg();
        let open = self.history.lock().unwrap().open_problems.clone();
        let ids_at = |path: &str| {
            let mut ids = Vec::new();
            self.kind.entries_at(Path::new(path), &mut ids);
            ids
        };
        let mut ids: Vec<K::Id> = (paths.iter().map(String::as_str))
            .chain(open.iter().map(|p| p.path.as_str()))
            .flat_map(ids_at)
            .collect();
        ids.sort();
        ids.dedup();
        let owner = config.owner.as_ref();
        let mut found = Vec::new();
        let mut errors = Vec::new();
        {
            let mut index = self.index_mut();
            for id in &ids {
                // Gone (repaired, or removed by its tool) or changed: the index learns it.
                match self.apply_one(&mut index, id.clone()) {
                    Err(e) => errors.push(e),
                    Ok(_) if index.get(id).is_none() => {}
                    Ok(_) => found.push(id.clone()),
                }
            }
        }
        let mut problems = Vec::new();
        for id in &found {
            let findings = users::as_owner(owner, || self.kind.verify(id)).unwrap_or_else(|e| {
                vec![Finding {
                    problem: "unreadable",
                    detail: e,
                }]
            });
            for f in findings {
                let mut p = self.problem_view(&config, id, f.problem, f.detail);
                p.unrepaired = Some(not_requested());
                problems.push(p);
            }
        }
        let checked: HashSet<&K::Id> = ids.iter().collect();
        let mut history = self.history.lock().unwrap();
        history
            .open_problems
            .retain(|p| !ids_at(&p.path).iter().any(|id| checked.contains(id)));
        history.open_problems.extend(problems);
        drop(history);
        for e in errors {
            self.record_error(format!("recheck: {e}"), now);
        }
        ids.len()
    }
}
