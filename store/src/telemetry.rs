//! The store's figures for `GET /metrics`, registered with the process's `prometheus-client`
//! registry: read from the store on each scrape (segments, hot tail, merges, quarantined files,
//! per dataset), and the log consumer's own metrics (Kafka consumer lag).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::{DatasetSummary, Store};

impl Store {
    /// Registers the store's figures and its log consumer's metrics.
    pub fn register_metrics(&self, registry: &mut Registry) {
        if let Some(c) = self.inner.consumer.get() {
            c.register_metrics(registry);
        }
        registry.register_collector(Box::new(StoreFigures(self.clone())));
    }
}

/// A per-dataset gauge: its name, its help, and how to read it from a summary.
type DatasetGauge = (&'static str, &'static str, fn(&DatasetSummary) -> i64);

/// The per-dataset gauges.
const DATASET_GAUGES: [DatasetGauge; 5] = [
    (
        "eventide_dataset_segments",
        "Parquet segment files of the dataset",
        |s| s.segments as i64,
    ),
    (
        "eventide_dataset_segment_bytes",
        "bytes of the dataset's segments",
        |s| s.segment_bytes as i64,
    ),
    (
        "eventide_dataset_segment_rows",
        "events in the dataset's segments",
        |s| s.segment_rows as i64,
    ),
    (
        "eventide_dataset_hot_rows",
        "events of the dataset in memory, not yet flushed to a segment",
        |s| s.hot_rows as i64,
    ),
    (
        "eventide_dataset_merges_pending",
        "compaction backlog: merges the policy would run now",
        |s| s.merges_pending as i64,
    ),
];

/// The store's figures, read when `/metrics` is scraped.
struct StoreFigures(Store);

impl std::fmt::Debug for StoreFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreFigures")
    }
}

impl Collector for StoreFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let store = &self.0;
        for (name, help, v) in [
            (
                "eventide_store_quarantined_files",
                "segment files holding committed events that no catalog named, moved to DATA/quarantine (see OPERATIONS.md)",
                store.quarantined_files() as i64,
            ),
            (
                "eventide_store_hot_bytes",
                "bytes of events in memory not yet flushed to segments (bounded by --max-hot-mb)",
                store.hot_bytes() as i64,
            ),
        ] {
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let deferred = ConstCounter::new(store.merges_deferred());
        deferred.encode(encoder.encode_descriptor(
            "eventide_store_merges_deferred",
            "merges not started because --max-memory-mb had no room for them (they run on a later pass)",
            None,
            deferred.metric_type(),
        )?)?;
        let summaries = store.summaries();
        for (name, help, get) in DATASET_GAUGES {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for s in &summaries {
                let labels = [("dataset", s.name.as_str())];
                ConstGauge::new(get(s)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
