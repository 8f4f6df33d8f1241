import FIPartitioning
import FIQueue
import FIStorage
import FITestSupport
import Foundation
import Testing

/// `fi-worker dead-letters list|show|redrive|purge` against real Redis and the Redis Cluster.
@Suite("fi-worker dead-letters", .serialized, .enabled(if: E2E.enabled, "needs FI_TEST_REDIS_URL (scripts/test.sh)"))
struct DeadLettersEndToEndTests {
    enum Target: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case redis, cluster
        var testDescription: String { rawValue }
    }

    @Test("list with reason and deliveries, show one whole, redrive (twice is stored once, traceable to its dead letter), purge only with --yes", arguments: Target.allCases)
    func deadLetters(target: Target) async throws {
        let flags: [String]
        let queue: RedisEventQueue
        switch target {
        case .redis:
            let url = try await E2E.databaseURL()
            flags = ["--redis-url", url]
            queue = try await RedisEventQueue.connect(url: url)
        case .cluster:
            let seeds = try #require(ProcessInfo.processInfo.environment["FI_TEST_REDIS_CLUSTER"], "FI_TEST_REDIS_CLUSTER")
            flags = ["--redis-cluster", seeds]
            queue = try await RedisEventQueue.connect(clusterSeeds: seeds.split(separator: ",").map(String.init))
        }
        let storage = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let key = try PartitionKey(validating: "site_dl\(UUID().uuidString.prefix(6).lowercased())")

        // Three dead letters, as a worker writes them (the entries had gone over --max-deliveries).
        func deadLetter(_ n: Int) -> [StreamField] {
            [
                StreamField("consultation_id", "dl-\(n)"), StreamField("event_json", #"{"n":\#(n)}"#),
                StreamField("received_at_ms", "1700000000000"), StreamField("dead_reason", "delivered 6 times (more than 5)"),
                StreamField("dead_stream_id", "1700000000000-\(n)"), StreamField("dead_partition", key.rawValue),
                StreamField("dead_deliveries", "6"),
            ]
        }
        var dead: [StreamEntryID] = []
        for n in 0..<3 { dead.append(try await queue.append(to: key.deadLetterStreamName, fields: deadLetter(n))) }

        func run(_ arguments: [String]) async throws -> (status: Int32?, output: String) {
            let child = try Child("dl", try E2E.binary("fi-worker"), ["dead-letters"] + arguments + flags, logDirectory: storage)
            let status = await child.waitForExit(timeout: .seconds(30))
            return (status, child.log)
        }

        let list = try await run(["list", key.rawValue, "--json"])
        #expect(list.status == 0, "\(list.output)")
        let listed = try #require(try JSONSerialization.jsonObject(with: Data(list.output.utf8)) as? [[String: Any]], "\(list.output)")
        #expect(listed.map { $0["id"] as? String } == dead.map(\.description))
        #expect(listed.allSatisfy { $0["reason"] as? String == "delivered 6 times (more than 5)" && $0["deliveries"] as? Int == 6 })
        let table = try await run(["list"])
        #expect(table.output.contains(key.rawValue) && table.output.contains("delivered 6 times"), "\(table.output)")

        let show = try await run(["show", key.rawValue, dead[1].description])
        #expect(show.status == 0)
        let shown = try #require(try JSONSerialization.jsonObject(with: Data(show.output.utf8)) as? [String: Any])
        #expect((shown["fields"] as? [String: String])?["event_json"] == #"{"n":1}"#)
        #expect(try await run(["show", key.rawValue, "1-1"]).status == 1)
        #expect(try await run(["show", key.rawValue, "latest"]).status == 64)

        // Redrive one; then the same dead letter written again (a retried command, or a worker that
        // wrote it twice) is redriven again: nothing new is appended.
        let first = try await run(["redrive", key.rawValue, dead[0].description])
        #expect(first.status == 0, "\(first.output)")
        let redrivenID = try #require(first.output.split(separator: "\n").first { $0.hasPrefix(dead[0].description) }?.split(separator: " ").last.map(String.init))
        let again = try await queue.append(to: key.deadLetterStreamName, fields: deadLetter(0))
        let second = try await run(["redrive", key.rawValue, again.description])
        #expect(second.output.contains("\(redrivenID) (already redriven)"), "\(second.output)")
        #expect(try await run(["redrive", key.rawValue]).status == 64, "ids or --all")
        #expect(try await run(["redrive", key.rawValue, "--all"]).output.contains("redriven: 2"))
        #expect(try await queue.length(of: key.streamName) == 3)
        #expect(try await queue.length(of: key.deadLetterStreamName) == 0)

        // A worker stores each once; the row of dl-0 carries the stream id the redrive printed.
        let worker = try Child("worker", try E2E.binary("fi-worker"), [key.rawValue, "--storage", storage] + flags, logDirectory: storage)
        try await eventually("redriven entries stored", timeout: .seconds(30)) { try await E2E.rows(key, storage: storage).count == 3 }
        worker.terminate()
        #expect(await worker.waitForExit(timeout: .seconds(15)) == 0)
        let rows = try await E2E.rows(key, storage: storage)
        #expect(rows.map(\.consultationID).sorted() == ["dl-0", "dl-1", "dl-2"], "each redriven entry stored once")
        #expect(rows.first { $0.consultationID == "dl-0" }?.streamID.description == redrivenID)
        #expect(rows.first { $0.consultationID == "dl-0" }?.payload == Array(#"{"n":0}"#.utf8))

        // Purge needs --yes.
        for n in 0..<2 { _ = try await queue.append(to: key.deadLetterStreamName, fields: deadLetter(10 + n)) }
        #expect(try await run(["purge", key.rawValue, "--all"]).status == 64)
        #expect(try await queue.length(of: key.deadLetterStreamName) == 2)
        let purge = try await run(["purge", key.rawValue, "--all", "--yes"])
        #expect(purge.status == 0 && purge.output.contains("purged: 2"), "\(purge.output)")
        #expect(try await queue.length(of: key.deadLetterStreamName) == 0)
        await queue.close()
    }
}
