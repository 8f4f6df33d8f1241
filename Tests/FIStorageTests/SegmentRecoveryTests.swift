import FIStorage
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// kill -9 inside rolls and erasures (Tests/FIStorageCrashWriter in segment
/// mode): every acknowledged row survives exactly once, the watermark is the
/// last row, and after the next open every closed segment verifies.
@Suite("Crash recovery with segments", .serialized)
struct SegmentRecoveryTests {
    static var child: String { productsDirectory + "/FIStorageCrashWriter" }
    static let segmentBytes = 64 << 10

    /// The last acknowledged row count in an ack file.
    static func acknowledged(_ ackPath: String) -> Int {
        let acks = ((try? String(contentsOfFile: ackPath, encoding: .utf8)) ?? "")
            .split(separator: "\n").filter { $0.split(separator: " ").count == 3 }
        return acks.last.flatMap { Int($0.split(separator: " ")[1]) } ?? 0
    }

    /// Reopens the partition as the next writer would, checks it against the
    /// acknowledged rows, closes every segment, verifies, and returns the row count.
    static func checkRecovered(_ dir: String, acknowledged: Int, _ context: String) async throws -> Int {
        let writer = try await CorpusWriter.open(directory: dir, options: segmentOptions(maxBytes: segmentBytes), logger: quietLogger)
        let rows = writer.rowCount
        #expect(rows >= acknowledged, "\(context): \(rows) rows < \(acknowledged) acknowledged")
        if rows > 0 { #expect(writer.lastStreamID == CrashRows.record(rows - 1).streamID, "\(context): watermark") }
        try await writer.roll()
        try await writer.close()
        let reader = try await CorpusReader.open(directory: dir, logger: quietLogger)
        let stored = try await reader.records(in: 0..<reader.rowCount)
        try await reader.close()
        #expect(stored.count == rows, "\(context)")
        var mismatches = 0
        for (i, row) in stored.enumerated() {
            var unfenced = row
            unfenced.epoch = 0  // the crash child may write with a fencing epoch
            if unfenced != CrashRows.record(i) { mismatches += 1 }
        }
        #expect(mismatches == 0, "\(context): every row in order, once, byte for byte")
        let verification = try await CorpusMaintenance.verify(directory: dir, logger: quietLogger)
        #expect(verification.ok, "\(context): \(verification.problems) \(verification.damaged.map { "\($0.file): \($0.problems)" })")
        return rows
    }

    @Test("kill -9 at random moments of a writer that rolls every few dozen rows (each child a newer lease epoch)", .timeLimit(.minutes(3)))
    func randomKillsWithRolls() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.child), "build FIStorageCrashWriter first (swift build --build-tests)")
        try await withTemporaryDirectory { root in
            let dir = root + "/site_crash"
            var generator = SystemRandomNumberGenerator()
            var acknowledged = 0
            let deadline = Date().addingTimeInterval(80)
            var rounds = 0
            for round in 0..<24 where Date() < deadline {
                rounds += 1
                let ackPath = "\(root)/ack-\(round)"
                // Each child a newer lease: its open reads the fence and the newest row of a crashed partition.
                var arguments = [dir, ackPath, "\(round + 100)", "segments=\(Self.segmentBytes)", "epoch=\(round + 1)"]
                if round % 2 == 1 { arguments.append("nofsync") }
                let running = try startProcess(Self.child, arguments)
                let waitUntil = Date().addingTimeInterval(10)
                while Date() < waitUntil, Self.acknowledged(ackPath) == 0, running.process.isRunning {
                    try await Task.sleep(for: .milliseconds(1))
                }
                try await Task.sleep(for: .microseconds(Int.random(in: 0...80_000, using: &generator)))
                kill(running.process.processIdentifier, SIGKILL)
                let result = try await running.wait(timeout: 10)
                #expect(result.status == SIGKILL, "round \(round): child exited by itself: \(result.stderr)")
                acknowledged = max(acknowledged, Self.acknowledged(ackPath))
                if round % 3 == 2 {
                    // A crashed partition reads before any writer touched it again.
                    let reader = try await CorpusReader.open(directory: dir, logger: quietLogger)
                    #expect(reader.rowCount >= acknowledged)
                    try await reader.close()
                }
                var options = segmentOptions(maxBytes: Self.segmentBytes)
                options.fencingEpoch = UInt64(round + 1)  // the same lease as the child's
                let writer = try await CorpusWriter.open(directory: dir, options: options, logger: quietLogger)
                #expect(writer.rowCount >= acknowledged, "round \(round)")
                if writer.rowCount > 0 { #expect(writer.lastStreamID == CrashRows.record(writer.rowCount - 1).streamID) }
                try await writer.close()
            }
            let rows = try await Self.checkRecovered(dir, acknowledged: acknowledged, "after \(rounds) kills")
            let reader = try await CorpusReader.open(directory: dir, logger: quietLogger)
            let epochs = try await reader.records(in: 0..<reader.rowCount).map(\.epoch)
            try await reader.close()
            #expect(epochs == epochs.sorted() && epochs.first == 1 && (epochs.last ?? 0) > 1, "each lease's rows after the one before")
            let segments = segmentFiles(dir).count
            print("segment crash test: \(rounds) kills, \(rows) rows in \(segments) segments, \(acknowledged) acknowledged")
            #expect(segments >= 20, "the writer rolled often: \(segments) segments")
        }
    }

    @Test(
        "kill -9 inside a roll: before and after the close, while the segment is checksummed, while the manifest is written, after it is",
        .timeLimit(.minutes(2)),
        arguments: [("roll.before-close", 2), ("roll.closed", 2), ("seal.hashed", 2), ("manifest.temp-written", 2),
                    ("manifest.renamed", 2), ("seal.committed", 2)]
    )
    func killInsideARoll(point: String, occurrence: Int) async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.child), "build FIStorageCrashWriter first (swift build --build-tests)")
        try await withTemporaryDirectory { root in
            let dir = root + "/site_roll"
            let ackPath = root + "/ack"
            let crashed = try await runProcess(Self.child, [dir, ackPath, "7", "segments=\(Self.segmentBytes)", "crash=\(point):\(occurrence)"], timeout: 60)
            #expect(crashed.status == SIGKILL && !crashed.timedOut, "the child died at \(point): status \(crashed.status) \(crashed.stderr)")
            let acknowledged = Self.acknowledged(ackPath)
            #expect(acknowledged > 0)
            let rows = try await Self.checkRecovered(dir, acknowledged: acknowledged, point)

            // The next writer goes on from there.
            let more = try startProcess(Self.child, [dir, root + "/ack2", "8", "segments=\(Self.segmentBytes)"])
            try await waitFor("more rows") { Self.acknowledged(root + "/ack2") > rows + 100 || !more.process.isRunning }
            kill(more.process.processIdentifier, SIGKILL)
            _ = try await more.wait(timeout: 10)
            _ = try await Self.checkRecovered(dir, acknowledged: Self.acknowledged(root + "/ack2"), "\(point), then more")
        }
    }

    @Test(
        "kill -9 inside an erasure: the next open finishes or undoes each segment's swap; no other row is lost; erasing again completes it",
        .timeLimit(.minutes(2)),
        arguments: [("erase.rewritten", 0), ("manifest.temp-written", 1), ("erase.intent-committed", 0), ("erase.renamed", 0),
                    ("manifest.renamed", 2), ("erase.committed", 0), ("erase.committed", 2)]
    )
    func killInsideAnErasure(point: String, occurrence: Int) async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.child), "build FIStorageCrashWriter first (swift build --build-tests)")
        try await withTemporaryDirectory { root in
            let dir = root + "/site_erase"
            let all = (0..<1500).map(CrashRows.record)
            let writer = try await CorpusWriter.open(directory: dir, options: segmentOptions(maxBytes: Self.segmentBytes), logger: quietLogger)
            for start in stride(from: 0, to: all.count, by: 50) { try await writer.append(Array(all[start..<(start + 50)])) }
            try await writer.close()  // its last segment still open: the erasure closes it first
            let segmentsBefore = segmentFiles(dir).count
            #expect(segmentsBefore >= 6)

            let crashed = try await runProcess(Self.child, ["erase", dir, "consultation-3", "crash=\(point):\(occurrence)"], timeout: 60)
            #expect(crashed.status == SIGKILL && !crashed.timedOut, "the child died at \(point): status \(crashed.status) \(crashed.stdout) \(crashed.stderr)")

            // The next writer repairs; every other row is there once, in order;
            // the consultation's rows are all there or all gone, segment by segment.
            let reopened = try await CorpusWriter.open(directory: dir, options: segmentOptions(maxBytes: Self.segmentBytes), logger: quietLogger)
            #expect(reopened.lastStreamID == all.last?.streamID, "the watermark never goes down")
            try await reopened.close()
            let verification = try await CorpusMaintenance.verify(directory: dir, logger: quietLogger)
            #expect(verification.ok, "\(point): \(verification.problems) \(verification.damaged.map { "\($0.file): \($0.problems)" })")
            let reader = try await CorpusReader.open(directory: dir, logger: quietLogger)
            let rows = try await reader.records(in: 0..<reader.rowCount)
            try await reader.close()
            #expect(rows.filter { $0.consultationID != "consultation-3" } == all.filter { $0.consultationID != "consultation-3" })
            let left = rows.filter { $0.consultationID == "consultation-3" }
            #expect(Set(left.map(\.streamID)).count == left.count, "no erased row doubled")
            #expect(left.allSatisfy { all.contains($0) })
            let names = try FileManager.default.contentsOfDirectory(atPath: dir)
            #expect(!names.contains { $0.hasSuffix(".erasing") || $0.hasSuffix(".tmp") }, "leftovers removed: \(names)")

            // Erasing again finishes the job.
            let report = try await CorpusMaintenance.erase(consultationID: "consultation-3", directory: dir, logger: quietLogger)
            #expect(report.rowsRemoved == left.count)
            let after = try await CorpusReader.open(directory: dir, logger: quietLogger)
            #expect(try await after.records(in: 0..<5000) == all.filter { $0.consultationID != "consultation-3" })
            try await after.close()
            #expect(try await CorpusMaintenance.verify(directory: dir, logger: quietLogger).ok)
            let audit = try String(contentsOfFile: dir + "/audit.log", encoding: .utf8)
            #expect(audit.contains("erase_started") && audit.contains("erase_done"))
        }
    }
}
