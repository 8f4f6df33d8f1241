import FIStorage
import Foundation
import Testing

/// Our files through other people's tools: h5py (Debian's python3-h5py, via
/// /usr/bin/python3 or $FI_PYTHON), h5dump, and the shipped Python package python/fi_corpus.
@Suite("Interop", .serialized)
struct InteropTests {
    /// h5py with `swmr=True` follows our writer while it appends, checking every
    /// row's payload bytes, ids and times as they appear.
    @Test(.timeLimit(.minutes(2)))
    func h5pySWMRReadsWhileWeWrite() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/corpus.h5"
            let total = 20_000
            let writer = try await CorpusWriter.open(path: path, logger: quietLogger)
            try await writer.append(Rows.records(0..<200))
            let script = Rows.python + """
            import sys, time, h5py
            path, total = sys.argv[1], int(sys.argv[2])
            f = h5py.File(path, "r", swmr=True)
            e = f["events"]
            cid, sid, rat, pend, pay = (e[k] for k in ("consultation_id", "stream_id", "received_at_ms", "payload_end", "payload"))
            checked, reads, sizes, deadline = 0, 0, set(), time.time() + 90
            print("READY", flush=True)
            while checked < total and time.time() < deadline:
                for d in (cid, sid, rat, pend, pay):
                    d.refresh()
                n = min(len(cid), len(sid), len(rat), len(pend))
                size = len(pay)
                while n > 0 and int(pend[n - 1]) > size:
                    n -= 1
                reads += 1
                sizes.add(n)
                if n > checked:
                    lo = checked
                    ends = pend[lo:n]
                    first = int(pend[lo - 1]) if lo else 0
                    data = pay[first:int(ends[-1])].tobytes()
                    s, c, t = sid[lo:n], cid[lo:n], rat[lo:n]
                    prev = first
                    for j in range(n - lo):
                        i, end = lo + j, int(ends[j])
                        got = data[prev - first:end - first]
                        assert got == payload(i), ("payload", i, got[:60], payload(i)[:60])
                        assert s[j].decode("ascii") == stream_id(i), ("stream_id", i, s[j])
                        assert c[j].decode("utf-8") == consultation_id(i), ("consultation_id", i, c[j])
                        assert int(t[j]) == i, ("received_at_ms", i, t[j])
                        prev = end
                    checked = n
                else:
                    time.sleep(0.001)
            print(f"checked={checked} reads={reads} distinct_sizes={len(sizes)}", flush=True)
            assert checked == total, checked
            """
            let scriptPath = dir + "/swmr_reader.py"
            try script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
            let python = try startProcess(pythonPath, [scriptPath, path, "\(total)"], environment: ["HDF5_USE_FILE_LOCKING": "FALSE"])
            // Keep appending (with small pauses) while the reader polls.
            for start in stride(from: 200, to: total, by: 200) {
                try await writer.append(Rows.records(start..<(start + 200)))
                try await Task.sleep(for: .milliseconds(2))
            }
            let result = try await python.wait(timeout: 100)
            try await writer.close()
            #expect(result.status == 0, "h5py SWMR reader failed: \(result.stdout) \(result.stderr)")
            #expect(result.stdout.contains("checked=\(total)"))
            // The reader saw the file grow, not just its final state.
            let sizes = result.stdout.split(separator: " ").first { $0.hasPrefix("distinct_sizes=") }.flatMap { Int($0.dropFirst(15).trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
            #expect(sizes >= 3, "\(result.stdout)")
        }
    }

    /// After a clean close: plain h5py (no SWMR) and `h5dump -H` see the contract's layout.
    @Test func plainH5pyAndH5dumpAfterClose() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/corpus.h5"
            let writer = try await CorpusWriter.open(path: path, logger: quietLogger)
            try await writer.append(Rows.records(0..<300))
            try await writer.append(Rows.records(300..<1000))
            try await writer.close()

            let dump = try await runProcess("/usr/bin/h5dump", ["-H", path], timeout: 30)
            #expect(dump.status == 0, "\(dump.stderr)")
            let header = dump.stdout
            func block(_ name: String) -> String {
                guard let start = header.range(of: "DATASET \"\(name)\"") else { return "" }
                let rest = header[start.upperBound...]
                let end = rest.range(of: "DATASET \"")?.lowerBound ?? rest.endIndex
                return String(rest[..<end])
            }
            let cid = block("consultation_id"), sid = block("stream_id")
            #expect(cid.contains("STRSIZE 128;") && cid.contains("H5T_STR_NULLPAD") && cid.contains("H5T_CSET_UTF8"), "\(cid)")
            #expect(sid.contains("STRSIZE 41;") && sid.contains("H5T_STR_NULLPAD") && sid.contains("H5T_CSET_ASCII"), "\(sid)")
            #expect(block("received_at_ms").contains("H5T_STD_I64LE"))
            #expect(block("payload_end").contains("H5T_STD_U64LE"))
            #expect(block("epoch").contains("H5T_STD_U64LE"))
            #expect(block("payload").contains("H5T_STD_U8LE"))
            for name in ["consultation_id", "stream_id", "received_at_ms", "epoch", "payload_end"] {
                #expect(block(name).contains("( 1000 ) / ( H5S_UNLIMITED )"), "\(name)")
            }
            #expect(header.contains("GROUP \"events\""))

            // Superblock v3 (file format v110, SWMR-capable) and chunked, extendable datasets.
            let superblock = try await runProcess("/usr/bin/h5dump", ["-B", "-H", "-p", path], timeout: 30)
            #expect(superblock.stdout.contains("SUPERBLOCK_VERSION 3"), "\(superblock.stdout.prefix(400))")
            #expect(superblock.stdout.contains("CHUNKED"))

            let script = Rows.python + """
            import sys, h5py
            with h5py.File(sys.argv[1], "r") as f:   # plain, no SWMR
                e = f["events"]
                n = len(e["stream_id"])
                assert all(len(e[k]) == n for k in ("consultation_id", "received_at_ms", "epoch", "payload_end")), "row columns differ"
                assert e["epoch"].dtype == "<u8" and not e["epoch"][:].any(), "a writer without fencing stores epoch 0"
                assert int(e["payload_end"][-1]) == len(e["payload"])
                assert e["consultation_id"].dtype.itemsize == 128 and e["stream_id"].dtype.itemsize == 41
                ends = e["payload_end"][:]
                blob = e["payload"][:].tobytes()
                for i in range(n):
                    start = int(ends[i - 1]) if i else 0
                    assert blob[start:int(ends[i])] == payload(i), i
                    assert e["stream_id"][i].decode() == stream_id(i)
                # The one-row recipe from Docs/contract.md §5:
                row = 7
                start, end = int(e["payload_end"][row - 1]), int(e["payload_end"][row])
                assert f["events/payload"][start:end].tobytes().decode() == payload(row).decode()
            print("rows", n)
            """
            let result = try await runPython(script, [path])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("rows 1000"))
        }
    }

    /// The shipped reader: rows, consultation lookup, "after", and the example script.
    @Test func shippedPythonReader() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/corpus.h5"
            let writer = try await CorpusWriter.open(path: path, logger: quietLogger)
            try await writer.append(Rows.records(0..<700))
            // Checked while the writer is still open (SWMR), then after close.
            let script = Rows.python + """
            import sys, fi_corpus
            with fi_corpus.open(sys.argv[1]) as corpus:
                rows = list(corpus)
                assert len(rows) == len(corpus) == 700, len(rows)
                for i, r in enumerate(rows):
                    assert r.payload == payload(i) and r.stream_id == stream_id(i), i
                    assert r.consultation_id == consultation_id(i) and r.received_at_ms == i, i
                assert rows[3].json()["i"] == 3 and rows[3].text().startswith('{"i":3')
                c5 = corpus.by_consultation(consultation_id(5))
                assert [r.received_at_ms for r in c5] == list(range(5, 700, 13)), c5[:2]
                after = corpus.after(stream_id(99), limit=5)
                assert [r.received_at_ms for r in after] == [100, 101, 102, 103, 104]
                assert corpus.row(699).stream_id == stream_id(699)
            print("fi_corpus ok")
            """
            let live = try await runPython(script, [path])
            #expect(live.status == 0, "\(live.stderr)")
            try await writer.close()
            let closed = try await runPython(script, [path])
            #expect(closed.status == 0 && closed.stdout.contains("fi_corpus ok"), "\(closed.stderr)")

            let example = try await runProcess(pythonPath, [repositoryRoot + "/python/example.py", path],
                                               environment: ["PYTHONPATH": repositoryRoot + "/python"], timeout: 60)
            #expect(example.status == 0, "\(example.stderr)")
            #expect(example.stdout.contains("700 events, 13 consultations"), "\(example.stdout)")
        }
    }
}
