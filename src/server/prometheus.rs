//! `/metrics`: the engine's and the master dataset's counters in the Prometheus (OpenMetrics)
//! text format, through the `prometheus-client` crate.
//!
//! The counters live where they are counted (plain atomics in [`Metrics`] and
//! [`MasterCounters`](crate::master::MasterCounters)); a [`Collector`] reads them at each scrape, so counting costs the
//! engine nothing more than an atomic add. Only the query latency is a histogram owned here.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::event::END_OF_TIME;
use crate::master::MasterDataset;
use crate::metrics::Metrics;

/// The metrics one server exports.
#[derive(Debug)]
pub struct Exporter {
    registry: Registry,
    /// Seconds from a query's arrival to its answer.
    pub query_latency: Histogram,
}

impl Exporter {
    /// An exporter over the engine's counters, the master dataset's, and the number of local
    /// workers (to show replay progress as workers done).
    pub fn new<E: Send + Sync + 'static>(
        metrics: Arc<Metrics>,
        master: Arc<MasterDataset<E>>,
        replay_total_bytes: u64,
        workers: u64,
    ) -> Self {
        let mut registry = Registry::default();
        let query_latency = Histogram::new(exponential_buckets(0.000_1, 2.0, 18));
        registry.register(
            "lambdaflow_query_duration_seconds",
            "time from a query's arrival to its answer",
            query_latency.clone(),
        );
        registry.register_collector(Box::new(Counters {
            metrics,
            master,
            replay_total_bytes,
            workers,
        }));
        Exporter {
            registry,
            query_latency,
        }
    }

    /// Every metric in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Every metric in the Prometheus text format 0.0.4 (what `promtool check metrics` and
    /// scrapers that do not ask for OpenMetrics read).
    pub fn render_text(&self) -> String {
        prometheus_text(&self.render())
    }
}

/// Rewrites OpenMetrics text as Prometheus text 0.0.4: a counter's `HELP` and `TYPE` name its
/// samples' `_total` name, and the OpenMetrics-only lines (`# UNIT`, `# EOF`) go.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# EOF") || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

struct Counters<E> {
    metrics: Arc<Metrics>,
    master: Arc<MasterDataset<E>>,
    replay_total_bytes: u64,
    workers: u64,
}

impl<E> std::fmt::Debug for Counters<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters")
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: &AtomicU64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(Metrics::get(value));
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// A gauge of a time in milliseconds, exported in seconds (Prometheus's base unit).
fn seconds(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    millis: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(millis as f64 / 1000.0);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl<E: Send + Sync + 'static> Collector for Counters<E> {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.metrics;
        counter(
            &mut e,
            "lambdaflow_history_events",
            "events replayed through the batch lane",
            &m.history_events,
        )?;
        counter(
            &mut e,
            "lambdaflow_live_events",
            "events taken on time by the speed lane",
            &m.live_events,
        )?;
        counter(
            &mut e,
            "lambdaflow_rejected_lines",
            "input lines rejected",
            &m.rejected,
        )?;
        counter(
            &mut e,
            "lambdaflow_late_corrected",
            "late events applied at the current time",
            &m.late_corrected,
        )?;
        counter(
            &mut e,
            "lambdaflow_late_dropped",
            "late events left out",
            &m.late_dropped,
        )?;
        counter(
            &mut e,
            "lambdaflow_retired_late",
            "updates that reached a window after its state retired, left out",
            &m.retired_late,
        )?;
        counter(&mut e, "lambdaflow_queries", "queries taken", &m.queries)?;
        gauge(
            &mut e,
            "lambdaflow_queries_waiting",
            "queries taken and not yet answered (or withdrawn)",
            m.queries_waiting() as i64,
        )?;
        counter(
            &mut e,
            "lambdaflow_ingest_refused",
            "ingest requests refused with 503 (backlog full or too many in progress)",
            &m.ingest_refused,
        )?;
        gauge(
            &mut e,
            "lambdaflow_dataflows",
            "dataflows built while running (SQL views, ad-hoc queries) and not yet freed",
            Metrics::get(&m.dataflows) as i64,
        )?;
        gauge(
            &mut e,
            "lambdaflow_live_backlog_events",
            "live events waiting for the workers",
            Metrics::get(&m.backlog_events) as i64,
        )?;
        gauge(
            &mut e,
            "lambdaflow_live_backlog_bytes",
            "bytes of live events waiting for the workers",
            Metrics::get(&m.backlog_bytes) as i64,
        )?;
        gauge(
            &mut e,
            "lambdaflow_ready",
            "1 once every view reflects the whole master dataset",
            i64::from(m.views_ready.load(std::sync::atomic::Ordering::Relaxed)),
        )?;
        let frontier = Metrics::get(&m.frontier).min(END_OF_TIME);
        let newest = Metrics::get(&m.newest_event);
        seconds(
            &mut e,
            "lambdaflow_watermark_seconds",
            "global watermark, in seconds since the Unix epoch: every event time before it is complete",
            frontier,
        )?;
        seconds(
            &mut e,
            "lambdaflow_watermark_lag_seconds",
            "how far the watermark trails the newest live event, in seconds",
            newest.saturating_sub(frontier),
        )?;
        gauge(
            &mut e,
            "lambdaflow_replay_bytes",
            "bytes of history replayed",
            Metrics::get(&m.history_bytes) as i64,
        )?;
        gauge(
            &mut e,
            "lambdaflow_replay_total_bytes",
            "bytes of history to replay",
            self.replay_total_bytes as i64,
        )?;
        gauge(
            &mut e,
            "lambdaflow_replay_workers_done",
            "local workers that finished replaying history",
            Metrics::get(&m.replayed_workers) as i64,
        )?;
        gauge(
            &mut e,
            "lambdaflow_workers",
            "local workers",
            self.workers as i64,
        )?;
        let family = ConstGauge::new(0f64);
        let mut workers = e.encode_descriptor(
            "lambdaflow_worker_watermark_seconds",
            "each local worker's watermark (its speed lane's time), in seconds since the Unix epoch",
            None,
            family.metric_type(),
        )?;
        for (worker, time) in m.worker_watermarks() {
            let labels = [("worker", worker.to_string())];
            ConstGauge::new(time as f64 / 1000.0).encode(workers.encode_family(&labels)?)?;
        }
        let records = m.arrangement_records();
        let family = ConstGauge::new(0i64);
        let mut views = e.encode_descriptor(
            "lambdaflow_arrangement_records",
            "updates held by each view's arrangement in this process",
            None,
            family.metric_type(),
        )?;
        for (view, n) in records {
            let labels = [("view", view)];
            ConstGauge::new(n as i64).encode(views.encode_family(&labels)?)?;
        }
        counter(
            &mut e,
            "lambdaflow_checkpoints",
            "checkpoints written by this process",
            &m.checkpoints,
        )?;
        let at = Metrics::get(&m.checkpoint_at_ms);
        let age = ConstGauge::new(if at == 0 {
            f64::NAN
        } else {
            crate::live::wall_clock_ms().saturating_sub(at) as f64 / 1000.0
        });
        age.encode(e.encode_descriptor(
            "lambdaflow_checkpoint_age_seconds",
            "time since the last checkpoint was durable (NaN: none yet)",
            None,
            age.metric_type(),
        )?)?;
        let took = ConstGauge::new(Metrics::get(&m.checkpoint_micros) as f64 / 1e6);
        took.encode(e.encode_descriptor(
            "lambdaflow_checkpoint_duration_seconds",
            "how long the last checkpoint took, from the request to its directory's fsync",
            None,
            took.metric_type(),
        )?)?;
        gauge(
            &mut e,
            "lambdaflow_checkpoint_bytes",
            "the size of the last checkpoint on disk",
            Metrics::get(&m.checkpoint_bytes) as i64,
        )?;
        gauge(
            &mut e,
            "lambdaflow_restored",
            "1 if the views were restored from a checkpoint when this process started",
            i64::from(m.restored.load(std::sync::atomic::Ordering::Relaxed)),
        )?;
        gauge(
            &mut e,
            "lambdaflow_restored_cuts",
            "state cuts restored from the checkpoint when this process started",
            Metrics::get(&m.restored_cuts) as i64,
        )?;
        gauge(
            &mut e,
            "lambdaflow_rebuilt_cuts",
            "state cuts the checkpoint lacked (views defined or changed since), rebuilt from the master dataset when this process started",
            Metrics::get(&m.rebuilt_cuts) as i64,
        )?;
        let l = self.master.counters();
        gauge(
            &mut e,
            "lambdaflow_log_records",
            "records in the master dataset",
            Metrics::get(&l.records) as i64,
        )?;
        gauge(
            &mut e,
            "lambdaflow_log_bytes",
            "bytes in the master dataset",
            Metrics::get(&l.bytes) as i64,
        )?;
        gauge(
            &mut e,
            "lambdaflow_log_segments",
            "segment files of the master dataset",
            Metrics::get(&l.segments) as i64,
        )?;
        counter(
            &mut e,
            "lambdaflow_log_fsyncs",
            "group commits (fsyncs) of the master dataset",
            &l.fsyncs,
        )?;
        counter(
            &mut e,
            "lambdaflow_log_appends",
            "appends acknowledged by the master dataset",
            &l.appends,
        )?;
        gauge(
            &mut e,
            "lambdaflow_log_truncated_bytes",
            "bytes of torn tail cut off the master dataset when it was opened",
            Metrics::get(&l.truncated_bytes) as i64,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::prometheus_text;

    #[test]
    fn counters_are_named_by_their_samples_in_prometheus_text() {
        let open = "# HELP a_events events.\n# TYPE a_events counter\na_events_total 3\n# HELP b gauge.\n# TYPE b gauge\nb 1\n# EOF\n";
        assert_eq!(
            prometheus_text(open),
            "# HELP a_events_total events.\n# TYPE a_events_total counter\na_events_total 3\n# HELP b gauge.\n# TYPE b gauge\nb 1\n"
        );
    }
}
