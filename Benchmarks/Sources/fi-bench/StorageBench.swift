// fi-bench storage [events=100000] [payloadBytes=1024] [dir=/tmp] [reps=3]
// fi-bench storage chunks [events=100000]   (the chunk-size sweep behind Docs/storage.md)
//
// Appends events with 1 KB payloads to a fresh corpus per configuration and
// prints one `RESULT bench=storage impl=swift …` line per configuration (the
// median of `reps` runs); run.sh runs python/bench/h5py_corpus_bench.py beside it.
import FIStorage
import Foundation
import Logging

enum StorageBench {
    struct Config {
        var batch: Int
        var fsync: Bool
        var compression: CorpusWriter.Options.Compression
        var rowChunk = 8192
        var payloadChunk = 1 << 20
    }

    static func main(_ arguments: [String]) async throws {
        if arguments.first == "chunks" { return try await chunks(Array(arguments.dropFirst())) }
        if arguments.first == "one" {  // fi-bench storage one <batch> <yes|no> [events]: one configuration, for profiling
            let batch = arguments.dropFirst().first.flatMap(Int.init) ?? 1024
            let fsync = arguments.dropFirst(2).first != "no"
            let records = makeRecords(arguments.dropFirst(3).first.flatMap(Int.init) ?? 100_000, payloadBytes: 1024)
            return try await measure(Config(batch: batch, fsync: fsync, compression: .none), records: records, dir: "/tmp", reps: 3)
        }
        if arguments.first == "lookup" { return try await lookup(Array(arguments.dropFirst())) }
        try await run(arguments)
    }

    static func run(_ arguments: [String]) async throws {
        let events = arguments.first.flatMap(Int.init) ?? 100_000
        let payloadBytes = arguments.dropFirst().first.flatMap(Int.init) ?? 1024
        let dir = arguments.dropFirst(2).first ?? "/tmp"
        let reps = arguments.dropFirst(3).first.flatMap(Int.init) ?? 3
        let records = makeRecords(events, payloadBytes: payloadBytes)
        // Durable and flush-only, each beside h5py doing the same work, runs interleaved.
        for fsync in [true, false] {
            for batch in [256, 1024] {
                var swift: [Double] = [], h5py: [Double] = [], swiftCPU: [Double] = [], h5pyCPU: [Double] = []
                var size = 0
                for _ in 0..<reps {
                    let (rate, bytes) = try await measureOnce(Config(batch: batch, fsync: fsync, compression: .none), records: records, dir: dir)
                    swift.append(rate)
                    swiftCPU.append(lastCPUMicrosPerEvent)
                    size = bytes
                    let (h5pyRate, cpu) = try h5pyOnce(batch: batch, fsync: fsync, events: events, payloadBytes: payloadBytes, dir: dir)
                    h5py.append(h5pyRate)
                    h5pyCPU.append(cpu)
                }
                let s = median(swift), h = median(h5py)
                print("RESULT bench=storage impl=swift batch=\(batch) fsync=\(fsync ? "yes" : "no") compression=none events=\(events) "
                      + "events_per_s=\(Int(s)) min=\(Int(swift.min()!)) max=\(Int(swift.max()!)) cpu_us_per_event=\(String(format: "%.2f", median(swiftCPU))) file_mb=\(String(format: "%.1f", Double(size) / 1e6))")
                print("RESULT bench=storage impl=h5py batch=\(batch) fsync=\(fsync ? "yes" : "no") compression=none events=\(events) "
                      + "events_per_s=\(Int(h)) min=\(Int(h5py.min()!)) max=\(Int(h5py.max()!)) cpu_us_per_event=\(String(format: "%.2f", median(h5pyCPU)))")
                print("RESULT bench=storage compare batch=\(batch) fsync=\(fsync ? "yes" : "no") swift_over_h5py=\(String(format: "%.2f", s / h))")
                fflush(nil)
            }
        }
        for batch in [256, 1024] {
            try await measure(Config(batch: batch, fsync: true, compression: .deflate(level: 1)), records: records, dir: dir, reps: reps)
        }
    }

    static func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

    /// This process's user + system CPU time, seconds (load-independent cost).
    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1e-6
    }

    /// python/bench/h5py_corpus_bench.py, same layout, batch and durability; returns events/s.
    static func h5pyOnce(batch: Int, fsync: Bool, events: Int, payloadBytes: Int, dir: String) throws -> (Double, Double) {
        let python = ProcessInfo.processInfo.environment["FI_PYTHON"] ?? "/usr/bin/python3"
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("python/bench/h5py_corpus_bench.py").path
        let out = "\(dir)/fi-bench-h5py-\(getpid()).h5"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script, out, "-n", "\(events)", "--batch", "\(batch)", "--payload-bytes", "\(payloadBytes)"] + (fsync ? [] : ["--no-fsync"])
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: out)
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0,
              let field = text.split(separator: " ").first(where: { $0.hasPrefix("events_per_s=") }),
              let rate = Double(field.dropFirst("events_per_s=".count).trimmingCharacters(in: .whitespacesAndNewlines))
        else { throw BenchError(message: "h5py benchmark failed: \(text)") }
        let cpu = text.split(separator: " ").first(where: { $0.hasPrefix("cpu_us_per_event=") })
            .flatMap { Double($0.dropFirst("cpu_us_per_event=".count).trimmingCharacters(in: .whitespacesAndNewlines)) } ?? .nan
        return (rate, cpu)
    }

    struct BenchError: Error { var message: String }

    static func chunks(_ arguments: [String]) async throws {
        let events = arguments.first.flatMap(Int.init) ?? 100_000
        let records = makeRecords(events, payloadBytes: 1024)
        for batch in [256, 1024] {
            for rowChunk in [1024, 8192, 65536] {
                for payloadChunk in [256 << 10, 1 << 20, 4 << 20] {
                    try await measure(Config(batch: batch, fsync: true, compression: .none, rowChunk: rowChunk, payloadChunk: payloadChunk),
                                      records: records, dir: "/tmp", reps: 3)
                }
            }
        }
        for payloadChunk in [64 << 10, 256 << 10, 1 << 20] {
            try await measure(Config(batch: 1024, fsync: true, compression: .deflate(level: 1), payloadChunk: payloadChunk),
                              records: records, dir: "/tmp", reps: 1)
        }
    }

    /// fi-bench storage lookup <corpus.h5> <consultation id>…: open + index time, then each lookup.
    static func lookup(_ arguments: [String]) async throws {
        let logger = Logger(label: "fi-bench", factory: { _ in SwiftLogNoOpLogHandler() })
        let opening = ContinuousClock.now
        let reader = try await CorpusReader.open(path: arguments[0], logger: logger)
        let openTime = ContinuousClock.now - opening
        var line = "RESULT bench=storage-lookup rows=\(reader.rowCount) open_s=\(openTime)"
        for id in arguments.dropFirst() {
            for _ in 0..<3 {
                let started = ContinuousClock.now
                let rows = try await reader.records(consultationID: id)
                line += " \(id)=\(rows.count)rows/\(ContinuousClock.now - started)"
            }
        }
        print(line)
        try await reader.close()
    }

    static func makeRecords(_ n: Int, payloadBytes: Int) -> [CorpusRecord] {
        let payload = Array(("{\"x\":\"" + String(repeating: "a", count: max(0, payloadBytes - 8)) + "\"}").utf8)
        return (0..<n).map { i in
            CorpusRecord(consultationID: "0f0e0d0c-0b0a-4908-8706-050403020100",
                         streamID: StreamEntryID(ms: UInt64(1_700_000_000_000 + i), seq: 0), receivedAtMs: Int64(i), payload: payload)
        }
    }

    nonisolated(unsafe) static var lastCPUMicrosPerEvent = 0.0

    static func measureOnce(_ config: Config, records: [CorpusRecord], dir: String) async throws -> (Double, Int) {
        let logger = Logger(label: "fi-bench", factory: { _ in SwiftLogNoOpLogHandler() })
        let path = "\(dir)/fi-bench-storage-\(getpid()).h5"
        try? FileManager.default.removeItem(atPath: path)
        let options = CorpusWriter.Options(batchChunkRows: config.rowChunk, payloadChunkBytes: config.payloadChunk,
                                           compression: config.compression, fsync: config.fsync)
        let writer = try await CorpusWriter.open(path: path, options: options, logger: logger)
        let start = ContinuousClock.now
        let cpuStart = cpuSeconds()
        var i = 0
        while i < records.count {
            let end = min(records.count, i + config.batch)
            try await writer.append(Array(records[i..<end]))
            i = end
        }
        let elapsed = ContinuousClock.now - start
        lastCPUMicrosPerEvent = (cpuSeconds() - cpuStart) / Double(records.count) * 1e6
        try await writer.close()
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        try? FileManager.default.removeItem(atPath: path)
        try? FileManager.default.removeItem(atPath: path + ".lock")
        return (Double(records.count) / seconds, size)
    }

    static func measure(_ config: Config, records: [CorpusRecord], dir: String, reps: Int) async throws {
        var rates: [Double] = []
        var size = 0
        for _ in 0..<reps {
            let (rate, bytes) = try await measureOnce(config, records: records, dir: dir)
            rates.append(rate)
            size = bytes
        }
        print("RESULT bench=storage impl=swift batch=\(config.batch) fsync=\(config.fsync ? "yes" : "no") compression=\(config.compression) "
              + "row_chunk=\(config.rowChunk) payload_chunk=\(config.payloadChunk) events=\(records.count) "
              + "events_per_s=\(Int(median(rates))) min=\(Int(rates.min()!)) max=\(Int(rates.max()!)) cpu_us_per_event=\(String(format: "%.2f", lastCPUMicrosPerEvent)) file_mb=\(String(format: "%.1f", Double(size) / 1e6))")
        fflush(nil)
    }
}
