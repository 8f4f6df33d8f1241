import FITestSupport
import Foundation
import Testing

/// What fi-server writes to stderr: request logs carry the request id that
/// the response carries, whatever log handler the executable installs.
@Suite("fi-server logs", .serialized)
struct LoggingEndToEndTests {
    @Test("at debug, each request is logged once with its route template, status and the X-Request-Id it was answered with")
    func requestLog() async throws {
        let storage = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let port = try Loopback.freePort()
        let base = "http://127.0.0.1:\(port)"
        let server = try Child("server", try E2E.binary("fi-server"), ["--port", "\(port)", "--storage", storage, "--log-level", "debug"], logDirectory: storage)
        try await HTTP.waitHealthy(base, process: server)

        let reply = try await HTTP.request("POST", "\(base)/consultations/log-check-1/events", body: Data(#"{"n":1}"#.utf8))
        #expect(reply.status == 202)
        let id = try #require(reply.headers["x-request-id"])
        try await eventually("request logged", timeout: .seconds(10)) { server.log.contains(id) }
        let lines = server.log.split(separator: "\n").filter { $0.contains(id) }
        #expect(lines.count == 1, "\(lines)")
        let line = String(lines.first ?? "")
        #expect(line.contains("debug"))
        #expect(line.contains("http.route=/consultations/{consultation_id}/events"))
        #expect(line.contains("http.response.status_code=202"))
        #expect(!line.contains("log-check-1"), "the raw path is not logged, the template is")

        server.terminate()
        #expect(await server.waitForExit(timeout: .seconds(15)) == 0, "\(server.log.suffix(1500))")
    }
}
