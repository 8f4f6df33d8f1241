import FILocking
import FIPartitioning
import FIQueue
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// The worker: holds partition leases and runs one ``PartitionRunner`` per
/// held partition, turning the queue into corpus files.
///
/// **Ownership.** Exactly one worker writes a partition's file at a time. A
/// worker holds a lease `fi:lease:<partition>` (SET NX PX, renewed every third
/// of its TTL, released on shutdown); one that cannot renew in time stops
/// writing that partition before the lease can expire in Redis. The corpus
/// writer's own file lock backs this up on one host.
///
/// **Balance.** Every worker also holds a membership lease `fi:member:<id>`.
/// With `M` members and `P` partitions, a worker takes unowned partitions
/// while it holds fewer than ⌈P/M⌉, and gives one back per rescan while it
/// holds two or more than the least-loaded member — so three workers with
/// nine partitions settle at three each, and a dead worker's partitions are
/// taken over by the others once its leases expire.
///
/// Runs as a swift-service-lifecycle `Service`: on graceful shutdown each
/// runner finishes (or, with ``Options/drainOnShutdown``, empties) its stream,
/// flushes and acknowledges, and the leases are released.
public final class EventWorker: Service, Sendable {
    /// Worker behaviour that is not part of the command line.
    public struct Options: Sendable {
        /// On shutdown, keep consuming until every held stream is empty
        /// (embedded mode: the in-memory queue does not outlive the process).
        public var drainOnShutdown = false
        public init() {}
    }

    private let queue: any EventQueue
    private let configuration: WorkerConfiguration
    private let options: Options
    private let logger: Logger
    /// Unique per process: leases are owned by the instance, not the consumer
    /// name (which is shared by every restart on one host).
    public let instanceID: String
    private let stopping = Atomic<Bool>(false)
    private let state = Locked<[PartitionKey: Held]>([:])
    private let drainedAfterStop = Locked<Set<PartitionKey>>([])
    /// The partitions seen in the last successful round, for `fi_worker_lease_held`.
    private let known = Locked<Set<PartitionKey>>([])

    private struct Held {
        let runner: PartitionRunner
        let lease: LeaseClock
        var finished = false
    }

    /// Creates a worker.
    /// - Parameters:
    ///   - queue: the queue to consume (Redis or in-memory).
    ///   - configuration: partitions, storage, group and timing.
    ///   - options: embedded-mode behaviour.
    ///   - logger: where progress and take-overs are logged.
    public init(queue: any EventQueue, configuration: WorkerConfiguration, options: Options = .init(), logger: Logger) {
        self.queue = queue
        self.configuration = configuration
        self.options = options
        self.logger = logger
        self.instanceID = configuration.consumer + ":" + UUID().uuidString.lowercased().prefix(8)
    }

    /// The partitions this worker currently holds.
    public var heldPartitions: [PartitionKey] {
        state.withLock { $0.filter { !$0.value.finished }.map(\.key).sorted() }
    }

    /// What this worker did with `key` since it took it (while it holds it), else `nil`.
    public func statistics(for key: PartitionKey) -> PartitionStatistics? {
        state.withLock { $0[key].map(\.runner.statistics) }
    }

    /// Asks the worker to stop, as graceful shutdown does.
    public func stop() {
        stopping.store(true, ordering: .relaxed)
        state.withLock { held in held.values.forEach { $0.runner.stop() } }
    }

    private var memberKey: String { "fi:member:" + instanceID }

    private var tick: Duration { min(configuration.rescanInterval, configuration.leaseTTL / 3) }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                // After a stop request the loop goes on renewing leases (and
                // taking none) until every runner has finished its batch, or
                // drained its stream, and returned.
                // In drain mode (embedded) it also keeps taking partitions, so
                // a stream that appeared just before the stop is drained too.
                while !Task.isCancelled {
                    let stopping = self.stopping.load(ordering: .relaxed)
                    var started = 0
                    do {
                        started = try await rebalance(group: &group, acquire: !stopping || options.drainOnShutdown)
                    } catch {
                        logger.warning("lease round failed; retrying", metadata: ["fi.error": "\(error)"])
                    }
                    publishLeases()
                    if stopping && started == 0 && state.withLock({ $0.values.allSatisfy(\.finished) }) {
                        // Drain mode: a runner may have stopped early (say, its
                        // lease lapsed); drain whatever is still queued again.
                        guard options.drainOnShutdown, let left = try? await nonEmptyStreams(), !left.isEmpty else { break }
                        drainedAfterStop.withLock { $0.subtract(left) }
                    }
                    do {
                        try await Task.sleep(for: stopping ? min(tick, .milliseconds(50)) : tick)
                    } catch {
                        break
                    }
                }
                stop()
            }
        } onGracefulShutdown: {
            self.stop()
        }
        await releaseAll()
    }

    /// One round: renew what is held, drop what finished or was lost, take or
    /// give back partitions towards an even share.
    /// - Returns: how many partitions were taken in this round.
    @discardableResult
    private func rebalance(group: inout ThrowingDiscardingTaskGroup<any Error>, acquire: Bool) async throws -> Int {
        _ = try await queue.acquireLease(memberKey, owner: instanceID, ttl: configuration.leaseTTL)

        // Renew held leases; a runner whose lease could not be renewed stops.
        let held = state.withLock { $0 }
        for (key, entry) in held {
            if entry.finished {
                state.withLock { _ = $0.removeValue(forKey: key) }
                _ = try? await queue.releaseLease(key.leaseKey, owner: instanceID)
                continue
            }
            let renewSent = ContinuousClock.now
            if try await queue.renewLease(key.leaseKey, owner: instanceID, ttl: configuration.leaseTTL) {
                entry.lease.granted(sentAt: renewSent)
            } else {
                entry.lease.revoke()
                entry.runner.stop()
                logger.warning("lease lost; stopped writing the partition", metadata: ["fi.partition": "\(key)"])
            }
        }

        guard acquire else { return 0 }
        let candidates = try await partitions()
        let owners = try await queue.leaseOwners(withPrefix: PartitionKey.leasePrefix)
        let members = Set(try await queue.leaseOwners(withPrefix: "fi:member:").values)
        let memberCount = max(1, members.count)
        let share = (candidates.count + memberCount - 1) / memberCount
        known.withLock { $0.formUnion(candidates) }
        var mine = state.withLock { $0.filter { !$0.value.finished }.count }
        var started = 0
        let stoppingNow = stopping.load(ordering: .relaxed)

        // Take unowned partitions up to the fair share.
        for key in candidates where (mine < share || stoppingNow) && owners[key.leaseKey] == nil {
            if stopping.load(ordering: .relaxed) && !options.drainOnShutdown { return started }
            // While draining for shutdown, a partition is drained once.
            if stoppingNow && drainedAfterStop.withLock({ $0.contains(key) }) { continue }
            guard state.withLock({ $0[key] == nil }) else { continue }
            let lease = LeaseClock(ttl: configuration.leaseTTL)
            let grantSent = ContinuousClock.now
            guard let epoch = try await queue.acquireLease(
                key.leaseKey, owner: instanceID, ttl: configuration.leaseTTL, epochKey: fencingEpochKey(for: key.leaseKey))
            else { continue }
            lease.granted(sentAt: grantSent)
            start(key, lease: lease, epoch: epoch, group: &group)
            mine += 1
            started += 1
        }
        if stoppingNow { return started }

        // Give one back when clearly above the least-loaded member.
        var load = Dictionary(uniqueKeysWithValues: members.map { ($0, 0) })
        for owner in owners.values where load[owner] != nil { load[owner]! += 1 }
        let least = load.values.min() ?? mine
        if mine > share, mine >= least + 2, let key = state.withLock({ $0.filter { !$0.value.finished }.keys.sorted().last }) {
            logger.info("handing a partition to a less-loaded worker", metadata: ["fi.partition": "\(key)", "fi.held": "\(mine)", "fi.least": "\(least)"])
            state.withLock { $0[key]?.runner.stop() }
        }
        return started
    }

    /// `fi_worker_lease_held{partition}`: 1 where this worker writes the partition
    /// under a lease still valid, 0 for every other partition it knows of — also
    /// after a failed round (Redis unreachable: the leases lapse by themselves).
    /// The maximum over the workers is 0 for a partition nobody writes.
    private func publishLeases() {
        let writing = state.withLock { held in Set(held.filter { !$0.value.finished && $0.value.lease.isValid }.keys) }
        for key in known.withLock({ $0.union(writing) }) {
            Gauge(label: "fi_worker_lease_held", dimensions: [("partition", key.rawValue)]).record(writing.contains(key) ? 1 : 0)
        }
    }

    private func nonEmptyStreams() async throws -> [PartitionKey] {
        var left: [PartitionKey] = []
        for key in try await partitions() where try await queue.length(of: key.streamName) > 0 {
            left.append(key)
        }
        return left
    }

    private func partitions() async throws -> [PartitionKey] {
        guard configuration.discoverAll else { return configuration.partitions }
        let names = try await queue.streams(withPrefix: PartitionKey.streamPrefix)
        return Set(names.compactMap(PartitionKey.init(streamName:))).sorted()
    }

    private func start(_ key: PartitionKey, lease: LeaseClock, epoch: UInt64, group: inout ThrowingDiscardingTaskGroup<any Error>) {
        let runner = PartitionRunner(
            key: key,
            queue: queue,
            configuration: configuration,
            lease: lease,
            epoch: epoch,
            drainOnStop: options.drainOnShutdown,
            logger: logger
        )
        state.withLock { $0[key] = Held(runner: runner, lease: lease) }
        logger.info("took over partition", metadata: ["fi.partition": "\(key)", "fi.owner": "\(instanceID)", "fi.lease_epoch": "\(epoch)"])
        if stopping.load(ordering: .relaxed) { runner.stop() }
        group.addTask {
            await runner.run()
            self.state.withLock { $0[key]?.finished = true }
            if self.stopping.load(ordering: .relaxed) { self.drainedAfterStop.withLock { _ = $0.insert(key) } }
        }
    }

    private func releaseAll() async {
        let keys = state.withLock { held in
            defer { held.removeAll() }
            return Array(held.keys)
        }
        var released = 0
        for key in keys {
            do {
                if try await queue.releaseLease(key.leaseKey, owner: instanceID) { released += 1 }
            } catch {
                logger.warning("could not release lease; it expires by itself", metadata: ["fi.partition": "\(key)", "fi.error": "\(error)"])
            }
        }
        _ = try? await queue.releaseLease(memberKey, owner: instanceID)
        logger.info("worker stopped", metadata: ["fi.released": "\(released)", "fi.held": "\(keys.count)"])
    }
}
