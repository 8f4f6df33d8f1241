import FIStorage
import Foundation
import Testing

@Suite("CorpusWriter")
struct WriterTests {
    @Test func createsAppendsAndReadsBack() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/p0001/corpus.h5"
            let writer = try await CorpusWriter.open(path: path, logger: quietLogger)
            #expect(writer.rowCount == 0)
            #expect(writer.lastStreamID == nil)
            var outcome = try await writer.append(Rows.records(0..<100))
            #expect(outcome == AppendOutcome(appended: 100, skipped: 0))
            outcome = try await writer.append(Rows.records(100..<250))
            #expect(outcome == AppendOutcome(appended: 150, skipped: 0))
            #expect(writer.rowCount == 250)
            #expect(writer.lastStreamID == Rows.streamID(249))

            let reader = try await CorpusReader.open(path: path, logger: quietLogger)
            #expect(reader.rowCount == 250)
            let all = try await reader.records(in: 0..<1000)
            #expect(all == Rows.records(0..<250))
            try await reader.close()
            try await writer.close()
            try await writer.close()  // idempotent
        }
    }

    @Test func reopenContinuesAndSkipsRedelivered() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/corpus.h5"
            var writer = try await CorpusWriter.open(path: path, logger: quietLogger)
            try await writer.append(Rows.records(0..<100))
            try await writer.close()

            writer = try await CorpusWriter.open(path: path, logger: quietLogger)
            #expect(writer.rowCount == 100)
            #expect(writer.lastStreamID == Rows.streamID(99))
            let outcome = try await writer.append(Rows.records(50..<150))
            #expect(outcome == AppendOutcome(appended: 50, skipped: 50))
            let again = try await writer.append(Rows.records(0..<150))
            #expect(again == AppendOutcome(appended: 0, skipped: 150))
            try await writer.close()

            let reader = try await CorpusReader.open(path: path, logger: quietLogger)
            #expect(try await reader.records(in: 0..<200) == Rows.records(0..<150))
            try await reader.close()
        }
    }

    @Test func watermarkComparesNumerically() async throws {
        try await withTemporaryDirectory { dir in
            let writer = try await CorpusWriter.open(path: dir + "/corpus.h5", logger: quietLogger)
            func rec(_ id: String) -> CorpusRecord {
                CorpusRecord(consultationID: "c", streamID: StreamEntryID(id)!, receivedAtMs: 1, payload: Array("{}".utf8))
            }
            // "10-0" sorts before "9-0" as text; numerically it is above.
            var outcome = try await writer.append([rec("9-0"), rec("9-1"), rec("10-0")])
            #expect(outcome == AppendOutcome(appended: 3, skipped: 0))
            // Out of order inside a batch: the lower id is skipped, as a duplicate would be.
            outcome = try await writer.append([rec("12-0"), rec("11-5"), rec("9-9"), rec("12-1")])
            #expect(outcome == AppendOutcome(appended: 2, skipped: 2))
            #expect(writer.lastStreamID == StreamEntryID(ms: 12, seq: 1))
            #expect(writer.rowCount == 5)
            try await writer.close()
        }
    }

    @Test func emptyBatchIsANoOp() async throws {
        try await withTemporaryDirectory { dir in
            let writer = try await CorpusWriter.open(path: dir + "/corpus.h5", logger: quietLogger)
            #expect(try await writer.append([]) == AppendOutcome(appended: 0, skipped: 0))
            try await writer.append(Rows.records(0..<3))
            #expect(try await writer.append([]) == AppendOutcome(appended: 0, skipped: 0))
            #expect(writer.rowCount == 3)
            try await writer.close()
        }
    }

    @Test func emptyPayloadIsARow() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/corpus.h5"
            let writer = try await CorpusWriter.open(path: path, logger: quietLogger)
            let rows = [
                CorpusRecord(consultationID: "c", streamID: StreamEntryID(ms: 1, seq: 0), receivedAtMs: 1, payload: []),
                CorpusRecord(consultationID: "", streamID: StreamEntryID(ms: 2, seq: 0), receivedAtMs: 2, payload: Array("{}".utf8)),
                CorpusRecord(consultationID: "c", streamID: StreamEntryID(ms: 3, seq: 0), receivedAtMs: 3, payload: []),
            ]
            try await writer.append(rows)
            try await writer.close()
            let reader = try await CorpusReader.open(path: path, logger: quietLogger)
            #expect(try await reader.records(in: 0..<3) == rows)
            try await reader.close()
        }
    }

    @Test func badRecordsRejectTheBatchAndLeaveTheFileValid() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/corpus.h5"
            let writer = try await CorpusWriter.open(path: path, logger: quietLogger)
            try await writer.append(Rows.records(0..<10))
            let good = Rows.record(10)
            var badPayload = Rows.record(11)
            badPayload.payload = [0x7B, 0xC3, 0x28, 0x7D]  // "{", invalid 2-byte sequence, "}"
            var longConsultation = Rows.record(11)
            longConsultation.consultationID = String(repeating: "é", count: 65)  // 130 bytes
            var nulConsultation = Rows.record(11)
            nulConsultation.consultationID = "a\u{0}b"
            for bad in [badPayload, longConsultation, nulConsultation] {
                let error = await #expect(throws: StorageError.self) {
                    try await writer.append([good, bad])
                }
                #expect(error?.code == .invalidRecord)
                #expect(error?.message.contains("batch not written") == true)
                #expect(writer.rowCount == 10)
            }
            // The maximum-size values are accepted.
            var maximal = good
            maximal.consultationID = String(repeating: "é", count: 64)  // 128 bytes
            maximal.streamID = StreamEntryID(ms: .max, seq: .max)  // 41 bytes
            #expect(try await writer.append([good, maximal]) == AppendOutcome(appended: 2, skipped: 0))
            try await writer.close()

            let reader = try await CorpusReader.open(path: path, logger: quietLogger)
            let rows = try await reader.records(in: 0..<100)
            #expect(rows.count == 12)
            #expect(rows.last == maximal)
            try await reader.close()
        }
    }

    @Test func utf8ValidationCanBeTurnedOff() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/corpus.h5"
            let writer = try await CorpusWriter.open(path: path, options: .init(validateUTF8: false), logger: quietLogger)
            let raw = CorpusRecord(consultationID: "c", streamID: StreamEntryID(ms: 1, seq: 0), receivedAtMs: 0, payload: [0xFF, 0x00, 0xFE])
            try await writer.append([raw])
            try await writer.close()
            let reader = try await CorpusReader.open(path: path, logger: quietLogger)
            #expect(try await reader.records(in: 0..<1) == [raw])
            try await reader.close()
        }
    }

    @Test func secondWriterFailsAtOnce() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/corpus.h5"
            let first = try await CorpusWriter.open(path: path, logger: quietLogger)
            try await first.append(Rows.records(0..<5))
            let started = ContinuousClock.now
            let error = await #expect(throws: StorageError.self) {
                _ = try await CorpusWriter.open(path: path, logger: quietLogger)
            }
            #expect(error?.code == .locked)
            #expect(error?.message.contains("another writer") == true)
            #expect(ContinuousClock.now - started < .seconds(1))
            // The first writer is unharmed and the file intact.
            try await first.append(Rows.records(5..<10))
            try await first.close()
            // Once released, the next writer gets in.
            let second = try await CorpusWriter.open(path: path, logger: quietLogger)
            #expect(second.rowCount == 10)
            try await second.close()
        }
    }

    @Test func closedWriterRefusesAppends() async throws {
        try await withTemporaryDirectory { dir in
            let writer = try await CorpusWriter.open(path: dir + "/corpus.h5", logger: quietLogger)
            try await writer.close()
            let error = await #expect(throws: StorageError.self) { try await writer.append(Rows.records(0..<1)) }
            #expect(error?.code == .closed)
        }
    }

    @Test func notACorpusFileIsReportedWithHDF5Context() async throws {
        try await withTemporaryDirectory { dir in
            let garbage = dir + "/garbage.h5"
            try Data("not an hdf5 file".utf8).write(to: URL(fileURLWithPath: garbage))
            let error = await #expect(throws: StorageError.self) {
                _ = try await CorpusWriter.open(path: garbage, logger: quietLogger)
            }
            #expect(error?.code == .hdf5)
            // Our context first, then HDF5's own error stack (auto-printing is off).
            #expect(error?.message.contains("H5Fopen(\(garbage), RDWR|SWMR_WRITE)") == true)
            #expect(error?.message.contains("unable to open file") == true, "\(String(describing: error))")
            #expect(error?.message.contains("file signature not found") == true, "\(String(describing: error))")

            let other = dir + "/other.h5"
            let made = try await runPython("import h5py, sys\nh5py.File(sys.argv[1], 'w', libver='latest').create_dataset('x', data=[1])\n", [other])
            #expect(made.status == 0, "\(made.stderr)")
            let wrongLayout = await #expect(throws: StorageError.self) {
                _ = try await CorpusWriter.open(path: other, logger: quietLogger)
            }
            #expect(wrongLayout?.code == .corrupt)
        }
    }

    @Test(arguments: [CorpusWriter.Options(compression: .deflate(level: 1)),
                      CorpusWriter.Options(batchChunkRows: 7, payloadChunkBytes: 100, fsync: false)])
    func optionsRoundTrip(options: CorpusWriter.Options) async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/corpus.h5"
            let writer = try await CorpusWriter.open(path: path, options: options, logger: quietLogger)
            for start in stride(from: 0, to: 600, by: 150) {
                try await writer.append(Rows.records(start..<(start + 150)))
            }
            try await writer.close()
            let reader = try await CorpusReader.open(path: path, logger: quietLogger)
            #expect(try await reader.records(in: 0..<600) == Rows.records(0..<600))
            try await reader.close()
        }
    }
}
