import FIPartitioning
import FIQueue
import FIStorage
import FITestSupport
import Foundation
import Testing

/// fi-worker as a process, against a real redis-server.
@Suite("fi-worker end to end", .serialized, .enabled(if: E2E.enabled, "needs FI_TEST_REDIS_URL (scripts/test.sh sets it)"))
struct WorkerEndToEndTests {
    /// Appends `count` entries spread over `keys` with 64 concurrent appenders; returns the ids per key.
    static func prefill(_ queue: any EventQueue, keys: [PartitionKey], count: Int) async throws -> [PartitionKey: [StreamEntryID]] {
        let payload = String(repeating: "x", count: 200)
        return try await withThrowingTaskGroup(of: [(PartitionKey, StreamEntryID)].self) { group in
            for lane in 0..<64 {
                group.addTask {
                    var out: [(PartitionKey, StreamEntryID)] = []
                    var i = lane
                    while i < count {
                        let key = keys[i % keys.count]
                        let fields = [
                            StreamField("consultation_id", "c\(i % 97)"),
                            StreamField("event_json", #"{"i":\#(i),"p":"\#(payload)"}"#),
                            StreamField("received_at_ms", "\(1_700_000_000_000 + i)"),
                        ]
                        out.append((key, try await queue.append(to: key.streamName, fields: fields)))
                        i += 64
                    }
                    return out
                }
            }
            var ids: [PartitionKey: [StreamEntryID]] = [:]
            for try await part in group {
                for (key, id) in part { ids[key, default: []].append(id) }
            }
            return ids.mapValues { $0.sorted() }
        }
    }

    static func workerArguments(url: String, storage: String, consumer: String, extra: [String] = []) -> [String] {
        ["--all", "--redis-url", url, "--storage", storage, "--consumer", consumer, "--claim-idle-ms", "1500", "--lease-ttl-ms", "1500", "--log-level", "info"] + extra
    }

    @Test(
        "50,000 entries, 3 partitions, 3 workers with --all, one killed with SIGKILL and restarted 5 times: every entry stored exactly once",
        // The second: a segment closes at every commit of at most 16 reads of 32 (a new
        // segment's first chunks alone pass 128 KiB), i.e. every few hundred rows.
        arguments: [[], ["--segment-max-bytes", "128KiB", "--batch-size", "32"]]
    )
    func exactlyOnceUnderKills(extra: [String]) async throws {
        let url = try await E2E.databaseURL()
        let storage = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let binary = try E2E.binary("fi-worker")
        let queue = try await RedisEventQueue.connect(url: url, logger: E2E.logger)
        let keys = [PartitionKey.hashPartition(0), .hashPartition(1), .hashPartition(2)]
        for key in keys { _ = try? await queue.delete(from: key.streamName, ids: []) }

        let sent = try await Self.prefill(queue, keys: keys, count: 50_000)
        #expect(sent.values.reduce(0) { $0 + $1.count } == 50_000)

        var workers = try (0..<3).map { i in
            try Child("worker\(i)", binary, Self.workerArguments(url: url, storage: storage, consumer: "w\(i)", extra: extra), logDirectory: storage)
        }
        var generator = SystemRandomNumberGenerator()
        for round in 0..<5 {
            try await Task.sleep(for: .milliseconds(Int.random(in: 300...900, using: &generator)))
            let victim = Int.random(in: 0..<3, using: &generator)
            await workers[victim].kill9()
            workers[victim] = try Child("worker\(victim)-r\(round)", binary, Self.workerArguments(url: url, storage: storage, consumer: "w\(victim)", extra: extra), logDirectory: storage)
        }

        try await eventually("streams and pending lists empty", timeout: .seconds(180)) {
            for key in keys {
                if try await queue.length(of: key.streamName) != 0 { return false }
                if try await queue.pending("fi-workers", on: key.streamName).count != 0 { return false }
            }
            return true
        }
        // A worker restarted a moment ago may not have installed its signal
        // handlers yet (SIGTERM then kills it by default): wait until each has started.
        for worker in workers {
            try await eventually("\(worker.name) started", timeout: .seconds(20)) { worker.log.contains("fi-worker started") }
        }
        try await Task.sleep(for: .milliseconds(300))
        for worker in workers { worker.terminate() }
        for worker in workers {
            let status = await worker.waitForExit(timeout: .seconds(10))
            #expect(status == 0, "\(worker.name) exit status \(String(describing: status))\n\(worker.log.suffix(2000))")
        }
        for key in keys {
            let rows = try await E2E.rows(key, storage: storage)
            #expect(rows.count == sent[key]!.count, "\(key): \(rows.count) rows for \(sent[key]!.count) entries")
            #expect(rows.map(\.streamID) == sent[key]!, "\(key): each entry once, in stream order")
            if !extra.isEmpty {
                let segments = try FileManager.default.contentsOfDirectory(atPath: key.directory(storageRoot: storage)).filter { $0.hasPrefix("segment-") }
                #expect(segments.count >= 20, "\(key): rolled into \(segments.count) segments")
            }
        }
        if !extra.isEmpty {
            // Every closed segment matches its manifest entry.
            let verify = try Child("verify", binary, ["corpus", "verify", "--storage", storage], logDirectory: storage)
            #expect(await verify.waitForExit(timeout: .seconds(60)) == 0, "\(verify.log.suffix(3000))")
        }
        await queue.close()
    }

    @Test("SIGTERM during a drain: exit 0 within 10 s, and every entry gone from the stream is in the file")
    func gracefulStopDuringDrain() async throws {
        let url = try await E2E.databaseURL()
        let storage = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let queue = try await RedisEventQueue.connect(url: url, logger: E2E.logger)
        let key = PartitionKey.hashPartition(7)
        let sent = try await Self.prefill(queue, keys: [key], count: 30_000)[key]!

        let worker = try Child("drain", try E2E.binary("fi-worker"), [key.rawValue, "--redis-url", url, "--storage", storage], logDirectory: storage)
        try await eventually("the worker has stored something", timeout: .seconds(30)) {
            try await queue.length(of: key.streamName) < 30_000
        }
        worker.terminate()
        let status = await worker.waitForExit(timeout: .seconds(10))
        #expect(status == 0, "exit status \(String(describing: status))\n\(worker.log.suffix(2000))")

        let stored = try await E2E.rows(key, storage: storage).map(\.streamID)
        #expect(try await queue.pending("fi-workers", on: key.streamName).count == 0, "nothing left half-done")
        #expect(stored == Array(sent.prefix(stored.count)), "a prefix of the stream, in order, no duplicates")
        #expect(stored.count + (try await queue.length(of: key.streamName)) == sent.count, "stored + still queued = sent")
        #expect(try await queue.leaseOwners(withPrefix: PartitionKey.leasePrefix).isEmpty, "lease released")
        await queue.close()
    }

    @Test("Redis killed and restarted under a running worker: it retries, resumes, and stores every entry once; --metrics-port serves its counters")
    func redisLostLater() async throws {
        let redis = try await OwnRedis()
        let storage = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let key = PartitionKey.hashPartition(0)
        var queue = try await RedisEventQueue.connect(url: redis.url, logger: E2E.logger)
        let sent = try await Self.prefill(queue, keys: [key], count: 20_000)[key]!
        await queue.close()

        let metricsPort = try Loopback.freePort()
        let worker = try Child(
            "worker", try E2E.binary("fi-worker"),
            [key.rawValue, "--redis-url", redis.url, "--storage", storage, "--metrics-port", "\(metricsPort)", "--log-level", "info"],
            logDirectory: storage
        )
        try await eventually("some rows stored", timeout: .seconds(30)) { try await !E2E.rows(key, storage: storage).isEmpty }
        await redis.kill9()
        try await Task.sleep(for: .seconds(1))
        try await redis.start()

        queue = try await RedisEventQueue.connect(url: redis.url, logger: E2E.logger)
        do {
            try await eventually("stream and pending list empty", timeout: .seconds(60)) {
                let length = try await queue.length(of: key.streamName)
                let pending = try await queue.pending("fi-workers", on: key.streamName).count
                return length == 0 && pending == 0
            }
        } catch {
            Issue.record("fi-worker log:\n\(worker.log.suffix(6000))")
            throw error
        }
        let metrics = try await HTTP.request("GET", "http://127.0.0.1:\(metricsPort)/metrics")
        let text = String(decoding: metrics.body, as: UTF8.self)
        #expect(metrics.status == 200)
        #expect(text.contains(#"fi_worker_events_persisted_total{partition="partition_0"}"#))
        #expect(text.contains(#"fi_worker_batch_duration_seconds_bucket{"#))

        worker.terminate()
        #expect(await worker.waitForExit(timeout: .seconds(10)) == 0, "\(worker.log.suffix(2000))")
        let rows = try await E2E.rows(key, storage: storage).map(\.streamID)
        #expect(rows == sent, "every entry once, in order, across the outage")
        #expect(worker.log.contains("redis connect failed") || worker.log.contains("backing off"), "the outage was logged")
        await queue.close()
    }

    @Test("an unreachable Redis at start: a one-line error and a non-zero exit")
    func unreachableAtStart() async throws {
        let port = try Loopback.freePort()
        let dir = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let worker = try Child("noredis", try E2E.binary("fi-worker"), ["--all", "--redis-url", "redis://127.0.0.1:\(port)", "--storage", dir], logDirectory: dir)
        let status = await worker.waitForExit(timeout: .seconds(15))
        #expect(status != nil && status != 0)
        let lines = worker.log.split(separator: "\n").filter { !$0.isEmpty }
        #expect(lines.count == 1, "\(worker.log)")
        #expect(lines.first?.contains("fi-worker: error: cannot reach") == true)
    }

    @Test("bad flags: a reason and a non-zero exit; --help describes every flag")
    func flags() async throws {
        let dir = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let binary = try E2E.binary("fi-worker")
        for arguments in [["site_a", "--all"], [], ["../x"], ["--batch-size", "0", "--all"]] {
            let child = try Child("badflags", binary, arguments, logDirectory: dir)
            let status = await child.waitForExit(timeout: .seconds(10))
            #expect(status != nil && status != 0, "\(arguments)")
        }
        let help = try Child("help", binary, ["--help"], logDirectory: dir)
        #expect(await help.waitForExit(timeout: .seconds(10)) == 0)
        for flag in ["--all", "--redis-url", "--redis-cluster", "--storage", "--group", "--consumer", "--batch-size", "--claim-idle-ms", "--http-port"] {
            #expect(help.log.contains(flag), "--help mentions \(flag)")
            #expect(help.log.contains("FI_" + flag.dropFirst(2).uppercased().replacingOccurrences(of: "-", with: "_")), "--help names the variable of \(flag)")
        }
    }
}
