import FILocking
import FIPartitioning
import FIStorage
import Logging
import Metrics
import Synchronization

/// One partition's counters, as swift-metrics instruments (exported by the
/// executable's Prometheus bootstrap) and as figures for the progress log.
final class PartitionProgress: Sendable {
    let persisted: Counter
    let duplicatesSkipped: Counter
    let deadLettered: Counter
    let claimed: Counter
    let errors: Counter
    /// The partition's lag: entries queued and not yet persisted (its stream's length).
    let backlog: Gauge
    let pending: Gauge
    let oldestPendingSeconds: Gauge
    /// Entries in `fi:dead:<partition>`.
    let deadLetters: Gauge
    let batchDuration: Timer
    let commits: Counter
    let segmentsRolled: Counter
    let rollDuration: Timer
    let recordDuration: Timer
    let retentionDeleted: Counter
    /// Rows appended and commits (append + flush + sync) since the partition was taken.
    private let totals = Locked<PartitionStatistics>(PartitionStatistics())
    private let window = Locked<(count: Int, since: ContinuousClock.Instant)>((0, .now))

    init(key: PartitionKey) {
        let dimensions = [("partition", key.rawValue)]
        persisted = Counter(label: "fi_worker_events_persisted_total", dimensions: dimensions)
        duplicatesSkipped = Counter(label: "fi_worker_duplicates_skipped_total", dimensions: dimensions)
        deadLettered = Counter(label: "fi_worker_dead_letters_total", dimensions: dimensions)
        claimed = Counter(label: "fi_worker_claimed_total", dimensions: dimensions)
        errors = Counter(label: "fi_worker_errors_total", dimensions: dimensions)
        backlog = Gauge(label: "fi_queue_backlog", dimensions: dimensions)
        pending = Gauge(label: "fi_worker_pending_entries", dimensions: dimensions)
        oldestPendingSeconds = Gauge(label: "fi_worker_oldest_pending_seconds", dimensions: dimensions)
        deadLetters = Gauge(label: "fi_worker_dead_letter_entries", dimensions: dimensions)
        batchDuration = Timer(label: "fi_worker_batch_duration_seconds", dimensions: dimensions, preferredDisplayUnit: .seconds)
        commits = Counter(label: "fi_worker_commits_total", dimensions: dimensions)
        segmentsRolled = Counter(label: "fi_worker_segments_rolled_total", dimensions: dimensions)
        rollDuration = Timer(label: "fi_worker_segment_roll_duration_seconds", dimensions: dimensions, preferredDisplayUnit: .seconds)
        recordDuration = Timer(label: "fi_worker_segment_record_duration_seconds", dimensions: dimensions, preferredDisplayUnit: .seconds)
        retentionDeleted = Counter(label: "fi_worker_retention_deleted_segments_total", dimensions: dimensions)
    }

    /// What the corpus writer did to its segments: counted, and logged for operators.
    func record(_ event: CorpusEvent, logger: Logger) {
        switch event {
        case .segmentClosed(let file, let rows, let bytes, let reason, let duration):
            segmentsRolled.increment()
            rollDuration.recordNanoseconds(duration.nanoseconds)
            logger.info("corpus segment closed", metadata: [
                "fi.segment": "\(file)", "fi.rows": "\(rows)", "fi.bytes": "\(bytes)", "fi.reason": "\(reason)", "fi.duration": "\(duration)"])
        case .segmentRecorded(let file, _, let duration):
            recordDuration.recordNanoseconds(duration.nanoseconds)
            logger.debug("corpus segment recorded in the manifest", metadata: ["fi.segment": "\(file)", "fi.duration": "\(duration)"])
        case .segmentOpened(let file, let duration):
            rollDuration.recordNanoseconds(duration.nanoseconds)
            logger.debug("corpus segment opened", metadata: ["fi.segment": "\(file)", "fi.duration": "\(duration)"])
        case .segmentsDeleted(let files, let rows):
            retentionDeleted.increment(by: files.count)
            logger.notice("retention deleted corpus segments", metadata: ["fi.segments": "\(files.joined(separator: ","))", "fi.rows": "\(rows)"])
        case .maintenanceFailed(let message):
            errors.increment()
            logger.warning("recording a closed corpus segment failed; retrying", metadata: ["fi.error": "\(message)"])
        }
    }

    /// One commit to the corpus of `count` new rows.
    func recordCommit(rows count: Int) {
        window.withLock { $0.count += count }
        totals.withLock {
            $0.rowsAppended += count
            $0.commits += 1
        }
        commits.increment()
    }

    var statistics: PartitionStatistics { totals.withLock { $0 } }

    /// Events per second since the last call.
    func takeRate() -> Double {
        window.withLock { window in
            let now = ContinuousClock.now
            let seconds = Double((now - window.since).nanoseconds) / 1e9
            let rate = seconds > 0 ? Double(window.count) / seconds : 0
            window = (0, now)
            return rate
        }
    }

    /// Zeroes the gauges when the partition is released, so a worker that no
    /// longer holds it does not report stale figures (the new holder reports them).
    func reset() {
        backlog.record(0)
        pending.record(0)
        oldestPendingSeconds.record(0)
        deadLetters.record(0)
    }
}

/// What a worker has done with one partition since it took it.
public struct PartitionStatistics: Sendable, Equatable {
    /// Rows appended to the corpus.
    public var rowsAppended = 0
    /// Appends made durable (flush + sync): one per batch, or per group of
    /// batches joined while the stream had a backlog.
    public var commits = 0
}
