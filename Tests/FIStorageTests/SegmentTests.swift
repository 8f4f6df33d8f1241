import FILocking
import FIStorage
import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Segment files of a partition directory, in segment order (corpus.h5 first).
func segmentFiles(_ directory: String) -> [String] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    let segments = names.filter { $0 == "corpus.h5" || ($0.hasPrefix("segment-") && $0.hasSuffix(".h5")) }
    return segments.sorted { a, b in a == "corpus.h5" ? b != "corpus.h5" : (b == "corpus.h5" ? false : a < b) }
}

/// `manifest.json` as JSON.
func manifestJSON(_ directory: String) throws -> [String: Any] {
    let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/manifest.json"))
    return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
}

func manifestSegments(_ directory: String) throws -> [[String: Any]] {
    try #require(try manifestJSON(directory)["segments"] as? [[String: Any]])
}

/// The expected name of a segment starting at `id`.
func segmentName(_ id: StreamEntryID) -> String {
    func pad(_ n: UInt64) -> String { String(repeating: "0", count: 20 - String(n).count) + String(n) }
    return "segment-\(pad(id.ms))-\(pad(id.seq)).h5"
}

func sha256(ofFile path: String) async throws -> String {
    let result = try await runProcess("/usr/bin/sha256sum", [path])
    return String(result.stdout.prefix(64))
}

/// A clock the test moves by hand.
final class FakeClock: Sendable {
    private let now: Locked<Int64>
    init(_ start: Int64) { now = Locked(start) }
    var ms: Int64 { now.withLock { $0 } }
    func set(_ value: Int64) { now.withLock { $0 = value } }
    func advance(_ duration: Duration) { now.withLock { $0 += duration.components.seconds * 1000 } }
    var clock: CorpusClock { CorpusClock { self.ms } }
}

/// What a writer's events callback saw.
final class EventLog: Sendable {
    private let events = Locked<[CorpusEvent]>([])
    var all: [CorpusEvent] { events.withLock { $0 } }
    var sink: @Sendable (CorpusEvent) -> Void { { event in self.events.withLock { $0.append(event) } } }
    var closed: [String] {
        var names: [String] = []
        for case .segmentClosed(let file, _, _, _, _) in all { names.append(file) }
        return names
    }
    var deleted: [String] {
        var names: [String] = []
        for case .segmentsDeleted(let files, _) in all { names += files }
        return names
    }
}

/// Small chunks, so a segment grows (and rolls) a few kilobytes at a time.
func segmentOptions(maxBytes: Int? = 64 << 10, maxAge: Duration? = nil, retention: Duration? = nil,
                    clock: CorpusClock = .system, events: EventLog? = nil) -> CorpusWriter.Options {
    CorpusWriter.Options(batchChunkRows: 64, payloadChunkBytes: 16 << 10, fsync: false, segmentMaxBytes: maxBytes,
                         segmentMaxAge: maxAge, retention: retention, clock: clock, events: events?.sink)
}

/// Polls `condition` every 10 ms for up to `seconds`.
func waitFor(_ what: String, seconds: Double = 10, _ condition: () async throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(10))
    }
    Issue.record("timed out waiting for \(what)")
}

@Suite("Segments", .serialized)
struct SegmentTests {
    @Test("a directory corpus rolls at --segment-max-bytes: sortable names, a manifest entry per closed segment, rows read across segments")
    func rollsAtSize() async throws {
        try await withTemporaryDirectory { dir in
            let partition = dir + "/site_a"
            let events = EventLog()
            let writer = try await CorpusWriter.open(directory: partition, options: segmentOptions(events: events), logger: quietLogger)
            for batch in 0..<40 {
                try await writer.append(Rows.records((batch * 50)..<((batch + 1) * 50)))
            }
            #expect(writer.rowCount == 2000)
            try await writer.roll()
            let files = segmentFiles(partition)
            #expect(files.count >= 5, "\(files)")
            #expect(events.closed == files, "every segment closed once, in order")

            // The manifest lists every closed segment: name = its first stream id,
            // row counts adding up, ids contiguous, checksum of the file.
            let entries = try manifestSegments(partition)
            #expect(entries.map { $0["file"] as? String } == files)
            var expectedFirst = 0
            for entry in entries {
                let rows = try #require(entry["rows"] as? Int)
                let file = try #require(entry["file"] as? String)
                #expect(file == segmentName(Rows.streamID(expectedFirst)))
                #expect(entry["first_stream_id"] as? String == Rows.streamID(expectedFirst).description)
                #expect(entry["last_stream_id"] as? String == Rows.streamID(expectedFirst + rows - 1).description)
                #expect(entry["sha256"] as? String == (try await sha256(ofFile: partition + "/" + file)))
                let size = try #require(entry["file_bytes"] as? Int)
                #expect(size < (64 << 10) + (40 << 10), "a segment closes at the first batch boundary past the limit: \(size) bytes")
                expectedFirst += rows
            }
            #expect(expectedFirst == 2000)
            #expect(try manifestJSON(partition)["high_water"] as? String == Rows.streamID(1999).description)

            let reader = try await CorpusReader.open(directory: partition, logger: quietLogger)
            #expect(reader.rowCount == 2000)
            #expect(try await reader.records(in: 0..<2000) == Rows.records(0..<2000))
            #expect(try await reader.records(after: Rows.streamID(1234), limit: 500) == Rows.records(1235..<1735))
            #expect(try await reader.records(consultationID: "consultation-5") == Rows.records(0..<2000).filter { $0.consultationID == "consultation-5" })
            try await reader.close()

            // A closed segment is a finished file: stock tools open it, and it is never written again.
            let dump = try await runProcess("/usr/bin/h5dump", ["-H", partition + "/" + files[0]], timeout: 30)
            #expect(dump.status == 0, "\(dump.stderr)")
            let before = try await files.asyncMap { try await sha256(ofFile: partition + "/" + $0) }
            try await writer.append(Rows.records(1990..<2100))
            try await writer.close()
            let again = try await CorpusWriter.open(directory: partition, options: segmentOptions(), logger: quietLogger)
            #expect(again.rowCount == 2100)
            #expect(again.lastStreamID == Rows.streamID(2099))
            #expect(try await again.append(Rows.records(2000..<2200)) == AppendOutcome(appended: 100, skipped: 100))
            try await again.close()
            #expect(try await files.asyncMap { try await sha256(ofFile: partition + "/" + $0) } == before)
        }
    }

    @Test("layout 1's corpus.h5 is read as the first segment, with no migration step, and closes like any other")
    func legacyFileIsTheFirstSegment() async throws {
        try await withTemporaryDirectory { dir in
            let partition = dir + "/partition_1"
            let legacy = try await CorpusWriter.open(path: partition + "/corpus.h5", options: .init(fsync: false), logger: quietLogger)
            try await legacy.append(Rows.records(0..<300))
            try await legacy.close()

            let before = try await CorpusReader.open(directory: partition, logger: quietLogger)
            #expect(try await before.records(in: 0..<1000) == Rows.records(0..<300))
            try await before.close()

            // (Layout 1's file has 8,192-row chunks: 2.5 MB from the first row on.)
            let writer = try await CorpusWriter.open(directory: partition, options: segmentOptions(maxBytes: 8 << 20), logger: quietLogger)
            #expect(writer.rowCount == 300)
            #expect(writer.lastStreamID == Rows.streamID(299))
            #expect(try await writer.append(Rows.records(250..<400)) == AppendOutcome(appended: 100, skipped: 50))
            try await writer.roll()
            for batch in 0..<10 {
                try await writer.append(Rows.records((400 + batch * 100)..<(500 + batch * 100)))
                if batch == 4 { try await writer.roll() }
            }
            try await writer.roll()
            try await writer.close()

            let files = segmentFiles(partition)
            #expect(files.first == "corpus.h5")
            #expect(files.count >= 3, "\(files)")
            let entries = try manifestSegments(partition)
            #expect(entries.first?["file"] as? String == "corpus.h5")
            #expect(entries.first?["rows"] as? Int == 400, "the old file kept growing until its first roll")
            #expect(entries.dropFirst().first?["file"] as? String == segmentName(Rows.streamID(400)))
            let reader = try await CorpusReader.open(directory: partition, logger: quietLogger)
            #expect(try await reader.records(in: 0..<2000) == Rows.records(0..<1400))
            try await reader.close()
        }
    }

    @Test("--segment-max-age closes an idle segment at the next batch boundary (fake clock)")
    func rollsAtAge() async throws {
        try await withTemporaryDirectory { dir in
            let clock = FakeClock(1_800_000_000_000)
            let events = EventLog()
            let writer = try await CorpusWriter.open(
                directory: dir, options: segmentOptions(maxBytes: nil, maxAge: .seconds(3600), clock: clock.clock, events: events), logger: quietLogger)
            try await writer.append(Rows.records(0..<10))
            clock.advance(.seconds(1800))
            try await writer.append(Rows.records(10..<20))
            try await writer.maintain()
            #expect(events.closed.isEmpty)
            clock.advance(.seconds(1900))
            try await writer.maintain()  // what a worker does while its stream is idle
            #expect(events.closed == [segmentName(Rows.streamID(0))])
            try await writer.append(Rows.records(20..<30))
            try await writer.roll()
            try await writer.close()
            #expect(segmentFiles(dir) == [segmentName(Rows.streamID(0)), segmentName(Rows.streamID(20))])
            #expect(try manifestSegments(dir).map { $0["rows"] as? Int } == [20, 10])
        }
    }

    @Test("--retention deletes whole closed segments older than the cut: never the one being written, never one with newer rows (fake clock)")
    func retention() async throws {
        try await withTemporaryDirectory { dir in
            let day: Int64 = 86_400_000
            let t0: Int64 = 1_800_000_000_000
            func rows(_ days: [Int64], from start: Int) -> [CorpusRecord] {
                days.enumerated().map { n, d in
                    CorpusRecord(consultationID: "c-\(start + n)", streamID: StreamEntryID(ms: UInt64(t0 + d * day), seq: UInt64(start + n)),
                                 receivedAtMs: t0 + d * day, payload: Array("{\"day\":\(d)}".utf8))
                }
            }
            let clock = FakeClock(t0)
            let events = EventLog()
            let options = segmentOptions(maxBytes: nil, retention: .seconds(15 * 86_400), clock: clock.clock, events: events)
            let writer = try await CorpusWriter.open(directory: dir, options: options, logger: quietLogger)
            let a = rows([0, 1, 2], from: 0), b = rows([5, 6], from: 3), c = rows([12, 18], from: 5), d = rows([19], from: 7)
            for part in [a, b, c] {
                try await writer.append(part)
                try await writer.roll()
            }
            try await writer.append(d)  // the segment being written
            let files = segmentFiles(dir)
            #expect(files.count == 4)

            clock.set(t0 + 30 * day)  // cut: day 15
            try await writer.maintain()
            try await waitFor("retention") { events.deleted.count == 2 }
            #expect(events.deleted == [files[0], files[1]], "the segments whose newest row is before day 15")
            #expect(segmentFiles(dir) == [files[2], files[3]], "day 12–18 holds a row newer than the cut; day 19 is being written")
            #expect(try manifestSegments(dir).map { $0["file"] as? String } == [files[2]])
            let audit = try String(contentsOfFile: dir + "/audit.log", encoding: .utf8)
            #expect(audit.contains("\"event\":\"retention\"") && audit.contains(files[0]) && audit.contains(files[1]))
            let reader = try await CorpusReader.open(directory: dir, logger: quietLogger)
            #expect(try await reader.records(in: 0..<100) == c + d)
            try await reader.close()

            // Much later: the closed segment goes, the one being written stays however old.
            clock.set(t0 + 100 * day)
            try await writer.maintain()  // less than a minute (fake) since the last look: nothing yet
            #expect(events.deleted.count == 2)
            clock.set(t0 + 100 * day + 61_000)
            try await writer.maintain()
            try await waitFor("second retention") { events.deleted.count == 3 }
            #expect(segmentFiles(dir) == [files[3]])
            // The watermark survives: rows of deleted segments are not stored again.
            #expect(try await writer.append(a + b + c) == AppendOutcome(appended: 0, skipped: 7))
            try await writer.close()
            let reopened = try await CorpusWriter.open(directory: dir, options: options, logger: quietLogger)
            #expect(reopened.lastStreamID == d.last?.streamID)
            #expect(try await reopened.append(a + b + c + d) == AppendOutcome(appended: 0, skipped: 8))
            try await reopened.close()
        }
    }

    @Test("a reader following a partition crosses segment boundaries without missing or repeating a row")
    func followAcrossRolls() async throws {
        try await withTemporaryDirectory { dir in
            let total = 3000
            let writer = try await CorpusWriter.open(directory: dir, options: segmentOptions(maxBytes: 32 << 10), logger: quietLogger)
            try await writer.append(Rows.records(0..<30))
            let appender = Task {
                for start in stride(from: 30, to: total, by: 30) {
                    try await writer.append(Rows.records(start..<(start + 30)))
                    try await Task.sleep(for: .milliseconds(1))
                }
            }
            let reader = try await CorpusReader.open(directory: dir, logger: quietLogger)
            var seen: [CorpusRecord] = []
            let deadline = Date().addingTimeInterval(60)
            while seen.count < total, Date() < deadline {
                try await reader.refresh()
                let next = try await reader.records(after: seen.last?.streamID, limit: 97)
                if next.isEmpty { try await Task.sleep(for: .milliseconds(2)) }
                seen += next
            }
            try await appender.value
            try await reader.close()
            try await writer.close()
            #expect(seen.count == total)
            #expect(seen == Rows.records(0..<total), "every row once, in order")
            #expect(segmentFiles(dir).count >= 8, "the reader crossed \(segmentFiles(dir).count - 1) boundaries")
        }
    }

    @Test("erasure without a running writer: the consultation's rows are gone, others intact, the manifest and audit log updated, a redelivery is skipped")
    func erasure() async throws {
        try await withTemporaryDirectory { dir in
            // consultation-3's rows in every segment, including the newest rows (still in the segment being written).
            var rows = Rows.records(0..<1200)
            rows.append(CorpusRecord(consultationID: "consultation-3", streamID: Rows.streamID(1200), receivedAtMs: 1, payload: Array("{}".utf8)))
            let writer = try await CorpusWriter.open(directory: dir, options: segmentOptions(), logger: quietLogger)
            for start in stride(from: 0, to: rows.count, by: 100) { try await writer.append(Array(rows[start..<min(rows.count, start + 100)])) }
            try await writer.close()
            let erased = rows.filter { $0.consultationID == "consultation-3" }
            let kept = rows.filter { $0.consultationID != "consultation-3" }
            let before = segmentFiles(dir)

            let report = try await CorpusMaintenance.erase(consultationID: "consultation-3", directory: dir, logger: quietLogger)
            #expect(report.rowsRemoved == erased.count)
            #expect(report.roll == "by this process")
            #expect(report.segments.map(\.file) == before, "every segment held some of its rows")
            #expect(segmentFiles(dir) == report.segments.filter { $0.rowsLeft > 0 }.map(\.file), "a segment left without rows is deleted")

            let reader = try await CorpusReader.open(directory: dir, logger: quietLogger)
            #expect(try await reader.records(in: 0..<5000) == kept)
            #expect(try await reader.records(consultationID: "consultation-3").isEmpty)
            #expect(try await reader.records(consultationID: "consultation-4") == kept.filter { $0.consultationID == "consultation-4" })
            try await reader.close()

            let verification = try await CorpusMaintenance.verify(directory: dir, logger: quietLogger)
            #expect(verification.ok, "\(verification.damaged.map(\.problems)) \(verification.problems)")
            for entry in try manifestSegments(dir) {
                let file = try #require(entry["file"] as? String)
                #expect(entry["sha256"] as? String == (try await sha256(ofFile: dir + "/" + file)))
            }
            let audit = try String(contentsOfFile: dir + "/audit.log", encoding: .utf8)
            let lines = audit.split(separator: "\n")
            #expect(lines.count == 2)
            #expect(lines.first?.contains("\"event\":\"erase_started\"") == true)
            #expect(lines.last?.contains("\"event\":\"erase_done\"") == true && lines.last?.contains("\"rows\":\(erased.count)") == true)
            #expect(!audit.contains("consultation-3"), "the audit log names the consultation only by its SHA-256")

            // The newest row was erased, yet the watermark stays: redelivered entries are skipped.
            let again = try await CorpusWriter.open(directory: dir, options: segmentOptions(), logger: quietLogger)
            #expect(again.lastStreamID == Rows.streamID(1200))
            #expect(try await again.append(erased) == AppendOutcome(appended: 0, skipped: erased.count))
            try await again.close()
        }
    }

    @Test("erasure while a writer runs: it is asked to close its segment (roll.request), keeps appending, and never stores an erased row again")
    func erasureWhileWriting() async throws {
        try await withTemporaryDirectory { dir in
            let writer = try await CorpusWriter.open(directory: dir, options: segmentOptions(), logger: quietLogger)
            let rows = Rows.records(0..<800)
            try await writer.append(rows)
            // The worker's idle loop: maintain() between batches.
            let idle = Task {
                while !Task.isCancelled {
                    try await writer.maintain()
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
            let report = try await CorpusMaintenance.erase(consultationID: "consultation-7", directory: dir, logger: quietLogger)
            idle.cancel()
            _ = try? await idle.value
            #expect(report.roll == "by the running writer")
            #expect(report.rowsRemoved == rows.filter { $0.consultationID == "consultation-7" }.count)
            #expect(!FileManager.default.fileExists(atPath: dir + "/roll.request"))

            // The writer goes on in a new segment; the erased rows stay erased.
            #expect(try await writer.append(Rows.records(700..<900)) == AppendOutcome(appended: 100, skipped: 100))
            let reader = try await CorpusReader.open(directory: dir, logger: quietLogger)
            #expect(try await reader.records(in: 0..<2000) == Rows.records(0..<900).filter { $0.streamID > Rows.streamID(799) || $0.consultationID != "consultation-7" })
            try await reader.close()

            // Rows all in closed segments already: no roll needed.
            try await writer.roll()
            let second = try await CorpusMaintenance.erase(consultationID: "consultation-8", directory: dir, logger: quietLogger)
            #expect(second.roll == "none needed")
            #expect(second.rowsRemoved == Rows.records(0..<900).filter { $0.consultationID == "consultation-8" }.count)
            try await writer.close()
        }
    }

    @Test("verify checks every closed segment against the manifest and names the one with a flipped byte")
    func verifyFindsAFlippedByte() async throws {
        try await withTemporaryDirectory { dir in
            let writer = try await CorpusWriter.open(directory: dir, options: segmentOptions(), logger: quietLogger)
            for start in stride(from: 0, to: 1500, by: 100) { try await writer.append(Rows.records(start..<(start + 100))) }
            try await writer.roll()
            try await writer.append(Rows.records(1500..<1510))  // the segment being written is not checked
            let clean = try await CorpusMaintenance.verify(directory: dir, logger: quietLogger)
            #expect(clean.ok)
            #expect(clean.segments.count >= 3)
            #expect(clean.unchecked == [segmentName(Rows.streamID(1500))])

            let victim = clean.segments[1].file
            let path = dir + "/" + victim
            let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
            let size = try handle.seekToEnd()
            try handle.seek(toOffset: size / 2)
            let byte = try #require(try handle.read(upToCount: 1)?.first)
            try handle.seek(toOffset: size / 2)
            try handle.write(contentsOf: [byte ^ 0x01])
            try handle.close()

            let damaged = try await CorpusMaintenance.verify(directory: dir, logger: quietLogger)
            #expect(!damaged.ok)
            #expect(damaged.damaged.map(\.file) == [victim])
            #expect(damaged.damaged.first?.problems.contains { $0.contains("SHA-256") } == true, "\(damaged.damaged)")
            try await writer.close()
        }
    }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for element in self { out.append(try await transform(element)) }
        return out
    }
}
