import FIPartitioning
import FIQueue
import FIStorage
import FITestSupport
import Foundation
import Testing

/// fi-server (and fi-worker) as processes, over HTTP on 127.0.0.1.
@Suite("fi-server end to end", .serialized)
struct ServerEndToEndTests {
    static func body(_ n: Int, site: String?) -> String {
        let metadata = site.map { #","metadata":{"site_id":"\#($0)"}"# } ?? ""
        return #"{"event_id":"e\#(n)","event_type":"TRANSCRIPTION_SEGMENT","seq":\#(n)\#(metadata),"payload":{"text":"ñandú \u00e9 \#(n)"}}"#
    }

    @Test(
        "with Redis: events posted → fi-worker → corpus → read back through GET, byte for byte",
        .enabled(if: E2E.enabled, "needs FI_TEST_REDIS_URL")
    )
    func postWorkerGet() async throws {
        let url = try await E2E.databaseURL()
        let storage = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let port = try Loopback.freePort()
        let base = "http://127.0.0.1:\(port)"
        let server = try Child("server", try E2E.binary("fi-server"), ["--port", "\(port)", "--redis-url", url, "--storage", storage], logDirectory: storage)
        let worker = try Child("worker", try E2E.binary("fi-worker"), ["--all", "--redis-url", url, "--storage", storage], logDirectory: storage)
        try await HTTP.waitHealthy(base, process: server)

        var expected: [String: [String]] = [:]  // "consultation|site" → bodies in order
        for n in 0..<120 {
            let site: String? = n % 3 == 0 ? nil : (n % 3 == 1 ? "a" : "b")
            let consultation = "cons-\(n % 4)"
            let text = Self.body(n, site: site)
            let reply = try await HTTP.request("POST", "\(base)/consultations/\(consultation)/events", body: Data(text.utf8))
            #expect(reply.status == 202, "\(String(decoding: reply.body, as: UTF8.self))")
            expected["\(consultation)|\(site ?? "")", default: []].append(text)
        }
        for (key, bodies) in expected {
            let parts = key.split(separator: "|", omittingEmptySubsequences: false)
            let query = parts[1].isEmpty ? "" : "?site_id=\(parts[1])"
            let getURL = "\(base)/consultations/\(parts[0])/events\(query)"
            try await eventually("\(key) persisted", timeout: .seconds(60)) {
                let reply = try await HTTP.request("GET", getURL)
                return (reply.json?["events"] as? [Any])?.count == bodies.count
            }
            let reply = try await HTTP.request("GET", getURL)
            let text = String(decoding: reply.body, as: UTF8.self)
            #expect(text.hasSuffix(#""events":["# + bodies.joined(separator: ",") + "]}"), "payloads byte for byte, in order")
        }
        server.terminate()
        worker.terminate()
        #expect(await server.waitForExit(timeout: .seconds(10)) == 0, "\(server.log.suffix(1500))")
        #expect(await worker.waitForExit(timeout: .seconds(10)) == 0, "\(worker.log.suffix(1500))")
    }

    @Test(
        "Redis stopped while clients post: 503 with Retry-After, never 202; restarted: 202 again without restarting fi-server",
        .enabled(if: E2E.enabled || FileManager.default.isExecutableFile(atPath: "/usr/bin/redis-server"))
    )
    func redisOutage() async throws {
        let redis = try await OwnRedis()
        let storage = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let port = try Loopback.freePort()
        let base = "http://127.0.0.1:\(port)"
        let server = try Child("server", try E2E.binary("fi-server"), ["--port", "\(port)", "--redis-url", redis.url, "--storage", storage], logDirectory: storage)
        try await HTTP.waitHealthy(base, process: server)
        let post = { (n: Int) in try await HTTP.request("POST", "\(base)/consultations/outage/events", body: Data(Self.body(n, site: "o").utf8)) }

        var accepted: [String] = []
        for n in 0..<20 {
            let reply = try await post(n)
            #expect(reply.status == 202)
            if let id = reply.json?["message_id"] as? String { accepted.append(id) }
        }
        await redis.kill9()
        var unavailable = 0
        for n in 20..<60 {
            let reply = try await post(n)
            #expect(reply.status == 503, "no 202 while Redis is down")
            if reply.status == 503 {
                unavailable += 1
                #expect(reply.headers["retry-after"] != nil)
            }
        }
        #expect(unavailable == 40)
        #expect(try await HTTP.request("GET", base + "/health").status == 503)

        try await redis.start()
        try await eventually("202s come back", timeout: .seconds(30)) { try await post(99).status == 202 }
        #expect(try await HTTP.request("GET", base + "/health").status == 200)

        // With appendfsync always, every event answered 202 before the crash survived it.
        let queue = try await RedisEventQueue.connect(url: redis.url, logger: E2E.logger)
        try await queue.createGroup("check", on: "fi:events:site_o")
        let entries = try await queue.readGroup("check", consumer: "c", from: "fi:events:site_o", count: 1000)
        #expect(Set(accepted).isSubset(of: Set(entries.map(\.id.description))))
        await queue.close()
        server.terminate()
        #expect(await server.waitForExit(timeout: .seconds(10)) == 0)
    }

    @Test(
        "--redis-min-replicas: 202 once a replica has the event; 503 with Retry-After when too few replicas acknowledge in time; refused in embedded mode",
        .enabled(if: E2E.enabled || FileManager.default.isExecutableFile(atPath: "/usr/bin/redis-server"))
    )
    func replicaAcknowledgement() async throws {
        let master = try await OwnRedis()
        let replica = try await OwnRedis(extra: ["--replicaof", "127.0.0.1", "\(master.port)"])
        let storage = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let post = { (base: String, n: Int) in try await HTTP.request("POST", "\(base)/consultations/replicas/events", body: Data(Self.body(n, site: "r").utf8)) }

        let port = try Loopback.freePort()
        let base = "http://127.0.0.1:\(port)"
        let server = try Child(
            "server", try E2E.binary("fi-server"),
            ["--port", "\(port)", "--redis-url", master.url, "--storage", storage, "--redis-min-replicas", "1", "--redis-replica-timeout", "0.5"],
            logDirectory: storage)
        try await HTTP.waitHealthy(base, process: server)
        // The replica may still be syncing at first: then 503, never a 202 it does not have.
        try await eventually("202 with the replica in sync", timeout: .seconds(20)) { try await post(base, 0).status == 202 }
        var accepted: [String] = []
        for n in 1...20 {
            let reply = try await post(base, n)
            #expect(reply.status == 202)
            if let id = reply.json?["message_id"] as? String { accepted.append(id) }
        }
        let onReplica = try await RedisEventQueue.connect(url: replica.url, logger: E2E.logger)
        let copied = try await onReplica.range("fi:events:site_r", after: nil, count: 1000).map(\.id.description)
        #expect(Set(accepted).isSubset(of: Set(copied)), "every 202 is on the replica when it is answered")
        await onReplica.close()
        server.terminate()
        #expect(await server.waitForExit(timeout: .seconds(10)) == 0)

        // Two replicas asked for, one there: 503 with Retry-After after the replica timeout.
        let port2 = try Loopback.freePort()
        let base2 = "http://127.0.0.1:\(port2)"
        let strict = try Child(
            "strict", try E2E.binary("fi-server"),
            ["--port", "\(port2)", "--redis-url", master.url, "--storage", storage, "--redis-min-replicas", "2", "--redis-replica-timeout", "0.2"],
            logDirectory: storage)
        try await HTTP.waitHealthy(base2, process: strict)
        for n in 30..<33 {
            let reply = try await post(base2, n)
            #expect(reply.status == 503)
            #expect(reply.headers["retry-after"] != nil)
            #expect((reply.json?["error"] as? [String: Any])?["code"] as? String == "queue_unavailable")
        }
        strict.terminate()
        #expect(await strict.waitForExit(timeout: .seconds(10)) == 0)

        // The embedded queue has no replicas.
        let embedded = try Child("embedded", try E2E.binary("fi-server"), ["--port", "0", "--storage", storage, "--redis-min-replicas", "1"], logDirectory: storage)
        #expect(await embedded.waitForExit(timeout: .seconds(10)) == 64)
        #expect(embedded.log.contains("--redis-min-replicas"), "\(embedded.log)")
        _ = replica
    }

    @Test("embedded mode: no Redis; segments roll by --segment-max-age; SIGTERM drains every accepted event into the corpus and exits 0")
    func embedded() async throws {
        let storage = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let port = try Loopback.freePort()
        let base = "http://127.0.0.1:\(port)"
        // Segments that close after a second: the embedded writer rolls between the two halves.
        let server = try Child(
            "embedded", try E2E.binary("fi-server"), ["--port", "\(port)", "--storage", storage, "--segment-max-age", "1s"], logDirectory: storage)
        try await HTTP.waitHealthy(base, process: server)

        var accepted: [String: [String]] = [:]
        for n in 0..<300 {
            if n == 150 { try await Task.sleep(for: .milliseconds(1500)) }
            let site: String? = n % 2 == 0 ? "emb" : nil
            let reply = try await HTTP.request("POST", "\(base)/consultations/e\(n % 7)/events", body: Data(Self.body(n, site: site).utf8))
            #expect(reply.status == 202)
            if let partition = reply.json?["partition"] as? String, let id = reply.json?["message_id"] as? String {
                accepted[partition, default: []].append(id)
            }
        }
        server.terminate()
        #expect(await server.waitForExit(timeout: .seconds(15)) == 0, "\(server.log.suffix(2000))")
        for (partition, ids) in accepted {
            let rows = try await E2E.rows(try PartitionKey(validating: partition), storage: storage)
            #expect(rows.map(\.streamID.description) == ids, "\(partition): every event answered 202 is stored once, in order")
        }
        #expect(accepted.values.reduce(0) { $0 + $1.count } == 300)
        let segments = try FileManager.default.contentsOfDirectory(atPath: storage + "/site_emb").filter { $0.hasPrefix("segment-") && $0.hasSuffix(".h5") }
        #expect(segments.count >= 2, "--segment-max-age rolls embedded mode's segments: \(segments)")
    }

    @Test("fi-server --help describes every contract flag; bad flags and an unreachable Redis exit non-zero with a reason")
    func serverFlags() async throws {
        let dir = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let binary = try E2E.binary("fi-server")
        let help = try Child("help", binary, ["--help"], logDirectory: dir)
        #expect(await help.waitForExit(timeout: .seconds(10)) == 0)
        for flag in ["--host", "--port", "--redis-url", "--redis-cluster", "--partitions", "--storage", "--max-body-bytes", "--max-backlog", "--api-tokens-file"] {
            #expect(help.log.contains(flag), "--help mentions \(flag)")
        }
        let bad = try Child("bad", binary, ["--partitions", "0"], logDirectory: dir)
        let badStatus = await bad.waitForExit(timeout: .seconds(10))
        #expect(badStatus != nil && badStatus != 0)
        let port = try Loopback.freePort()
        let unreachable = try Child("unreachable", binary, ["--redis-url", "redis://127.0.0.1:\(port)", "--port", "\(try Loopback.freePort())"], logDirectory: dir)
        let status = await unreachable.waitForExit(timeout: .seconds(15))
        #expect(status != nil && status != 0)
        #expect(unreachable.log.contains("fi-server: error: cannot reach"))
    }
}
