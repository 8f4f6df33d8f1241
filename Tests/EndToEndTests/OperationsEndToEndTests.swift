import FIBuildInfo
import FIPartitioning
import FIQueue
import FITestSupport
import Foundation
import Testing

/// What an operator runs the binaries with: settings from flags, FI_* variables,
/// a config file and defaults; JSON logs; probes; build and process metrics.
@Suite("Operations", .serialized, .enabled(if: E2E.enabled, "needs FI_TEST_REDIS_URL (scripts/test.sh)"))
struct OperationsEndToEndTests {
    /// Runs `binary arguments` to its end: exit status and everything it printed.
    static func run(_ binary: String, _ arguments: [String], environment: [String: String] = [:]) async throws -> (status: Int32?, output: String) {
        let dir = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let child = try Child("run", try E2E.binary(binary), arguments, environment: environment, logDirectory: dir)
        let status = await child.waitForExit(timeout: .seconds(20))
        return (status, child.log)
    }

    /// The `config` table as setting → (value, source).
    static func table(_ output: String) -> [String: (value: String, source: String)] {
        var rows: [String: (String, String)] = [:]
        for line in output.split(separator: "\n") where line.hasPrefix("--") {
            let cells = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard cells.count >= 3 else { continue }
            rows[cells[0]] = (cells[1], cells[2...].joined(separator: " "))
        }
        return rows
    }

    @Test("a setting comes from the flag, else FI_<FLAG>, else the config file, else the default; config says which, secrets redacted", arguments: ["fi-server", "fi-worker"])
    func precedence(binary: String) async throws {
        let dir = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let yaml = dir + "/fi.yaml"
        try "storage: /from/file\nlog-level: error\nlog-format: json\n".write(toFile: yaml, atomically: true, encoding: .utf8)
        let environment = [
            "FI_LOG_LEVEL": "warning", "FI_LOG_FORMAT": "text", "REDIS_URL": "redis://:hunter2@127.0.0.1:6399/0",
        ]
        let (status, output) = try await Self.run(binary, ["config", "--config", yaml, "--log-format", "json"], environment: environment)
        #expect(status == 0, "\(output)")
        let rows = Self.table(output)
        #expect(rows["--log-format"]?.value == "json" && rows["--log-format"]?.source == "flag")
        #expect(rows["--log-level"]?.value == "warning" && rows["--log-level"]?.source == "env FI_LOG_LEVEL")
        #expect(rows["--storage"]?.value == "/from/file" && rows["--storage"]?.source == "file \(yaml)")
        #expect(rows["--shutdown-delay"]?.source == "default")
        #expect(rows["--redis-url"]?.value == "redis://***@127.0.0.1:6399/0" && rows["--redis-url"]?.source == "env REDIS_URL")
        #expect(!output.contains("hunter2"), "the password is never printed")

        // FI_REDIS_URL beats the legacy REDIS_URL; a JSON file works as well as YAML.
        let json = dir + "/fi.json"
        try #"{"storage": "/from/json"}"#.write(toFile: json, atomically: true, encoding: .utf8)
        let again = try await Self.run(binary, ["config"], environment: [
            "FI_CONFIG": json, "REDIS_URL": "redis://old:1", "FI_REDIS_URL": "redis://new:2",
        ])
        let rows2 = Self.table(again.output)
        #expect(rows2["--redis-url"]?.value == "redis://new:2" && rows2["--redis-url"]?.source == "env FI_REDIS_URL")
        #expect(rows2["--storage"]?.value == "/from/json")
    }

    @Test("a bad value names the setting and where it came from, and exits 64", arguments: ["fi-server", "fi-worker"])
    func badValues(binary: String) async throws {
        let dir = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let extra = binary == "fi-worker" ? ["--all"] : []
        let fromEnv = try await Self.run(binary, extra, environment: ["FI_LOG_LEVEL": "chatty"])
        #expect(fromEnv.status == 64)
        #expect(fromEnv.output.contains("--log-level (from env FI_LOG_LEVEL)"), "\(fromEnv.output)")
        let notInt = try await Self.run(binary, extra, environment: ["FI_SHUTDOWN_DELAY": "soon"])
        #expect(notInt.status == 64)
        #expect(notInt.output.contains("--shutdown-delay (from env FI_SHUTDOWN_DELAY)"), "\(notInt.output)")
        let replicas = try await Self.run(binary, extra + ["--redis-url", "redis://127.0.0.1:1"], environment: ["FI_REDIS_MIN_REPLICAS": "-1"])
        #expect(replicas.status == 64)
        #expect(replicas.output.contains("--redis-min-replicas (from env FI_REDIS_MIN_REPLICAS)"), "\(replicas.output)")
        let replicaTimeout = try await Self.run(binary, extra + ["--redis-url", "redis://127.0.0.1:1", "--redis-replica-timeout", "0"])
        #expect(replicaTimeout.status == 64)
        #expect(replicaTimeout.output.contains("--redis-replica-timeout (from flag)"), "\(replicaTimeout.output)")

        let file = dir + "/bad.yaml"
        try "log-format: xml\n".write(toFile: file, atomically: true, encoding: .utf8)
        let fromFile = try await Self.run(binary, extra + ["--config", file])
        #expect(fromFile.status == 64)
        #expect(fromFile.output.contains("--log-format (from file \(file))"), "\(fromFile.output)")

        let typo = dir + "/typo.json"
        try #"{"storag": "/x"}"#.write(toFile: typo, atomically: true, encoding: .utf8)
        let unknown = try await Self.run(binary, extra + ["--config", typo])
        #expect(unknown.status == 64)
        #expect(unknown.output.contains("unknown setting storag"), "\(unknown.output)")
    }

    @Test("--help names every setting's environment variable", arguments: ["fi-server", "fi-worker"])
    func helpNamesVariables(binary: String) async throws {
        let settings = Self.table(try await Self.run(binary, ["config"]).output).keys
        #expect(settings.count >= 10)
        let help = try await Self.run(binary, ["--help"])
        #expect(help.status == 0)
        for flag in settings {
            let variable = "FI_" + flag.dropFirst(2).uppercased().replacingOccurrences(of: "-", with: "_")
            #expect(help.output.contains(flag) && help.output.contains(variable), "\(binary) --help: \(flag) \(variable)")
        }
    }

    @Test("--log-format json: one JSON object per line with time, level, label, message, metadata")
    func jsonLogs() async throws {
        let storage = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let port = try Loopback.freePort()
        let base = "http://127.0.0.1:\(port)"
        let server = try Child(
            "server", try E2E.binary("fi-server"), ["--port", "\(port)", "--storage", storage],
            environment: ["FI_LOG_FORMAT": "json", "FI_LOG_LEVEL": "debug"], logDirectory: storage)
        try await HTTP.waitHealthy(base, process: server)
        let reply = try await HTTP.request("POST", "\(base)/consultations/json-log-1/events", body: Data(#"{"n":1}"#.utf8))
        #expect(reply.status == 202)
        let id = try #require(reply.headers["x-request-id"])
        try await eventually("request logged", timeout: .seconds(10)) { server.log.contains(id) }
        server.terminate()
        #expect(await server.waitForExit(timeout: .seconds(15)) == 0)
        let lines = server.log.split(separator: "\n").filter { !$0.isEmpty }
        #expect(lines.count >= 3)
        for line in lines {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not JSON: \(line)")
            #expect(object["time"] is String && object["level"] is String && object["label"] is String, "\(line)")
            #expect(object["message"] is String && object["metadata"] is [String: Any], "\(line)")
        }
        let request = try #require(lines.first { $0.contains(id) })
        let metadata = try #require((try JSONSerialization.jsonObject(with: Data(request.utf8)) as? [String: Any])?["metadata"] as? [String: Any])
        #expect(metadata["http.route"] as? String == "/consultations/{consultation_id}/events")
    }

    @Test("probes: live and ready on fi-server and fi-worker; ready is 503 while Redis is down and right after SIGTERM; build and process metrics")
    func probes() async throws {
        let redis = try await OwnRedis()
        let storage = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let serverPort = try Loopback.freePort(), workerPort = try Loopback.freePort()
        let server = try Child(
            "server", try E2E.binary("fi-server"),
            ["--port", "\(serverPort)", "--redis-url", redis.url, "--storage", storage, "--shutdown-delay", "2"], logDirectory: storage)
        let worker = try Child(
            "worker", try E2E.binary("fi-worker"),
            ["--all", "--redis-url", redis.url, "--storage", storage, "--http-port", "\(workerPort)", "--shutdown-delay", "2"], logDirectory: storage)
        defer {
            server.terminate()
            worker.terminate()
        }
        let servers = ["fi-server": "http://127.0.0.1:\(serverPort)", "fi-worker": "http://127.0.0.1:\(workerPort)"]
        for (name, base) in servers {
            try await eventually("\(name) ready", timeout: .seconds(20)) { try await HTTP.request("GET", base + "/health/ready").status == 200 }
            #expect(try await HTTP.request("GET", base + "/health/live").status == 200)
            let metrics = String(decoding: try await HTTP.request("GET", base + "/metrics").body, as: UTF8.self)
            #expect(metrics.contains(#"fi_build_info{version="\#(BuildInfo.version)",commit=""#), "\(name): fi_build_info")
            for series in ["process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds", "process_start_time_seconds"] {
                #expect(metrics.contains("\n\(series) "), "\(name): \(series)")
            }
        }

        // Redis down: not ready (503 with the reason), still live.
        await redis.kill9()
        for (name, base) in servers {
            try await eventually("\(name) not ready without Redis", timeout: .seconds(20)) {
                try await HTTP.request("GET", base + "/health/ready").status == 503
            }
            let ready = try await HTTP.request("GET", base + "/health/ready")
            #expect(String(decoding: ready.body, as: UTF8.self).contains("queue"), "\(name): the reason names the queue")
            #expect(try await HTTP.request("GET", base + "/health/live").status == 200)
        }
        try await redis.start()
        for (name, base) in servers {
            try await eventually("\(name) ready again", timeout: .seconds(30)) { try await HTTP.request("GET", base + "/health/ready").status == 200 }
        }

        // SIGTERM: ready answers 503 first, while the process still serves (live 200), then it exits 0.
        server.terminate()
        worker.terminate()
        for (name, base) in servers {
            try await eventually("\(name) drains", timeout: .seconds(2)) { try await HTTP.request("GET", base + "/health/ready").status == 503 }
            #expect(try await HTTP.request("GET", base + "/health/live").status == 200, "\(name) still serves while draining")
        }
        #expect(await server.waitForExit(timeout: .seconds(15)) == 0, "\(server.log.suffix(1500))")
        #expect(await worker.waitForExit(timeout: .seconds(15)) == 0, "\(worker.log.suffix(1500))")
    }

    @Test("per-partition worker metrics: lag (fi_queue_backlog), pending, oldest pending age, dead letters, lease held")
    func partitionMetrics() async throws {
        let url = try await E2E.databaseURL()
        let storage = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let queue = try await RedisEventQueue.connect(url: url)
        let key = try PartitionKey(validating: "site_metrics")
        _ = try await queue.append(to: key.streamName, fields: [StreamField("consultation_id", "m-1"), StreamField("event_json", "{}")])
        _ = try await queue.append(to: key.deadLetterStreamName, fields: [StreamField("consultation_id", "m-2"), StreamField("dead_reason", "test")])
        let port = try Loopback.freePort()
        let worker = try Child(
            "worker", try E2E.binary("fi-worker"), ["--all", "--redis-url", url, "--storage", storage, "--http-port", "\(port)"], logDirectory: storage)
        defer { worker.terminate() }
        let label = #"{partition="site_metrics"}"#
        try await eventually("per-partition series", timeout: .seconds(30)) {
            let text = String(decoding: try await HTTP.request("GET", "http://127.0.0.1:\(port)/metrics").body, as: UTF8.self)
            return ["fi_queue_backlog", "fi_worker_pending_entries", "fi_worker_oldest_pending_seconds"].allSatisfy { text.contains($0 + label) }
                && text.contains("fi_worker_dead_letter_entries\(label) 1") && text.contains("fi_worker_lease_held\(label) 1")
        }
        await queue.close()
    }

    @Test("fi-worker status: lease owner, backlog, pending, oldest pending age, dead letters, last stored id and rows of every partition; --json")
    func status() async throws {
        let url = try await E2E.databaseURL()
        let storage = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let queue = try await RedisEventQueue.connect(url: url)
        let stored = try PartitionKey(validating: "site_status"), waiting = try PartitionKey(validating: "partition_7")
        var ids: [StreamEntryID] = []
        for n in 0..<5 {
            ids.append(try await queue.append(to: stored.streamName, fields: [StreamField("consultation_id", "s-\(n)"), StreamField("event_json", "{}")]))
        }
        _ = try await queue.append(to: stored.deadLetterStreamName, fields: [StreamField("consultation_id", "d"), StreamField("dead_reason", "test")])
        let worker = try Child("worker", try E2E.binary("fi-worker"), [stored.rawValue, "--redis-url", url, "--storage", storage], logDirectory: storage)
        try await eventually("stored", timeout: .seconds(30)) { try await E2E.rows(stored, storage: storage).count == 5 }
        // Pending on a partition nobody writes: read by a consumer that never acknowledges.
        try await queue.createGroup("fi-workers", on: waiting.streamName)
        _ = try await queue.append(to: waiting.streamName, fields: [StreamField("consultation_id", "w"), StreamField("event_json", "{}")])
        _ = try await queue.append(to: waiting.streamName, fields: [StreamField("consultation_id", "w"), StreamField("event_json", "{}")])
        _ = try await queue.readGroup("fi-workers", consumer: "gone", from: waiting.streamName, count: 1, block: nil, ownPending: false)

        let (status, output) = try await Self.run("fi-worker", ["status", "--json", "--redis-url", url, "--storage", storage])
        #expect(status == 0, "\(output)")
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[String: Any]], "\(output)")
        let byName = Dictionary(uniqueKeysWithValues: rows.map { ($0["partition"] as? String ?? "", $0) })
        let s = try #require(byName["site_status"])
        #expect((s["lease_owner"] as? String)?.isEmpty == false, "the running worker holds it")
        #expect(s["backlog"] as? Int == 0 && s["pending"] as? Int == 0 && s["dead_letters"] as? Int == 1)
        #expect(s["rows"] as? Int == 5 && s["last_stored_stream_id"] as? String == ids.last?.description)
        let w = try #require(byName["partition_7"])
        #expect(w["lease_owner"] == nil, "nobody writes partition_7")
        #expect(w["backlog"] as? Int == 2 && w["pending"] as? Int == 1 && w["rows"] == nil)
        #expect((w["oldest_pending_seconds"] as? Double).map { $0 >= 0 } == true)

        let table = try await Self.run("fi-worker", ["status", "--redis-url", url, "--storage", storage])
        #expect(table.status == 0)
        #expect(table.output.contains("site_status") && table.output.contains("partition_7") && table.output.contains("(none)"), "\(table.output)")
        worker.terminate()
        #expect(await worker.waitForExit(timeout: .seconds(15)) == 0)
        await queue.close()
    }

    @Test("Docs/operations.md carries each binary's configuration reference exactly as `config --reference` prints it", arguments: ["fi-server", "fi-worker"])
    func referenceInDocs(binary: String) async throws {
        let (status, reference) = try await Self.run(binary, ["config", "--reference"])
        #expect(status == 0)
        let docs = try String(contentsOf: RepositoryTests.root.appendingPathComponent("Docs/operations.md"), encoding: .utf8)
        let begin = "<!-- BEGIN \(binary) config --reference -->\n", end = "<!-- END \(binary) config --reference -->"
        let start = try #require(docs.range(of: begin), "no \(begin) marker")
        let stop = try #require(docs.range(of: end, range: start.upperBound..<docs.endIndex))
        #expect(String(docs[start.upperBound..<stop.lowerBound]) == reference, "regenerate with: \(binary) config --reference")
    }
}
