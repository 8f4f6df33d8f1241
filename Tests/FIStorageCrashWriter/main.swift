// Test-only child for FIStorageTests' crash-recovery tests: appends deterministic
// rows to a corpus in a loop until it is killed (kill -9), and after every
// acknowledged (flushed + fsynced) batch appends "ACK <rows> <last stream id>"
// to an ack file, the way a worker would XACK.
//
//   FIStorageCrashWriter <corpus> <ack file> <seed> [nofsync] [segments=<bytes>] [epoch=<n>] [crash=<point>:<n>]
//   FIStorageCrashWriter erase <partition directory> <consultation id> [crash=<point>:<n>]
//
// `nofsync` skips the fsync (a kill -9 is a process crash, not a power cut, so
// flushed rows survive either way) so more kills land inside H5Fflush.
// `segments=<bytes>` makes <corpus> a partition directory whose segments close
// at that size (a roll every few dozen rows). `epoch=<n>` (with `segments=`)
// writes as lease epoch n (CorpusWriter.Options.fencingEpoch): a fenced open
// or append exits 6 with "fenced" on stderr. `crash=<point>:<n>` kills the
// process with SIGKILL the n-th time (from 0) it reaches the named point of a
// roll, a manifest write or an erasure (FIStorage's FaultInjection).
// `erase` erases one consultation (CorpusMaintenance.erase) and exits 0.
//
// Row i has stream id "<1700000000000+i>-<i%5>" (see CrashRows in the tests).
@_spi(FaultInjection) import FIStorage
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

let arguments = CommandLine.arguments
let logger = Logger(label: "crash-writer", factory: { _ in SwiftLogNoOpLogHandler() })

// If the test that started this child dies (it is killed, or traps), stop too: an orphaned
// writer would append for ever.
let parent = getppid()
Thread.detachNewThread {
    while getppid() == parent { usleep(200_000) }
    exit(5)
}

/// `crash=<point>:<n>`: SIGKILL at the n-th time the point is reached.
if let crash = arguments.first(where: { $0.hasPrefix("crash=") }) {
    let spec = crash.dropFirst("crash=".count).split(separator: ":")
    let point = String(spec[0])
    let target = spec.count > 1 ? Int(spec[1]) ?? 0 : 0
    let seen = Mutex(0)
    FaultInjection.setHook { reached in
        guard reached == point else { return }
        let n = seen.withLock { count -> Int in
            defer { count += 1 }
            return count
        }
        if n == target { kill(getpid(), SIGKILL) }
    }
}

if arguments.count >= 4, arguments[1] == "erase" {
    do {
        let report = try await CorpusMaintenance.erase(consultationID: arguments[3], directory: arguments[2], logger: logger)
        print("erased \(report.rowsRemoved)")
        exit(0)
    } catch {
        FileHandle.standardError.write(Data("crash writer: erase: \(error)\n".utf8))
        exit(1)
    }
}

guard arguments.count >= 4, let seed = UInt64(arguments[3]) else {
    FileHandle.standardError.write(Data("usage: FIStorageCrashWriter <corpus> <ack file> <seed> [nofsync] [segments=<bytes>] [epoch=<n>] [crash=<point>:<n>]\n".utf8))
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
do {
    let fsync = !arguments.dropFirst(4).contains("nofsync")
    let segmentBytes = arguments.first { $0.hasPrefix("segments=") }.flatMap { Int($0.dropFirst("segments=".count)) }
    let epoch = arguments.first { $0.hasPrefix("epoch=") }.flatMap { UInt64($0.dropFirst("epoch=".count)) }
    let writer: CorpusWriter
    if let segmentBytes {
        let options = CorpusWriter.Options(batchChunkRows: 64, payloadChunkBytes: 16 << 10, fsync: fsync, segmentMaxBytes: segmentBytes,
                                           fencingEpoch: epoch)
        writer = try await CorpusWriter.open(directory: corpusPath, options: options, logger: logger)
    } else {
        writer = try await CorpusWriter.open(path: corpusPath, options: CorpusWriter.Options(fsync: fsync), logger: logger)
    }
    var next = writer.rowCount
    while true {
        // Without fsync, tiny batches: most of the time is then spent inside H5Fflush.
        let size = Int(generator.next() % (fsync ? (segmentBytes == nil ? 300 : 40) : 4)) + 1
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
    exit((error as? StorageError)?.code == .fenced ? 6 : 1)
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
