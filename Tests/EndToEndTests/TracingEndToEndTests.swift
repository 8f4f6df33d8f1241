import FIPartitioning
import FITestSupport
import Foundation
import Testing

/// One trace from the HTTP accept to the fsync that made the event durable,
/// exported by both binaries over OTLP/HTTP (JSON) to a collector of the test's own.
@Suite("Traces", .serialized, .enabled(if: E2E.enabled, "needs FI_TEST_REDIS_URL (scripts/test.sh)"))
struct TracingEndToEndTests {
    /// A minimal OTLP/HTTP collector: python3's http.server, each POST body to a file.
    static let collector = #"""
        import http.server, os, sys, itertools
        out, counter = sys.argv[2], itertools.count()
        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with open(os.path.join(out, "%04d%s.json" % (next(counter), self.path.replace("/", "_"))), "wb") as f:
                    f.write(body)
                self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers(); self.wfile.write(b"{}")
            def log_message(self, *args): pass
        http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
        """#

    struct Span {
        var name: String
        var traceID: String
        var spanID: String
        var parentID: String
        var attributes: [String: Any]
    }

    /// OTLP ids are hex in OTLP/JSON; accept base64 too.
    static func hex(_ text: String?) -> String {
        guard let text, !text.isEmpty else { return "" }
        if text.count % 2 == 0, text.allSatisfy(\.isHexDigit) { return text.lowercased() }
        return Data(base64Encoded: text).map { $0.map { String(format: "%02x", $0) }.joined() } ?? text
    }

    static func spans(in directory: String) throws -> [Span] {
        var spans: [Span] = []
        for file in try FileManager.default.contentsOfDirectory(atPath: directory).sorted() where file.hasSuffix("_v1_traces.json") {
            let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + file))
            let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any], "\(file): not JSON")
            for resource in root["resourceSpans"] as? [[String: Any]] ?? [] {
                for scope in resource["scopeSpans"] as? [[String: Any]] ?? [] {
                    for span in scope["spans"] as? [[String: Any]] ?? [] {
                        var attributes: [String: Any] = [:]
                        for attribute in span["attributes"] as? [[String: Any]] ?? [] {
                            if let key = attribute["key"] as? String { attributes[key] = attribute["value"] }
                        }
                        spans.append(Span(
                            name: span["name"] as? String ?? "", traceID: hex(span["traceId"] as? String), spanID: hex(span["spanId"] as? String),
                            parentID: hex(span["parentSpanId"] as? String), attributes: attributes))
                    }
                }
            }
        }
        return spans
    }

    @Test("a traceparent on POST: HTTP span → queue span → the worker's persist span, ended after the fsync, in one trace")
    func oneTrace() async throws {
        let url = try await E2E.databaseURL()
        let dir = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let received = dir + "/otlp"
        try FileManager.default.createDirectory(atPath: received, withIntermediateDirectories: true)
        let collectorPort = try Loopback.freePort(), port = try Loopback.freePort()
        let collector = try Child("collector", "/usr/bin/env", ["python3", "-c", Self.collector, "\(collectorPort)", received], logDirectory: dir)
        defer { collector.terminate() }
        try await eventually("collector listening", timeout: .seconds(10)) { Loopback.canConnect(port: collectorPort) }

        let tracing = ["FI_OTLP_ENDPOINT": "http://127.0.0.1:\(collectorPort)", "FI_OTLP_PROTOCOL": "http/json"]
        let storage = dir + "/storage"
        let server = try Child(
            "server", try E2E.binary("fi-server"), ["--port", "\(port)", "--redis-url", url, "--storage", storage],
            environment: tracing, logDirectory: dir)
        let worker = try Child(
            "worker", try E2E.binary("fi-worker"), ["--all", "--redis-url", url, "--storage", storage], environment: tracing, logDirectory: dir)
        try await HTTP.waitHealthy("http://127.0.0.1:\(port)", process: server)

        let traceID = "4bf92f3577b34da6a3ce929d0e0e4736", callerSpan = "00f067aa0ba902b7"
        let reply = try await HTTP.request(
            "POST", "http://127.0.0.1:\(port)/consultations/traced-1/events", body: Data(#"{"metadata":{"site_id":"traced"}}"#.utf8),
            headers: ["traceparent": "00-\(traceID)-\(callerSpan)-01"])
        #expect(reply.status == 202)
        let key = try PartitionKey(validating: "site_traced")
        try await eventually("stored", timeout: .seconds(30)) { try await E2E.rows(key, storage: storage).count == 1 }
        // SIGTERM: each binary's exporter is stopped last and sends what it holds.
        server.terminate()
        worker.terminate()
        #expect(await server.waitForExit(timeout: .seconds(20)) == 0, "\(server.log.suffix(1500))")
        #expect(await worker.waitForExit(timeout: .seconds(20)) == 0, "\(worker.log.suffix(1500))")

        let spans = try Self.spans(in: received).filter { $0.traceID == traceID }
        let http = try #require(spans.first { $0.parentID == callerSpan }, "the HTTP span continues the caller's trace: \(spans.map(\.name))")
        let queue = try #require(spans.first { $0.name == "fi.queue.append" }, "\(spans.map(\.name))")
        let persist = try #require(spans.first { $0.name == "fi.worker.persist" }, "\(spans.map(\.name))")
        #expect(queue.parentID == http.spanID, "the queue span is a child of the HTTP span")
        #expect(persist.parentID == queue.spanID, "the worker's span continues from the queue span")
        #expect((persist.attributes["fi.corpus.fsync"] as? [String: Any])?["boolValue"] as? Bool == true, "ended once flushed and fsynced")
    }
}
