import FIStorage
import Foundation
import Testing

@Suite("CorpusReader")
struct ReaderTests {
    @Test func recordsAfterAStreamID() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/corpus.h5"
            let writer = try await CorpusWriter.open(path: path, logger: quietLogger)
            try await writer.append(Rows.records(0..<500))
            let reader = try await CorpusReader.open(path: path, logger: quietLogger)
            #expect(try await reader.records(after: nil, limit: 3) == Rows.records(0..<3))
            #expect(try await reader.records(after: Rows.streamID(99), limit: 10) == Rows.records(100..<110))
            #expect(try await reader.records(after: Rows.streamID(495), limit: 10) == Rows.records(496..<500))
            #expect(try await reader.records(after: Rows.streamID(499), limit: 10).isEmpty)
            // An id between stored ids: the next stored one onwards.
            #expect(try await reader.records(after: StreamEntryID(ms: UInt64(Rows.base + 99), seq: 9), limit: 1) == [Rows.record(100)])
            #expect(try await reader.records(after: .zero, limit: 1) == [Rows.record(0)])
            #expect(try await reader.records(in: 495..<10_000) == Rows.records(495..<500))
            #expect(try await reader.records(in: 600..<700).isEmpty)
            try await reader.close()
            try await writer.close()
        }
    }

    @Test func consultationLookupFollowsRefresh() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/corpus.h5"
            let writer = try await CorpusWriter.open(path: path, logger: quietLogger)
            try await writer.append(Rows.records(0..<260))
            let reader = try await CorpusReader.open(path: path, logger: quietLogger)
            let first = try await reader.records(consultationID: Rows.consultationID(5))
            #expect(first == Rows.records(0..<260).filter { $0.consultationID == Rows.consultationID(5) })
            #expect(first.count == 20)
            #expect(try await reader.records(consultationID: "nobody").isEmpty)

            try await writer.append(Rows.records(260..<520))
            #expect(reader.rowCount == 260)  // until refreshed
            #expect(try await reader.refresh() == 520)
            let second = try await reader.records(consultationID: Rows.consultationID(5))
            #expect(second == Rows.records(0..<520).filter { $0.consultationID == Rows.consultationID(5) })
            try await reader.close()
            try await writer.close()
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func liveReaderSeesOnlyWholeRows() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/corpus.h5"
            let writer = try await CorpusWriter.open(path: path, options: .init(fsync: false), logger: quietLogger)
            try await writer.append(Rows.records(0..<50))
            let reader = try await CorpusReader.open(path: path, logger: quietLogger)
            let total = 6000
            let writing = Task {
                for start in stride(from: 50, to: total, by: 50) {
                    try await writer.append(Rows.records(start..<(start + 50)))
                }
            }
            var seen = 0
            var refreshes = 0
            let deadline = ContinuousClock.now + .seconds(30)
            while seen < total, ContinuousClock.now < deadline {
                let n = try await reader.refresh()
                refreshes += 1
                if n > seen {
                    #expect(try await reader.records(in: seen..<n) == Rows.records(seen..<n))
                    seen = n
                }
            }
            try await writing.value
            #expect(seen == total)
            #expect(refreshes > 1)
            try await reader.close()
            try await writer.close()
        }
    }

    /// Docs/storage.md: one consultation's events in a 1,000,000-row corpus in ≤ 50 ms after open.
    /// The corpus (10,000 consultations × 100 events, interleaved) is generated
    /// with h5py in the contract's layout, which is much faster than a debug build.
    @Test(.timeLimit(.minutes(3)))
    func consultationLookupInAMillionRows() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/corpus.h5"
            let n = 1_000_000, consultations = 10_000
            let make = """
            import sys, h5py, numpy as np
            n, k = int(sys.argv[2]), int(sys.argv[3])
            payload = b'{"event":"message","text":"hello"}'
            def column(g, name, data, tid=None):
                if tid is None:
                    g.create_dataset(name, data=data, maxshape=(None,), chunks=(8192,))
                    return
                space = h5py.h5s.create_simple((len(data),), (h5py.h5s.UNLIMITED,))
                dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
                dcpl.set_chunk((8192,))
                ds = h5py.h5d.create(g.id, name.encode(), tid, space, dcpl=dcpl)
                ds.write(h5py.h5s.ALL, h5py.h5s.ALL, data, mtype=tid)
            def string_type(size, utf8):
                t = h5py.h5t.C_S1.copy(); t.set_size(size); t.set_strpad(h5py.h5t.STR_NULLPAD)
                t.set_cset(h5py.h5t.CSET_UTF8 if utf8 else h5py.h5t.CSET_ASCII)
                return t
            i = np.arange(n)
            with h5py.File(sys.argv[1], "w", libver="latest") as f:
                g = f.create_group("events")
                column(g, "consultation_id", np.char.add(b"c-", (i % k).astype("S8")).astype("S128"), string_type(128, True))
                column(g, "stream_id", np.char.add((1700000000000 + i).astype("S20"), b"-0").astype("S41"), string_type(41, False))
                column(g, "received_at_ms", i.astype(np.int64))
                column(g, "payload_end", (np.arange(1, n + 1, dtype=np.uint64) * len(payload)))
                column(g, "payload", np.frombuffer(payload * n, dtype=np.uint8))
            """
            let made = try await runPython(make, [path, "\(n)", "\(consultations)"], timeout: 120)
            try #require(made.status == 0, "\(made.stderr)")
            let payload = Array("{\"event\":\"message\",\"text\":\"hello\"}".utf8)

            let opening = ContinuousClock.now
            let reader = try await CorpusReader.open(path: path, logger: quietLogger)
            let openTime = ContinuousClock.now - opening
            #expect(reader.rowCount == n)
            var times: [Duration] = []
            for probe in [0, 4_321, 9_999, 77] {
                let started = ContinuousClock.now
                let rows = try await reader.records(consultationID: "c-\(probe)")
                times.append(ContinuousClock.now - started)
                #expect(rows.count == n / consultations)
                #expect(rows.allSatisfy { $0.consultationID == "c-\(probe)" && $0.payload == payload })
                #expect(rows.map(\.receivedAtMs) == Array(stride(from: Int64(probe), to: Int64(n), by: consultations)))
            }
            print("million-row corpus: open + index \(openTime), lookups \(times)")
            #expect(times.max()! <= .milliseconds(50))
            try await reader.close()
        }
    }
}
