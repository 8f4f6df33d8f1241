import FILocking
import FIPartitioning
import FIQueue
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// Keeps each partition's backlog (its stream length: persisted entries are
/// deleted) fresh in the background, so the request path never waits on Redis
/// for it. A request for a partition whose cached backlog is above the limit
/// is answered 429 at once.
final class BacklogMonitor: Service, Sendable {
    private struct State {
        var lengths: [PartitionKey: Int] = [:]
        var gauges: [PartitionKey: Gauge] = [:]
    }

    private let queue: any EventQueue
    private let limit: Int
    private let interval: Duration
    private let logger: Logger
    private let state = Locked(State())

    init(queue: any EventQueue, limit: Int, interval: Duration, logger: Logger) {
        self.queue = queue
        self.limit = limit
        self.interval = interval
        self.logger = logger
    }

    /// Is this partition's cached backlog above the limit? A partition seen for
    /// the first time is registered for the next refresh.
    func isOverLimit(_ key: PartitionKey) -> Bool {
        state.withLock { state in
            if let length = state.lengths[key] { return length > limit }
            state.lengths[key] = 0
            state.gauges[key] = Gauge(label: "fi_queue_backlog", dimensions: [("partition", key.rawValue)])
            return false
        }
    }

    /// Refreshes every known partition's length once.
    func refresh() async {
        let keys = state.withLock { Array($0.lengths.keys) }
        for key in keys {
            do {
                let length = try await queue.length(of: key.streamName)
                state.withLock { state in
                    state.lengths[key] = length
                    state.gauges[key]?.record(length)
                }
            } catch {
                // Keep the last known value; the append path reports the outage.
                logger.debug("backlog refresh failed", metadata: ["fi.partition": "\(key)", "fi.error": "\(error)"])
            }
        }
    }

    func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            await refresh()
            do {
                try await Task.sleep(for: interval)
            } catch {
                return
            }
        }
    }
}
