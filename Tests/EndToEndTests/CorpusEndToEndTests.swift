import FIPartitioning
import FIQueue
import FIStorage
import FITestSupport
import Foundation
import Testing

/// `fi-worker` with segments, and `fi-worker corpus erase|verify`, as processes against a real redis-server.
@Suite("fi-worker corpus end to end", .serialized, .enabled(if: E2E.enabled, "needs FI_TEST_REDIS_URL (scripts/test.sh sets it)"))
struct CorpusEndToEndTests {
    static func prefill(_ queue: any EventQueue, _ key: PartitionKey, from: Int, count: Int) async throws -> [StreamEntryID] {
        var ids: [StreamEntryID] = []
        for i in from..<(from + count) {
            let fields = [
                StreamField("consultation_id", "c\(i % 10)"),
                StreamField("event_json", #"{"i":\#(i),"metadata":{"site_id":"e2e"},"p":"\#(String(repeating: "y", count: 300))"}"#),
                StreamField("received_at_ms", "\(1_700_000_000_000 + i)"),
            ]
            ids.append(try await queue.append(to: key.streamName, fields: fields))
        }
        return ids
    }

    static func drained(_ queue: any EventQueue, _ key: PartitionKey) async throws {
        try await eventually("stream and pending list empty", timeout: .seconds(60)) {
            let length = try await queue.length(of: key.streamName)
            let pending = try await queue.pending("fi-workers", on: key.streamName).count
            return length == 0 && pending == 0
        }
    }

    @Test("a running worker rolls (metrics count it); corpus erase while it runs removes one consultation; corpus verify passes, then names a segment with a flipped byte and counts it in the metrics file")
    func eraseAndVerify() async throws {
        let url = try await E2E.databaseURL()
        let storage = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let binary = try E2E.binary("fi-worker")
        let queue = try await RedisEventQueue.connect(url: url, logger: E2E.logger)
        let key = PartitionKey.site(try SiteID(validating: "e2e"))
        var sent = try await Self.prefill(queue, key, from: 0, count: 3000)
        let metricsPort = try Loopback.freePort()
        let worker = try Child("worker", binary, [key.rawValue, "--redis-url", url, "--storage", storage, "--batch-size", "64",
                                                  "--segment-max-bytes", "256KiB", "--metrics-port", "\(metricsPort)"], logDirectory: storage)
        try await Self.drained(queue, key)
        let metrics = String(decoding: try await HTTP.request("GET", "http://127.0.0.1:\(metricsPort)/metrics").body, as: UTF8.self)
        #expect(metrics.contains(#"fi_worker_segments_rolled_total{partition="site_e2e"}"#), "\(metrics.prefix(3000))")
        #expect(metrics.contains(#"fi_worker_segment_roll_duration_seconds_count{partition="site_e2e"}"#))
        #expect(worker.log.contains("corpus segment closed"))

        // Erase c3 while the worker runs; its newest rows are in the segment being written.
        let erase = try Child("erase", binary, ["corpus", "erase", "--storage", storage, "--consultation", "c3", "--site-id", "e2e"], logDirectory: storage)
        #expect(await erase.waitForExit(timeout: .seconds(60)) == 0, "\(erase.log)")
        #expect(erase.log.contains("erased 300 rows"), "\(erase.log)")
        let erasedIDs = Set(sent.enumerated().filter { $0.offset % 10 == 3 }.map(\.element))
        var rows = try await E2E.rows(key, storage: storage)
        #expect(rows.map(\.streamID) == sent.filter { !erasedIDs.contains($0) }, "every other event once, in order")

        // The worker goes on; later events of c3 are stored as usual.
        sent += try await Self.prefill(queue, key, from: 3000, count: 500)
        try await Self.drained(queue, key)
        rows = try await E2E.rows(key, storage: storage)
        #expect(rows.map(\.streamID) == sent.filter { !erasedIDs.contains($0) })
        worker.terminate()
        #expect(await worker.waitForExit(timeout: .seconds(10)) == 0, "\(worker.log.suffix(2000))")

        let metricsFile = storage + "/verify.prom"
        let clean = try Child("verify", binary, ["corpus", "verify", key.rawValue, "--storage", storage, "--metrics-file", metricsFile], logDirectory: storage)
        #expect(await clean.waitForExit(timeout: .seconds(60)) == 0, "\(clean.log)")
        #expect(clean.log.contains("0 damaged"))

        // Flip one byte in the middle of the second closed segment.
        let report = try await CorpusMaintenance.verify(directory: key.directory(storageRoot: storage))
        let victim = try #require(report.segments.dropFirst().first?.file)
        let path = key.directory(storageRoot: storage) + "/" + victim
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        let size = try handle.seekToEnd()
        try handle.seek(toOffset: size / 2)
        let byte = try #require(try handle.read(upToCount: 1)?.first)
        try handle.seek(toOffset: size / 2)
        try handle.write(contentsOf: [byte ^ 0x40])
        try handle.close()
        let damaged = try Child("verify-damaged", binary, ["corpus", "verify", "--storage", storage, "--metrics-file", metricsFile], logDirectory: storage)
        #expect(await damaged.waitForExit(timeout: .seconds(60)) == 1, "\(damaged.log)")
        #expect(damaged.log.contains("DAMAGED site_e2e/\(victim)"), "\(damaged.log)")
        #expect(damaged.log.contains("SHA-256"))
        let text = try String(contentsOfFile: metricsFile, encoding: .utf8)
        #expect(text.contains(#"fi_corpus_verification_failures_total{partition="site_e2e"} 1"#), "\(text)")
        await queue.close()
    }

    @Test("--retention: closed segments older than it are deleted, logged and counted; the segment being written stays")
    func retention() async throws {
        let url = try await E2E.databaseURL()
        let storage = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let queue = try await RedisEventQueue.connect(url: url, logger: E2E.logger)
        let key = PartitionKey.site(try SiteID(validating: "old"))
        _ = try await Self.prefill(queue, key, from: 0, count: 2000)
        let metricsPort = try Loopback.freePort()
        let worker = try Child("worker", try E2E.binary("fi-worker"), [
            key.rawValue, "--redis-url", url, "--storage", storage, "--batch-size", "64", "--segment-max-bytes", "256KiB",
            "--retention", "1s", "--metrics-port", "\(metricsPort)", "--log-level", "info",
        ], logDirectory: storage)
        try await Self.drained(queue, key)
        // A second later, new events roll the segment again, which applies retention.
        try await Task.sleep(for: .milliseconds(1500))
        let late = try await Self.prefill(queue, key, from: 2000, count: 1000)
        try await Self.drained(queue, key)
        try await eventually("old segments deleted", timeout: .seconds(20)) {
            // The series exists (at 0) from the moment the partition is taken: wait for a count.
            let text = String(decoding: try await HTTP.request("GET", "http://127.0.0.1:\(metricsPort)/metrics").body, as: UTF8.self)
            let line = text.split(separator: "\n").first { $0.hasPrefix(#"fi_worker_retention_deleted_segments_total{partition="site_old"}"#) }
            return (line?.split(separator: " ").last.flatMap { Double($0) } ?? 0) > 0
        }
        #expect(worker.log.contains("retention deleted corpus segments"))
        let rows = try await E2E.rows(key, storage: storage)
        #expect(!rows.isEmpty && rows.count < 3000, "\(rows.count) rows left")
        #expect(rows.suffix(100).map(\.streamID) == Array(late.suffix(100)), "the newest rows stay")
        let audit = try String(contentsOfFile: key.directory(storageRoot: storage) + "/audit.log", encoding: .utf8)
        #expect(audit.contains("\"event\":\"retention\""))
        worker.terminate()
        #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
        await queue.close()
    }

    @Test("corpus erase and verify: bad flags exit 64 with a reason; a partition without a corpus is an error")
    func flags() async throws {
        let dir = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let binary = try E2E.binary("fi-worker")
        for arguments in [["corpus", "erase"], ["corpus", "erase", "--consultation", "bad id"], ["corpus", "verify", "not_a_key"],
                          ["--all", "--segment-max-bytes", "lots"], ["--all", "--retention", "forever"]] {
            let child = try Child("bad", binary, arguments, logDirectory: dir)
            #expect(await child.waitForExit(timeout: .seconds(10)) == 64, "\(arguments): \(child.log)")
        }
        let missing = try Child("missing", binary, ["corpus", "erase", "--storage", dir, "--consultation", "c1", "--site-id", "nowhere"], logDirectory: dir)
        #expect(await missing.waitForExit(timeout: .seconds(10)) == 64)
        #expect(missing.log.contains("no corpus for partition site_nowhere"), "\(missing.log)")
        let help = try Child("help", binary, ["--help"], logDirectory: dir)
        #expect(await help.waitForExit(timeout: .seconds(10)) == 0)
        for flag in ["--segment-max-bytes", "--segment-max-age", "--retention", "corpus "] {
            #expect(help.log.contains(flag), "--help mentions \(flag)")
        }
    }
}
