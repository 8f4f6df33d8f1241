import FILocking
import FIPartitioning
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
