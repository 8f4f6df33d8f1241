// Test-only child for FIStorageTests' crash-recovery test: appends deterministic
// rows to a corpus in a loop until it is killed (kill -9), and after every
// acknowledged (flushed + fsynced) batch appends "ACK <rows> <last stream id>"
// to an ack file, the way a worker would XACK.
//
//   FIStorageCrashWriter <corpus.h5> <ack file> <seed> [nofsync]
//
// `nofsync` skips the fsync (a kill -9 is a process crash, not a power cut, so
// flushed rows survive either way) so more kills land inside H5Fflush.
//
// Row i has stream id "<1700000000000+i>-<i%5>" (see CrashRows in the tests).
import FIStorage
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

let arguments = CommandLine.arguments
guard arguments.count >= 4, let seed = UInt64(arguments[3]) else {
    FileHandle.standardError.write(Data("usage: FIStorageCrashWriter <corpus.h5> <ack file> <seed>\n".utf8))
    exit(2)
}
let corpusPath = arguments[1]
let ackFD = open(arguments[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
guard ackFD >= 0 else { exit(3) }

let base: Int64 = 1_700_000_000_000
func record(_ i: Int) -> CorpusRecord {
    let pad = String(repeating: "x", count: (i * 37) % 1500)
    return CorpusRecord(
        consultationID: "consultation-\(i % 13)",
        streamID: StreamEntryID(ms: UInt64(base + Int64(i)), seq: UInt64(i % 5)),
        receivedAtMs: Int64(i),
        payload: Array("{\"i\":\(i),\"text\":\"é€\(pad)\"}".utf8))
}

var generator = SplitMix64(seed: seed)
let logger = Logger(label: "crash-writer", factory: { _ in SwiftLogNoOpLogHandler() })
do {
    let fsync = !arguments.dropFirst(4).contains("nofsync")
    let options = CorpusWriter.Options(fsync: fsync)
    let writer = try await CorpusWriter.open(path: corpusPath, options: options, logger: logger)
    var next = writer.rowCount
    while true {
        // Without fsync, tiny batches: most of the time is then spent inside H5Fflush.
        let size = Int(generator.next() % (fsync ? 300 : 4)) + 1
        // Re-send a few already stored rows now and then, as a redelivery would.
        let resend = next > 0 && generator.next() % 4 == 0 ? min(next, Int(generator.next() % 8) + 1) : 0
        let batch = ((next - resend)..<(next + size)).map(record)
        let outcome = try await writer.append(batch)
        guard outcome.appended == size, outcome.skipped == resend else {
            FileHandle.standardError.write(Data("unexpected outcome \(outcome)\n".utf8))
            exit(4)
        }
        next += size
        let line = Array("ACK \(writer.rowCount) \(writer.lastStreamID.map(\.description) ?? "-")\n".utf8)
        _ = line.withUnsafeBytes { write(ackFD, $0.baseAddress, $0.count) }
    }
} catch {
    FileHandle.standardError.write(Data("crash writer: \(error)\n".utf8))
    exit(1)
}

struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1330_11EB
        return z ^ (z >> 31)
    }
}
