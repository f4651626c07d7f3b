//! Incremental restarts: the index saved as a snapshot (`snapshot.rs` is the format)
//! and restored by rescanning only the partitions whose directory changed since.
use super::*;

impl<K: Kind> CacheOf<K> {
    pub(super) fn save_index_snapshot(&self, path: &Path) -> std::io::Result<bool> {
        if self.kind.partitions() == 0 {
            return Ok(false);
        }
        let stamps = self.stamps.lock().unwrap().clone();
        let index = self.index.lock().unwrap();
        crate::snapshot::save(&self.kind, path, &stamps, index.len(), index.iter())?;
        drop(index);
        parallel::release_freed_memory();
        Ok(true)
    }

    pub(super) fn restore_from_snapshot(&self, path: &Path, now: UnixTime) -> Option<ScanRecord> {
        let parts = self.kind.partitions();
        if parts == 0 {
            return None;
        }
        let _work = self.work.lock().unwrap();
        *self.changed_during_scan.lock().unwrap() = Some(Vec::new());
        let started = Instant::now();
        let snapshot = match crate::snapshot::load(&self.kind, path) {
            Ok(s) => s,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("not using the snapshot: {e}");
                }
                *self.changed_during_scan.lock().unwrap() = None;
                return None;
            }
        };
        let unchanged: Vec<bool> = (0..parts)
            .map(|p| {
                snapshot.stamps[p].is_some() && self.kind.partition_stamp(p) == snapshot.stamps[p]
            })
            .collect();
        let changed: Vec<usize> = (0..parts).filter(|&p| !unchanged[p]).collect();
        let (mut kept, stale): (Entries<K>, Entries<K>) = snapshot
            .entries
            .into_iter()
            .partition(|(id, _)| unchanged[self.kind.partition_of(id)]);
        {
            let mut stamps = self.stamps.lock().unwrap();
            for p in (0..parts).filter(|&p| unchanged[p]) {
                stamps[p] = snapshot.stamps[p];
            }
        }
        let named = Survivors::new(kept.iter().map(|(_, m)| m.aux).collect());
        let was_stale = known_from(&stale);
        let walked = self.kind.scan_partitions(&changed);
        let walk_ms = started.elapsed().as_millis() as u64;
        let mut result = self
            .kind
            .complete(walked, &was_stale, &|aux| named.contains(aux));

        // An entry that vanished from a changed partition may leave behind something
        // that now belongs to no one in an unchanged one (go-build: an output whose
        // action was removed): rescan those partitions too.
        let found: HashSet<&K::Id> = result.entries.iter().map(|(id, _)| id).collect();
        let named_now = Survivors::new(
            kept.iter()
                .chain(&result.entries)
                .map(|(_, m)| m.aux)
                .collect(),
        );
        let extra: Vec<usize> = stale
            .iter()
            .filter(|(id, m)| !found.contains(id) && !named_now.contains(m.aux))
            .filter_map(|(_, m)| self.kind.partition_of_aux(m.aux))
            .filter(|&p| unchanged[p])
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        drop(found);
        let mut rescanned = changed.len();
        if !extra.is_empty() {
            let rescanning: Entries<K>;
            (rescanning, kept) = kept
                .into_iter()
                .partition(|(id, _)| extra.contains(&self.kind.partition_of(id)));
            let named = Survivors::new(
                kept.iter()
                    .chain(&result.entries)
                    .map(|(_, m)| m.aux)
                    .collect(),
            );
            let walked = self.kind.scan_partitions(&extra);
            let more = self
                .kind
                .complete(walked, &known_from(&rescanning), &|aux| named.contains(aux));
            result.entries.extend(more.entries);
            result.stamps.extend(more.stamps);
            result.errors.extend(more.errors);
            result.ignored_files += more.ignored_files;
            rescanned += extra.len();
        }
        // An action read here may name an output in a partition not walked, which an
        // entry kept from the snapshot names too: settle who carries it.
        let walked: HashSet<usize> = changed.iter().chain(&extra).copied().collect();
        let named_across: HashSet<u64> = result
            .entries
            .iter()
            .map(|(_, m)| m.aux)
            .filter(|&aux| {
                self.kind
                    .partition_of_aux(aux)
                    .is_some_and(|p| !walked.contains(&p))
            })
            .collect();
        let record = self.install(result, kept, started, walk_ms, now, Some(rescanned as u64));
        // And what the kept partitions' entries share was never read this run (the kind
        // learns it by reading the namers): settle every aux several entries name, so
        // that a later use of one of them moves the shared part as a scan would.
        let mut index = self.index_mut();
        let mut named: Vec<u64> = match self.kind.aux_can_be_shared() {
            true => index
                .iter()
                .map(|(_, m)| m.aux)
                .filter(|&a| a != 0)
                .collect(),
            false => Vec::new(),
        };
        named.sort_unstable();
        let mut settle = named_across;
        settle.extend(named.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]));
        drop(named);
        let errors = self.settle_shared(&mut index, &settle);
        drop(index);
        for e in errors {
            self.record_error(format!("restore: {e}"), now);
        }
        Some(record)
    }
}
