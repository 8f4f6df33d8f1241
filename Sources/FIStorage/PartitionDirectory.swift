// A partition's corpus directory (Docs/contract.md §5, layout 2; Docs/storage.md
// draws it): segment files, the manifest of closed segments, and the small
// files that coordinate the writer with erasure and readers.
//
//   corpus.h5                   layout 1's single file, read as the first segment
//   segment-<ms>-<seq>.h5       one segment: 20-digit, zero-padded first stream id
//   manifest.json               the closed segments and the partition's high-water mark
//   corpus.h5.lock              the writer's flock (as in layout 1)
//   manifest.lock               flock held while manifest.json or a closed segment changes
//   roll.request                an erasure asks the running writer to close its segment
//   fence                       the highest lease epoch that opened the partition for writing
//   audit.log                   one JSON line per erasure or retention deletion
import Crypto
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// File names inside a partition directory.
enum SegmentName {
    static let legacy = "corpus.h5"
    static let prefix = "segment-"
    static let suffix = ".h5"
    static let manifest = "manifest.json"
    static let manifestTemporary = "manifest.json.tmp"
    static let writerLock = "corpus.h5.lock"
    static let manifestLock = "manifest.lock"
    static let rollRequest = "roll.request"
    static let auditLog = "audit.log"
    static let fence = "fence"
    static let fenceTemporary = "fence.tmp"
    /// A segment's rewrite during an erasure, before it is renamed over the segment.
    static let erasingSuffix = ".erasing"
    static let creatingSuffix = ".creating"

    /// `segment-<ms>-<seq>.h5`, both numbers zero-padded to 20 digits (UInt64's
    /// width), so names sort as the ids they start with.
    static func name(first: StreamEntryID) -> String {
        prefix + pad(first.ms) + "-" + pad(first.seq) + suffix
    }

    private static func pad(_ n: UInt64) -> String {
        let digits = String(n)
        return String(repeating: "0", count: 20 - digits.count) + digits
    }

    /// The first stream id a segment name stands for; `nil` for any other name (including `corpus.h5`).
    static func firstID(_ name: String) -> StreamEntryID? {
        guard name.utf8.count == prefix.utf8.count + 41 + suffix.utf8.count,
              name.hasPrefix(prefix), name.hasSuffix(suffix) else { return nil }
        let middle = name.dropFirst(prefix.count).dropLast(suffix.count)
        let parts = middle.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ $0.count == 20 && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
              let ms = UInt64(parts[0]), let seq = UInt64(parts[1]) else { return nil }
        return StreamEntryID(ms: ms, seq: seq)
    }

    static func isSegment(_ name: String) -> Bool { name == legacy || firstID(name) != nil }

    /// Segment order: `corpus.h5` (layout 1's file, always the oldest) first, then by name.
    static func precedes(_ a: String, _ b: String) -> Bool {
        if a == legacy { return b != legacy }
        if b == legacy { return false }
        return a < b
    }
}

/// What the manifest records of one closed segment.
struct SegmentStats: Codable, Equatable, Sendable {
    var rows: Int
    var firstStreamID: String?
    var lastStreamID: String?
    var payloadBytes: Int
    var fileBytes: Int
    var sha256: String

    enum CodingKeys: String, CodingKey {
        case rows
        case firstStreamID = "first_stream_id"
        case lastStreamID = "last_stream_id"
        case payloadBytes = "payload_bytes"
        case fileBytes = "file_bytes"
        case sha256
    }

    var first: StreamEntryID? { firstStreamID.flatMap(StreamEntryID.init) }
    var last: StreamEntryID? { lastStreamID.flatMap(StreamEntryID.init) }
}

/// One closed segment in the manifest.
struct ManifestSegment: Codable, Equatable, Sendable {
    var file: String
    var stats: SegmentStats
    /// When the writer closed it (Unix ms).
    var closedAtMs: Int64
    /// An erasure's rewrite of this segment, complete and synced as
    /// `<file>.erasing`, about to be (or just) renamed over it. Set only between
    /// the erasure's two manifest commits; the next holder of the manifest lock
    /// finishes the swap.
    var replacement: SegmentStats?

    enum CodingKeys: String, CodingKey {
        case file, replacement
        case closedAtMs = "closed_at_ms"
    }

    init(file: String, stats: SegmentStats, closedAtMs: Int64, replacement: SegmentStats? = nil) {
        self.file = file
        self.stats = stats
        self.closedAtMs = closedAtMs
        self.replacement = replacement
    }

    // The stats are flattened into the entry, so the JSON reads as one object per segment.
    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        file = try container.decode(String.self, forKey: .file)
        closedAtMs = try container.decode(Int64.self, forKey: .closedAtMs)
        replacement = try container.decodeIfPresent(SegmentStats.self, forKey: .replacement)
        stats = try SegmentStats(from: decoder)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(file, forKey: .file)
        try container.encode(closedAtMs, forKey: .closedAtMs)
        try container.encodeIfPresent(replacement, forKey: .replacement)
        try stats.encode(to: encoder)
    }
}

/// `manifest.json`: the closed segments, oldest first, and the high-water mark.
struct Manifest: Codable, Equatable, Sendable {
    /// The layout version of Docs/contract.md §5.
    var layout = 2
    /// The highest stream id the partition has ever stored, including rows an
    /// erasure removed since: the writer never stores an id at or below it again.
    var highWater: String?
    var segments: [ManifestSegment] = []
    /// Segments taken out of `segments` (retention, or an erasure that left
    /// none of its rows) whose files may still exist: removed by the next
    /// holder of the manifest lock. Never read as segments.
    var deleting: [String] = []

    enum CodingKeys: String, CodingKey {
        case layout, segments, deleting
        case highWater = "high_water"
    }

    var highWaterID: StreamEntryID? { highWater.flatMap(StreamEntryID.init) }

    mutating func raiseHighWater(to id: StreamEntryID?) {
        guard let id else { return }
        if let current = highWaterID, current >= id { return }
        highWater = id.description
    }

    func entry(_ file: String) -> ManifestSegment? { segments.first { $0.file == file } }
}

/// A partition directory: paths, the manifest, listing, repair.
struct PartitionDirectory: Sendable {
    let path: String

    init(_ path: String) { self.path = path }

    func file(_ name: String) -> String { path.hasSuffix("/") ? path + name : path + "/" + name }

    // MARK: manifest

    /// The manifest, or `nil` when there is none yet (no segment was ever closed).
    /// - Throws: `.corrupt` if it exists but cannot be read as one.
    func readManifest() throws -> Manifest? {
        let url = URL(fileURLWithPath: file(SegmentName.manifest))
        guard let data = try POSIX.readFile(url.path) else { return nil }
        do {
            let manifest = try JSONDecoder().decode(Manifest.self, from: data)
            guard manifest.layout == 2 else {
                throw StorageError(code: .corrupt, message: "\(url.path) has layout \(manifest.layout); this build reads layout 2 (Docs/contract.md §5)")
            }
            return manifest
        } catch let error as StorageError {
            throw error
        } catch {
            throw StorageError(code: .corrupt, message: "\(url.path) is not a readable manifest (Docs/contract.md §5): \(error)")
        }
    }

    /// Replaces the manifest atomically and durably: temporary file, fsync,
    /// rename, directory fsync. The caller holds the manifest lock.
    func commit(_ manifest: Manifest) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data: Data
        do {
            data = try encoder.encode(manifest)
        } catch {
            throw StorageError(code: .io, message: "cannot encode the manifest of \(path): \(error)")
        }
        let temporary = file(SegmentName.manifestTemporary)
        try POSIX.writeSynced(Array(data) + [10], to: temporary)
        FaultInjection.reach("manifest.temp-written")
        try POSIX.rename(temporary, file(SegmentName.manifest))
        FaultInjection.reach("manifest.renamed")
        try POSIX.fsync(path: path, directory: true)
    }

    /// Takes the manifest lock, waiting up to `wait`.
    /// - Throws: `.locked` if another process (an erasure, a writer recording a segment) holds it longer.
    func lockManifest(wait: Duration) throws -> FileLock {
        try FileLock(path: file(SegmentName.manifestLock), wait: wait, holder: "another process changing this partition's segments",
                     purpose: "try again when it is done")
    }

    /// Takes the partition's writer lock (`corpus.h5.lock`) without waiting.
    func lockWriter() throws -> FileLock {
        try FileLock(path: file(SegmentName.writerLock))
    }

    // MARK: fence

    /// The fence: the highest lease epoch that has opened the partition for
    /// writing (`nil` when no fencing writer ever has). One small read of the
    /// file, opened by name each time: the fence is replaced by rename, and on
    /// NFS an open revalidates what the client cached.
    /// - Throws: `.io`, or `.corrupt` if the file holds no decimal epoch.
    func readFence() throws -> UInt64? {
        let path = file(SegmentName.fence)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw StorageError(code: .io, message: "open \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 32)
        var n: Int
        repeat {
            n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, 0) }
        } while n < 0 && errno == EINTR
        guard n >= 0 else { throw StorageError(code: .io, message: "read \(path): \(String(cString: strerror(errno)))") }
        let text = String(decoding: buffer.prefix(n), as: UTF8.self)
        guard text.hasSuffix("\n"), let epoch = UInt64(text.dropLast()) else {
            throw StorageError(code: .corrupt, message: "\(path) holds \(text.debugDescription), not a decimal epoch and a newline (Docs/contract.md §5)")
        }
        return epoch
    }

    /// Replaces the fence with `epoch`, atomically and durably: `fence.tmp`
    /// written and synced, renamed over `fence`, directory synced.
    func writeFence(_ epoch: UInt64) throws {
        let temporary = file(SegmentName.fenceTemporary)
        try POSIX.writeSynced(Array("\(epoch)\n".utf8), to: temporary)
        try POSIX.rename(temporary, file(SegmentName.fence))
        try POSIX.fsync(path: path, directory: true)
    }

    /// What a writer of lease `epoch` does when it opens the partition, before
    /// it writes anything: if the fence, or the epoch of the newest stored row,
    /// is higher than `epoch`, a newer lease has taken the partition — throw
    /// `.fenced`; otherwise raise the fence to `epoch` (if it is not there yet).
    /// The caller holds the writer lock (and the manifest lock when it is free).
    func takeFence(epoch: UInt64, logger: Logger) throws {
        let fence = try readFence()
        if let fence, fence > epoch {
            throw StorageError(code: .fenced, message: "\(file(SegmentName.fence)) holds epoch \(fence), above this writer's \(epoch): a newer lease has taken the partition; nothing was written")
        }
        if let newest = try newestRowEpoch(logger: logger), newest > epoch {
            throw StorageError(code: .fenced, message: "the newest row of \(path) was written by epoch \(newest), above this writer's \(epoch): a newer lease has written the partition; nothing was written")
        }
        if fence != epoch {
            try writeFence(epoch)
            logger.debug("corpus fence raised", metadata: ["fi.corpus.fence": "\(epoch)", "fi.corpus.previous_fence": "\(fence.map(String.init) ?? "-")"])
        }
    }

    /// The epoch of the partition's newest stored row (0 if its file has no
    /// `epoch` column), or `nil` without rows: the newest segment with rows,
    /// read by the readers' rule without indexing it.
    func newestRowEpoch(logger: Logger) throws -> UInt64? {
        for name in try snapshot().ordered.reversed() {
            let core: ReaderCore
            do {
                core = try ReaderCore(path: file(name), logger: logger, indexing: false)
            } catch let error as StorageError where error.code == .io && POSIX.identity(file(name)) == nil {
                continue  // gone since the listing (retention)
            }
            defer { try? core.close() }
            if let epoch = try core.lastEpoch() { return epoch }
        }
        return nil
    }

    // MARK: listing

    /// Segment file names present now, in segment order.
    func segmentFiles() throws -> [String] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: path)
        } catch {
            if !FileManager.default.fileExists(atPath: path) { return [] }
            throw StorageError(code: .io, message: "cannot list \(path): \(error.localizedDescription)")
        }
        return names.filter(SegmentName.isSegment).sorted(by: SegmentName.precedes)
    }

    /// The partition as files and manifest say now.
    func snapshot() throws -> PartitionSnapshot {
        let manifest = try readManifest()
        let files = try segmentFiles()
        return PartitionSnapshot(manifest: manifest ?? Manifest(), hasManifest: manifest != nil, files: files)
    }

    // MARK: repair

    /// Finishes what a crash interrupted. The caller holds the manifest lock.
    ///
    /// - an erasure's replacement recorded in the manifest: its rename is
    ///   completed (or found done) and the entry takes the replacement's figures;
    /// - segments listed under `deleting`: their files are removed;
    /// - leftovers of an unrecorded rewrite (`*.erasing`) and of a manifest
    ///   write (`manifest.json.tmp`) are removed.
    /// - Returns: the manifest as repaired (`nil` if there is none).
    @discardableResult
    func repair(logger: Logger) throws -> Manifest? {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        for name in names where name.hasSuffix(SegmentName.erasingSuffix) || name.hasSuffix(SegmentName.erasingSuffix + SegmentName.creatingSuffix)
            || name == SegmentName.manifestTemporary {
            let replacing = name.hasSuffix(SegmentName.erasingSuffix) ? String(name.dropLast(SegmentName.erasingSuffix.count)) : nil
            if let replacing, let manifest = try readManifest(), manifest.entry(replacing)?.replacement != nil { continue }
            try POSIX.unlinkIfPresent(file(name))
            logger.debug("corpus repair: removed a leftover file", metadata: ["fi.corpus.file": "\(name)"])
        }
        guard var manifest = try readManifest() else { return nil }
        var changed = false
        var emptied: [String] = []
        for index in manifest.segments.indices {
            guard let replacement = manifest.segments[index].replacement else { continue }
            let name = manifest.segments[index].file
            let rewritten = file(name + SegmentName.erasingSuffix)
            if FileManager.default.fileExists(atPath: rewritten) {
                try POSIX.rename(rewritten, file(name))
                try POSIX.fsync(path: path, directory: true)
            }
            manifest.segments[index].stats = replacement
            manifest.segments[index].replacement = nil
            if replacement.rows == 0 { emptied.append(name) }
            changed = true
            logger.debug("corpus repair: finished an interrupted erasure", metadata: ["fi.corpus.file": "\(name)"])
        }
        // An erasure that left a segment without rows drops it.
        manifest.segments.removeAll { emptied.contains($0.file) }
        manifest.deleting += emptied
        if changed { try commit(manifest) }
        if !manifest.deleting.isEmpty {
            try removeDeleted(&manifest, logger: logger)
        }
        return manifest
    }

    /// Removes the files listed under `deleting`, then records that they are gone.
    func removeDeleted(_ manifest: inout Manifest, logger: Logger) throws {
        guard !manifest.deleting.isEmpty else { return }
        for name in manifest.deleting {
            try POSIX.unlinkIfPresent(file(name))
            logger.debug("corpus: segment file removed", metadata: ["fi.corpus.file": "\(name)"])
        }
        try POSIX.fsync(path: path, directory: true)
        manifest.deleting = []
        try commit(manifest)
    }

    // MARK: audit

    /// Appends one JSON line to `audit.log` (fsynced). Never holds event data.
    func audit(_ fields: [String: any Sendable], nowMs: Int64) throws {
        var record = fields
        record["at_ms"] = nowMs
        record["at"] = Self.isoTime(nowMs)
        let data = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys, .withoutEscapingSlashes])
        try POSIX.appendLineSynced(String(decoding: data, as: UTF8.self), to: file(SegmentName.auditLog))
    }

    static func isoTime(_ ms: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
    }
}

/// The manifest and the segment files, read at one moment.
struct PartitionSnapshot: Sendable {
    var manifest: Manifest
    var hasManifest: Bool
    /// Every segment file present, in segment order.
    var files: [String]

    /// Closed segments, in order, that exist on disk.
    var closed: [ManifestSegment] { manifest.segments.filter { files.contains($0.file) } }

    /// Segment files the manifest does not list (and is not deleting): the
    /// segment being written, and any closed just before a crash or still
    /// waiting to be recorded. In segment order.
    var unlisted: [String] {
        let listed = Set(manifest.segments.map(\.file)).union(manifest.deleting)
        return files.filter { !listed.contains($0) }
    }

    /// Every readable segment in order: the closed ones, then the unlisted.
    var ordered: [String] {
        let skip = Set(manifest.deleting)
        return files.filter { !skip.contains($0) }
    }
}

/// SHA-256 and size of a file, read in 1 MiB blocks.
enum FileChecksum {
    static func sha256(_ path: String) throws -> (hex: String, bytes: Int) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw StorageError(code: .io, message: "open \(path) to checksum it: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var hasher = SHA256()
        let block = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: block, alignment: 16)
        defer { buffer.deallocate() }
        var total = 0
        while true {
            let n = read(fd, buffer.baseAddress!, block)
            if n < 0 {
                if errno == EINTR { continue }
                throw StorageError(code: .io, message: "read \(path) to checksum it: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            total += n
        }
        let hex = hasher.finalize().map { String(format: "%02x", $0) }.joined()
        return (hex, total)
    }
}
