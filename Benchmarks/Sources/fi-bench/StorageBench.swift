// fi-bench storage [events=100000] [payloadBytes=1024] [dir=/tmp] [reps=3]
// fi-bench storage chunks [events=100000]   (the chunk-size sweep behind Docs/storage.md)
// fi-bench storage segments [events=1000000] [segmentMiB=64] [batch=1024] [rounds=1]
//     appends with segment rolling on and off, and to today's single file (layout 1); the roll timed
// fi-bench storage fencing [events=300000] [batch=256] [rounds=3]
//     appends to a partition directory without and with a fencing epoch (rounds interleaved; with
//     and without fsync), and the cost of one fence read (open + pread + close of <partition>/fence)
// fi-bench storage lookup-segments [segments=100] [rowsPerSegment=10000]
//     a consultation lookup in a partition of 100 closed segments, beside the same rows in one
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
        if arguments.first == "segments" { return try await segments(Array(arguments.dropFirst())) }
        if arguments.first == "fencing" { return try await fencing(Array(arguments.dropFirst())) }
        if arguments.first == "lookup-segments" { return try await lookupSegments(Array(arguments.dropFirst())) }
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

    // MARK: segments

    /// Appends the same events three ways, rounds interleaved: to one file as before segments
    /// (`CorpusWriter.open(path:)`), to a partition directory with rolling off, and with a roll
    /// every `segmentMiB`. Prints the rates, the ratio rolling on / today, and each roll's time on
    /// the append path (close + syncs) and in the background (SHA-256 + manifest).
    static func segments(_ arguments: [String]) async throws {
        let events = arguments.first.flatMap(Int.init) ?? 1_000_000
        let segmentMiB = arguments.dropFirst().first.flatMap(Int.init) ?? 64
        let batch = arguments.dropFirst(2).first.flatMap(Int.init) ?? 1024
        let rounds = arguments.dropFirst(3).first.flatMap(Int.init) ?? 1
        let records = makeRecords(events, payloadBytes: 1024)
        let logger = Logger(label: "fi-bench", factory: { _ in SwiftLogNoOpLogHandler() })
        var rates: [String: [Double]] = [:]
        var closes: [Duration] = [], opens: [Duration] = [], records_: [Duration] = [], rolls = 0
        for _ in 0..<rounds {
            for mode in ["file", "rolling-off", "rolling-on"] {
                let dir = "/tmp/fi-bench-segments-\(getpid())"
                try? FileManager.default.removeItem(atPath: dir)
                let timings = EventBox()
                var options = CorpusWriter.Options(fsync: true, segmentMaxBytes: mode == "rolling-on" ? segmentMiB << 20 : nil,
                                                   segmentMaxAge: nil, events: { event in timings.append(event) })
                options.validateUTF8 = true
                let writer = mode == "file"
                    ? try await CorpusWriter.open(path: dir + "/corpus.h5", options: options, logger: logger)
                    : try await CorpusWriter.open(directory: dir, options: options, logger: logger)
                let start = ContinuousClock.now
                var i = 0
                while i < records.count {
                    let end = min(records.count, i + batch)
                    try await writer.append(Array(records[i..<end]))
                    i = end
                }
                let elapsed = ContinuousClock.now - start
                try await writer.close()  // records what is left (not timed: off the append path)
                rates[mode, default: []].append(Double(records.count) / seconds(elapsed))
                for event in timings.all {
                    switch event {
                    case .segmentClosed(_, _, _, _, let duration): closes.append(duration); rolls += 1
                    case .segmentRecorded(_, _, let duration): records_.append(duration)
                    case .segmentOpened(_, let duration) where mode == "rolling-on": opens.append(duration)
                    default: break
                    }
                }
                try? FileManager.default.removeItem(atPath: dir)
            }
        }
        func ms(_ d: Duration) -> String { String(format: "%.1f", seconds(d) * 1000) }
        let today = median(rates["file"]!), off = median(rates["rolling-off"]!), on = median(rates["rolling-on"]!)
        print("RESULT bench=storage-segments events=\(events) batch=\(batch) fsync=yes segment_mib=\(segmentMiB) rounds=\(rounds) "
              + "file_events_per_s=\(Int(today)) rolling_off_events_per_s=\(Int(off)) rolling_on_events_per_s=\(Int(on)) "
              + "rolling_on_over_file=\(String(format: "%.3f", on / today)) rolling_off_over_file=\(String(format: "%.3f", off / today))")
        let sortedCloses = closes.sorted(), sortedRecords = records_.sorted(), sortedOpens = opens.sorted()
        if !sortedCloses.isEmpty {
            print("RESULT bench=storage-roll rolls=\(rolls) close_ms_median=\(ms(sortedCloses[sortedCloses.count / 2])) close_ms_max=\(ms(sortedCloses.last!)) "
                  + "open_next_ms_median=\(sortedOpens.isEmpty ? "-" : ms(sortedOpens[sortedOpens.count / 2])) open_next_ms_max=\(sortedOpens.last.map(ms) ?? "-") "
                  + "checksum_and_manifest_ms_median=\(sortedRecords.isEmpty ? "-" : ms(sortedRecords[sortedRecords.count / 2])) "
                  + "checksum_and_manifest_ms_max=\(sortedRecords.last.map(ms) ?? "-") segment_mib=\(segmentMiB)")
        }
        fflush(nil)
    }

    /// Appends with `fencingEpoch` nil and 1 (the writer then reads the fence before every batch and
    /// writes the `epoch` column with every row either way), rounds interleaved, durable and
    /// flush-only; then times the fence read alone.
    static func fencing(_ arguments: [String]) async throws {
        let events = arguments.first.flatMap(Int.init) ?? 300_000
        let batch = arguments.dropFirst().first.flatMap(Int.init) ?? 256
        let rounds = arguments.dropFirst(2).first.flatMap(Int.init) ?? 3
        let records = makeRecords(events, payloadBytes: 1024)
        let logger = Logger(label: "fi-bench", factory: { _ in SwiftLogNoOpLogHandler() })
        let dir = "/tmp/fi-bench-fencing-\(getpid())"
        for fsync in [true, false] {
            var rates: [String: [Double]] = [:]
            for _ in 0..<rounds {
                for mode in ["without", "with"] {
                    try? FileManager.default.removeItem(atPath: dir)
                    let options = CorpusWriter.Options(fsync: fsync, segmentMaxBytes: nil, segmentMaxAge: nil,
                                                       fencingEpoch: mode == "with" ? 1 : nil)
                    let writer = try await CorpusWriter.open(directory: dir, options: options, logger: logger)
                    let start = ContinuousClock.now
                    var i = 0
                    while i < records.count {
                        let end = min(records.count, i + batch)
                        try await writer.append(Array(records[i..<end]))
                        i = end
                    }
                    rates[mode, default: []].append(Double(records.count) / seconds(ContinuousClock.now - start))
                    try await writer.close()
                }
            }
            let without = median(rates["without"]!), with = median(rates["with"]!)
            print("RESULT bench=storage-fencing events=\(events) batch=\(batch) fsync=\(fsync ? "yes" : "no") rounds=\(rounds) "
                  + "without_epoch_events_per_s=\(Int(without)) with_epoch_events_per_s=\(Int(with)) "
                  + "with_over_without=\(String(format: "%.3f", with / without)) "
                  + "without_min=\(Int(rates["without"]!.min()!)) without_max=\(Int(rates["without"]!.max()!)) "
                  + "with_min=\(Int(rates["with"]!.min()!)) with_max=\(Int(rates["with"]!.max()!))")
            fflush(nil)
        }
        // The fence read on its own, as the writer does it before every batch.
        try? FileManager.default.removeItem(atPath: dir)
        let writer = try await CorpusWriter.open(directory: dir, options: CorpusWriter.Options(fencingEpoch: 1), logger: logger)
        try await writer.close()
        let reads = 200_000
        var buffer = [UInt8](repeating: 0, count: 32)
        let start = ContinuousClock.now
        for _ in 0..<reads {
            let fd = open(dir + "/fence", O_RDONLY | O_CLOEXEC)
            precondition(fd >= 0, "no fence file")
            _ = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, 0) }
            close(fd)
        }
        let perRead = seconds(ContinuousClock.now - start) / Double(reads)
        print("RESULT bench=storage-fence-read reads=\(reads) us_per_read=\(String(format: "%.2f", perRead * 1e6)) "
              + "per_batch_of=\(batch) ns_per_event=\(String(format: "%.1f", perRead * 1e9 / Double(batch)))")
        try? FileManager.default.removeItem(atPath: dir)
        fflush(nil)
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    /// A partition of `segments` closed segments, `rowsPerSegment` rows each, 1,000 consultations
    /// interleaved (so each has rows in every segment) plus one consultation per segment; and
    /// the same rows in one file. Prints the reader's open (indexing) time and lookups.
    static func lookupSegments(_ arguments: [String]) async throws {
        let segmentCount = arguments.first.flatMap(Int.init) ?? 100
        let rowsPerSegment = arguments.dropFirst().first.flatMap(Int.init) ?? 10_000
        let logger = Logger(label: "fi-bench", factory: { _ in SwiftLogNoOpLogHandler() })
        let dir = "/tmp/fi-bench-lookup-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let payload = Array(#"{"event":"message","text":"hello"}"#.utf8)
        func rows(_ segment: Int) -> [CorpusRecord] {
            (0..<rowsPerSegment).map { j in
                let i = segment * rowsPerSegment + j
                let consultation = j == 0 ? "only-in-\(segment)" : "c-\(i % 1000)"
                return CorpusRecord(consultationID: consultation, streamID: StreamEntryID(ms: UInt64(1_700_000_000_000 + i), seq: 0),
                                    receivedAtMs: Int64(i), payload: payload)
            }
        }
        let options = CorpusWriter.Options(fsync: false, segmentMaxBytes: nil, segmentMaxAge: nil)
        let partition = try await CorpusWriter.open(directory: dir + "/segmented", options: options, logger: logger)
        let single = try await CorpusWriter.open(path: dir + "/single/corpus.h5", options: options, logger: logger)
        for segment in 0..<segmentCount {
            let batch = rows(segment)
            try await partition.append(batch)
            try await partition.roll()
            try await single.append(batch)
        }
        try await partition.close()
        try await single.close()
        for (name, open) in [("segments-\(segmentCount)", { try await CorpusReader.open(directory: dir + "/segmented", logger: logger) }),
                             ("one-file", { try await CorpusReader.open(path: dir + "/single/corpus.h5", logger: logger) })] {
            let opening = ContinuousClock.now
            let reader = try await open()
            let openTime = ContinuousClock.now - opening
            var line = "RESULT bench=storage-lookup-segments layout=\(name) rows=\(reader.rowCount) open_and_index_ms=\(String(format: "%.0f", seconds(openTime) * 1000))"
            for (label, id) in [("in_every_segment", "c-7"), ("in_one_segment", "only-in-\(segmentCount / 2)"), ("absent", "nobody")] {
                var times: [Double] = []
                var found = 0
                for _ in 0..<5 {
                    let started = ContinuousClock.now
                    found = try await reader.records(consultationID: id).count
                    times.append(seconds(ContinuousClock.now - started) * 1000)
                }
                line += " \(label)_rows=\(found) \(label)_ms_median=\(String(format: "%.2f", median(times))) \(label)_ms_max=\(String(format: "%.2f", times.max()!))"
            }
            print(line)
            try await reader.close()
        }
        fflush(nil)
    }
}

/// The writer's events, collected from its queues.
final class EventBox: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [CorpusEvent] = []
    func append(_ event: CorpusEvent) { lock.withLock { events.append(event) } }
    var all: [CorpusEvent] { lock.withLock { events } }
}
