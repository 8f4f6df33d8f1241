import FIPartitioning
import FIQueue
import FIStorage
import FITestSupport
import Foundation
import Synchronization
import Testing

@testable import FIWorkerKit

/// A partition runner writes under its lease's fencing epoch (Docs/storage.md): every row records
/// it, and once a newer lease has raised the partition's fence the runner stops writing at its
/// next batch, leaving what it read pending for the new holder.
@Suite("Fenced partition runner", .serialized)
struct FencedRunnerTests {
    @Test("a runner whose partition a newer lease has taken stops at its next batch; the newer one stores the rest, and the rows' epochs never go down")
    func runnerStopsWhenFenced() async throws {
        try await withStorage { storage in
            let key = PartitionKey.hashPartition(5)
            let queue = InMemoryEventQueue()
            let configuration = fastConfiguration(storage: storage, partitions: [key])
            let lease = LeaseClock(ttl: .seconds(60))
            lease.granted(sentAt: .now)
            var sent: [StreamEntryID] = []
            for i in 0..<10 { sent.append(try await queue.append(to: key.streamName, fields: event("a", i))) }

            let old = PartitionRunner(key: key, queue: queue, configuration: configuration, lease: lease, epoch: 1, drainOnStop: false, logger: WorkerTestEnv.logger)
            let running = Task { await old.run() }
            try await eventually("the first ten stored under epoch 1") { try await corpusRows(key, storage: storage).count == 10 }

            // A newer lease (epoch 2) takes the partition: it raises the fence, as its writer does
            // at open (here the old writer still holds the flock, which on a filesystem without
            // working locks would not stop the new one).
            try "2\n".write(toFile: key.directory(storageRoot: storage) + "/fence", atomically: true, encoding: .utf8)
            for i in 10..<15 { sent.append(try await queue.append(to: key.streamName, fields: event("b", i))) }
            let stopped = Atomic<Bool>(false)
            let watcher = Task {
                await running.value
                stopped.store(true, ordering: .relaxed)
            }
            try await eventually("the old runner stops by itself (lease still valid)", timeout: .seconds(20)) { stopped.load(ordering: .relaxed) }
            await watcher.value
            #expect(lease.isValid, "it stopped because of the fence, not the lease")
            let afterFence = try await corpusRows(key, storage: storage)
            #expect(afterFence.map(\.streamID) == Array(sent.prefix(10)), "nothing written after the fence rose")
            #expect(afterFence.allSatisfy { $0.epoch == 1 })

            // An older epoch can no longer open the partition at all.
            var stale = configuration.store
            stale.fencingEpoch = 1
            do {
                let writer = try await CorpusWriter.open(directory: key.directory(storageRoot: storage), options: stale)
                try await writer.close()
                Issue.record("a writer of epoch 1 opened a partition fenced at 2")
            } catch let error as StorageError {
                #expect(error.code == .fenced, "\(error)")
            }

            // The new holder (epoch 2) stores the rest, once and in order.
            let next = PartitionRunner(key: key, queue: queue, configuration: configuration, lease: lease, epoch: 2, drainOnStop: false, logger: WorkerTestEnv.logger)
            let nextRunning = Task { await next.run() }
            try await eventually("every entry stored by the new holder") { try await corpusRows(key, storage: storage).count == 15 }
            next.stop()
            await nextRunning.value
            let rows = try await corpusRows(key, storage: storage)
            #expect(rows.map(\.streamID) == sent, "each entry once, in stream order")
            #expect(rows.map(\.epoch) == Array(repeating: 1, count: 10) + Array(repeating: 2, count: 5))
        }
    }
}
