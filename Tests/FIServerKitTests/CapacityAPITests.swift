import FICapacity
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

@testable import FIServerKit

/// Flags with some set.
private func flags(_ set: (inout CapacityCommand.Flags) -> Void) -> CapacityCommand.Flags {
    var f = CapacityCommand.Flags()
    set(&f)
    return f
}

@Suite("GET /capacity and fi-server capacity")
struct CapacityAPITests {
    @Test("GET /capacity: the live estimate of the load the server just served, as JSON")
    func liveEstimate() async throws {
        let harness = Harness()
        try await harness.run { client in
            for n in 0..<40 {
                let site = n % 2 == 0 ? "cap_a" : "cap_b"
                try await client.execute(uri: "/consultations/cap-\(n)/events", method: .post, body: ByteBuffer(string: #"{"n":\#(n),"metadata":{"site_id":"\#(site)"}}"#)) {
                    #expect($0.status == .accepted)
                }
            }
            try await client.execute(uri: "/capacity", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/json")
                let object = try json(response)
                #expect(object["route"] as? String == "/consultations/{consultation_id}/events")
                #expect(object["workers"] as? Int == ProcessInfo.processInfo.activeProcessorCount)
                let observed = try #require(object["observed"] as? [String: Any])
                let interval = try #require(observed["interval_seconds"] as? Double)
                #expect(interval > 0 && interval < 600)
                // At least our 40 POSTs in the interval (other suites may add more).
                let rate = try #require(observed["requests_per_second"] as? Double)
                #expect(rate * interval >= 39.99)
                let partitions = try #require(observed["partitions"] as? [[String: Any]])
                let names = Set(partitions.compactMap { $0["partition"] as? String })
                #expect(names.isSuperset(of: ["site_cap_a", "site_cap_b"]))
                for p in partitions where p["partition"] as? String == "site_cap_a" {
                    #expect(((p["events_per_second"] as? Double) ?? 0) * interval >= 19.99)
                }
                // The service time is measured from the latency histogram, so the model has an answer.
                let service = try #require(object["mean_service_time_seconds"] as? Double)
                #expect(service > 0 && service < 1)
                #expect((object["service_time_source"] as? String)?.contains("over the interval") == true)
                let capacity = try #require(object["capacity"] as? [String: Any])
                let max = try #require(capacity["max_requests_per_second_at_target"] as? Double)
                #expect(max > 0)
                #expect(capacity["percentile"] as? Double == 0.95)
            }
        }
    }

    @Test("GET /capacity with parameters: the model's numbers are FICapacity's for those inputs")
    func parameters() async throws {
        let harness = Harness()
        try await harness.run { client in
            try await client.execute(uri: "/consultations/cap-p/events", method: .post, body: ByteBuffer(string: #"{"metadata":{"site_id":"cap_p"}}"#)) {
                #expect($0.status == .accepted)
            }
            try await client.execute(uri: "/capacity?workers=4&service_time_ms=2&target_ms=40&percentile=99&requests_per_session=10", method: .get) { response in
                #expect(response.status == .ok)
                let object = try json(response)
                #expect(object["workers"] as? Int == 4)
                #expect(object["workers_source"] as? String == "given")
                #expect(object["mean_service_time_seconds"] as? Double == 0.002)
                #expect(object["service_time_source"] as? String == "given")
                let capacity = try #require(object["capacity"] as? [String: Any])
                let expected = try MMcQueue.maxArrivalRate(servers: 4, meanServiceTimeSeconds: 0.002, percentile: 0.99, targetSeconds: 0.040)
                let max = try #require(capacity["max_requests_per_second_at_target"] as? Double)
                #expect(abs(max - expected.arrivalRatePerSecond) < 1e-9)
                let sessions = try #require(capacity["max_sessions_per_day_at_target"] as? Double)
                #expect(abs(sessions / (expected.arrivalRatePerSecond * 8_640) - 1) < 1e-12)
            }
        }
    }

    @Test(
        "GET /capacity rejects a bad parameter with 400 invalid_parameter naming it",
        arguments: ["workers=0", "workers=abc", "workers=-3", "service_time_ms=nan", "service_time_ms=0", "percentile=100", "percentile=0", "target_ms=-1", "requests_per_session=inf"]
    )
    func badParameter(_ query: String) async throws {
        let harness = Harness()
        try await harness.run { client in
            try await client.execute(uri: "/capacity?\(query)", method: .get) { response in
                #expect(response.status == .badRequest)
                try #expect(errorCode(response) == "invalid_parameter")
                let message = try #require((try json(response)["error"] as? [String: Any])?["message"] as? String)
                #expect(message.hasPrefix(String(query.prefix(while: { $0 != "=" }))))
            }
        }
    }

    @Test("GET /capacity with a tokens file: 401 without a token, 403 for a site token (it names every partition), 200 for '*'")
    func authentication() async throws {
        var harness = Harness()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("tokens-\(UUID().uuidString.prefix(6))").path
        try "site-a-token-123 a\nstar-token-4567 *\n".write(toFile: file, atomically: true, encoding: .utf8)
        chmod(file, 0o600)
        defer { try? FileManager.default.removeItem(atPath: file) }
        harness.settings.apiTokensFile = file
        try await harness.run { client in
            try await client.execute(uri: "/capacity", method: .get) {
                #expect($0.status == .unauthorized)
                try #expect(errorCode($0) == "unauthorized")
            }
            try await client.execute(uri: "/capacity", method: .get, headers: [.authorization: "Bearer wrong-token-000"]) {
                #expect($0.status == .unauthorized)
            }
            try await client.execute(uri: "/capacity", method: .get, headers: [.authorization: "Bearer site-a-token-123"]) {
                #expect($0.status == .forbidden)
                try #expect(errorCode($0) == "forbidden")
            }
            try await client.execute(uri: "/capacity", method: .get, headers: [.authorization: "Bearer star-token-4567"]) {
                #expect($0.status == .ok)
                try #expect(json($0)["observed"] != nil)
            }
            try await client.execute(uri: "/metrics", method: .get) { #expect($0.status == .ok) }
        }
    }

    @Test("fi-server capacity: the reference plan's table, and JSON with --json")
    func planTable() async throws {
        var flags = CapacityCommand.Flags()
        let table = try await CapacityCommand.run(flags)
        #expect(table.contains("5,184,000"), "the reference formula: 12 × 100 × 86,400 / 20")
        #expect(table.contains("sessions/day"))
        flags.json = true
        flags.sessionsPerDay = 300
        let text = try await CapacityCommand.run(flags)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(object["max_sessions_per_day"] as? Double == 5_184_000)
        #expect((object["inputs"] as? [String: Any])?["target_sessions_per_day"] as? Double == 300)
    }

    @Test(
        "fi-server capacity: every bad input is a one-line usage error naming its flag",
        arguments: [
            ("--workers", flags { f in f.workers = 0 }),
            ("--workers", flags { f in f.workers = -2 }),
            ("--sessions-per-day", flags { f in f.sessionsPerDay = .nan }),
            ("--sessions-per-day", flags { f in f.sessionsPerDay = 0 }),
            ("--requests-per-session", flags { f in f.requestsPerSession = -1 }),
            ("--worker-rps", flags { f in f.workerRPS = .infinity }),
            ("--service-time-ms", flags { f in f.serviceTimeMs = 0 }),
            ("--headroom", flags { f in f.headroom = 0.5 }),
            ("--peak-to-average", flags { f in f.peakToAverage = 0.9 }),
            ("--percentile", flags { f in f.percentile = 100 }),
            ("--target-ms", flags { f in f.targetMs = -5 }),
            ("--event-bytes", flags { f in f.eventBytes = 0 }),
            ("--partition-count", flags { f in f.partitions = 0 }),
            ("--disk-gb", flags { f in f.diskGB = -1 }),
            ("--used-gb", flags { f in f.usedGB = 2000 }),
            ("--traversals", flags { f in f.traversals = 0 }),
            ("--ingest-ms", flags { f in f.ingestMs = 1 }),
            ("--interval", flags { f in f.interval = 5 }),
            ("--disk-gb", flags { f in f.fromMetrics = "http://127.0.0.1:1"; f.diskGB = 10 }),
            ("--interval", flags { f in f.fromMetrics = "http://127.0.0.1:1"; f.interval = 0 }),
            ("--from-metrics", flags { f in f.fromMetrics = "ftp://example" }),
        ]
    )
    func planErrors(_ flag: String, _ flags: CapacityCommand.Flags) async throws {
        do {
            let out = try await CapacityCommand.run(flags, sleep: { _ in })
            Issue.record("accepted: \(out.prefix(80))")
        } catch {
            #expect(error.isUsage)
            #expect(error.description.contains(flag), "\(error.description)")
            #expect(!error.description.contains("\n"))
        }
    }

    @Test("fi-server capacity --from-metrics: an unreachable server is a one-line failure, not a usage error")
    func unreachable() async throws {
        var flags = CapacityCommand.Flags()
        flags.fromMetrics = "http://127.0.0.1:1"
        do {
            _ = try await CapacityCommand.run(flags, sleep: { _ in })
            Issue.record("an unreachable server gave an estimate")
        } catch {
            #expect(!error.isUsage)
            #expect(error.description.hasPrefix("http://127.0.0.1:1/metrics: cannot connect"), "\(error.description)")
            #expect(!error.description.contains("\n"))
        }
    }
}
