import FIStorage
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Crash recovery", .serialized)
struct RecoveryTests {
    /// Kills a child that appends in a loop (FIStorageCrashWriter) with SIGKILL at
    /// random moments — some during its open/recovery, most mid-append — then
    /// checks that every acknowledged row is there, the watermark is the last
    /// whole row, and the file reads correctly both before (SWMR) and after the
    /// next writer recovers it.
    @Test(.timeLimit(.minutes(2)))
    func killedWriterLosesNothingAcknowledged() async throws {
        let child = productsDirectory + "/FIStorageCrashWriter"
        try #require(FileManager.default.isExecutableFile(atPath: child), "build FIStorageCrashWriter first (swift build --build-tests)")
        try await withTemporaryDirectory { dir in
            let path = dir + "/p0003/corpus.h5"
            var generator = SystemRandomNumberGenerator()
            var acknowledged = 0
            var killsMidAppend = 0
            var tornFilesSeen = 0
            let rounds = 36
            let logs = CapturedLogs()
            let deadline = Date().addingTimeInterval(60)
            for round in 0..<rounds where Date() < deadline {
                let ackPath = "\(dir)/ack-\(round)"
                let running = try startProcess(child, [path, ackPath, "\(round + 1)"] + (round % 2 == 1 ? ["nofsync"] : []))
                let pid = running.process.processIdentifier
                if round % 4 == 0 {
                    // Anywhere from process start through open/recovery into the first appends.
                    try await Task.sleep(for: .milliseconds(Int.random(in: 0...60, using: &generator)))
                } else {
                    // Wait for the first acknowledged batch, then a little longer.
                    let waitUntil = Date().addingTimeInterval(10)
                    while Date() < waitUntil, ((try? Data(contentsOf: URL(fileURLWithPath: ackPath)))?.count ?? 0) == 0, running.process.isRunning {
                        try await Task.sleep(for: .milliseconds(1))
                    }
                    if round == 2 {
                        // A second writer in another process (us) is refused at once while the child writes.
                        let started = ContinuousClock.now
                        let error = await #expect(throws: StorageError.self) {
                            _ = try await CorpusWriter.open(path: path, logger: quietLogger)
                        }
                        #expect(error?.code == .locked)
                        #expect(error?.message.contains("pid \(pid)") == true, "\(String(describing: error))")
                        #expect(ContinuousClock.now - started < .seconds(1))
                    }
                    try await Task.sleep(for: .microseconds(Int.random(in: 0...30_000, using: &generator)))
                }
                let killed = kill(pid, SIGKILL) == 0
                let result = try await running.wait(timeout: 10)
                #expect(killed && result.status == SIGKILL, "round \(round): child exited by itself (status \(result.status)): \(result.stderr)")

                let acks = ((try? String(contentsOfFile: ackPath, encoding: .utf8)) ?? "")
                    .split(separator: "\n").filter { $0.split(separator: " ").count == 3 }
                if let last = acks.last {
                    let fields = last.split(separator: " ")
                    let rows = Int(fields[1]) ?? 0
                    #expect(String(fields[2]) == CrashRows.record(rows - 1).streamID.description)
                    acknowledged = max(acknowledged, rows)
                    if round % 4 != 0 { killsMidAppend += 1 }
                }
                guard FileManager.default.fileExists(atPath: path) else { continue }

                // A crashed file reads with SWMR before any writer touched it again.
                if round % 3 == 1 {
                    let reader = try await CorpusReader.open(path: path, logger: quietLogger)
                    #expect(reader.rowCount >= acknowledged)
                    if reader.rowCount > 0 {
                        let tail = try await reader.records(in: (reader.rowCount - 1)..<reader.rowCount)
                        #expect(tail == [CrashRows.record(reader.rowCount - 1)])
                    }
                    try await reader.close()
                }

                // The next writer recovers it: every acknowledged row, watermark = last whole row.
                let writer = try await CorpusWriter.open(path: path, logger: logs.logger)
                #expect(writer.rowCount >= acknowledged, "round \(round): \(writer.rowCount) rows < \(acknowledged) acknowledged")
                if writer.rowCount > 0 {
                    #expect(writer.lastStreamID == CrashRows.record(writer.rowCount - 1).streamID)
                }
                if writer.rowCount > acknowledged { tornFilesSeen += 1 }  // flushed but not yet acknowledged
                try await writer.close()
            }
            let cuts = logs.all.filter { $0.contains("torn batch cut back") }.count
            print("crash test: \(logs.all.count) log lines, \(rounds) kills, \(cuts) torn files cut back by recovery, \(killsMidAppend) after a first acknowledged batch, \(tornFilesSeen) reopened with flushed-but-unacknowledged rows, \(acknowledged) rows acknowledged")
            #expect(killsMidAppend >= 20, "only \(killsMidAppend) kills landed after a first acknowledged batch")

            // Every row, in order, exactly once, byte for byte.
            let reader = try await CorpusReader.open(path: path, logger: quietLogger)
            let rows = try await reader.records(in: 0..<reader.rowCount)
            #expect(rows.count >= acknowledged)
            var mismatches = 0
            for (i, row) in rows.enumerated() where row != CrashRows.record(i) { mismatches += 1 }
            #expect(mismatches == 0)
            try await reader.close()

            // And stock tools open the recovered, cleanly closed file.
            let dump = try await runProcess("/usr/bin/h5dump", ["-H", path], timeout: 30)
            #expect(dump.status == 0, "\(dump.stderr)")
        }
    }

    /// Tears a closed corpus by hand (h5py): row columns of unequal length and a
    /// `payload_end` past the bytes; the next writer cuts back to the last whole row.
    @Test func tornBatchIsCutBackToTheLastWholeRow() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/corpus.h5"
            let writer = try await CorpusWriter.open(path: path, logger: quietLogger)
            try await writer.append(Rows.records(0..<100))
            try await writer.close()
            let tear = """
            import sys, h5py, numpy as np
            with h5py.File(sys.argv[1], "r+", libver="latest") as f:
                e = f["events"]
                n, size = len(e["stream_id"]), len(e["payload"])
                for name in ("consultation_id", "stream_id", "received_at_ms", "epoch"):
                    e[name].resize((n + 5,))
                e["stream_id"][n:] = np.array([b"%d-0" % (2000000000000 + i) for i in range(5)], dtype="S41")
                e["payload_end"].resize((n + 4,))
                e["payload_end"][n:] = size + np.array([10, 20, 30, 40], dtype=np.uint64)
                e["payload"].resize((size + 25,))   # rows n, n+1 are whole; n+2, n+3 are not
            """
            let torn = try await runPython(tear, [path])
            #expect(torn.status == 0, "\(torn.stderr)")

            let recovered = try await CorpusWriter.open(path: path, logger: quietLogger)
            #expect(recovered.rowCount == 102)
            #expect(recovered.lastStreamID == StreamEntryID(ms: 2_000_000_000_001, seq: 0))
            // The cut rows are gone for good; appends continue from the watermark.
            let outcome = try await recovered.append(Rows.records(0..<3).map {
                var r = $0
                r.streamID = StreamEntryID(ms: UInt64(2_000_000_000_001 + $0.receivedAtMs), seq: 1)
                return r
            })
            #expect(outcome == AppendOutcome(appended: 3, skipped: 0))
            try await recovered.close()

            let check = """
            import sys, h5py
            with h5py.File(sys.argv[1], "r") as f:
                e = f["events"]
                lens = {k: len(e[k]) for k in ("consultation_id", "stream_id", "received_at_ms", "epoch", "payload_end")}
                assert set(lens.values()) == {105}, lens
                assert int(e["payload_end"][-1]) == len(e["payload"]), (int(e["payload_end"][-1]), len(e["payload"]))
                assert e["stream_id"][101] == b"2000000000001-0"
                assert e["stream_id"][102] == b"2000000000001-1"
            print("ok")
            """
            let checked = try await runPython(check, [path])
            #expect(checked.status == 0 && checked.stdout.contains("ok"), "\(checked.stderr)")
        }
    }
}
