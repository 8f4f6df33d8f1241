// The fencing token of a partition (issue 18): the per-row `epoch` column, the
// `fence` file, and what a writer of an older lease may no longer do.
@testable import FIStorage
import Foundation
import Testing

/// Options of a writer of lease `epoch` (small chunks and segments, no fsync).
func fencing(_ epoch: UInt64?, maxBytes: Int? = 64 << 10, events: EventLog? = nil) -> CorpusWriter.Options {
    var options = segmentOptions(maxBytes: maxBytes, events: events)
    options.fencingEpoch = epoch
    return options
}

/// Runs `body`, which must throw a ``StorageError`` of `code`.
func expectStorageError(_ code: StorageError.Code, _ what: String, sourceLocation: SourceLocation = #_sourceLocation,
                        _ body: () async throws -> Void) async {
    do {
        try await body()
        Issue.record("\(what): no error, expected .\(code)", sourceLocation: sourceLocation)
    } catch let error as StorageError {
        #expect(error.code == code, "\(what): \(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("\(what): \(error), expected StorageError .\(code)", sourceLocation: sourceLocation)
    }
}

/// Every file of a directory and the SHA-256 of its contents: "nothing was written".
func contents(of directory: String) throws -> [String: String] {
    var out: [String: String] = [:]
    for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
        out[name] = try FileChecksum.sha256(directory + "/" + name).hex
    }
    return out
}

/// The `fence` file's text.
func fenceText(_ partition: String) -> String? {
    try? String(contentsOfFile: partition + "/fence", encoding: .utf8)
}

/// Every row of a partition, read back.
func readAll(_ partition: String) async throws -> [CorpusRecord] {
    let reader = try await CorpusReader.open(directory: partition, logger: quietLogger)
    let rows = try await reader.records(in: 0..<reader.rowCount)
    try await reader.close()
    return rows
}

/// `Rows.records` as read back from a writer of lease `epoch`.
func epochRows(_ range: Range<Int>, epoch: UInt64) -> [CorpusRecord] {
    Rows.records(range).map {
        var row = $0
        row.epoch = epoch
        return row
    }
}

@Suite("Fencing: the epoch column and the fence file")
struct FencingTests {
    @Test("a fenced writer refuses to write after a newer lease has written")
    func fencedWriterRefusesToWriteAfterANewerLeaseHasWritten() async throws {
        try await withTemporaryDirectory { dir in
            let partition = dir + "/site_a"
            let a = try await CorpusWriter.open(directory: partition, options: fencing(5), logger: quietLogger)
            try await a.append(Rows.records(0..<100))
            #expect(fenceText(partition) == "5\n", "opening raised the fence to the writer's epoch")

            // A newer lease takes the partition. On a local disk its writer cannot open
            // while A holds the flock, so do what that writer does at open.
            try PartitionDirectory(partition).takeFence(epoch: 6, logger: quietLogger)
            #expect(fenceText(partition) == "6\n")
            let before = try contents(of: partition)
            await expectStorageError(.fenced, "A's append after the fence rose") { try await a.append(Rows.records(100..<150)) }
            #expect(try contents(of: partition) == before, "the fenced append wrote nothing")
            #expect(a.rowCount == 100 && a.lastStreamID == Rows.streamID(99))
            // It stays fenced, whatever it is asked to do.
            await expectStorageError(.fenced, "A's next append") { try await a.append(Rows.records(100..<101)) }
            await expectStorageError(.fenced, "A's idle maintenance") { try await a.maintain() }
            await expectStorageError(.fenced, "A's roll") { try await a.roll() }
            #expect(try contents(of: partition) == before)
            try await a.close()

            let b = try await CorpusWriter.open(directory: partition, options: fencing(6), logger: quietLogger)
            #expect(b.lastStreamID == Rows.streamID(99))
            try await b.append(Rows.records(100..<200))
            try await b.close()

            // The old lease comes back: refused at open, and it writes nothing.
            let after = try contents(of: partition)
            await expectStorageError(.fenced, "a writer of epoch 5 opening after epoch 6") {
                let stale = try await CorpusWriter.open(directory: partition, options: fencing(5), logger: quietLogger)
                try await stale.close()
            }
            #expect(try contents(of: partition) == after, "the fenced open wrote nothing")

            let stored = try await readAll(partition)
            #expect(stored == epochRows(0..<100, epoch: 5) + epochRows(100..<200, epoch: 6))
            let reader = try await CorpusReader.open(directory: partition, logger: quietLogger)
            #expect(try await reader.records(consultationID: Rows.consultationID(7)).map(\.epoch)
                == (0..<200).filter { $0 % 13 == 7 }.map { UInt64($0 < 100 ? 5 : 6) })
            #expect(try await reader.records(after: Rows.streamID(98), limit: 2).map(\.epoch) == [5, 6])
            try await reader.close()
            #expect(try await CorpusMaintenance.verify(directory: partition, logger: quietLogger).ok)
        }
    }

    @Test("the newest row's epoch fences an older lease even without the fence file, which opening puts back")
    func newestRowFencesWithoutTheFenceFile() async throws {
        try await withTemporaryDirectory { dir in
            let partition = dir + "/site_a"
            let writer = try await CorpusWriter.open(directory: partition, options: fencing(8), logger: quietLogger)
            try await writer.append(Rows.records(0..<10))
            try await writer.close()
            try FileManager.default.removeItem(atPath: partition + "/fence")
            await expectStorageError(.fenced, "epoch 7 after rows of epoch 8") {
                _ = try await CorpusWriter.open(directory: partition, options: fencing(7), logger: quietLogger)
            }
            #expect(fenceText(partition) == nil, "the fenced open wrote nothing")
            let same = try await CorpusWriter.open(directory: partition, options: fencing(8), logger: quietLogger)
            #expect(fenceText(partition) == "8\n")
            // A fence that went missing while a writer runs is put back at its next batch.
            try FileManager.default.removeItem(atPath: partition + "/fence")
            try await same.append(Rows.records(10..<20))
            #expect(fenceText(partition) == "8\n")
            try await same.close()
        }
    }

    @Test("a writer without an epoch neither checks nor raises the fence, and stores epoch 0")
    func writerWithoutEpochIgnoresTheFence() async throws {
        try await withTemporaryDirectory { dir in
            let partition = dir + "/site_a"
            let fenced = try await CorpusWriter.open(directory: partition, options: fencing(9), logger: quietLogger)
            try await fenced.append(Rows.records(0..<10))
            try await fenced.close()
            let plain = try await CorpusWriter.open(directory: partition, options: fencing(nil), logger: quietLogger)
            try await plain.append(Rows.records(10..<20))
            try await plain.close()
            #expect(fenceText(partition) == "9\n")
            #expect(try await readAll(partition) == epochRows(0..<10, epoch: 9) + epochRows(10..<20, epoch: 0))
            #expect(try await CorpusMaintenance.verify(directory: partition, logger: quietLogger).ok, "epoch 0 claims no lease")
        }
    }

    @Test("a single-file writer takes no fencing epoch")
    func singleFileWriterRejectsAnEpoch() async throws {
        try await withTemporaryDirectory { dir in
            await expectStorageError(.invalidArgument, "open(path:) with an epoch") {
                _ = try await CorpusWriter.open(path: dir + "/corpus.h5", options: fencing(3), logger: quietLogger)
            }
            #expect(!FileManager.default.fileExists(atPath: dir + "/corpus.h5"))
            #expect(StorageError.Code.fenced.description == "fenced")
        }
    }

    /// A segment as written before the epoch column existed.
    static func writeOldSegment(_ path: String, rows range: Range<Int>) throws {
        let old = try SegmentWriter(path: path, options: segmentOptions(), logger: quietLogger,
                                    creation: CorpusCreation(rowChunk: 64, payloadChunk: 16 << 10, deflateLevel: nil, epochColumn: false))
        #expect(!old.hasEpochColumn)
        if !range.isEmpty { _ = try old.append(Rows.records(range), above: nil) }
        try old.close()
    }

    @Test("a segment without the epoch column is closed at open (a normal roll) and its rows read as epoch 0",
          arguments: ["corpus.h5", "segment", "empty segment"])
    func oldSegmentIsRolledAtOpen(kind: String) async throws {
        try await withTemporaryDirectory { dir in
            let partition = dir + "/site_a"
            try FileManager.default.createDirectory(atPath: partition, withIntermediateDirectories: true)
            let oldName = kind == "corpus.h5" ? "corpus.h5" : segmentName(Rows.streamID(0))
            let oldRows = kind == "empty segment" ? 0..<0 : 0..<50
            try Self.writeOldSegment(partition + "/" + oldName, rows: oldRows)

            let events = EventLog()
            let writer = try await CorpusWriter.open(directory: partition, options: fencing(3, maxBytes: nil, events: events), logger: quietLogger)
            #expect(writer.rowCount == oldRows.count)
            try await writer.append(Rows.records(50..<80))
            try await writer.close()

            let files = segmentFiles(partition)
            let newName = segmentName(Rows.streamID(50))
            let headers = try await files.asyncMap { try await runProcess("/usr/bin/h5dump", ["-H", partition + "/" + $0], timeout: 30).stdout }
            if oldRows.isEmpty {
                #expect(files == [newName], "the empty old segment is removed, not recorded")
                #expect(events.closed.isEmpty)
            } else {
                #expect(files == [oldName, newName])
                #expect(events.closed == [oldName], "closed at open, before the first batch")
                // Recorded like any closed segment, and never given a partial epoch column.
                let recorded = try manifestSegments(partition)
                #expect(recorded.map { $0["file"] as? String } == [oldName])
                #expect(recorded.first?["rows"] as? Int == 50)
                #expect(recorded.first?["sha256"] as? String == (try await sha256(ofFile: partition + "/" + oldName)))
                #expect(!headers[0].contains("DATASET \"epoch\""), "\(headers[0])")
            }
            #expect(headers.last?.contains("DATASET \"epoch\"") == true)
            #expect(try await readAll(partition) == epochRows(oldRows, epoch: 0) + epochRows(50..<80, epoch: 3))
            #expect(try await CorpusMaintenance.verify(directory: partition, logger: quietLogger).ok)
        }
    }

    @Test("a row without its epoch cell is not whole: the epoch column counts in the shortest-row-column rule")
    func epochColumnCountsAmongTheRowColumns() async throws {
        try await withTemporaryDirectory { dir in
            let partition = dir + "/site_a"
            let writer = try await CorpusWriter.open(directory: partition, options: fencing(4), logger: quietLogger)
            try await writer.append(Rows.records(0..<30))
            try await writer.close()
            let file = partition + "/" + segmentName(Rows.streamID(0))
            // As if HDF5 had published every column's growth but epoch's: the last 10 rows lack it.
            let tear = """
            import sys, h5py
            with h5py.File(sys.argv[1], "r+", libver="latest") as f:
                f["events/epoch"].resize((20,))
            """
            let torn = try await runPython(tear, [file])
            try #require(torn.status == 0, "\(torn.stderr)")
            let reader = try await CorpusReader.open(directory: partition, logger: quietLogger)
            #expect(reader.rowCount == 20)
            try await reader.close()
            let recovered = try await CorpusWriter.open(directory: partition, options: fencing(4), logger: quietLogger)
            #expect(recovered.rowCount == 20 && recovered.lastStreamID == Rows.streamID(19), "recovery cuts back to the last whole row")
            try await recovered.append(Rows.records(20..<30))
            try await recovered.close()
            #expect(try await readAll(partition) == epochRows(0..<30, epoch: 4))
        }
    }

    @Test("erasure keeps every row's epoch")
    func erasureKeepsEpochs() async throws {
        try await withTemporaryDirectory { dir in
            let partition = dir + "/site_a"
            for (epoch, range) in [(UInt64(4), 0..<150), (5, 150..<300)] {
                let writer = try await CorpusWriter.open(directory: partition, options: fencing(epoch, maxBytes: 16 << 10), logger: quietLogger)
                for start in stride(from: range.lowerBound, to: range.upperBound, by: 25) {
                    try await writer.append(Rows.records(start..<(start + 25)))  // a roll between batches
                }
                try await writer.roll()
                try await writer.close()
            }
            #expect(try manifestSegments(partition).count >= 4)
            let report = try await CorpusMaintenance.erase(consultationID: Rows.consultationID(3), directory: partition, logger: quietLogger)
            #expect(report.rowsRemoved == (0..<300).filter { $0 % 13 == 3 }.count)
            let kept = (0..<300).filter { $0 % 13 != 3 }
            #expect(try await readAll(partition) == kept.map { i in epochRows(i..<(i + 1), epoch: i < 150 ? 4 : 5)[0] })
            #expect(try await CorpusMaintenance.verify(directory: partition, logger: quietLogger).ok)
        }
    }

    @Test("verify reports epochs that go down in stream order, within a segment and across segments",
          arguments: ["within a segment", "across segments"])
    func verifyReportsADecreasingEpoch(kind: String) async throws {
        try await withTemporaryDirectory { dir in
            let partition = dir + "/site_a"
            let writer = try await CorpusWriter.open(directory: partition, options: fencing(7, maxBytes: nil), logger: quietLogger)
            try await writer.append(Rows.records(0..<40))
            if kind == "across segments" { try await writer.roll() }
            try await writer.close()
            #expect(try await CorpusMaintenance.verify(directory: partition, logger: quietLogger).ok)

            // What a writer of lease 6 that kept running after lease 7 took over would leave
            // (possible only where the flock does not work): its rows after epoch 7's.
            let written = try #require(segmentFiles(partition).last)
            let path = partition + "/" + (kind == "across segments" ? segmentName(Rows.streamID(40)) : written)
            let file = try SegmentWriter(path: path, options: segmentOptions(), logger: quietLogger)
            _ = try file.append(epochRows(40..<50, epoch: 6), above: file.lastStreamID)
            try file.close()
            // A writer without an epoch (it ignores the fence) closes and records that segment.
            let closer = try await CorpusWriter.open(directory: partition, options: fencing(nil), logger: quietLogger)
            try await closer.roll()
            try await closer.close()

            #expect(try await readAll(partition).map(\.epoch) == Array(repeating: 7, count: 40) + Array(repeating: 6, count: 10))
            let report = try await CorpusMaintenance.verify(directory: partition, logger: quietLogger)
            #expect(!report.ok)
            let damaged = report.damaged
            #expect(damaged.count == 1)
            #expect(damaged.first?.file == segmentFiles(partition).last)
            let problems = damaged.first?.problems ?? []
            #expect(problems.count == 1, "one drop, reported once: \(problems)")
            #expect(problems.first?.contains("epoch 6 after epoch 7") == true, "\(problems)")
            let firstRow = kind == "across segments" ? 0 : 40
            #expect(problems.first?.hasPrefix("row \(firstRow):") == true, "\(problems)")
        }
    }
}
