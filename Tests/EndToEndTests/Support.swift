import FIPartitioning
import FIQueue
import FIStorage
import FITestSupport
import Foundation
import Logging
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

enum E2E {
    static var redisURL: String? {
        guard let v = ProcessInfo.processInfo.environment["FI_TEST_REDIS_URL"], !v.isEmpty else { return nil }
        return v
    }
    static var servicesRequired: Bool { ProcessInfo.processInfo.environment["FI_REQUIRE_SERVICES"] == "1" }
    static var enabled: Bool { redisURL != nil || servicesRequired }

    static var logger: Logger {
        var logger = Logger(label: "fi.e2e")
        logger.logLevel = .error
        return logger
    }

    /// Redis databases 10…15, one per test, so tests never see each other's streams or leases.
    private static let lock = NSLock()
    nonisolated(unsafe) private static var nextDB = 9
    static func databaseURL() async throws -> String {
        guard let url = redisURL else { throw EventQueueError(.unavailable, "FI_TEST_REDIS_URL is not set") }
        let db: Int = {
            lock.lock()
            defer { lock.unlock() }
            nextDB = nextDB >= 15 ? 10 : nextDB + 1
            return nextDB
        }()
        // Empty it: left-overs of earlier runs would be discovered by `--all`.
        let flush = try Child("flushdb", "/usr/bin/redis-cli", ["-u", url, "-n", String(db), "FLUSHDB"], logDirectory: NSTemporaryDirectory())
        _ = await flush.waitForExit(timeout: .seconds(10))
        try? FileManager.default.removeItem(atPath: flush.logPath)
        return url + "/\(db)"
    }

    /// Where `swift build` put the executables (beside the test bundle).
    static var productsDirectory: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().path
    }

    static func binary(_ name: String) throws -> String {
        let path = productsDirectory + "/" + name
        try #require(FileManager.default.isExecutableFile(atPath: path), "\(name) is not built at \(path) (swift build --build-tests)")
        return path
    }

    /// A base port with base…base+count-1 free on 127.0.0.1, and the cluster bus ports (+10000) of
    /// the first `clusterNodes` of them: a `deploy/local-cluster.sh` topology's ports.
    static func freeClusterPorts(count: Int, clusterNodes: Int) throws -> Int {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let base = Int.random(in: 20_000..<29_000, using: &generator)
            let ports = Array(base..<(base + count)) + (base..<(base + clusterNodes)).map { $0 + 10_000 }
            if ports.allSatisfy({ Loopback.canBind(port: $0) }) { return base }
        }
        throw EventQueueError(.unavailable, "no free port range on 127.0.0.1")
    }

    static func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fi-e2e-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// All rows of a partition's corpus (every segment, in order), empty if it has none.
    static func rows(_ key: PartitionKey, storage: String) async throws -> [CorpusRecord] {
        let reader = try await CorpusReader.open(directory: key.directory(storageRoot: storage), logger: logger)
        let rows = try await reader.records(in: 0..<reader.rowCount)
        try await reader.close()
        return rows
    }
}

/// A child process with its output in a log file; killed if still running when dropped.
final class Child: @unchecked Sendable {
    let process = Process()
    let logPath: String
    let name: String

    init(_ name: String, _ executable: String, _ arguments: [String], environment: [String: String] = [:], logDirectory: String) throws {
        self.name = name
        logPath = logDirectory + "/\(name)-\(UUID().uuidString.prefix(4)).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["REDIS_URL"] = nil
        env["FI_API_TOKENS_FILE"] = nil
        // fi-worker serves HTTP on 7002 by default; tests run several at once, so
        // they turn it off unless they ask for a port (a flag beats the variable).
        env["FI_HTTP_PORT"] = "0"
        for (key, value) in environment { env[key] = value }
        process.environment = env
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    /// SIGKILL, then waits (without blocking a thread) until it is gone.
    func kill9() async {
        if process.isRunning { kill(pid, SIGKILL) }
        _ = await waitForExit(timeout: .seconds(10))
    }

    func terminate() { if process.isRunning { kill(pid, SIGTERM) } }

    /// Waits for exit; `nil` if it did not exit in time.
    func waitForExit(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        return process.isRunning ? nil : process.terminationStatus
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    deinit {
        if process.isRunning { kill(pid, SIGKILL) }
    }
}

/// A redis-server of the test's own, on 127.0.0.1, that the test may stop and restart.
final class OwnRedis: @unchecked Sendable {
    let port: Int
    let directory: String
    private var child: Child?

    /// - Parameter extra: more redis-server arguments, e.g. `--replicaof 127.0.0.1 <port>`.
    init(appendfsync: String = "always", environment: [String: String] = [:], extra: [String] = []) async throws {
        port = try Loopback.freePort()
        directory = try E2E.temporaryDirectory()
        self.appendfsync = appendfsync
        self.environment = environment
        self.extra = extra
        try await start()
    }

    private let appendfsync: String
    private let environment: [String: String]
    private let extra: [String]
    /// The running redis-server's process id.
    var pid: Int32? { child?.pid }
    var url: String { "redis://127.0.0.1:\(port)" }

    func start() async throws {
        child = try Child(
            "redis",
            "/usr/bin/redis-server",
            [
                "--bind", "127.0.0.1", "--port", "\(port)", "--dir", directory, "--save", "", "--appendonly", "yes",
                "--appendfsync", appendfsync, "--maxmemory-policy", "noeviction",
            ] + extra,
            environment: environment,
            logDirectory: directory
        )
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if Loopback.answersPing(port: port) { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw EventQueueError(.unavailable, "own redis-server did not start")
    }

    func kill9() async { await child?.kill9() }

    deinit {
        if let child, child.isRunning { kill(child.pid, SIGKILL) }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// A tiny HTTP client over URLSession for the end-to-end tests.
enum HTTP {
    struct Reply {
        let status: Int
        let body: Data
        let headers: [String: String]
        var json: [String: Any]? { try? JSONSerialization.jsonObject(with: body) as? [String: Any] }
    }

    static let session: URLSession = {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 10
        configuration.httpMaximumConnectionsPerHost = 64
        return URLSession(configuration: configuration)
    }()

    static func request(_ method: String, _ url: String, body: Data? = nil, headers: [String: String] = [:]) async throws -> Reply {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        request.httpBody = body
        for (key, value) in headers { request.setValue(value, forHTTPHeaderField: key) }
        if body != nil { request.setValue("application/json", forHTTPHeaderField: "Content-Type") }
        let (data, response) = try await session.data(for: request)
        let http = response as! HTTPURLResponse
        var out: [String: String] = [:]
        for (key, value) in http.allHeaderFields { out["\(key)".lowercased()] = "\(value)" }
        return Reply(status: http.statusCode, body: data, headers: out)
    }

    /// Waits until `GET /health` answers 200.
    static func waitHealthy(_ base: String, process: Child, timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let reply = try? await request("GET", base + "/health"), reply.status == 200 { return }
            if !process.isRunning {
                Issue.record("\(process.name) exited early:\n\(process.log)")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("\(process.name) never became healthy:\n\(process.log)")
        throw CancellationError()
    }
}
