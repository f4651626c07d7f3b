//! `GET /metrics`: the status report in Prometheus' text exposition format (0.0.4).
//! Written by hand: a dozen gauges and counters do not need a metrics registry.

use std::fmt::Write;

use crate::report::{CacheStatus, StatusReport};

type Metric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&CacheStatus) -> Option<f64>,
);

const METRICS: &[Metric] = &[
    (
        "cachewarden_cache_disk_bytes",
        "gauge",
        "Disk usage of the cache's entries (as du counts it).",
        |c| Some(c.disk_bytes as f64),
    ),
    (
        "cachewarden_cache_apparent_bytes",
        "gauge",
        "Sum of the cache's file lengths.",
        |c| Some(c.apparent_bytes as f64),
    ),
    (
        "cachewarden_cache_entries",
        "gauge",
        "Entries in the cache's index.",
        |c| Some(c.entries as f64),
    ),
    (
        "cachewarden_cache_max_size_bytes",
        "gauge",
        "The cache's max_size limit.",
        |c| c.limits.max_size_bytes.map(|b| b as f64),
    ),
    (
        "cachewarden_cache_min_free_bytes",
        "gauge",
        "The cache's min_free limit.",
        |c| c.limits.min_free_bytes.map(|b| b as f64),
    ),
    (
        "cachewarden_filesystem_available_bytes",
        "gauge",
        "Free space on the cache's filesystem.",
        |c| c.disk.map(|d| d.available_bytes as f64),
    ),
    (
        "cachewarden_cache_oldest_entry_age_seconds",
        "gauge",
        "Age of the least recently used entry.",
        |c| c.oldest_age_secs.map(|s| s as f64),
    ),
    (
        "cachewarden_cache_over_limit",
        "gauge",
        "1 while the cache exceeds a limit.",
        |c| Some(if c.over_limits.is_empty() { 0.0 } else { 1.0 }),
    ),
    (
        "cachewarden_evicted_entries_total",
        "counter",
        "Entries evicted since the daemon started.",
        |c| Some(c.evicted_entries_total as f64),
    ),
    (
        "cachewarden_evicted_bytes_total",
        "counter",
        "Bytes freed by eviction since the daemon started.",
        |c| Some(c.evicted_bytes_total as f64),
    ),
    (
        "cachewarden_problems_open",
        "gauge",
        "Broken entries found by the last verification and not repaired.",
        |c| Some(c.problems.open as f64),
    ),
    (
        "cachewarden_problems_found_total",
        "counter",
        "Broken entries found since the daemon started.",
        |c| Some(c.problems.found_total as f64),
    ),
    (
        "cachewarden_errors_total",
        "counter",
        "Errors (unreadable files, failed removals, watch failures).",
        |c| Some(c.errors_total as f64),
    ),
    (
        "cachewarden_last_scan_timestamp_seconds",
        "gauge",
        "When the last full scan finished.",
        |c| c.last_scan.as_ref().map(|s| s.at as f64),
    ),
    (
        "cachewarden_last_scan_duration_seconds",
        "gauge",
        "How long the last full scan took.",
        |c| c.last_scan.as_ref().map(|s| s.duration_ms as f64 / 1000.0),
    ),
    (
        "cachewarden_last_eviction_timestamp_seconds",
        "gauge",
        "When entries were last evicted.",
        |c| c.last_eviction.as_ref().map(|e| e.at as f64),
    ),
    (
        "cachewarden_recreated_after_eviction_entries",
        "gauge",
        "Entries evicted for size or free space that came back within a day.",
        |c| Some(c.recreated_after_eviction.entries as f64),
    ),
    (
        "cachewarden_recreated_after_eviction_bytes",
        "gauge",
        "Bytes of the entries evicted for size or free space that came back within a day.",
        |c| Some(c.recreated_after_eviction.bytes as f64),
    ),
    (
        "cachewarden_last_enforcement_timestamp_seconds",
        "gauge",
        "When an enforcement last ended with every limit met.",
        |c| c.last_enforcement.map(|t| t as f64),
    ),
    (
        "cachewarden_last_verify_timestamp_seconds",
        "gauge",
        "When the last integrity sweep finished.",
        |c| c.problems.last_verify.map(|t| t as f64),
    ),
    (
        "cachewarden_last_verify_duration_seconds",
        "gauge",
        "How long the last integrity sweep took.",
        |c| {
            c.problems
                .last_verify_duration_ms
                .map(|ms| ms as f64 / 1000.0)
        },
    ),
];

/// Families with one more label than `cache` and `kind`: (name, type, help, label,
/// the (label value, sample) pairs of a cache).
type LabelledMetric = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    fn(&CacheStatus) -> Vec<(String, f64)>,
);

fn reason_name(reason: crate::plan::Reason) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

const LABELLED: &[LabelledMetric] = &[
    (
        "cachewarden_evicted_by_reason_entries_total",
        "counter",
        "Entries evicted since the daemon started, by reason.",
        "reason",
        |c| {
            c.evicted_by_reason
                .iter()
                .map(|r| (reason_name(r.reason), r.entries as f64))
                .collect()
        },
    ),
    (
        "cachewarden_evicted_by_reason_bytes_total",
        "counter",
        "Bytes freed by eviction since the daemon started, by reason.",
        "reason",
        |c| {
            c.evicted_by_reason
                .iter()
                .map(|r| (reason_name(r.reason), r.bytes as f64))
                .collect()
        },
    ),
    (
        "cachewarden_problems_open_by_code",
        "gauge",
        "Broken entries found by the last verification and not repaired, by problem code.",
        "problem",
        |c| {
            c.problems
                .open_by_problem
                .iter()
                .map(|(code, n)| (code.clone(), *n as f64))
                .collect()
        },
    ),
];

pub fn render(report: &StatusReport) -> String {
    let mut out = String::new();
    for (name, kind, help, value) in METRICS {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for cache in &report.caches {
            if let Some(v) = value(cache) {
                let _ = writeln!(out, "{name}{{{}}} {v}", cache_labels(cache));
            }
        }
    }
    for (name, kind, help, label, samples) in LABELLED {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for cache in &report.caches {
            for (value, sample) in samples(cache) {
                let _ = writeln!(
                    out,
                    "{name}{{{},{label}=\"{}\"}} {sample}",
                    cache_labels(cache),
                    escape(&value)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP cachewarden_start_time_seconds When the daemon started.\n# TYPE cachewarden_start_time_seconds gauge\ncachewarden_start_time_seconds {}",
        report.started_at
    );
    out
}

/// `cache` and `kind`, and `user` for a cache a table found per user (its name is
/// `<table>@<user>`), so a fleet's dashboards can sum by user.
fn cache_labels(cache: &CacheStatus) -> String {
    let mut labels = format!("cache=\"{}\",kind=\"{}\"", escape(&cache.name), cache.kind);
    if let Some(user) = &cache.user {
        labels.push_str(&format!(",user=\"{}\"", escape(user)));
    }
    labels
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
