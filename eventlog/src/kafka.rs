//! The Kafka log: one topic, records spread over its partitions with the dataset in a header,
//! an idempotent `acks=all` producer and a consumer group (see `docs/adr/0002-kafka-log.md`).
//!
//! # Consumer
//! A dedicated thread polls an rdkafka `BaseConsumer` and hands records to the async side
//! through a bounded channel (backpressure reaches Kafka: the thread stops fetching). The
//! rebalance callbacks run on that thread, before records of newly assigned partitions are
//! returned and before revoked partitions move on, and call the [`PartitionOwner`]. Every
//! record is tagged with the assignment generation it was fetched under, and records fetched
//! under an older assignment of their partition are dropped, so a partition that leaves and
//! comes back is never applied twice from the channel.
//!
//! Offsets are committed to Kafka only after the store's catalog holds them; on assignment the
//! consumer resumes from the group's committed offset (or the earliest record), and the store
//! skips records its catalog already covers.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset as KOffset, TopicPartitionList};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::{
    EventLog, LogConsumer, LogError, NewRecord, Offset, Partition, PartitionOwner, Position,
    Record, Result,
};

/// Settings of the Kafka log.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `bootstrap.servers`, e.g. `127.0.0.1:9092`.
    pub brokers: String,
    /// The topic holding every dataset's batches.
    pub topic: String,
    /// Partitions when the topic is created (existing topics keep theirs).
    pub partitions: i32,
    /// Replication factor when the topic is created.
    pub replication: i32,
    /// Consumer group of the store processes.
    pub group: String,
    /// How long an append may wait for Kafka before it fails (and ingest answers 503).
    pub delivery_timeout: Duration,
    /// Largest record (one ingest batch as Arrow IPC).
    pub max_message_bytes: usize,
    /// How fast a dead store process's partitions move to the others.
    pub session_timeout: Duration,
    /// `transactional.id` of the producer that appends requests of several records in one
    /// transaction: stable per process of a data directory, so a restarted process fences
    /// the transaction its predecessor left open at once. `None`: one per process run.
    pub transactional_id: Option<String>,
    /// `group.instance.id` of the store consumer (static membership): stable per process of
    /// a data directory, so a restarted store gets its partitions back at once, without a
    /// rebalance. `None`: dynamic membership.
    pub group_instance_id: Option<String>,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: "eventide-events".into(),
            partitions: 4,
            replication: 1,
            group: "eventide-store".into(),
            delivery_timeout: Duration::from_secs(15),
            max_message_bytes: 16 * 1024 * 1024,
            session_timeout: Duration::from_secs(10),
            transactional_id: None,
            group_instance_id: None,
        }
    }
}

/// Logging for librdkafka: a broker outage makes every client report errors many times a
/// second, so they are logged as one WARN per client at most every 10 s (at DEBUG otherwise).
#[derive(Default)]
struct Quiet {
    last: Mutex<Option<std::time::Instant>>,
}

impl Quiet {
    fn report(&self, message: &str) {
        let now = std::time::Instant::now();
        let loud = match self.last.lock() {
            Ok(mut last) => {
                let due = last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10));
                if due {
                    *last = Some(now);
                }
                due
            }
            Err(_) => true,
        };
        if loud {
            warn!(
                message,
                "kafka client trouble (repeats are logged at debug for 10 s)"
            );
        } else {
            tracing::debug!(message, "kafka client trouble");
        }
    }
}

/// The producer's and admin client's context.
#[derive(Default)]
struct QuietContext(Quiet);

impl ClientContext for QuietContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        quiet_log(&self.0, level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.0.report(&format!("{error}: {reason}"));
    }
}

fn quiet_log(q: &Quiet, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
    use rdkafka::config::RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error | L::Warning => {
            q.report(&format!("{fac}: {message}"))
        }
        _ => tracing::debug!(fac, message, "librdkafka"),
    }
}

/// The record header naming the dataset of a record.
const DATASET_HEADER: &str = "eventide-dataset";

fn kerr(e: KafkaError) -> LogError {
    LogError::Kafka(e.to_string())
}

/// The Kafka implementation of [`EventLog`].
pub struct KafkaLog {
    config: KafkaConfig,
    producer: FutureProducer<QuietContext>,
    /// The transactional producer for requests of several records, made on first use; one
    /// transaction at a time.
    transactional: tokio::sync::Mutex<Option<Arc<FutureProducer<QuietContext>>>>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("config", &self.config)
            .finish()
    }
}

impl KafkaLog {
    /// Connects, creates the topic when it does not exist, and builds the producer.
    pub async fn connect(config: KafkaConfig) -> Result<Self> {
        let max = config.max_message_bytes.to_string();
        let admin: AdminClient<QuietContext> = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .create_with_context(QuietContext::default())
            .map_err(kerr)?;
        let topic = NewTopic::new(
            &config.topic,
            config.partitions,
            TopicReplication::Fixed(config.replication),
        )
        .set("max.message.bytes", &max);
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        match admin
            .create_topics([&topic], &opts)
            .await
            .map_err(kerr)?
            .pop()
        {
            Some(Ok(_)) => {
                info!(topic = %config.topic, partitions = config.partitions, "created kafka topic")
            }
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => {}
            Some(Err((name, code))) => {
                return Err(LogError::Kafka(format!("creating topic {name}: {code}")));
            }
        }
        let producer: FutureProducer<QuietContext> = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "2")
            .set("batch.size", "1048576")
            .set("message.max.bytes", &max)
            .set("queue.buffering.max.kbytes", "262144")
            .set(
                "message.timeout.ms",
                config.delivery_timeout.as_millis().to_string(),
            )
            .create_with_context(QuietContext::default())
            .map_err(kerr)?;
        Ok(Self {
            config,
            producer,
            transactional: tokio::sync::Mutex::new(None),
        })
    }

    /// The record of `payload` for `dataset`.
    fn record<'a>(&'a self, dataset: &'a str, payload: &'a [u8]) -> FutureRecord<'a, (), [u8]> {
        // No key: records spread over all partitions (and so over all store processes); the
        // dataset travels in a header.
        let headers = OwnedHeaders::new().insert(Header {
            key: DATASET_HEADER,
            value: Some(dataset.as_bytes()),
        });
        FutureRecord::to(&self.config.topic)
            .payload(payload)
            .headers(headers)
    }

    /// Appends one record through the idempotent producer.
    async fn append_one(&self, dataset: &str, payload: &[u8]) -> Result<Position> {
        // Waiting for room in the local queue is bounded too; the delivery itself is bounded by
        // message.timeout.ms, after which the record is reported failed (never silently lost).
        match self
            .producer
            .send(self.record(dataset, payload), Duration::from_secs(1))
            .await
        {
            Ok(d) => Ok(Position {
                partition: d.partition as Partition,
                offset: d.offset as Offset,
            }),
            Err((e, _)) => Err(delivery_error(e)),
        }
    }

    /// The transactional producer, made and initialised on first use (a blocking call).
    async fn transactional(
        &self,
        slot: &mut Option<Arc<FutureProducer<QuietContext>>>,
    ) -> Result<Arc<FutureProducer<QuietContext>>> {
        if let Some(p) = slot {
            return Ok(p.clone());
        }
        let id = self
            .config
            .transactional_id
            .clone()
            .unwrap_or_else(|| format!("eventide-tx-{:016x}", rand_u64()));
        let max = self.config.max_message_bytes.to_string();
        let producer: FutureProducer<QuietContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.config.brokers)
            .set("transactional.id", &id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "2")
            .set("message.max.bytes", &max)
            .set(
                "message.timeout.ms",
                self.config.delivery_timeout.as_millis().to_string(),
            )
            // A transaction a dead process left open blocks read-committed consumers of its
            // partitions until this passes (or its successor, same id, fences it).
            .set(
                "transaction.timeout.ms",
                (self.config.delivery_timeout + Duration::from_secs(5))
                    .as_millis()
                    .to_string(),
            )
            .create_with_context(QuietContext::default())
            .map_err(kerr)?;
        let producer = Arc::new(producer);
        let p = producer.clone();
        let timeout = self.config.delivery_timeout;
        tokio::task::spawn_blocking(move || p.init_transactions(timeout))
            .await
            .map_err(|e| LogError::Kafka(e.to_string()))?
            .map_err(|e| LogError::Unavailable(format!("kafka transactions: {e}")))?;
        info!(transactional_id = %id, "kafka transactional producer ready");
        *slot = Some(producer.clone());
        Ok(producer)
    }

    /// Appends several records in one transaction: consumers (read-committed) see all of them
    /// or none.
    async fn append_transaction(&self, records: &[NewRecord]) -> Result<Vec<Position>> {
        let mut slot = self.transactional.lock().await;
        let producer = self.transactional(&mut slot).await?;
        let timeout = self.config.delivery_timeout;
        let blocking =
            |f: fn(&FutureProducer<QuietContext>, Duration) -> rdkafka::error::KafkaResult<()>| {
                let p = producer.clone();
                async move {
                    tokio::task::spawn_blocking(move || f(&p, timeout))
                        .await
                        .map_err(|e| LogError::Kafka(e.to_string()))
                }
            };
        blocking(|p, _| p.begin_transaction())
            .await?
            .map_err(|e| LogError::Unavailable(format!("kafka transactions: {e}")))?;
        let sends = records
            .iter()
            .map(|r| producer.send(self.record(&r.dataset, &r.payload), Duration::from_secs(1)));
        let delivered = futures::future::join_all(sends).await;
        let mut positions = Vec::with_capacity(records.len());
        let mut failed = None;
        for d in delivered {
            match d {
                Ok(d) => positions.push(Position {
                    partition: d.partition as Partition,
                    offset: d.offset as Offset,
                }),
                Err((e, _)) => failed = Some(delivery_error(e)),
            }
        }
        let committed = match failed {
            None => blocking(|p, t| p.commit_transaction(t)).await?,
            Some(e) => {
                self.abort(&producer, &mut slot, timeout).await;
                return Err(e);
            }
        };
        match committed {
            Ok(()) => Ok(positions),
            Err(e) => {
                self.abort(&producer, &mut slot, timeout).await;
                Err(LogError::Unavailable(format!(
                    "kafka did not commit the request's records: {e}"
                )))
            }
        }
    }

    /// Aborts the open transaction; a producer that cannot abort is dropped (the next
    /// request makes a new one, whose initialisation fences this one).
    async fn abort(
        &self,
        producer: &Arc<FutureProducer<QuietContext>>,
        slot: &mut Option<Arc<FutureProducer<QuietContext>>>,
        timeout: Duration,
    ) {
        let p = producer.clone();
        let aborted = tokio::task::spawn_blocking(move || p.abort_transaction(timeout)).await;
        if !matches!(aborted, Ok(Ok(()))) {
            warn!("kafka transaction could not be aborted; the transactional producer is replaced");
            *slot = None;
        }
    }
}

/// What a failed delivery means to the appender.
fn delivery_error(e: KafkaError) -> LogError {
    match e {
        KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => {
            LogError::Saturated("the kafka producer queue is full")
        }
        e => LogError::Unavailable(format!("kafka did not acknowledge the batch: {e}")),
    }
}

/// A random number from the clock and the process id (no cryptographic use).
pub(crate) fn rand_u64() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    (nanos as u64) ^ (u64::from(std::process::id()) << 40) ^ ((nanos >> 64) as u64)
}

#[async_trait]
impl EventLog for KafkaLog {
    async fn append_all(&self, records: Vec<NewRecord>) -> Result<Vec<Position>> {
        match records.as_slice() {
            [] => Ok(Vec::new()),
            [one] => Ok(vec![self.append_one(&one.dataset, &one.payload).await?]),
            many => self.append_transaction(many).await,
        }
    }

    fn identity(&self) -> String {
        format!("kafka:{}", self.config.topic)
    }

    fn consume(&self, owner: Arc<dyn PartitionOwner>) -> Result<Arc<dyn LogConsumer>> {
        KafkaConsumer::start(&self.config, owner).map(|c| c as Arc<dyn LogConsumer>)
    }
}

/// Assignment generations: the generation under which each owned partition was assigned.
struct Assignment {
    generation: AtomicU64,
    partitions: Mutex<HashMap<Partition, u64>>,
    /// A rebalance has given this consumer at least one partition.
    owns_some: AtomicBool,
    /// When the first rebalance (of any kind) ran: a consumer that is still given nothing a
    /// session timeout later is an idle member (more stores than partitions), not a member
    /// whose partitions are still on their way (the cooperative protocol may first assign
    /// nothing, then what the previous holder, or this process's previous run, released).
    first_rebalance: Mutex<Option<std::time::Instant>>,
    /// The consumer's session timeout.
    session: Duration,
}

struct Ctx {
    owner: Arc<dyn PartitionOwner>,
    assignment: Arc<Assignment>,
    quiet: Quiet,
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<Partition> {
    tpl.elements()
        .iter()
        .map(|e| e.partition() as Partition)
        .collect()
}

impl ClientContext for Ctx {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        quiet_log(&self.quiet, level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // The end of a partition is news, not trouble (`enable.partition.eof`).
        if matches!(error, KafkaError::PartitionEOF(_)) {
            return;
        }
        self.quiet.report(&format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts = partitions_of(tpl);
            info!(?parts, "kafka partitions revoked");
            if let Ok(mut a) = self.assignment.partitions.lock() {
                for p in &parts {
                    a.remove(p);
                }
            }
            self.owner.revoked(&parts);
        }
    }

    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let parts = partitions_of(tpl);
            info!(?parts, "kafka partitions assigned");
            // The epoch the store commits under: records fetched under another one, and
            // flushes or merges begun under another one, are refused.
            let generation = self.assignment.generation.fetch_add(1, Ordering::AcqRel) + 1;
            let epochs: Vec<(Partition, u64)> = parts.iter().map(|p| (*p, generation)).collect();
            self.owner.assigned(&epochs);
            if let Ok(mut a) = self.assignment.partitions.lock() {
                for p in parts {
                    a.insert(p, generation);
                }
            }
        }
        if let Rebalance::Assign(tpl) = rebalance
            && tpl.count() > 0
        {
            self.assignment.owns_some.store(true, Ordering::Release);
        }
        if matches!(rebalance, Rebalance::Assign(_) | Rebalance::Revoke(_))
            && let Ok(mut first) = self.assignment.first_rebalance.lock()
        {
            first.get_or_insert_with(std::time::Instant::now);
        }
    }
}

/// A record and the assignment generation it was fetched under.
type Fetched = (u64, Record);

/// The labels of `eventide_kafka_consumer_lag`: the topic and one of its partitions (bounded by
/// the topic's partition count).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabels {
    topic: String,
    partition: Partition,
}

struct KafkaConsumer {
    topic: String,
    /// Per owned partition, records in Kafka not yet fetched (high watermark − next offset),
    /// measured every 5 s by the consumer thread.
    lag: Family<LagLabels, Gauge>,
    consumer: Arc<BaseConsumer<Ctx>>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Fetched>>,
    assignment: Arc<Assignment>,
    stop: Arc<AtomicBool>,
}

impl KafkaConsumer {
    fn start(config: &KafkaConfig, owner: Arc<dyn PartitionOwner>) -> Result<Arc<Self>> {
        let assignment = Arc::new(Assignment {
            generation: AtomicU64::new(0),
            partitions: Mutex::default(),
            owns_some: AtomicBool::new(false),
            first_rebalance: Mutex::new(None),
            session: config.session_timeout,
        });
        let ctx = Ctx {
            owner,
            assignment: assignment.clone(),
            quiet: Quiet::default(),
        };
        let max = config.max_message_bytes.to_string();
        let mut client = ClientConfig::new();
        if let Some(id) = &config.group_instance_id {
            // Static membership: a restarted store (same id) gets its partitions back at
            // once, instead of after the session timeout and a rebalance.
            client.set("group.instance.id", id);
        }
        let consumer: BaseConsumer<Ctx> = client
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set(
                "session.timeout.ms",
                config.session_timeout.as_millis().to_string(),
            )
            .set("heartbeat.interval.ms", "1000")
            // A consumer whose polling thread is stuck (store backpressure) leaves the group
            // after this, instead of holding partitions it no longer serves.
            .set("max.poll.interval.ms", "60000")
            .set("max.partition.fetch.bytes", &max)
            .set(
                "fetch.max.bytes",
                (config.max_message_bytes * 4).to_string(),
            )
            .set("fetch.wait.max.ms", "50")
            // The end of each partition is reported, so the store knows when its replay of
            // what Kafka held at assignment is done (`/healthz` waits for it).
            .set("enable.partition.eof", "true")
            // Records of a request appended in a transaction are seen once it commits, and
            // never when it aborts.
            .set("isolation.level", "read_committed")
            .create_with_context(ctx)
            .map_err(kerr)?;
        consumer.subscribe(&[&config.topic]).map_err(kerr)?;
        let consumer = Arc::new(consumer);
        let (tx, rx) = mpsc::channel::<Fetched>(1024);
        let stop = Arc::new(AtomicBool::new(false));
        let (c, a, s) = (consumer.clone(), assignment.clone(), stop.clone());
        let lag = Family::<LagLabels, Gauge>::default();
        let (l, topic) = (lag.clone(), config.topic.clone());
        std::thread::Builder::new()
            .name("kafka-consumer".into())
            .spawn(move || poll_thread(c, a, tx, s, &topic, &l))
            .map_err(|e| LogError::Kafka(format!("starting the consumer thread: {e}")))?;
        Ok(Arc::new(Self {
            topic: config.topic.clone(),
            lag,
            consumer,
            rx: tokio::sync::Mutex::new(rx),
            assignment,
            stop,
        }))
    }
}

fn poll_thread(
    consumer: Arc<BaseConsumer<Ctx>>,
    assignment: Arc<Assignment>,
    tx: mpsc::Sender<Fetched>,
    stop: Arc<AtomicBool>,
    topic: &str,
    lag: &Family<LagLabels, Gauge>,
) {
    // Next offset to fetch per partition, for the lag.
    let mut next: BTreeMap<Partition, i64> = BTreeMap::new();
    let mut lag_measured = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if lag_measured.elapsed() >= Duration::from_secs(5) {
            lag_measured = std::time::Instant::now();
            let owned: Vec<Partition> = assignment
                .partitions
                .lock()
                .map(|a| a.keys().copied().collect())
                .unwrap_or_default();
            let mut now = Vec::new();
            for p in owned {
                if let Ok((low, high)) =
                    consumer.fetch_watermarks(topic, p as i32, Duration::from_secs(1))
                {
                    let from = next.get(&p).copied().unwrap_or(low).max(low);
                    now.push((p, (high - from).max(0)));
                }
            }
            // Only the partitions owned now have a series.
            lag.clear();
            for (partition, n) in now {
                let labels = LagLabels {
                    topic: topic.to_owned(),
                    partition,
                };
                lag.get_or_create(&labels).set(n);
            }
        }
        let Some(result) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let generation_of = |p: Partition| {
            assignment
                .partitions
                .lock()
                .ok()
                .and_then(|a| a.get(&p).copied())
                .unwrap_or(0)
        };
        let msg = match result {
            Ok(m) => m,
            Err(KafkaError::PartitionEOF(p)) => {
                // Everything Kafka held for this partition has been handed on: the marker
                // follows those records through the channel.
                let p = p as Partition;
                let marker = Record {
                    partition: p,
                    offset: 0,
                    dataset: String::new(),
                    payload: Bytes::new(),
                    epoch: generation_of(p),
                    end_of_partition: true,
                };
                if tx.blocking_send((marker.epoch, marker)).is_err() {
                    break;
                }
                continue;
            }
            Err(e) => {
                consumer.context().quiet.report(&format!("consumer: {e}"));
                continue;
            }
        };
        let partition = msg.partition() as Partition;
        next.insert(partition, msg.offset() + 1);
        let generation = generation_of(partition);
        let dataset = msg
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == DATASET_HEADER))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let record = Record {
            partition,
            offset: msg.offset() as Offset,
            dataset,
            payload: Bytes::copy_from_slice(msg.payload().unwrap_or_default()),
            epoch: generation,
            end_of_partition: false,
        };
        if tx.blocking_send((generation, record)).is_err() {
            break;
        }
    }
}

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[async_trait]
impl LogConsumer for KafkaConsumer {
    async fn poll(&self, max_bytes: usize, wait: Duration) -> Result<Vec<Record>> {
        let mut rx = self.rx.lock().await;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let first = match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(f)) => f,
            Ok(None) => return Err(LogError::Closed),
            Err(_) => return Ok(out),
        };
        let current = |p: Partition| {
            self.assignment
                .partitions
                .lock()
                .ok()
                .and_then(|a| a.get(&p).copied())
        };
        let mut next = Some(first);
        while let Some((generation, record)) = next.take() {
            // Drop what was fetched under an assignment that has since been revoked.
            if current(record.partition) == Some(generation) {
                bytes += record.payload.len();
                out.push(record);
            }
            if bytes < max_bytes {
                next = rx.try_recv().ok();
            }
        }
        Ok(out)
    }

    async fn commit(&self, partition: Partition, next: Offset) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition as i32, KOffset::Offset(next as i64))
            .map_err(kerr)?;
        self.consumer.commit(&tpl, CommitMode::Async).map_err(kerr)
    }

    fn has_assignment(&self) -> bool {
        let a = &self.assignment;
        a.owns_some.load(Ordering::Acquire)
            || a.first_rebalance
                .lock()
                .ok()
                .and_then(|f| *f)
                .is_some_and(|at| at.elapsed() >= a.session)
    }

    fn holds(&self, partition: Partition) -> bool {
        let assigned = self
            .assignment
            .partitions
            .lock()
            .map(|a| a.contains_key(&partition))
            .unwrap_or(false);
        assigned && !self.consumer.assignment_lost()
    }

    fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "eventide_kafka_consumer_lag",
            "records in Kafka this store has not fetched yet, per owned partition (measured every 5 s)",
            self.lag.clone(),
        );
    }
}
