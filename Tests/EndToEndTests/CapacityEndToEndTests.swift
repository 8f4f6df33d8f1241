import FITestSupport
import Foundation
import Testing

/// `fi-server capacity` as a process: plans, bad inputs, and `--from-metrics` against a live embedded fi-server.
@Suite("fi-server capacity end to end", .serialized)
struct CapacityEndToEndTests {
    /// Runs `fi-server ARGS` to completion; its stdout and stderr together.
    static func run(_ arguments: [String], in directory: String) async throws -> (status: Int32?, output: String) {
        let child = try Child("capacity", try E2E.binary("fi-server"), arguments, logDirectory: directory)
        let status = await child.waitForExit(timeout: .seconds(60))
        if status == nil { await child.kill9() }
        return (status, child.log)
    }

    @Test("fi-server --help still lists every serve flag of the contract, and the capacity subcommand")
    func help() async throws {
        let directory = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (status, output) = try await Self.run(["--help"], in: directory)
        #expect(status == 0)
        for flag in ["--host", "--port", "--redis-url", "--redis-cluster", "--partitions", "--storage", "--max-body-bytes", "--max-backlog", "--api-tokens-file"] {
            #expect(output.contains(flag), "\(flag) missing from fi-server --help")
        }
        #expect(output.contains("capacity"))
        let sub = try await Self.run(["capacity", "--help"], in: directory)
        #expect(sub.status == 0)
        #expect(sub.output.contains("--from-metrics") && sub.output.contains("--sessions-per-day"))
    }

    @Test("fi-server capacity prints the plan as a table, and as JSON with --json")
    func plan() async throws {
        let directory = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let table = try await Self.run(["capacity"], in: directory)
        #expect(table.status == 0, "\(table.output)")
        #expect(table.output.contains("5,184,000"), "the reference: 12 × 100 × 86,400 / 20")
        #expect(table.output.contains("p95 response time"))

        let json = try await Self.run(["capacity", "--sessions-per-day", "300", "--workers", "2", "--service-time-ms", "1.5", "--json"], in: directory)
        #expect(json.status == 0, "\(json.output)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])
        let inputs = try #require(object["inputs"] as? [String: Any])
        #expect(inputs["target_sessions_per_day"] as? Double == 300)
        #expect(inputs["workers"] as? Int == 2)
        #expect(inputs["mean_service_time_seconds"] as? Double == 0.0015)
        #expect(object["max_sessions_per_day"] as? Double == 864_000.0, "2 × 100 × 86,400 / 20")
    }

    @Test(
        "fi-server capacity with a bad input: one line on stderr naming the flag, exit 64",
        arguments: [
            ["--workers", "0"], ["--sessions-per-day", "nan"], ["--sessions-per-day=-5"], ["--headroom", "0.5"],
            ["--percentile", "100"], ["--target-ms", "0"], ["--partition-count", "0"], ["--disk-gb", "inf"],
            ["--interval", "3"], ["--from-metrics", "not a url"],
        ]
    )
    func badInput(_ arguments: [String]) async throws {
        let directory = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (status, output) = try await Self.run(["capacity"] + arguments, in: directory)
        #expect(status == 64, "\(output)")
        let lines = output.split(separator: "\n")
        #expect(lines.count == 1, "\(output)")
        #expect(output.hasPrefix("fi-server capacity: error: "), "\(output)")
        #expect(output.contains(arguments[0].prefix(while: { $0 != "=" })), "\(output)")
    }

    @Test("fi-server capacity with a value that is not a number: non-zero exit naming the flag")
    func notANumber() async throws {
        let directory = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (status, output) = try await Self.run(["capacity", "--workers", "many"], in: directory)
        #expect(status != 0 && status != nil)
        #expect(output.contains("--workers"))
    }

    @Test("fi-server capacity --from-metrics: two scrapes of a live embedded fi-server while it takes events")
    func fromMetrics() async throws {
        let storage = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let port = try Loopback.freePort()
        let base = "http://127.0.0.1:\(port)"
        let server = try Child("server", try E2E.binary("fi-server"), ["--port", "\(port)", "--storage", storage, "--log-level", "error"], logDirectory: storage)
        try await HTTP.waitHealthy(base, process: server)

        let capacity = try Child(
            "capacity", try E2E.binary("fi-server"),
            ["capacity", "--from-metrics", base, "--interval", "3", "--workers", "2", "--json"],
            logDirectory: storage
        )
        // Traffic during the interval: bounded in count and time.
        var posted = 0
        let deadline = ContinuousClock.now + .seconds(20)
        while capacity.isRunning && posted < 2_000 && ContinuousClock.now < deadline {
            let site = posted % 3 == 0 ? "" : #","metadata":{"site_id":"cap\#(posted % 3)"}"#
            let reply = try await HTTP.request("POST", "\(base)/consultations/cap-\(posted % 7)/events", body: Data(#"{"n":\#(posted)\#(site)}"#.utf8))
            #expect(reply.status == 202)
            posted += 1
            try await Task.sleep(for: .milliseconds(10))
        }
        let status = await capacity.waitForExit(timeout: .seconds(30))
        #expect(status == 0, "\(capacity.log)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(capacity.log.utf8)) as? [String: Any], "\(capacity.log)")
        #expect(object["workers"] as? Int == 2)
        let observed = try #require(object["observed"] as? [String: Any])
        let interval = try #require(observed["interval_seconds"] as? Double)
        #expect(interval >= 2.9 && interval < 30)
        let rate = try #require(observed["requests_per_second"] as? Double)
        #expect(rate > 0 && rate * interval <= Double(posted) + 0.5, "only the events route is counted, and only in the interval")
        let partitions = Set(((observed["partitions"] as? [[String: Any]]) ?? []).compactMap { $0["partition"] as? String })
        #expect(partitions.isSuperset(of: ["site_cap1", "site_cap2"]))
        let service = try #require(object["mean_service_time_seconds"] as? Double)
        #expect(service > 0 && service < 1)
        let estimate = try #require(object["capacity"] as? [String: Any])
        #expect(((estimate["max_requests_per_second_at_target"] as? Double) ?? 0) > 0)
        #expect(((estimate["headroom_factor"] as? Double) ?? 0) > 0)

        // A table by default; GET /capacity answers the same shape.
        let table = try await Self.run(["capacity", "--from-metrics", base + "/metrics", "--interval", "0.5"], in: storage)
        #expect(table.status == 0, "\(table.output)")
        #expect(table.output.contains("Live estimate") && table.output.contains("requests/s"))
        let live = try await HTTP.request("GET", base + "/capacity")
        #expect(live.status == 200)
        #expect(live.json?["observed"] != nil && live.json?["capacity"] != nil)

        server.terminate()
        #expect(await server.waitForExit(timeout: .seconds(20)) == 0, "\(server.log.suffix(1500))")
    }

    @Test("fi-server capacity --from-metrics with nothing listening: exit 1 and one line")
    func unreachable() async throws {
        let directory = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let port = try Loopback.freePort()
        let (status, output) = try await Self.run(["capacity", "--from-metrics", "http://127.0.0.1:\(port)", "--interval", "1"], in: directory)
        #expect(status == 1, "\(output)")
        #expect(output.split(separator: "\n").count == 1, "\(output)")
        #expect(output.contains("cannot connect"), "\(output)")
    }
}
