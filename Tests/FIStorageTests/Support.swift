import FIStorage
import Foundation
import Logging
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A unique directory under /tmp, removed when the body returns.
func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let path = "/tmp/fi-storage-tests-\(getpid())-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}

let quietLogger = Logger(label: "fi.storage.tests", factory: { _ in SwiftLogNoOpLogHandler() })

/// Deterministic rows shared with the Python checks: row i of a test corpus.
enum Rows {
    static let base: Int64 = 1_700_000_000_000

    static func streamID(_ i: Int) -> StreamEntryID { StreamEntryID(ms: UInt64(base) + UInt64(i), seq: UInt64(i % 5)) }
    static func consultationID(_ i: Int) -> String { "consultation-\(i % 13)" }
    static func payload(_ i: Int) -> [UInt8] {
        Array("{\"i\":\(i),\"text\":\"é€\(String(repeating: "x", count: i % 97))\"}".utf8)
    }

    static func record(_ i: Int) -> CorpusRecord {
        CorpusRecord(consultationID: consultationID(i), streamID: streamID(i), receivedAtMs: Int64(i), payload: payload(i))
    }

    static func records(_ range: Range<Int>) -> [CorpusRecord] { range.map(record) }

    /// The same formulas in Python, for the interop scripts.
    static let python = """
    BASE = 1700000000000
    def stream_id(i): return f"{BASE + i}-{i % 5}"
    def consultation_id(i): return f"consultation-{i % 13}"
    def payload(i): return ('{"i":%d,"text":"é€%s"}' % (i, "x" * (i % 97))).encode("utf-8")

    """
}

/// The crash child's rows (Tests/FIStorageCrashWriter/main.swift).
enum CrashRows {
    static func record(_ i: Int) -> CorpusRecord {
        let pad = String(repeating: "x", count: (i * 37) % 1500)
        return CorpusRecord(
            consultationID: "consultation-\(i % 13)",
            streamID: Rows.streamID(i),
            receivedAtMs: Int64(i),
            payload: Array("{\"i\":\(i),\"text\":\"é€\(pad)\"}".utf8))
    }
}

/// The Python with h5py: $FI_PYTHON, else Debian's /usr/bin/python3.
let pythonPath = ProcessInfo.processInfo.environment["FI_PYTHON"] ?? "/usr/bin/python3"

/// The repository root (for the python/fi_corpus package).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// The build products directory (where the test bundle and FIStorageCrashWriter live).
var productsDirectory: String {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    var url = URL(fileURLWithPath: exe).deletingLastPathComponent()
    // macOS-style bundles: <products>/X.xctest/Contents/MacOS/X
    while url.path.contains(".xctest") { url.deleteLastPathComponent() }
    return url.path
}

struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
    var timedOut: Bool
}

/// Runs a process to completion (killing it after `timeout` seconds); output goes via files, never pipes.
func runProcess(_ executable: String, _ arguments: [String], environment: [String: String] = [:], timeout: Double = 60) async throws -> ProcessResult {
    let running = try startProcess(executable, arguments, environment: environment)
    return try await running.wait(timeout: timeout)
}

final class RunningProcess: @unchecked Sendable {
    let process: Process
    let outPath: String
    let errPath: String

    init(process: Process, outPath: String, errPath: String) {
        self.process = process
        self.outPath = outPath
        self.errPath = errPath
    }

    func wait(timeout: Double) async throws -> ProcessResult {
        let deadline = Date().addingTimeInterval(timeout)
        var timedOut = false
        while process.isRunning {
            if Date() > deadline {
                timedOut = true
                kill(process.processIdentifier, SIGKILL)
                break
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        process.waitUntilExit()
        defer {
            try? FileManager.default.removeItem(atPath: outPath)
            try? FileManager.default.removeItem(atPath: errPath)
        }
        return ProcessResult(
            status: process.terminationStatus,
            stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "",
            timedOut: timedOut)
    }
}

func startProcess(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> RunningProcess {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    for (key, value) in environment { env[key] = value }
    process.environment = env
    let tag = "/tmp/fi-storage-proc-\(getpid())-\(UUID().uuidString.prefix(8))"
    _ = FileManager.default.createFile(atPath: tag + ".out", contents: nil)
    _ = FileManager.default.createFile(atPath: tag + ".err", contents: nil)
    process.standardOutput = FileHandle(forWritingAtPath: tag + ".out")
    process.standardError = FileHandle(forWritingAtPath: tag + ".err")
    try process.run()
    return RunningProcess(process: process, outPath: tag + ".out", errPath: tag + ".err")
}

/// Runs a Python script (written to a temporary file) with h5py available.
func runPython(_ script: String, _ arguments: [String] = [], timeout: Double = 60) async throws -> ProcessResult {
    let scriptPath = "/tmp/fi-storage-py-\(getpid())-\(UUID().uuidString.prefix(8)).py"
    try script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(atPath: scriptPath) }
    return try await runProcess(pythonPath, [scriptPath] + arguments,
                                environment: ["PYTHONPATH": repositoryRoot + "/python", "HDF5_USE_FILE_LOCKING": "FALSE"],
                                timeout: timeout)
}

/// A log handler that keeps messages, to check what the library reported.
final class CapturedLogs: @unchecked Sendable {
    private let lock = NSLock()
    private var messages: [String] = []

    var all: [String] { lock.withLock { messages } }
    func append(_ message: String) { lock.withLock { messages.append(message) } }

    var logger: Logger {
        Logger(label: "fi.storage.tests.captured", factory: { _ in Handler(sink: self) })
    }

    struct Handler: LogHandler {
        let sink: CapturedLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            sink.append("\(event.message)")
        }
    }
}
