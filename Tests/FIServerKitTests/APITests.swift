import FIPartitioning
import FIQueue
import FIStorage
import FIWorkerKit
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Prometheus
import Testing

@testable import FIServerKit

/// swift-metrics can be bootstrapped once per process: every test shares this registry.
let testRegistry: PrometheusCollectorRegistry = Observability.bootstrapPrometheus()

var quietLogger: Logger {
    var logger = Logger(label: "fi.server.tests")
    logger.logLevel = ProcessInfo.processInfo.environment["FI_TEST_LOG"] == "1" ? .debug : .critical
    return logger
}

struct Harness {
    var settings = ServerSettings()
    let queue: InMemoryEventQueue
    let storage: String

    init() {
        queue = InMemoryEventQueue()
        storage = FileManager.default.temporaryDirectory.appendingPathComponent("fi-server-\(UUID().uuidString.prefix(8))").path
        settings.storageRoot = storage
        settings.backlogRefreshInterval = .milliseconds(20)
    }

    func run<T: Sendable>(_ body: @Sendable (any TestClientProtocol) async throws -> T) async throws -> T {
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let app = try ServerApplication.buildApplication(settings: settings, queue: queue, registry: testRegistry, logger: quietLogger)
        return try await app.test(.router, body)
    }
}

func json(_ response: TestResponse) throws -> [String: Any] {
    try #require(JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any])
}

func errorCode(_ response: TestResponse) throws -> String? {
    (try json(response)["error"] as? [String: Any])?["code"] as? String
}

let sampleBody = #"{"event_id":"e1","event_type":"TRANSCRIPTION_SEGMENT","metadata":{"site_id":"hospital_a","source":"t"},"payload":{"text":"ñandú \u00e9"}}"#

@Suite("HTTP API")
struct APITests {
    @Test("POST queues the body byte for byte and answers 202 with partition, stream and message id")
    func postAccepted() async throws {
        let harness = Harness()
        try await harness.run { client in
            try await client.execute(uri: "/consultations/c-1/events", method: .post, body: ByteBuffer(string: sampleBody)) { response in
                #expect(response.status == .accepted)
                #expect(response.headers[.contentType] == "application/json")
                #expect(response.headers[HTTPField.Name("X-Request-Id")!] != nil)
                let object = try json(response)
                #expect(object["status"] as? String == "accepted")
                #expect(object["partition"] as? String == "site_hospital_a")
                #expect(object["stream"] as? String == "fi:events:site_hospital_a")
                let messageID = try #require(object["message_id"] as? String)
                #expect(StreamEntryID(messageID) != nil)
            }
            try await harness.queue.createGroup("t", on: "fi:events:site_hospital_a")
            let entries = try await harness.queue.readGroup("t", consumer: "t", from: "fi:events:site_hospital_a", count: 10)
            #expect(entries.count == 1)
            #expect(entries[0][field: "event_json"] == Array(sampleBody.utf8))
            #expect(entries[0][field: "consultation_id"] == Array("c-1".utf8))
            let receivedAt = Int64(String(decoding: entries[0][field: "received_at_ms"] ?? [], as: UTF8.self)) ?? 0
            #expect(abs(receivedAt - Int64(Date().timeIntervalSince1970 * 1000)) < 60_000)
        }
    }

    @Test("a valid traceparent header travels in the stream entry (no tracer here: as it came); a malformed one does not")
    func traceparentTravels() async throws {
        let harness = Harness()
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        try await harness.run { client in
            for header in [valid, "00-zz-00f067aa0ba902b7-01", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"] {
                try await client.execute(
                    uri: "/consultations/c-1/events", method: .post, headers: [HTTPField.Name("traceparent")!: header],
                    body: ByteBuffer(string: sampleBody)
                ) { response in
                    #expect(response.status == .accepted)
                }
            }
            try await harness.queue.createGroup("t", on: "fi:events:site_hospital_a")
            let entries = try await harness.queue.readGroup("t", consumer: "t", from: "fi:events:site_hospital_a", count: 10)
            #expect(entries.map { $0[field: "traceparent"] } == [Array(valid.utf8), nil, nil])
        }
    }

    @Test(
        "no site (absent, null, empty, metadata not an object) routes by MD5 of the consultation id",
        arguments: [#"{}"#, #"{"metadata":{"site_id":null}}"#, #"{"metadata":{"site_id":""}}"#, #"{"metadata":{}}"#, #"{"metadata":[1]}"#]
    )
    func hashPartition(body: String) async throws {
        let expected = try Partitioner(partitions: 3).hashKey(consultationID: "4ba71ab7-ac05-44a5-acc6-be1805fdf179")
        try await Harness().run { client in
            try await client.execute(uri: "/consultations/4ba71ab7-ac05-44a5-acc6-be1805fdf179/events", method: .post, body: ByteBuffer(string: body)) { response in
                #expect(response.status == .accepted)
                try #expect(json(response)["partition"] as? String == expected.rawValue)
                #expect(expected.rawValue == "partition_2")
            }
        }
    }

    @Test(
        "bad bodies are 400 with the contract's error JSON and nothing is queued",
        arguments: [
            ("", "invalid_json"), ("{", "invalid_json"), ("not json", "invalid_json"), (#"{"a":1,}"#, "invalid_json"),
            (#"{"a":01}"#, "invalid_json"), ("{\"a\":\"\u{1}\"}", "invalid_json"), (#"{"a":1} {}"#, "invalid_json"),
            ("[]", "not_an_object"), (#"[{"a":1}]"#, "not_an_object"), (#""text""#, "not_an_object"), ("42", "not_an_object"), ("null", "not_an_object"),
            (#"{"metadata":{"site_id":7}}"#, "invalid_site_id"), (#"{"metadata":{"site_id":true}}"#, "invalid_site_id"),
            (#"{"metadata":{"site_id":{"x":1}}}"#, "invalid_site_id"), (#"{"metadata":{"site_id":["a"]}}"#, "invalid_site_id"),
            (#"{"metadata":{"site_id":"a b"}}"#, "invalid_site_id"), (#"{"metadata":{"site_id":"../etc"}}"#, "invalid_site_id"),
            (#"{"metadata":{"site_id":"a/b"}}"#, "invalid_site_id"), (#"{"metadata":{"site_id":"a\u0000b"}}"#, "invalid_site_id"),
            (#"{"metadata":{"site_id":"\#(String(repeating: "s", count: 65))"}}"#, "invalid_site_id"),
            (String(repeating: "[", count: 100_000), "invalid_json"),
            (String(repeating: #"{"a":"#, count: 1000), "invalid_json"),
        ]
    )
    func badBodies(body: String, code: String) async throws {
        let harness = Harness()
        try await harness.run { client in
            try await client.execute(uri: "/consultations/c-1/events", method: .post, body: ByteBuffer(string: body)) { response in
                #expect(response.status == .badRequest)
                try #expect(errorCode(response) == code)
                let message = (try json(response)["error"] as? [String: Any])?["message"] as? String
                #expect(message?.isEmpty == false)
            }
        }
        try #expect(await harness.queue.streams(withPrefix: "fi:").isEmpty)
    }

    @Test("invalid UTF-8 in the body is 400 invalid_json")
    func badUTF8() async throws {
        try await Harness().run { client in
            let bytes: [UInt8] = Array(#"{"a":""#.utf8) + [0xC3, 0x28] + Array(#""}"#.utf8)
            try await client.execute(uri: "/consultations/c-1/events", method: .post, body: ByteBuffer(bytes: bytes)) { response in
                #expect(response.status == .badRequest)
                try #expect(errorCode(response) == "invalid_json")
            }
        }
    }

    @Test(
        "invalid consultation ids are 400 invalid_consultation_id",
        arguments: ["..", ".hidden", "a%2Fb", "%2F", "a%00b", "%FF", "a%20b", "-a", String(repeating: "x", count: 129), "%C3%B1"]
    )
    func badIDs(id: String) async throws {
        try await Harness().run { client in
            try await client.execute(uri: "/consultations/\(id)/events", method: .post, body: ByteBuffer(string: "{}")) { response in
                #expect(response.status == .badRequest)
                try #expect(errorCode(response) == "invalid_consultation_id")
            }
            try await client.execute(uri: "/consultations/\(id)/events", method: .get) { response in
                #expect(response.status == .badRequest)
            }
        }
    }

    @Test("an id with a slash is not a route: 404 with the error JSON")
    func slashID() async throws {
        try await Harness().run { client in
            for uri in ["/consultations/a/b/events", "/nope", "/consultations//events", "/"] {
                try await client.execute(uri: uri, method: .post, body: ByteBuffer(string: "{}")) { response in
                    #expect(response.status == .notFound, "\(uri)")
                    try #expect(errorCode(response) == "not_found")
                }
            }
        }
    }

    @Test("a body over the limit is 413, also without Content-Length")
    func tooLarge() async throws {
        var harness = Harness()
        harness.settings.maxBodyBytes = 1 << 20
        try await harness.run { client in
            let big = ByteBuffer(string: "{\"a\":\"" + String(repeating: "x", count: 2 << 20) + "\"}")
            try await client.execute(uri: "/consultations/c/events", method: .post, body: big) { response in
                #expect(response.status == .contentTooLarge)
                try #expect(errorCode(response) == "body_too_large")
            }
            let justUnder = ByteBuffer(string: "{\"a\":\"" + String(repeating: "x", count: (1 << 20) - 8) + "\"}")
            #expect(justUnder.readableBytes == 1 << 20)
            try await client.execute(uri: "/consultations/c/events", method: .post, body: justUnder) { response in
                #expect(response.status == .accepted)
            }
        }
    }

    @Test("a partition over --max-backlog is answered 429 with Retry-After, and clears once drained")
    func backpressure() async throws {
        var harness = Harness()
        harness.settings.maxBacklog = 5
        let queue = harness.queue
        try await harness.run { client in
            let body = ByteBuffer(string: #"{"metadata":{"site_id":"busy"}}"#)
            for _ in 0..<6 {
                try await client.execute(uri: "/consultations/c/events", method: .post, body: body) { #expect($0.status == .accepted) }
            }
            try await Task.sleep(for: .milliseconds(200))
            try await client.execute(uri: "/consultations/c/events", method: .post, body: body) { response in
                #expect(response.status == .tooManyRequests)
                #expect(response.headers[.retryAfter] == "1")
                try #expect(errorCode(response) == "backlog_full")
            }
            // Another partition is not affected.
            try await client.execute(uri: "/consultations/c/events", method: .post, body: ByteBuffer(string: #"{"metadata":{"site_id":"quiet"}}"#)) {
                #expect($0.status == .accepted)
            }
            // Workers catch up: the stream shrinks, and 202s come back by themselves.
            try await queue.createGroup("g", on: "fi:events:site_busy")
            let entries = try await queue.readGroup("g", consumer: "c", from: "fi:events:site_busy", count: 100)
            _ = try await queue.delete(from: "fi:events:site_busy", ids: entries.map(\.id))
            try await Task.sleep(for: .milliseconds(200))
            try await client.execute(uri: "/consultations/c/events", method: .post, body: body) { #expect($0.status == .accepted) }
        }
    }

    @Test("queue unreachable: POST is 503 with Retry-After (never 202) and /health is 503")
    func queueDown() async throws {
        let harness = Harness()
        try await harness.run { client in
            try await client.execute(uri: "/health", method: .get) { response in
                #expect(response.status == .ok)
                try #expect(json(response)["status"] as? String == "ok")
            }
            await harness.queue.close()
            try await client.execute(uri: "/consultations/c/events", method: .post, body: ByteBuffer(string: "{}")) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(response.headers[.retryAfter] == "1")
                try #expect(errorCode(response) == "queue_unavailable")
            }
            try await client.execute(uri: "/health", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                try #expect(json(response)["status"] as? String == "unavailable")
            }
        }
    }

    @Test("GET returns the persisted events of one consultation, byte for byte, in stream order")
    func getEvents() async throws {
        let harness = Harness()
        let storage = harness.storage
        let queue = harness.queue
        try await harness.run { client in
            var worker = WorkerConfiguration()
            worker.storageRoot = storage
            worker.discoverAll = true
            worker.rescanInterval = .milliseconds(50)
            worker.readBlock = .milliseconds(20)
            worker.store.fsync = false
            let eventWorker = EventWorker(queue: queue, configuration: worker, logger: quietLogger)
            let task = Task { try await eventWorker.run() }
            let bodies = (0..<5).map { #"{"n":\#($0),"metadata":{"site_id":"s1"},"text":"\u00e9 ü"}"# }
            for (n, body) in bodies.enumerated() {
                try await client.execute(uri: "/consultations/\(n % 2 == 0 ? "even" : "odd")/events", method: .post, body: ByteBuffer(string: body)) {
                    #expect($0.status == .accepted)
                }
            }
            let deadline = ContinuousClock.now + .seconds(20)
            var events: [Any] = []
            while ContinuousClock.now < deadline {
                events = try await client.execute(uri: "/consultations/even/events?site_id=s1", method: .get) { response in
                    #expect(response.status == .ok)
                    return (try json(response)["events"] as? [Any]) ?? []
                }
                if events.count == 3 { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            try await client.execute(uri: "/consultations/even/events?site_id=s1", method: .get) { response in
                let expected = #"{"consultation_id":"even","partition":"site_s1","events":["# + [bodies[0], bodies[2], bodies[4]].joined(separator: ",") + "]}"
                #expect(String(buffer: response.body) == expected)
            }
            // Unknown consultation, and a partition with no corpus yet: empty lists.
            try await client.execute(uri: "/consultations/nobody/events?site_id=s1", method: .get) { response in
                #expect(response.status == .ok)
                let events = try json(response)["events"] as? [Any]
                #expect(events?.isEmpty == true)
            }
            try await client.execute(uri: "/consultations/even/events", method: .get) { response in
                #expect(response.status == .ok)
                let events = try json(response)["events"] as? [Any]
                #expect(events?.isEmpty == true)
            }
            try await client.execute(uri: "/consultations/even/events?site_id=a%2Fb", method: .get) { response in
                #expect(response.status == .badRequest)
                try #expect(errorCode(response) == "invalid_site_id")
            }
            eventWorker.stop()
            try await task.value
        }
    }

    @Test("GET reads across segment rolls, and no longer returns a consultation erased while the worker runs")
    func getAcrossSegmentsAndAfterErasure() async throws {
        let harness = Harness()
        let storage = harness.storage
        let queue = harness.queue
        try await harness.run { client in
            var worker = WorkerConfiguration()
            worker.storageRoot = storage
            worker.discoverAll = true
            worker.rescanInterval = .milliseconds(50)
            worker.readBlock = .milliseconds(20)
            worker.batchSize = 8
            worker.store.fsync = false
            worker.store.batchChunkRows = 16
            worker.store.payloadChunkBytes = 4096
            worker.store.segmentMaxBytes = 16 << 10  // a roll every few dozen rows
            let eventWorker = EventWorker(queue: queue, configuration: worker, logger: quietLogger)
            let task = Task { try await eventWorker.run() }
            func events(_ consultation: String) async throws -> [String] {
                try await client.execute(uri: "/consultations/\(consultation)/events?site_id=seg", method: .get) { response in
                    #expect(response.status == .ok)
                    return ((try json(response)["events"] as? [[String: Any]]) ?? []).compactMap { $0["n"] as? Int }.map(String.init)
                }
            }
            for n in 0..<300 {
                let body = #"{"n":\#(n),"metadata":{"site_id":"seg"},"text":"\#(String(repeating: "x", count: 100))"}"#
                try await client.execute(uri: "/consultations/c\(n % 3)/events", method: .post, body: ByteBuffer(string: body)) {
                    #expect($0.status == .accepted)
                }
                if n % 40 == 39 { _ = try await events("c0") }  // a reader following the rolls
            }
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline, try await events("c1").count < 100 { try await Task.sleep(for: .milliseconds(50)) }
            #expect(try await events("c1") == stride(from: 1, to: 300, by: 3).map(String.init), "every event, in order, across segments")
            let directory = PartitionKey.site(try SiteID(validating: "seg")).directory(storageRoot: storage)
            let segments = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("segment-") }
            #expect(segments.count >= 5, "\(segments.count) segments")

            let report = try await CorpusMaintenance.erase(consultationID: "c1", directory: directory)
            #expect(report.rowsRemoved == 100)
            #expect(try await events("c1").isEmpty, "GET no longer returns the erased events")
            #expect(try await events("c2") == stride(from: 2, to: 300, by: 3).map(String.init))
            eventWorker.stop()
            try await task.value
        }
    }

    @Test("with a tokens file: 401 without or with an unknown token, 403 outside the token's sites, '*' for hash partitions")
    func authentication() async throws {
        var harness = Harness()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("tokens-\(UUID().uuidString.prefix(6))").path
        try "# tokens\nsite-a-token-123 a,b\n\nstar-token-4567 *\n".write(toFile: file, atomically: true, encoding: .utf8)
        chmod(file, 0o600)
        defer { try? FileManager.default.removeItem(atPath: file) }
        harness.settings.apiTokensFile = file
        try await harness.run { client in
            let siteA = ByteBuffer(string: #"{"metadata":{"site_id":"a"}}"#)
            let siteC = ByteBuffer(string: #"{"metadata":{"site_id":"c"}}"#)
            let noSite = ByteBuffer(string: "{}")
            func post(_ body: ByteBuffer, _ auth: String?) async throws -> HTTPResponse.Status {
                var headers = HTTPFields()
                if let auth { headers[.authorization] = auth }
                return try await client.execute(uri: "/consultations/c/events", method: .post, headers: headers, body: body) { $0.status }
            }
            try #expect(await post(siteA, nil) == .unauthorized)
            try #expect(await post(siteA, "Bearer wrong-token-000") == .unauthorized)
            try #expect(await post(siteA, "Basic site-a-token-123") == .unauthorized)
            try #expect(await post(siteA, "Bearer site-a-token-123") == .accepted)
            try #expect(await post(siteC, "Bearer site-a-token-123") == .forbidden)
            try #expect(await post(noSite, "Bearer site-a-token-123") == .forbidden)
            try #expect(await post(noSite, "Bearer star-token-4567") == .accepted)
            try #expect(await post(siteC, "bearer star-token-4567") == .accepted)
            try await client.execute(uri: "/consultations/c/events?site_id=c", method: .get, headers: [.authorization: "Bearer site-a-token-123"]) {
                #expect($0.status == .forbidden)
                try #expect(errorCode($0) == "forbidden")
            }
            try await client.execute(uri: "/consultations/c/events?site_id=a", method: .get, headers: [.authorization: "Bearer site-a-token-123"]) {
                #expect($0.status == .ok)
            }
            try await client.execute(uri: "/consultations/c/events?site_id=a", method: .get) {
                #expect($0.status == .unauthorized)
                try #expect(errorCode($0) == "unauthorized")
            }
            // Health and metrics stay open.
            try await client.execute(uri: "/health", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/metrics", method: .get) { #expect($0.status == .ok) }
        }
    }

    @Test("tokens files: bad lines are rejected with the line number and never echo a token")
    func tokenFileErrors() throws {
        #expect(throws: (any Error).self) { try TokenStore(text: "only-one-field-here\n") }
        #expect(throws: (any Error).self) { try TokenStore(text: "short a\n") }
        #expect(throws: (any Error).self) { try TokenStore(text: "# nothing\n") }
        do {
            _ = try TokenStore(text: "a-secret-token-1 a/b\n")
            Issue.record("accepted a bad site")
        } catch {
            #expect("\(error)".contains("line 1"))
            #expect(!"\(error)".contains("a-secret-token-1"))
        }
        let store = try TokenStore(text: "tok-aaaaaaaa a\ntok-bbbbbbbb *\n")
        #expect(store.grant(authorization: "Bearer tok-aaaaaaaa")?.sites == ["a"])
        #expect(store.grant(authorization: "Bearer tok-bbbbbbbb")?.allSites == true)
        #expect(store.grant(authorization: "Bearer tok-aaaaaaa") == nil)
        #expect(store.grant(authorization: "Bearer ") == nil)
        #expect(store.grant(authorization: nil) == nil)
    }

    @Test("/metrics exposes the contract's series with route templates, not raw paths")
    func metrics() async throws {
        let harness = Harness()
        try await harness.run { client in
            try await client.execute(uri: "/consultations/metrics-probe-1/events", method: .post, body: ByteBuffer(string: #"{"metadata":{"site_id":"m"}}"#)) {
                #expect($0.status == .accepted)
            }
            try await client.execute(uri: "/consultations/metrics-probe-1/events", method: .post, body: ByteBuffer(string: "[]")) {
                #expect($0.status == .badRequest)
            }
            await harness.queue.close()
            try await client.execute(uri: "/consultations/metrics-probe-2/events", method: .post, body: ByteBuffer(string: "{}")) {
                #expect($0.status == .serviceUnavailable)
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                let text = String(buffer: response.body)
                #expect(response.headers[.contentType]?.hasPrefix("text/plain") == true)
                #expect(text.contains(#"fi_http_requests_total{route="/consultations/{consultation_id}/events",method="POST",status="202"}"#))
                #expect(text.contains(#"fi_http_requests_total{route="/consultations/{consultation_id}/events",method="POST",status="400"}"#))
                #expect(text.contains("fi_http_request_duration_seconds_bucket{"))
                #expect(text.contains(#"fi_events_accepted_total{partition="site_m"}"#))
                #expect(text.contains(#"fi_queue_errors_total{operation="append"}"#))
                #expect(!text.contains("metrics-probe"), "raw paths never become labels")
            }
        }
    }

    @Test("2,000 hostile requests leave the server healthy and write nothing outside the storage root")
    func hostileInput() async throws {
        var harness = Harness()
        // The storage root inside a directory of its own: afterwards that
        // directory must hold nothing but the (empty) root.
        let parent = FileManager.default.temporaryDirectory.appendingPathComponent("fi-hostile-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: parent) }
        harness.settings.storageRoot = parent + "/storage"
        try FileManager.default.createDirectory(atPath: harness.settings.storageRoot, withIntermediateDirectories: true)
        try await harness.run { client in
            let ids = ["..", "%2E%2E", "a%2F..%2F..%2Fetc", "%00", "%FF%FE", String(repeating: "y", count: 129), "a b", ".", "x%2Fy"]
            let bodies = [
                "[]", "{", #"{"metadata":{"site_id":"../../x"}}"#, #"{"metadata":{"site_id":"a/b"}}"#, #"{"metadata":{"site_id":1}}"#,
                #"{"metadata":{"site_id":"..\/x"}}"#, String(repeating: "{\"a\":", count: 200),
            ]
            for i in 0..<2000 {
                let id = ids[i % ids.count]
                let body = bodies[i % bodies.count]
                let status = try await client.execute(uri: "/consultations/\(id)/events", method: .post, body: ByteBuffer(string: body)) { $0.status }
                #expect(status == .badRequest || status == .notFound, "\(id) \(body)")
            }
            try await client.execute(uri: "/health", method: .get) { #expect($0.status == .ok) }
        }
        try #expect(await harness.queue.streams(withPrefix: "").isEmpty, "nothing was queued")
        #expect(try FileManager.default.contentsOfDirectory(atPath: parent) == ["storage"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: parent + "/storage").isEmpty)
    }
}
