import FILocking
import FIQueue
import FITestSupport
import FIWorkerKit
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import ServiceLifecycle
import Synchronization
import Testing

@testable import FIServerKit

#if canImport(Glibc)
import Glibc
#endif

/// Tokens file permissions, header limits, slow clients, log injection
/// (issue 9, security). Each test fails if its protection is lost.
@Suite("Security", .serialized)
struct SecurityTests {
    // MARK: Tokens file permissions

    @Test("a world-readable tokens file is loaded with a warning; 0600 and 0640 load without one")
    func tokensFilePermissions() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("tokens-perm-\(UUID().uuidString.prefix(6))").path
        try "a-secret-token-1 a\n".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }

        chmod(file, 0o644)
        let open = try TokenStore.load(path: file)
        #expect(open.warning?.contains("world-readable") == true)
        #expect(open.warning?.contains("a-secret-token-1") == false, "the warning never shows a token")
        chmod(file, 0o604)
        #expect(try TokenStore.load(path: file).warning != nil)
        for mode: mode_t in [0o600, 0o640, 0o400] {
            chmod(file, mode)
            #expect(try TokenStore.load(path: file).warning == nil, "mode \(String(mode, radix: 8))")
        }
    }

    @Test("fi-server logs the world-readable warning at start-up")
    func tokensFileWarningIsLogged() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("tokens-log-\(UUID().uuidString.prefix(6))").path
        try "a-secret-token-1 a\n".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        chmod(file, 0o644)
        var settings = ServerSettings()
        settings.apiTokensFile = file
        let capture = LogCapture()
        _ = try ServerApplication.buildApplication(settings: settings, queue: InMemoryEventQueue(), registry: testRegistry, logger: capture.logger(level: .info))
        let warnings = capture.records.filter { $0.contains("warning") && $0.contains("world-readable") }
        #expect(warnings.count == 1, "\(capture.records)")

        chmod(file, 0o600)
        let quiet = LogCapture()
        _ = try ServerApplication.buildApplication(settings: settings, queue: InMemoryEventQueue(), registry: testRegistry, logger: quiet.logger(level: .info))
        #expect(!quiet.records.contains { $0.contains("world-readable") })
    }

    // MARK: Header limits

    @Test("an oversized header, or too many headers, ends the request with 400 before the server reads it all; the server keeps serving")
    func headerLimits() async throws {
        var settings = ServerSettings()
        settings.maxHeaderBytes = 16 * 1024
        try await withLiveServer(settings) { port, queue in
            // Just under the limit: accepted.
            let fine = try RawClient(port: port)
            try await fine.send(request(headers: "X-Pad: \(String(repeating: "p", count: 12 * 1024))\r\n"))
            #expect(try await fine.readResponse().hasPrefix("HTTP/1.1 202"))

            // 64 MiB of one header value: the server must stop reading long
            // before the end (its header buffer is bounded), answer 400 and
            // close, so we never get to send it all. (Loopback socket buffers
            // alone take a few MiB without the server reading.)
            let big = try RawClient(port: port)
            let head = "POST /consultations/c-1/events HTTP/1.1\r\nHost: t\r\nX-Big: "
            let started = ContinuousClock.now
            let (sent, closed) = try await big.sendUntilClosed(Array(head.utf8), then: UInt8(ascii: "b"), upTo: 64 << 20, within: .seconds(20))
            #expect(sent < 64 << 20, "the server kept reading an unbounded header")
            #expect(closed && ContinuousClock.now - started < .seconds(5), "the connection was not closed after the 400 (\(sent) bytes sent)")
            let answer = try await big.readUntilClosed(within: .seconds(5))
            #expect(answer.isEmpty || answer.hasPrefix("HTTP/1.1 400"), "\(answer.prefix(80))")

            // 200 small headers (limit 100): 400 and closed.
            let many = try RawClient(port: port)
            let headers = (0..<200).map { "X-H\($0): v\r\n" }.joined()
            try await many.send(request(headers: headers))
            let manyAnswer = try await many.readUntilClosed(within: .seconds(5))
            #expect(manyAnswer.isEmpty || manyAnswer.hasPrefix("HTTP/1.1 400"), "\(manyAnswer.prefix(80))")

            // Still serving; only the good request was queued.
            let after = try RawClient(port: port)
            try await after.send(request(headers: ""))
            #expect(try await after.readResponse().hasPrefix("HTTP/1.1 202"))
            #expect(try await queue.streams(withPrefix: "fi:events:").count == 1)
            let entries = try await queue.length(of: "fi:events:site_a")
            #expect(entries == 2)
        }
    }

    // MARK: Slow clients

    @Test("slowloris: a request head sent a byte at a time is cut off after the idle timeout")
    func slowHeaders() async throws {
        var settings = ServerSettings()
        settings.idleTimeout = .milliseconds(500)
        settings.requestReadTimeout = .seconds(60)
        try await withLiveServer(settings) { port, _ in
            let client = try RawClient(port: port)
            try await client.send(Array("POST /consultations/c-1/events HTTP/1.1\r\nHost: t\r\nX-Slow: ".utf8))
            let (closed, elapsed) = try await trickle(UInt8(ascii: "s"), to: client)
            #expect(closed, "the connection was still open after 10 s of a trickled header")
            #expect(elapsed < .seconds(5), "\(elapsed)")
        }
    }

    @Test(
        "slow body: a body trickled in faster than the idle timeout is cut off one read timeout after its own head, and nothing of it is queued",
        arguments: [false, true]
    )
    func slowBody(afterAnotherRequest: Bool) async throws {
        var settings = ServerSettings()
        settings.idleTimeout = .seconds(5)
        settings.requestReadTimeout = .milliseconds(800)
        try await withLiveServer(settings) { port, queue in
            let client = try RawClient(port: port)
            if afterAnotherRequest {
                // The connection's timer is set by this first request; the slow one starts 500 ms later.
                try await client.send(request(headers: ""))
                #expect(try await client.readResponse().hasPrefix("HTTP/1.1 202"))
                try await Task.sleep(for: .milliseconds(500))
            }
            // The body declares 300 bytes; "{}" and then spaces arrive one every 100 ms.
            try await client.send(Array("POST /consultations/c-1/events HTTP/1.1\r\nHost: t\r\nContent-Length: 300\r\n\r\n{}".utf8))
            let (closed, elapsed) = try await trickle(UInt8(ascii: " "), to: client)
            #expect(closed, "the connection was still open after 10 s of a trickled body")
            #expect(elapsed >= .milliseconds(600) && elapsed < .seconds(4), "\(elapsed)")
            var queued = 0
            for stream in try await queue.streams(withPrefix: "fi:") { queued += try await queue.length(of: stream) }
            #expect(queued == (afterAnotherRequest ? 1 : 0), "a cut-off body is never queued")
        }
    }

    // MARK: Body limit over a real socket

    @Test(
        "a chunked body over the limit (2 MiB, no Content-Length) is answered 413 body_too_large over a real socket, and nothing is queued",
        arguments: [false, true]
    )
    func chunkedBodyOverLimit(afterAnotherRequest: Bool) async throws {
        try await withLiveServer(ServerSettings()) { port, queue in  // the default limit, 1 MiB
            let client = try RawClient(port: port)
            if afterAnotherRequest {
                try await client.send(request(headers: ""))
                #expect(try await client.readResponse().hasPrefix("HTTP/1.1 202"))
            }
            let head = "POST /consultations/c-1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            // {"metadata":{"site_id":"a"},"pad":"xxx…"}: valid JSON, were it not too large.
            var chunks: [[UInt8]] = [Array(#"{"metadata":{"site_id":"a"},"pad":""#.utf8)]
            for _ in 0..<32 { chunks.append([UInt8](repeating: UInt8(ascii: "x"), count: 64 * 1024)) }
            chunks.append(Array(#""}"#.utf8))
            var wire = Array(head.utf8)
            for chunk in chunks { wire += Array((String(chunk.count, radix: 16) + "\r\n").utf8) + chunk + Array("\r\n".utf8) }
            wire += Array("0\r\n\r\n".utf8)
            // The server may answer, and close, before it has read everything: send from a task of
            // its own, ignoring a broken pipe, and read the answer meanwhile.
            let sending = Task { try? await client.send(wire) }
            let answer = try await client.readResponse()
            sending.cancel()
            #expect(answer.hasPrefix("HTTP/1.1 413"), "\(answer.prefix(200))")
            #expect(answer.contains(#""code":"body_too_large""#), "\(answer.suffix(200))")
            #expect(try await queue.length(of: "fi:events:site_a") == (afterAnotherRequest ? 1 : 0), "nothing of it is queued")
        }
    }

    /// Sends `byte` every 100 ms, for at most 10 s (far longer than any timeout here), until the
    /// server closes the connection; whether it did, and after how long.
    private func trickle(_ byte: UInt8, to client: RawClient) async throws -> (closed: Bool, elapsed: Duration) {
        let started = ContinuousClock.now
        for _ in 0..<100 {
            try await Task.sleep(for: .milliseconds(100))
            if !(try client.trySend([byte])) || client.peerClosed() {
                return (true, ContinuousClock.now - started)
            }
        }
        return (false, ContinuousClock.now - started)
    }

    @Test("the read timeout bounds one request, not a keep-alive connection: a second request after a pause is served")
    func readTimeoutIsPerRequest() async throws {
        var settings = ServerSettings()
        settings.idleTimeout = .seconds(10)
        settings.requestReadTimeout = .milliseconds(300)
        try await withLiveServer(settings) { port, _ in
            let client = try RawClient(port: port)
            try await client.send(request(headers: ""))
            #expect(try await client.readResponse().hasPrefix("HTTP/1.1 202"))
            try await Task.sleep(for: .milliseconds(700))
            try await client.send(request(headers: ""))
            #expect(try await client.readResponse().hasPrefix("HTTP/1.1 202"))
        }
    }

    // MARK: Descriptors

    @Test("raw sockets refused, connected and dropped in a loop while NIO accepts never touch a descriptor NIO owns")
    func descriptorChurn() async throws {
        try await withLiveServer(ServerSettings()) { port, queue in
            let nothingListens = try Loopback.freePort()
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                // NIO accepts and closes connections all along…
                tasks.addTask {
                    for _ in 0..<300 {
                        let client = try RawClient(port: port)
                        try await client.send(request(headers: ""))
                        #expect(try await client.readResponse().hasPrefix("HTTP/1.1 202"))
                    }
                }
                // …while these sockets are refused, or connected and dropped
                // mid-request. Closing any of them twice would sooner or later
                // close a descriptor NIO had just accepted, and NIO stops the
                // process on EBADF.
                tasks.addTask {
                    for i in 0..<3_000 {
                        #expect((try? RawClient(port: nothingListens)) == nil)
                        if i % 10 == 0 {
                            let dropped = try RawClient(port: port)
                            _ = try dropped.trySend(Array("POST /consultations/c-1/events HTTP/1.1\r\n".utf8))
                        }
                        if i % 100 == 0 { await Task.yield() }
                    }
                }
                try await tasks.waitForAll()
            }
            #expect(try await queue.length(of: "fi:events:site_a") == 300)
        }
    }

    // MARK: Log injection

    @Test("log records stay on one line: control characters in messages, metadata and errors are escaped")
    func oneLineLogs() {
        let capture = LogCapture()
        let logger = capture.logger(level: .debug)
        struct Hostile: Error, CustomStringConvertible { var description: String { "bad\r\n2026-01-01 critical forged: [x] owned" } }
        logger.warning(
            "first\nsecond",
            error: Hostile(),
            metadata: [
                "fi.a": "x\ny", "fi.b": .array(["\u{1B}[31mred", "ok"]), "fi.c": .dictionary(["k\n": "v\u{2028}w"]),
                "fi.d": .stringConvertible(Hostile()),
            ]
        )
        logger.info("plain")
        #expect(capture.records.count == 2)
        for record in capture.records {
            #expect(record.filter { $0 == "\n" }.count == 1 && record.hasSuffix("\n"), "\(record)")
            #expect(!record.dropLast().unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F || $0.value == 0x2028 })
        }
        let first = capture.records[0]
        #expect(first.contains(#"first\nsecond"#))
        #expect(first.contains(#"x\ny"#))
        #expect(first.contains(#"\u{1B}[31mred"#))
        #expect(first.contains(#"bad\r\n2026-01-01 critical forged"#))
        #expect(OneLineLogHandler<StreamLogHandler>.escape("ñandú \"ok\"") == "ñandú \"ok\"", "printable text is unchanged")
    }

    @Test("hostile requests (control characters in ids, bodies, X-Request-Id) never produce a forged log line")
    func noForgedLogLines() async throws {
        let capture = LogCapture()
        let queue = InMemoryEventQueue()
        var settings = ServerSettings()
        settings.storageRoot = FileManager.default.temporaryDirectory.appendingPathComponent("fi-sec-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: settings.storageRoot) }
        let app = try ServerApplication.buildApplication(settings: settings, queue: queue, registry: testRegistry, logger: capture.logger(level: .trace))
        try await app.test(.router) { client in
            let ids = ["a%0Aforged", "a%0D%0Aforged", "%1B%5B31m", "a%E2%80%A8b", "ok-1"]
            let bodies = [
                #"{"metadata":{"site_id":"a\nforged"}}"#, #"{"metadata":{"site_id":"\u001b[31m"}}"#, "{\"x\":\"\n\"}", #"{"metadata":{"site_id":"a"}}"#,
            ]
            for id in ids {
                for body in bodies {
                    let headers: HTTPFields = [HTTPField.Name("X-Request-Id")!: "forged-request-id"]
                    try await client.execute(uri: "/consultations/\(id)/events", method: .post, headers: headers, body: ByteBuffer(string: body)) { response in
                        #expect(response.status == .accepted || response.status == .badRequest)
                        #expect(response.headers[HTTPField.Name("X-Request-Id")!] != "forged-request-id", "the client's request id is not taken over")
                    }
                }
                try await client.execute(uri: "/consultations/\(id)/events?site_id=a%0Aforged", method: .get) { #expect($0.status == .badRequest) }
            }
        }
        #expect(capture.records.count >= 20, "the requests were logged at trace level")
        for record in capture.records {
            #expect(record.filter { $0 == "\n" }.count == 1, "\(record)")
            #expect(!record.contains("forged"), "no user-controlled text is logged: \(record)")
        }
        // Only the valid event was queued, under a validated key.
        #expect(try await queue.streams(withPrefix: "") == ["fi:events:site_a"])
    }
}

// MARK: - Helpers

/// Collects formatted log records (one `write` per record) through the same
/// handler stack the executables use.
final class LogCapture: Sendable {
    private let lines = Locked<[String]>([])

    var records: [String] { lines.withLock { $0 } }

    struct Stream: TextOutputStream, Sendable {
        let capture: LogCapture
        mutating func write(_ string: String) { capture.lines.withLock { $0.append(string) } }
    }

    func logger(level: Logger.Level) -> Logger {
        var logger = Logger(label: "fi.security.tests") { label in
            OneLineLogHandler(StreamLogHandler(label: label, stream: Stream(capture: self), metadataProvider: nil))
        }
        logger.logLevel = level
        return logger
    }
}

func request(headers: String, body: String = #"{"metadata":{"site_id":"a"}}"#) -> [UInt8] {
    Array("POST /consultations/c-1/events HTTP/1.1\r\nHost: t\r\n\(headers)Content-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
}

/// Runs fi-server's HTTP application on 127.0.0.1 (a free port) over an
/// in-memory queue for `body`, then shuts it down.
func withLiveServer(_ settings: ServerSettings, _ body: @Sendable (Int, InMemoryEventQueue) async throws -> Void) async throws {
    var settings = settings
    settings.host = "127.0.0.1"
    settings.port = try Loopback.freePort()
    settings.storageRoot = FileManager.default.temporaryDirectory.appendingPathComponent("fi-sec-\(UUID().uuidString.prefix(8))").path
    defer { try? FileManager.default.removeItem(atPath: settings.storageRoot) }
    let queue = InMemoryEventQueue()
    let app = try ServerApplication.buildApplication(settings: settings, queue: queue, registry: testRegistry, logger: quietLogger)
    let group = ServiceGroup(configuration: .init(services: [app], logger: quietLogger))
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        defer { tasks.cancelAll() }
        // Wait (at most 10 s) until it accepts connections.
        try await eventually("fi-server listening on 127.0.0.1:\(settings.port)", timeout: .seconds(10)) {
            Loopback.canConnect(port: settings.port)
        }
        do {
            try await body(settings.port, queue)
        } catch {
            await group.triggerGracefulShutdown()
            throw error
        }
        await group.triggerGracefulShutdown()
    }
}

