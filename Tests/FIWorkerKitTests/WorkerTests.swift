import FIPartitioning
import FIQueue
import FIStorage
import FITestSupport
import Foundation
import Logging
import Testing

@testable import FIWorkerKit

enum WorkerTestEnv {
    static var redisURL: String? {
        guard let v = ProcessInfo.processInfo.environment["FI_TEST_REDIS_URL"], !v.isEmpty else { return nil }
        return v
    }
    static var servicesRequired: Bool { ProcessInfo.processInfo.environment["FI_REQUIRE_SERVICES"] == "1" }

    static var logger: Logger {
        var logger = Logger(label: "fi.worker.tests")
        logger.logLevel = ProcessInfo.processInfo.environment["FI_TEST_LOG"] == "1" ? .debug : .error
        return logger
    }

    /// Redis databases 1…9 handed out one per test, so `--all` discovery and
    /// membership leases of concurrent tests never meet.
    private static let nextDB = Counter()
    static func redisQueue() async throws -> any EventQueue {
        guard let url = redisURL else {
            throw EventQueueError(.unavailable, "FI_TEST_REDIS_URL is not set")
        }
        let db = 1 + nextDB.next() % 9
        try await flushDatabase(url: url, db: db)
        return try await RedisEventQueue.connect(url: url + "/\(db)", logger: logger)
    }

    /// Empties a test database (left-overs of earlier runs would be discovered by `--all`).
    static func flushDatabase(url: String, db: Int) async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/redis-cli")
        process.arguments = ["-u", url, "-n", String(db), "FLUSHDB"]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // Poll rather than waitUntilExit(): never block a cooperative thread.
        for _ in 0..<500 where process.isRunning { try await Task.sleep(for: .milliseconds(10)) }
    }

    final class Counter: @unchecked Sendable {
        private var value = 0
        private let lock = NSLock()
        func next() -> Int {
            lock.lock()
            defer { lock.unlock() }
            value += 1
            return value
        }
    }
}

enum QueueKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case memory, redis
    var testDescription: String { rawValue }

    static var available: [QueueKind] {
        WorkerTestEnv.redisURL != nil || WorkerTestEnv.servicesRequired ? [.memory, .redis] : [.memory]
    }

    func make() async throws -> any EventQueue {
        switch self {
        case .memory: InMemoryEventQueue()
        case .redis: try await WorkerTestEnv.redisQueue()
        }
    }
}

/// A temporary storage root, removed afterwards.
func withStorage<T>(_ body: (String) async throws -> T) async throws -> T {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("fi-worker-\(UUID().uuidString.prefix(8))").path
    try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: root) }
    return try await body(root)
}

func fastConfiguration(storage: String, partitions: [PartitionKey] = [], all: Bool = false) -> WorkerConfiguration {
    var configuration = WorkerConfiguration()
    configuration.storageRoot = storage
    configuration.partitions = partitions
    configuration.discoverAll = all
    configuration.consumer = "test-\(UUID().uuidString.prefix(6))"
    configuration.rescanInterval = .milliseconds(100)
    configuration.leaseTTL = .seconds(3)
    configuration.readBlock = .milliseconds(50)
    configuration.claimIdle = .milliseconds(300)
    configuration.claimInterval = .milliseconds(300)
    configuration.progressInterval = .seconds(60)
    configuration.maxBackoff = .milliseconds(200)
    configuration.store.fsync = false
    return configuration
}

func event(_ consultation: String, _ n: Int, receivedAt: Int64? = 1_700_000_000_000) -> [StreamField] {
    var fields = [
        StreamField("consultation_id", consultation),
        StreamField("event_json", #"{"n":\#(n),"text":"ñ \#(consultation)"}"#),
    ]
    if let receivedAt { fields.append(StreamField("received_at_ms", String(receivedAt))) }
    return fields
}

/// All rows of a partition's corpus, every segment in order (empty if there is none).
func corpusRows(_ key: PartitionKey, storage: String) async throws -> [CorpusRecord] {
    let reader = try await CorpusReader.open(directory: key.directory(storageRoot: storage), logger: WorkerTestEnv.logger)
    let rows = try await reader.records(in: 0..<reader.rowCount)
    try await reader.close()
    return rows
}

/// Runs a worker in the background for the duration of `body`, then stops it.
func withWorker<T>(
    queue: any EventQueue,
    configuration: WorkerConfiguration,
    options: EventWorker.Options = .init(),
    _ body: (EventWorker) async throws -> T
) async throws -> T {
    let worker = EventWorker(queue: queue, configuration: configuration, options: options, logger: WorkerTestEnv.logger)
    let task = Task { try await worker.run() }
    do {
        let result = try await body(worker)
        worker.stop()
        try await task.value
        return result
    } catch {
        worker.stop()
        _ = try? await task.value
        throw error
    }
}

@Suite("EventWorker")
struct WorkerTests {
    @Test("every entry of three partitions is stored exactly once, and the streams end empty", arguments: QueueKind.available)
    func exactlyOnce(kind: QueueKind) async throws {
        let queue = try await kind.make()
        try await withStorage { storage in
            let tag = UUID().uuidString.prefix(6).lowercased()
            let keys = try ["a", "b", "c"].map { try PartitionKey.site(SiteID(validating: "\($0)\(tag)")) }
            var sent: [PartitionKey: [StreamEntryID]] = [:]
            for i in 0..<900 {
                let key = keys[i % 3]
                sent[key, default: []].append(try await queue.append(to: key.streamName, fields: event("c\(i % 17)", i)))
            }
            try await withWorker(queue: queue, configuration: fastConfiguration(storage: storage, all: true)) { _ in
                try await eventually("all 900 rows stored") {
                    var total = 0
                    for key in keys { total += try await corpusRows(key, storage: storage).count }
                    return total == 900
                }
                try await eventually("streams emptied") {
                    var length = 0
                    for key in keys { length += try await queue.length(of: key.streamName) }
                    return length == 0
                }
            }
            for key in keys {
                let rows = try await corpusRows(key, storage: storage)
                #expect(rows.map(\.streamID) == sent[key]!, "rows in stream order, each once")
                #expect(rows.allSatisfy { $0.receivedAtMs == 1_700_000_000_000 })
                #expect(try await queue.pending("fi-workers", on: key.streamName).count == 0)
            }
        }
        await queue.close()
    }

    @Test("group commit: a backlog is committed in groups of commitBatches reads, each entry once, in order", arguments: QueueKind.available, [1, 4])
    func groupCommit(kind: QueueKind, commitBatches: Int) async throws {
        let queue = try await kind.make()
        try await withStorage { storage in
            let key = PartitionKey.hashPartition(Int.random(in: 100...9999))
            var sent: [StreamEntryID] = []
            for i in 0..<2_048 { sent.append(try await queue.append(to: key.streamName, fields: event("c\(i % 7)", i))) }
            var configuration = fastConfiguration(storage: storage, partitions: [key])
            configuration.batchSize = 256
            configuration.commitBatches = commitBatches
            let statistics = try await withWorker(queue: queue, configuration: configuration) { worker in
                try await eventually("2,048 rows stored") { worker.statistics(for: key)?.rowsAppended == 2_048 }
                return worker.statistics(for: key)
            }
            // The whole backlog was there before the worker started: every read
            // but the last comes back full, so reads join into groups of
            // `commitBatches` (1: one commit per read of 256).
            #expect(statistics?.commits == 2_048 / (256 * commitBatches))
            let rows = try await corpusRows(key, storage: storage)
            #expect(rows.map(\.streamID) == sent)
            #expect(try await queue.length(of: key.streamName) == 0)
        }
        await queue.close()
    }

    @Test("entries from another producer with only consultation_id and event_json get received_at_ms 0", arguments: QueueKind.available)
    func foreignProducer(kind: QueueKind) async throws {
        let queue = try await kind.make()
        try await withStorage { storage in
            let key = PartitionKey.hashPartition(Int.random(in: 100...9999))
            let id = try await queue.append(to: key.streamName, fields: event("redis-py-1", 1, receivedAt: nil))
            try await withWorker(queue: queue, configuration: fastConfiguration(storage: storage, partitions: [key])) { _ in
                try await eventually("row stored") { try await corpusRows(key, storage: storage).count == 1 }
            }
            let row = try #require(try await corpusRows(key, storage: storage).first)
            #expect(row.streamID == id)
            #expect(row.receivedAtMs == 0)
            #expect(row.consultationID == "redis-py-1")
            #expect(row.payload == Array(#"{"n":1,"text":"ñ redis-py-1"}"#.utf8))
        }
        await queue.close()
    }

    @Test("poison entries go to fi:dead:<partition> with a reason and the partition keeps flowing", arguments: QueueKind.available)
    func poison(kind: QueueKind) async throws {
        let queue = try await kind.make()
        try await withStorage { storage in
            let key = PartitionKey.hashPartition(Int.random(in: 100...9999))
            _ = try await queue.append(to: key.streamName, fields: event("good-1", 1))
            _ = try await queue.append(to: key.streamName, fields: [StreamField("event_json", "{}")])
            _ = try await queue.append(to: key.streamName, fields: [StreamField("consultation_id", "x")])
            _ = try await queue.append(
                to: key.streamName,
                fields: [StreamField("consultation_id", "bad-utf8"), StreamField(name: "event_json", value: [0x7B, 0xFF, 0xFE, 0x7D])]
            )
            _ = try await queue.append(to: key.streamName, fields: [StreamField("consultation_id", String(repeating: "x", count: 129)), StreamField("event_json", "{}")])
            _ = try await queue.append(to: key.streamName, fields: event("good-2", 2))
            try await withWorker(queue: queue, configuration: fastConfiguration(storage: storage, partitions: [key])) { _ in
                try await eventually("good rows stored and poison dead-lettered") {
                    let rows = try await corpusRows(key, storage: storage).count
                    let dead = try await queue.length(of: key.deadLetterStreamName)
                    let left = try await queue.length(of: key.streamName)
                    return rows == 2 && dead == 4 && left == 0
                }
            }
            #expect(try await corpusRows(key, storage: storage).map(\.consultationID) == ["good-1", "good-2"])
            try await queue.createGroup("inspect", on: key.deadLetterStreamName)
            let dead = try await queue.readGroup("inspect", consumer: "t", from: key.deadLetterStreamName, count: 10)
            let reasons = dead.compactMap { $0[field: "dead_reason"].flatMap { String(decoding: $0, as: UTF8.self) } }
            #expect(reasons == [
                "missing field consultation_id",
                "missing field event_json",
                "event_json is not valid UTF-8",
                "consultation_id must be 1 to 128 bytes without NUL",
            ])
            #expect(dead.allSatisfy { $0[field: "dead_partition"] == Array(key.rawValue.utf8) && $0[field: "dead_stream_id"] != nil })
            #expect(dead[2][field: "event_json"] == [0x7B, 0xFF, 0xFE, 0x7D], "the original bytes are kept")
        }
        await queue.close()
    }

    @Test("pending entries of a dead consumer are claimed; those already in the file are acknowledged without a second row", arguments: QueueKind.available)
    func redelivery(kind: QueueKind) async throws {
        let queue = try await kind.make()
        try await withStorage { storage in
            let key = PartitionKey.hashPartition(Int.random(in: 100...9999))
            var ids: [StreamEntryID] = []
            for i in 0..<10 { ids.append(try await queue.append(to: key.streamName, fields: event("r", i))) }
            try await queue.createGroup("fi-workers", on: key.streamName)
            // A worker that died after reading all ten and storing the first four.
            let read = try await queue.readGroup("fi-workers", consumer: "dead-worker", from: key.streamName, count: 10)
            #expect(read.count == 10)
            let writer = try await CorpusWriter.open(path: key.corpusPath(storageRoot: storage), logger: WorkerTestEnv.logger)
            try await writer.append(read.prefix(4).map {
                CorpusRecord(consultationID: "r", streamID: $0.id, receivedAtMs: 1_700_000_000_000, payload: $0[field: "event_json"]!)
            })
            try await writer.close()

            try await withWorker(queue: queue, configuration: fastConfiguration(storage: storage, partitions: [key])) { _ in
                try await eventually("claimed and stored") {
                    let rows = try await corpusRows(key, storage: storage).count
                    let pending = try await queue.pending("fi-workers", on: key.streamName).count
                    return rows == 10 && pending == 0
                }
            }
            #expect(try await corpusRows(key, storage: storage).map(\.streamID) == ids)
            #expect(try await queue.length(of: key.streamName) == 0)
        }
        await queue.close()
    }

    @Test("an entry delivered more than maxDeliveries times goes to dead letters", arguments: QueueKind.available)
    func deliveryLimit(kind: QueueKind) async throws {
        let queue = try await kind.make()
        try await withStorage { storage in
            let key = PartitionKey.hashPartition(Int.random(in: 100...9999))
            let id = try await queue.append(to: key.streamName, fields: event("crashy", 1))
            try await queue.createGroup("fi-workers", on: key.streamName)
            // Delivered to six worker processes that each died holding it.
            _ = try await queue.readGroup("fi-workers", consumer: "w", from: key.streamName, count: 1)
            for _ in 0..<5 {
                _ = try await queue.autoClaim("fi-workers", consumer: "w", on: key.streamName, minIdle: .zero, start: StreamEntryID(ms: 0, seq: 0), count: 10)
            }
            var configuration = fastConfiguration(storage: storage, partitions: [key])
            configuration.maxDeliveries = 5
            try await withWorker(queue: queue, configuration: configuration) { _ in
                try await eventually("dead-lettered") { try await queue.length(of: key.deadLetterStreamName) == 1 }
            }
            #expect(try await corpusRows(key, storage: storage).isEmpty)
            try await queue.createGroup("inspect", on: key.deadLetterStreamName)
            let dead = try await queue.readGroup("inspect", consumer: "t", from: key.deadLetterStreamName, count: 10)
            #expect(dead.first?[field: "dead_stream_id"] == Array(id.description.utf8))
            #expect(dead.first.flatMap { $0[field: "dead_reason"] }.map { String(decoding: $0, as: UTF8.self).hasPrefix("delivered 7 times") } == true)
        }
        await queue.close()
    }

    @Test("three workers share nine partitions; when one stops, the others take its partitions over", arguments: QueueKind.available)
    func ownershipAndTakeover(kind: QueueKind) async throws {
        let queue = try await kind.make()
        try await withStorage { storage in
            let tag = UUID().uuidString.prefix(4).lowercased()
            let keys = try (0..<9).map { try PartitionKey.site(SiteID(validating: "s\($0)\(tag)")) }
            for key in keys { _ = try await queue.append(to: key.streamName, fields: event("x", 0)) }
            let workers = (0..<3).map { i -> EventWorker in
                var configuration = fastConfiguration(storage: storage, all: true)
                configuration.consumer = "w\(i)"
                return EventWorker(queue: queue, configuration: configuration, logger: WorkerTestEnv.logger)
            }
            let tasks = workers.map { worker in Task { try await worker.run() } }
            defer { for worker in workers { worker.stop() } }

            try await eventually("each worker holds three partitions") {
                workers.map { $0.heldPartitions.count } == [3, 3, 3]
            }
            let all = workers.flatMap(\.heldPartitions)
            #expect(Set(all) == Set(keys), "every partition held, none twice")

            let orphaned = workers[0].heldPartitions
            workers[0].stop()
            try await tasks[0].value
            try await eventually("the two remaining workers hold all nine") {
                let held = workers[1].heldPartitions + workers[2].heldPartitions
                return held.count == 9 && Set(held) == Set(keys)
            }
            #expect(Set(orphaned).isSubset(of: Set(workers[1].heldPartitions + workers[2].heldPartitions)))

            // Events sent to the orphaned partitions after the take-over are stored once.
            for key in orphaned { _ = try await queue.append(to: key.streamName, fields: event("after", 1)) }
            try await eventually("orphaned partitions keep flowing") {
                for key in orphaned where try await corpusRows(key, storage: storage).count != 2 { return false }
                return true
            }
            for worker in workers { worker.stop() }
            for task in tasks { try await task.value }
        }
        await queue.close()
    }

    @Test("a worker that loses its lease stops writing that partition at once")
    func leaseLoss() async throws {
        let queue = InMemoryEventQueue()
        try await withStorage { storage in
            let key = PartitionKey.hashPartition(3)
            _ = try await queue.append(to: key.streamName, fields: event("before", 0))
            try await withWorker(queue: queue, configuration: fastConfiguration(storage: storage, partitions: [key])) { worker in
                try await eventually("partition held and first row stored") {
                    let rows = try await corpusRows(key, storage: storage).count
                    return worker.heldPartitions == [key] && rows == 1
                }
                // The lease passes to another owner (as if ours had expired and been taken over).
                #expect(try await queue.releaseLease(key.leaseKey, owner: worker.instanceID))
                #expect(try await queue.acquireLease(key.leaseKey, owner: "intruder", ttl: .seconds(60)))
                try await eventually("the worker gave the partition up") { worker.heldPartitions.isEmpty }
                for i in 1...5 { _ = try await queue.append(to: key.streamName, fields: event("after", i)) }
                try await Task.sleep(for: .milliseconds(500))
                #expect(try await corpusRows(key, storage: storage).count == 1, "nothing written without the lease")
                #expect(try await queue.length(of: key.streamName) == 5)
            }
        }
    }

    @Test("a worker stopped gracefully finishes its batch, releases its leases, and drains when asked")
    func gracefulDrain() async throws {
        let queue = InMemoryEventQueue()
        try await withStorage { storage in
            let key = PartitionKey.hashPartition(1)
            for i in 0..<3000 { _ = try await queue.append(to: key.streamName, fields: event("d\(i % 5)", i)) }
            var options = EventWorker.Options()
            options.drainOnShutdown = true
            let worker = EventWorker(queue: queue, configuration: fastConfiguration(storage: storage, partitions: [key]), options: options, logger: WorkerTestEnv.logger)
            let task = Task { try await worker.run() }
            try await eventually("partition held") { worker.heldPartitions == [key] }
            worker.stop()
            try await task.value
            #expect(try await corpusRows(key, storage: storage).count == 3000, "drained before stopping")
            #expect(try await queue.length(of: key.streamName) == 0)
            #expect(try await queue.leaseOwners(withPrefix: PartitionKey.leasePrefix).isEmpty, "leases released")
        }
    }
}
