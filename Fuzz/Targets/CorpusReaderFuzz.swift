import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

// libFuzzer target: FIStorage's corpus reader on corrupted corpus files.
// Each input is a whole file: it is written to a scratch path and opened the
// way fi-server's GET opens a corpus (ReaderCore, synchronous), then read by
// range, by stream id and by consultation id. Compiled into this executable
// together with FIStorage's sources.
//
// The reader must throw on a corrupt file, never trap or read out of bounds.
// A crash inside libhdf5 itself is HDF5's (see Docs/reliability.md).
//
// FI_FUZZ_MAKE_SEEDS=<dir> writes small valid corpora there with our writer
// (tiny chunks so they stay a few KB) and exits: the seed corpus.

private let logger: Logger = {
    var logger = Logger(label: "fi.fuzz.corpus") { _ in SwiftLogNoOpLogHandler() }
    logger.logLevel = .critical
    return logger
}()

private let scratchPath: String = {
    let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    return "\(base)/fi-fuzz-corpus-\(getpid()).h5"
}()

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    if let dir = ProcessInfo.processInfo.environment["FI_FUZZ_MAKE_SEEDS"] {
        do {
            try makeSeeds(in: dir)
            exit(0)
        } catch {
            FileHandle.standardError.write(Data("seed generation failed: \(error)\n".utf8))
            exit(1)
        }
    }
    atexit { unlink(scratchPath) }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCorpusReader(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let fd = open(scratchPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    precondition(fd >= 0, "cannot write \(scratchPath)")
    var written = 0
    while written < size {
        let n = write(fd, data + written, size - written)
        precondition(n > 0)
        written += n
    }
    close(fd)

    // Two metadata read attempts instead of 28: most mutations break a
    // checksum, and waiting out a (non-existent) writer each time would cut
    // the fuzzer to a few runs a second. The regression tests use the default.
    guard let core = try? ReaderCore(path: scratchPath, logger: logger, metadataReadAttempts: 2) else { return 0 }
    let n = core.rowCount
    precondition(n >= 0)
    if let records = try? core.records(in: 0..<min(n, 4096)) {
        precondition(records.count == min(n, 4096))
        for id in Set(records.prefix(8).map(\.consultationID)) {
            if let found = try? core.records(consultationID: id) {
                precondition(found.allSatisfy { $0.consultationID == id })
            }
        }
        if let middle = records.dropFirst(records.count / 2).first {
            _ = try? core.records(after: middle.streamID, limit: 8)
        }
    }
    _ = try? core.records(in: max(0, n - 3)..<(n + 3))
    _ = try? core.records(after: nil, limit: 8)
    _ = try? core.records(consultationID: "c-1")
    _ = try? core.refresh()
    _ = try? core.close()
    return 0
}

private func makeSeeds(in dir: String) throws {
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let payloads = [#"{"a":1}"#, #"{"metadata":{"site_id":"a"},"payload":{"text":"ñandú"}}"#, "{}", #"{"event_id":"e4"}"#, #"{"x":[1,2,3]}"#]
    for (name, compression) in [("plain", CorpusWriter.Options.Compression.none), ("deflate", .deflate(level: 1))] {
        let path = "\(dir)/\(name).h5"
        unlink(path)
        let options = CorpusWriter.Options(batchChunkRows: 4, payloadChunkBytes: 64, compression: compression, fsync: false)
        let writer = try SegmentWriter(path: path, options: options, logger: logger)
        var records: [CorpusRecord] = []
        for i in 0..<6 {
            records.append(CorpusRecord(
                consultationID: i % 2 == 0 ? "c-1" : "c-\(i)", streamID: StreamEntryID(ms: 1_700_000_000_000, seq: UInt64(i)),
                receivedAtMs: 1_700_000_000_000 + Int64(i), payload: Array(payloads[i % payloads.count].utf8)))
        }
        _ = try writer.append(Array(records[0..<3]), above: writer.lastStreamID)
        _ = try writer.append(Array(records[3...]), above: writer.lastStreamID)
        try writer.close()
    }
}
