import FILocking
import FIStorage
import Foundation
import Synchronization
import Testing

/// Corrupted corpus files (issue 9; found by Fuzz/Targets/CorpusReaderFuzz.swift):
/// the reader throws `.corrupt` instead of trapping on offsets or lengths it
/// read from the file. h5py edits a valid corpus written by our writer.
@Suite("Corrupt corpus files")
struct CorruptionTests {
    /// Six rows, four-row chunks; returns the path.
    func makeCorpus(in directory: String) async throws -> String {
        let path = directory + "/corpus.h5"
        let writer = try await CorpusWriter.open(
            path: path, options: .init(batchChunkRows: 4, payloadChunkBytes: 256, fsync: false), logger: quietLogger)
        _ = try await writer.append(Rows.records(0..<6))
        try await writer.close()
        return path
    }

    func edit(_ path: String, _ statements: String) async throws {
        let result = try await runPython(
            """
            import sys, h5py
            with h5py.File(sys.argv[1], "r+") as f:
                e = f["events/payload_end"]
            \(statements.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
            """, [path])
        try #require(result.status == 0, "h5py: \(result.stderr)")
    }

    @Test(
        "payload offsets out of order or beyond the payload: reads of those rows throw .corrupt, earlier rows still read",
        arguments: [
            ("e[2] = e[1] - 1", [2]),  // row 2 ends before it starts
            ("e[2] = 2**63 + 5", [2, 3]),  // row 2 ends far beyond the payload, and row 3 starts there
            ("e[3] = 0", [3]),  // row 3 ends before it starts
        ]
    )
    func corruptOffsets(statement: String, badRows: [Int]) async throws {
        try await withTemporaryDirectory { directory in
            let path = try await makeCorpus(in: directory)
            try await edit(path, statement)
            let reader = try await CorpusReader.open(path: path, logger: quietLogger)
            #expect(reader.rowCount == 6)
            await #expect(throws: StorageError.self) { try await reader.records(in: 0..<6) }
            do {
                _ = try await reader.records(in: 0..<6)
            } catch let error as StorageError {
                #expect(error.code == .corrupt, "\(error)")
            }
            // A lookup by consultation checks each of its rows' own range
            // (consultation-i holds row i here).
            for row in badRows {
                await #expect(throws: StorageError.self) { try await reader.records(consultationID: Rows.consultationID(row)) }
            }
            #expect(try await reader.records(in: 0..<2) == Rows.records(0..<2))
            try await reader.close()
        }
    }

    @Test("row columns claiming 10^9 rows are bounded by their allocated storage: open is quick and the real rows read back")
    func hugeLengths() async throws {
        try await withTemporaryDirectory { directory in
            let path = try await makeCorpus(in: directory)
            try await edit(
                path,
                """
                for name in ("consultation_id", "stream_id", "received_at_ms", "epoch", "payload_end"):
                    f["events/" + name].resize((10**9,))
                """)
            let started = ContinuousClock.now
            let reader = try await CorpusReader.open(path: path, logger: quietLogger)
            #expect(ContinuousClock.now - started < .seconds(10))
            #expect(reader.rowCount <= 8, "two allocated chunks of four rows, not 10^9 rows of zeros")
            #expect(try await reader.records(in: 0..<6) == Rows.records(0..<6))
            await #expect(throws: StorageError.self) { try await reader.records(in: 0..<reader.rowCount) }
            try await reader.close()
        }
    }
}

/// Inputs the corpus fuzzer found (Fuzz/Regressions/corpus_reader): each must
/// open and read, or fail, within seconds — never crash or hang.
@Suite("Corpus fuzzer regressions")
struct CorpusFuzzRegressionTests {
    static var inputs: [String] {
        let directory = repositoryRoot + "/Fuzz/Regressions/corpus_reader"
        return ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted().map { directory + "/" + $0 }
    }

    @Test("regression inputs exist")
    func inputsExist() {
        #expect(Self.inputs.contains { $0.hasSuffix("swmr-retry-hang.h5") })
    }

    @Test("each regression input is opened and read, or rejected, within 20 s", arguments: Self.inputs)
    func regression(input: String) async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/corpus.h5"
            try FileManager.default.copyItem(atPath: input, toPath: path)
            // An unstructured task, polled: if HDF5 hung, a task group would
            // wait for it forever; this way the test fails after 20 s.
            let done = Flag()
            Task {
                if let reader = try? await CorpusReader.open(path: path, logger: quietLogger) {
                    _ = try? await reader.records(in: 0..<min(reader.rowCount, 4096))
                    _ = try? await reader.records(consultationID: "c-1")
                    try? await reader.close()
                }
                done.set()
            }
            for _ in 0..<200 where !done.isSet {
                try await Task.sleep(for: .milliseconds(100))
            }
            let finished = done.isSet
            #expect(finished, "\(input) did not open/read/fail within 20 s")
        }
    }
}

final class Flag: Sendable {
    private let value = Locked(false)
    var isSet: Bool { value.withLock { $0 } }
    func set() { value.withLock { $0 = true } }
}
