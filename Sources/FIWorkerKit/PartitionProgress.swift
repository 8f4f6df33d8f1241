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
    let backlog: Gauge
    let oldestPendingSeconds: Gauge
    let batchDuration: Timer
    private let window = Mutex<(count: Int, since: ContinuousClock.Instant)>((0, .now))

    init(key: PartitionKey) {
        let dimensions = [("partition", key.rawValue)]
        persisted = Counter(label: "fi_worker_events_persisted_total", dimensions: dimensions)
        duplicatesSkipped = Counter(label: "fi_worker_duplicates_skipped_total", dimensions: dimensions)
        deadLettered = Counter(label: "fi_worker_dead_letters_total", dimensions: dimensions)
        claimed = Counter(label: "fi_worker_claimed_total", dimensions: dimensions)
        errors = Counter(label: "fi_worker_errors_total", dimensions: dimensions)
        backlog = Gauge(label: "fi_queue_backlog", dimensions: dimensions)
        oldestPendingSeconds = Gauge(label: "fi_worker_oldest_pending_seconds", dimensions: dimensions)
        batchDuration = Timer(label: "fi_worker_batch_duration_seconds", dimensions: dimensions, preferredDisplayUnit: .seconds)
    }

    func recordPersisted(_ count: Int) {
        window.withLock { $0.count += count }
    }

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
    /// longer holds it does not report a stale backlog.
    func reset() {
        backlog.record(0)
        oldestPendingSeconds.record(0)
    }
}
