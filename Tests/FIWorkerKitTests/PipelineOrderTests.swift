import FILocking
import FIPartitioning
import FIQueue
import FIStorage
import FITestSupport
import Foundation
import Synchronization
import Testing

@testable import FIWorkerKit

/// An in-memory queue whose `readGroup` calls can be intercepted, to put a
/// runner's pipeline into states that real timing only reaches by chance.
final class HookedQueue: EventQueue, Sendable {
    let inner = InMemoryEventQueue()
    /// Called after the n-th (1-based) `readGroup` returned from the inner queue.
    let afterRead: @Sendable (_ n: Int, _ queue: InMemoryEventQueue) async throws -> Void
    /// Called after the n-th (1-based) `autoClaim` returned from the inner queue.
    let afterClaim: @Sendable (_ n: Int) async throws -> Void
    private let reads = Atomic<Int>(0)
    private let claims = Atomic<Int>(0)

    init(
        afterRead: @escaping @Sendable (Int, InMemoryEventQueue) async throws -> Void = { _, _ in },
        afterClaim: @escaping @Sendable (Int) async throws -> Void = { _ in }
    ) {
        self.afterRead = afterRead
        self.afterClaim = afterClaim
    }

    func readGroup(_ group: String, consumer: String, from stream: String, count: Int, block: Duration?, ownPending: Bool) async throws -> [StreamEntry] {
        let n = reads.add(1, ordering: .relaxed).newValue
        let entries = try await inner.readGroup(group, consumer: consumer, from: stream, count: count, block: block, ownPending: ownPending)
        try await afterRead(n, inner)
        return entries
    }

    func append(to stream: String, fields: [StreamField]) async throws -> StreamEntryID { try await inner.append(to: stream, fields: fields) }
    func createGroup(_ group: String, on stream: String) async throws { try await inner.createGroup(group, on: stream) }
    func ack(_ group: String, on stream: String, ids: [StreamEntryID]) async throws -> Int { try await inner.ack(group, on: stream, ids: ids) }
    func autoClaim(_ group: String, consumer: String, on stream: String, minIdle: Duration, start: StreamEntryID, count: Int) async throws -> ClaimResult {
        let n = claims.add(1, ordering: .relaxed).newValue
        let result = try await inner.autoClaim(group, consumer: consumer, on: stream, minIdle: minIdle, start: start, count: count)
        try await afterClaim(n)
        return result
    }
    func pending(_ group: String, on stream: String) async throws -> PendingSummary { try await inner.pending(group, on: stream) }
    func oldestPendingIdle(_ group: String, on stream: String) async throws -> Duration? { try await inner.oldestPendingIdle(group, on: stream) }
    func length(of stream: String) async throws -> Int { try await inner.length(of: stream) }
    func delete(from stream: String, ids: [StreamEntryID]) async throws -> Int { try await inner.delete(from: stream, ids: ids) }
    func trim(_ stream: String, through id: StreamEntryID) async throws -> Int { try await inner.trim(stream, through: id) }
    func range(_ stream: String, after: StreamEntryID?, count: Int) async throws -> [StreamEntry] { try await inner.range(stream, after: after, count: count) }
    func appendOnce(to stream: String, fields: [StreamField], token: String, ledger: String) async throws -> (id: StreamEntryID, appended: Bool) {
        try await inner.appendOnce(to: stream, fields: fields, token: token, ledger: ledger)
    }
    func ledger(_ ledger: String) async throws -> [String: StreamEntryID] { try await inner.ledger(ledger) }
    func streams(withPrefix prefix: String) async throws -> [String] { try await inner.streams(withPrefix: prefix) }
    func ping() async throws { try await inner.ping() }
    func acquireLease(_ key: String, owner: String, ttl: Duration) async throws -> Bool { try await inner.acquireLease(key, owner: owner, ttl: ttl) }
    func acquireLease(_ key: String, owner: String, ttl: Duration, epochKey: String) async throws -> UInt64? {
        try await inner.acquireLease(key, owner: owner, ttl: ttl, epochKey: epochKey)
    }
    func renewLease(_ key: String, owner: String, ttl: Duration) async throws -> Bool { try await inner.renewLease(key, owner: owner, ttl: ttl) }
    func releaseLease(_ key: String, owner: String) async throws -> Bool { try await inner.releaseLease(key, owner: owner) }
    func leaseOwners(withPrefix prefix: String) async throws -> [String: String] { try await inner.leaseOwners(withPrefix: prefix) }
    func close() async { await inner.close() }
}

@Suite("PartitionRunner pipeline order")
struct PipelineOrderTests {
    /// Found by the three-node end-to-end test under load: a lease that looked
    /// expired for a moment (a late renewal) stopped the batch in hand before
    /// its append, the runner then stored the batch it had already prefetched,
    /// and the file's watermark passed the unstored batch — which recovery then
    /// acknowledged as stored. Lost.
    @Test("a batch stopped by a lease lapse is never overtaken by the prefetched batch; recovery stores both, in order")
    func leaseLapseKeepsOrder() async throws {
        try await withStorage { storage in
            let key = PartitionKey.hashPartition(7)
            let lease = LeaseClock(ttl: .seconds(60))
            lease.granted(sentAt: .now)
            let lateIDs = Locked<[StreamEntryID]>([])
            let queue = HookedQueue { n, inner in
                switch n {
                case 1:
                    // The batch in hand (A) has been read. Batch B arrives for the
                    // prefetch, and the lease lapses before A is stored.
                    for i in 10..<15 {
                        let id = try await inner.append(to: key.streamName, fields: event("b", i))
                        lateIDs.withLock { $0.append(id) }
                    }
                    lease.revoke()
                case 2:
                    // The prefetch has read B; by the time it returns the lease is renewed.
                    try await Task.sleep(for: .milliseconds(300))
                    lease.granted(sentAt: .now)
                default:
                    break
                }
            }
            let configuration = fastConfiguration(storage: storage, partitions: [key])
            var sent: [StreamEntryID] = []
            for i in 0..<10 { sent.append(try await queue.append(to: key.streamName, fields: event("a", i))) }

            let first = PartitionRunner(key: key, queue: queue, configuration: configuration, lease: lease, epoch: 1, drainOnStop: false, logger: WorkerTestEnv.logger)
            await first.run()  // ends at the lapse
            sent += lateIDs.withLock { $0 }
            #expect(sent.count == 15)
            let afterLapse = try await corpusRows(key, storage: storage).map(\.streamID)
            #expect(afterLapse == Array(sent.prefix(afterLapse.count)), "rows are a prefix of the stream")

            // The partition is taken again (same consumer, lease valid): recovery stores everything pending, in order.
            lease.granted(sentAt: .now)
            try await expectNextOwnerStoresAll(sent, key: key, queue: queue.inner, configuration: configuration, lease: lease, storage: storage)
        }
    }

    /// Found by the SIGKILL end-to-end test under AddressSanitizer: a runner
    /// told to stop (partitions re-spread when a worker came back) while it was
    /// still claiming a previous owner's pending entries cut recovery short,
    /// then read and stored one batch of *new* entries — above the unclaimed
    /// ones, so the watermark passed them and the next owner acknowledged them
    /// as stored. 2,304 entries lost in one run.
    @Test("a stop during recovery reads nothing new; the next owner stores every pending entry, then the rest, in order")
    func stopDuringRecoveryKeepsOrder() async throws {
        try await withStorage { storage in
            let key = PartitionKey.hashPartition(8)
            let lease = LeaseClock(ttl: .seconds(60))
            lease.granted(sentAt: .now)
            let runnerBox = Locked<PartitionRunner?>(nil)
            let queue = HookedQueue(afterClaim: { n in
                // The first page of the previous owner's entries is claimed: re-spread.
                if n == 1 { runnerBox.withLock { $0 }?.stop() }
            })
            var configuration = fastConfiguration(storage: storage, partitions: [key])
            configuration.batchSize = 16
            configuration.claimIdle = .zero

            // 100 entries pending at a previous owner that died, then 40 never delivered.
            var sent: [StreamEntryID] = []
            for i in 0..<100 { sent.append(try await queue.append(to: key.streamName, fields: event("p", i))) }
            try await queue.createGroup(configuration.group, on: key.streamName)
            #expect(try await queue.readGroup(configuration.group, consumer: "dead-owner", from: key.streamName, count: 100).count == 100)
            for i in 0..<40 { sent.append(try await queue.append(to: key.streamName, fields: event("n", i))) }

            let first = PartitionRunner(key: key, queue: queue, configuration: configuration, lease: lease, epoch: 1, drainOnStop: false, logger: WorkerTestEnv.logger)
            runnerBox.withLock { $0 = first }
            await first.run()  // stops after the first page of claims
            let afterStop = try await corpusRows(key, storage: storage).map(\.streamID)
            #expect(afterStop == Array(sent.prefix(afterStop.count)), "rows are a prefix of the stream: nothing new stored above the unclaimed entries")
            #expect(afterStop.count < 100, "the stop came during recovery (\(afterStop.count) rows)")

            try await expectNextOwnerStoresAll(sent, key: key, queue: queue.inner, configuration: configuration, lease: lease, storage: storage)
        }
    }

    /// A new runner takes the partition, runs until the stream and the pending
    /// list are empty, and leaves exactly `sent` in the corpus, in order.
    private func expectNextOwnerStoresAll(
        _ sent: [StreamEntryID], key: PartitionKey, queue: InMemoryEventQueue, configuration: WorkerConfiguration,
        lease: LeaseClock, storage: String
    ) async throws {
        let next = PartitionRunner(key: key, queue: queue, configuration: configuration, lease: lease, epoch: 1, drainOnStop: false, logger: WorkerTestEnv.logger)
        let running = Task { await next.run() }
        try await eventually("every entry stored, the stream and the pending list empty") {
            let length = try await queue.length(of: key.streamName)
            let pending = try await queue.pending(configuration.group, on: key.streamName).count
            return length == 0 && pending == 0
        }
        next.stop()
        await running.value
        #expect(try await corpusRows(key, storage: storage).map(\.streamID) == sent, "each entry once, in stream order")
    }
}
