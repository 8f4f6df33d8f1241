import FIPartitioning
import FIQueue
import FIStorage
import FITestSupport
import Foundation
import Testing

@testable import FIWorkerKit

/// A worker configuration whose segments close every few hundred rows.
func rollingConfiguration(storage: String, partitions: [PartitionKey] = [], all: Bool = false) -> WorkerConfiguration {
    var configuration = fastConfiguration(storage: storage, partitions: partitions, all: all)
    configuration.batchSize = 32
    configuration.commitBatches = 4
    configuration.store.batchChunkRows = 64
    configuration.store.payloadChunkBytes = 16 << 10
    configuration.store.segmentMaxBytes = 32 << 10
    return configuration
}

func segmentCount(_ key: PartitionKey, storage: String) -> Int {
    ((try? FileManager.default.contentsOfDirectory(atPath: key.directory(storageRoot: storage))) ?? [])
        .filter { $0.hasPrefix("segment-") && $0.hasSuffix(".h5") }.count
}

@Suite("EventWorker with segments")
struct SegmentWorkerTests {
    @Test("with a roll every few hundred rows, every entry of three partitions is stored exactly once, in order", arguments: QueueKind.available)
    func exactlyOnceWithRolls(kind: QueueKind) async throws {
        let queue = try await kind.make()
        try await withStorage { storage in
            let tag = UUID().uuidString.prefix(6).lowercased()
            let keys = try ["a", "b", "c"].map { try PartitionKey.site(SiteID(validating: "\($0)\(tag)")) }
            var sent: [PartitionKey: [StreamEntryID]] = [:]
            for i in 0..<2_400 {
                let key = keys[i % 3]
                sent[key, default: []].append(try await queue.append(to: key.streamName, fields: event("c\(i % 17)", i)))
            }
            try await withWorker(queue: queue, configuration: rollingConfiguration(storage: storage, all: true)) { _ in
                try await eventually("all 2,400 rows stored", timeout: .seconds(60)) {
                    var total = 0
                    for key in keys { total += try await corpusRows(key, storage: storage).count }
                    return total == 2_400
                }
            }
            for key in keys {
                let rows = try await corpusRows(key, storage: storage)
                #expect(rows.map(\.streamID) == sent[key]!, "rows in stream order, each once, across segments")
                #expect(segmentCount(key, storage: storage) >= 4, "\(key) rolled into \(segmentCount(key, storage: storage)) segments")
                let verification = try await CorpusMaintenance.verify(directory: key.directory(storageRoot: storage))
                #expect(verification.ok, "\(verification.damaged.map(\.problems))")
            }
        }
        await queue.close()
    }

    @Test("erasure while the worker runs: it closes its segment when asked, the rows are gone, and the worker goes on", arguments: QueueKind.available)
    func erasureWhileRunning(kind: QueueKind) async throws {
        let queue = try await kind.make()
        try await withStorage { storage in
            let key = PartitionKey.hashPartition(Int.random(in: 100...9999))
            for i in 0..<600 { _ = try await queue.append(to: key.streamName, fields: event(i % 5 == 0 ? "gone" : "keep\(i % 3)", i)) }
            try await withWorker(queue: queue, configuration: rollingConfiguration(storage: storage, partitions: [key])) { _ in
                try await eventually("600 rows stored") { try await corpusRows(key, storage: storage).count == 600 }
                let report = try await CorpusMaintenance.erase(consultationID: "gone", directory: key.directory(storageRoot: storage))
                #expect(report.rowsRemoved == 120)
                #expect(report.roll == "by the running writer" || report.roll == "none needed")
                let rows = try await corpusRows(key, storage: storage)
                #expect(rows.count == 480)
                #expect(!rows.contains { $0.consultationID == "gone" })
                // New events, of that consultation too, are stored as usual.
                for i in 600..<700 { _ = try await queue.append(to: key.streamName, fields: event(i % 5 == 0 ? "gone" : "keep\(i % 3)", i)) }
                try await eventually("100 more rows") { try await corpusRows(key, storage: storage).count == 580 }
            }
            #expect(try await corpusRows(key, storage: storage).filter { $0.consultationID == "gone" }.count == 20)
        }
        await queue.close()
    }

    @Test("an erased event does not come back when its stream entry is redelivered", arguments: QueueKind.available)
    func redeliveryAfterErasure(kind: QueueKind) async throws {
        let queue = try await kind.make()
        try await withStorage { storage in
            let key = PartitionKey.hashPartition(Int.random(in: 100...9999))
            let directory = key.directory(storageRoot: storage)
            var ids: [StreamEntryID] = []
            for i in 0..<10 { ids.append(try await queue.append(to: key.streamName, fields: event(i >= 6 ? "gone" : "kept", i))) }
            try await queue.createGroup("fi-workers", on: key.streamName)
            // A worker that stored all ten and died before acknowledging any.
            let read = try await queue.readGroup("fi-workers", consumer: "dead-worker", from: key.streamName, count: 10)
            let writer = try await CorpusWriter.open(directory: directory, logger: WorkerTestEnv.logger)
            try await writer.append(read.map {
                CorpusRecord(consultationID: String(decoding: $0[field: "consultation_id"]!, as: UTF8.self), streamID: $0.id,
                             receivedAtMs: 1_700_000_000_000, payload: $0[field: "event_json"]!)
            })
            try await writer.close()
            // The newest four rows are erased.
            let report = try await CorpusMaintenance.erase(consultationID: "gone", directory: directory)
            #expect(report.rowsRemoved == 4)

            // The next worker claims all ten pending entries: the erased four stay erased.
            try await withWorker(queue: queue, configuration: fastConfiguration(storage: storage, partitions: [key])) { worker in
                try await eventually("claimed and settled") {
                    let pending = try await queue.pending("fi-workers", on: key.streamName).count
                    let length = try await queue.length(of: key.streamName)
                    return pending == 0 && length == 0
                }
                #expect(worker.statistics(for: key)?.rowsAppended == 0)
            }
            #expect(try await corpusRows(key, storage: storage).map(\.streamID) == Array(ids.prefix(6)))
        }
        await queue.close()
    }
}
