import FITestSupport
import Foundation
import Logging
import Testing

@testable import FIQueue

/// The environment the suites run in: `scripts/test.sh` sets all three.
enum TestEnv {
    static var redisURL: String? { value("FI_TEST_REDIS_URL") }
    static var clusterSeeds: [String]? {
        value("FI_TEST_REDIS_CLUSTER").map { $0.split(separator: ",").map(String.init) }
    }
    /// A TLS-only Redis (`rediss://…`) and the CA file that signed its certificate.
    static var tlsURL: String? { value("FI_TEST_REDIS_TLS_URL") }
    static var tlsCA: String? { value("FI_TEST_REDIS_TLS_CA") }
    static var openssl: String? {
        ["/usr/bin/openssl", "/usr/local/bin/openssl"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }
    /// When set, a missing server fails the suite instead of skipping it.
    static var servicesRequired: Bool { ProcessInfo.processInfo.environment["FI_REQUIRE_SERVICES"] == "1" }
    static var redisServer: String? {
        ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }
    static var redisCLI: String? {
        ["/usr/bin/redis-cli", "/usr/local/bin/redis-cli"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }
    /// Tests that spawn their own servers run when the binaries exist, and always when required.
    static var canSpawn: Bool { servicesRequired || (redisServer != nil && redisCLI != nil) }

    private static func value(_ name: String) -> String? {
        guard let v = ProcessInfo.processInfo.environment[name], !v.isEmpty else { return nil }
        return v
    }

    static var logger: Logger {
        var l = Logger(label: "fi.queue.tests")
        l.logLevel = .notice
        return l
    }
}

/// A backend of the conformance suite.
enum Backend: String, Sendable, CustomTestStringConvertible {
    case memory, redis, cluster, tls

    var testDescription: String { rawValue }

    /// In-memory always; Redis and Cluster when configured, and always when services are required
    /// (then a missing server fails the test instead of skipping it).
    static var all: [Backend] {
        var out: [Backend] = [.memory]
        if TestEnv.redisURL != nil || TestEnv.servicesRequired { out.append(.redis) }
        if TestEnv.clusterSeeds != nil || TestEnv.servicesRequired { out.append(.cluster) }
        if TestEnv.tlsURL != nil || TestEnv.servicesRequired { out.append(.tls) }
        return out
    }

    func makeQueue() async throws -> any EventQueue {
        switch self {
        case .memory:
            return InMemoryEventQueue()
        case .redis:
            guard let url = TestEnv.redisURL else {
                throw EventQueueError(.unavailable, "FI_REQUIRE_SERVICES=1 but FI_TEST_REDIS_URL is not set")
            }
            return try await RedisEventQueue.connect(url: url, logger: TestEnv.logger)
        case .cluster:
            guard let seeds = TestEnv.clusterSeeds else {
                throw EventQueueError(.unavailable, "FI_REQUIRE_SERVICES=1 but FI_TEST_REDIS_CLUSTER is not set")
            }
            return try await RedisEventQueue.connect(clusterSeeds: seeds, logger: TestEnv.logger)
        case .tls:
            guard let url = TestEnv.tlsURL, let ca = TestEnv.tlsCA else {
                throw EventQueueError(.unavailable, "FI_REQUIRE_SERVICES=1 but FI_TEST_REDIS_TLS_URL / FI_TEST_REDIS_TLS_CA are not set")
            }
            var options = RedisEventQueue.Options()
            options.tls = .init(caFile: ca)
            return try await RedisEventQueue.connect(url: url, options: options, logger: TestEnv.logger)
        }
    }
}

/// Runs `body` with a fresh queue and a unique key prefix, and closes the queue after.
func withQueue(_ backend: Backend, _ body: (any EventQueue, String) async throws -> Void) async throws {
    let queue = try await backend.makeQueue()
    let prefix = "fi:test:\(UUID().uuidString.prefix(8))"
    do {
        try await body(queue, prefix)
    } catch {
        await queue.close()
        throw error
    }
    await queue.close()
}

/// Expects `body` to throw an ``EventQueueError`` with one of `codes`.
func expectQueueError<T>(_ codes: EventQueueError.Code..., sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> T) async {
    do {
        let value = try await body()
        Issue.record("expected \(codes), got \(value)", sourceLocation: sourceLocation)
    } catch let error as EventQueueError {
        #expect(codes.contains(error.code), "got \(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected EventQueueError, got \(error)", sourceLocation: sourceLocation)
    }
}

func fields(_ n: Int, payload: String = "{}") -> [StreamField] {
    [
        StreamField("consultation_id", "c-\(n)"),
        StreamField("event_json", payload),
        StreamField("received_at_ms", String(n)),
    ]
}

func elapsed(since start: ContinuousClock.Instant) -> Duration { ContinuousClock.now - start }

// MARK: - Self-spawned servers

/// A redis-server this test started, on 127.0.0.1, in a temporary directory; stopped by `stop()`.
final class SpawnedRedis: @unchecked Sendable {
    let port: Int
    let dir: URL
    private let extra: [String]
    private var process: Process?
    /// With certificates: a TLS-only server (`--port 0 --tls-port port`).
    let tls: TestCertificates?

    init(port: Int, extra: [String] = [], tls: TestCertificates? = nil) throws {
        self.port = port
        self.extra = extra
        self.tls = tls
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("fi-queue-test-\(port)-\(UUID().uuidString.prefix(6))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    var url: String { tls == nil ? "redis://127.0.0.1:\(port)" : "rediss://127.0.0.1:\(port)" }
    var address: String { "127.0.0.1:\(port)" }

    func start() throws {
        guard let server = TestEnv.redisServer else { throw EventQueueError(.unavailable, "redis-server not installed") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: server)
        var ports = ["--port", String(port)]
        if let tls {
            ports = ["--port", "0", "--tls-port", String(port)] + tls.serverArguments
        }
        p.arguments = [
            "--bind", "127.0.0.1", "--dir", dir.path, "--daemonize", "no",
            "--save", "", "--maxmemory-policy", "noeviction", "--logfile", dir.appendingPathComponent("redis.log").path,
        ] + ports + extra
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        process = p
        try waitUntilReady()
    }

    /// Shuts the server down cleanly (flushing its AOF) and waits for it to exit.
    func stop() {
        guard let p = process else { return }
        process = nil
        if p.isRunning {
            let pid = p.processIdentifier
            // Not SIGTERM: the child inherits the test runner's blocked-signal mask, and Redis would
            // never see it. SHUTDOWN also flushes the AOF.
            _ = try? cli("SHUTDOWN")
            let deadline = Date().addingTimeInterval(5)
            while Self.alive(pid) && Date() < deadline { usleep(10_000) }
            if Self.alive(pid) { kill(pid, SIGKILL) }
            p.waitUntilExit()
        }
    }

    /// Running and not yet a zombie (Foundation reaps the child on its own schedule).
    private static func alive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
        guard let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].drop(while: { $0 == " " }).first
        return state != "Z" && state != "X"
    }

    func cleanup() {
        stop()
        try? FileManager.default.removeItem(at: dir)
    }

    private func waitUntilReady() throws {
        for _ in 0..<100 {
            if (try? cli("PING")) == "PONG" { return }
            usleep(50_000)
        }
        throw EventQueueError(.unavailable, "spawned redis-server on \(port) did not start")
    }

    /// Runs redis-cli against this server and returns its trimmed output.
    @discardableResult
    func cli(_ args: String...) throws -> String {
        try runCLI(["-h", "127.0.0.1", "-p", String(port)] + (tls?.cliArguments ?? []) + args)
    }
}

@discardableResult
func runCLI(_ args: [String]) throws -> String {
    guard let cli = TestEnv.redisCLI else { throw EventQueueError(.unavailable, "redis-cli not installed") }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: cli)
    p.arguments = args
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}
