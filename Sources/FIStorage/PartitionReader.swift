import Foundation
import Logging

/// Reads a partition directory (layout 2) as one sequence of rows: the
/// segments in order, each through its own ``ReaderCore``. Touched only on the
/// owning reader's serial queue.
///
/// A segment the manifest lists as closed never changes, so its reader is
/// indexed once and then suspended (file closed, index kept); a lookup
/// resumes it, and at most ``openClosedLimit`` closed segments stay open. The
/// segments not (yet) listed — the one being written, and any closed just now
/// — stay open and are refreshed like a single file.
final class PartitionReaderCore: ReaderEngine, @unchecked Sendable {
    private struct Slot {
        let name: String
        let core: ReaderCore
        /// The file this slot opened (an erasure's rename makes another).
        let identity: FileIdentity?
        /// Listed in the manifest: it will not change.
        var closed: Bool
        var rows: Int
        var first: StreamEntryID?
        var last: StreamEntryID?
    }

    let directory: PartitionDirectory
    let logger: Logger
    private var slots: [Slot] = []
    private var manifestIdentity: FileIdentity?
    private var files: [String] = []
    private var isClosed = false
    /// Closed segments whose files are open now, most recently used first.
    private var openClosed: [String] = []

    /// Closed segments kept open between reads.
    static let openClosedLimit = 4

    init(directory: String, logger: Logger) throws {
        var logger = logger
        logger[metadataKey: "fi.corpus.directory"] = "\(directory)"
        self.directory = PartitionDirectory(directory)
        self.logger = logger
        _ = try refresh()
    }

    var rowCount: Int { slots.reduce(0) { $0 + $1.rows } }

    func idle() {
        for slot in slots { slot.core.idle() }
    }

    func close() throws {
        isClosed = true
        for slot in slots { try? slot.core.close() }
        slots = []
    }

    private func usable() throws {
        if isClosed { throw StorageError(code: .closed, message: "the corpus reader for \(directory.path) is closed") }
    }

    /// Re-reads the segment list when the manifest or the files changed, then
    /// refreshes the segments not yet closed. A segment can vanish between the
    /// listing and its opening (retention, an erasure's rename): then it looks again.
    func refresh() throws -> Int {
        try usable()
        var attempt = 0
        while true {
            do {
                try refreshOnce()
                return rowCount
            } catch let error as StorageError where attempt < 3 && (error.code == .io || error.code == .hdf5) {
                attempt += 1
                manifestIdentity = nil  // look at everything again
                logger.debug("corpus segments changed while reading; looking again", metadata: ["fi.error": "\(error)"])
            }
        }
    }

    private func refreshOnce() throws {
        let manifestNow = POSIX.identity(directory.file(SegmentName.manifest))
        let filesNow = try directory.segmentFiles()
        if manifestNow != manifestIdentity || filesNow != files {
            let manifest = try directory.readManifest() ?? Manifest()
            let listed = Set(manifest.segments.map(\.file))
            let deleting = Set(manifest.deleting)
            var next: [Slot] = []
            var kept = Set<String>()
            for name in filesNow where !deleting.contains(name) {
                let path = directory.file(name)
                let identity = POSIX.identity(path)
                if var slot = slots.first(where: { $0.name == name }),
                   let opened = slot.identity, let now = identity, opened.sameFile(as: now) {
                    if listed.contains(name) && !slot.closed {
                        // Closed since the last look: its final rows, then it stays as it is.
                        slot.rows = try slot.core.refresh()
                        (slot.first, slot.last) = try slot.core.bounds()
                        slot.closed = true
                    }
                    next.append(slot)
                    kept.insert(name)
                } else {
                    guard identity != nil else { continue }  // gone since the listing
                    let core = try ReaderCore(path: path, logger: logger)
                    let (first, last) = try core.bounds()
                    let closed = listed.contains(name)
                    if closed { core.suspend() }
                    next.append(Slot(name: name, core: core, identity: identity, closed: closed, rows: core.rowCount, first: first, last: last))
                }
            }
            for slot in slots where !kept.contains(slot.name) {
                try? slot.core.close()
            }
            openClosed.removeAll { !kept.contains($0) }
            slots = next
            files = filesNow
            manifestIdentity = manifestNow
        }
        for index in slots.indices where !slots[index].closed {
            if slots[index].rows == 0, index == slots.count - 1 {
                // A reader that opened the file while its writer was still setting
                // it up may not follow later appends: open it again each time until it has rows.
                try? slots[index].core.close()
                let path = directory.file(slots[index].name)
                let core = try ReaderCore(path: path, logger: logger)
                let (first, last) = try core.bounds()
                slots[index] = Slot(name: slots[index].name, core: core, identity: POSIX.identity(path), closed: false,
                                    rows: core.rowCount, first: first, last: last)
                continue
            }
            let before = slots[index].rows
            slots[index].rows = try slots[index].core.refresh()
            if slots[index].rows != before || slots[index].last == nil {
                (slots[index].first, slots[index].last) = try slots[index].core.bounds()
            }
        }
    }

    /// After a read of a closed segment: keep it open among the recently used, suspend the least recent.
    private func used(_ index: Int) {
        guard slots[index].closed else { return }
        let name = slots[index].name
        openClosed.removeAll { $0 == name }
        openClosed.insert(name, at: 0)
        while openClosed.count > Self.openClosedLimit {
            let evicted = openClosed.removeLast()
            slots.first { $0.name == evicted }?.core.suspend()
        }
    }

    func records(in range: Range<Int>) throws -> [CorpusRecord] {
        try usable()
        var out: [CorpusRecord] = []
        var offset = 0
        for index in slots.indices {
            let rows = slots[index].rows
            defer { offset += rows }
            let low = max(range.lowerBound, offset), high = min(range.upperBound, offset + rows)
            guard low < high else { continue }
            out += try slots[index].core.records(in: (low - offset)..<(high - offset))
            used(index)
        }
        return out
    }

    func records(after id: StreamEntryID?, limit: Int) throws -> [CorpusRecord] {
        try usable()
        var out: [CorpusRecord] = []
        for index in slots.indices where out.count < limit {
            guard let last = slots[index].last, slots[index].rows > 0 else { continue }
            if let id, last <= id { continue }
            out += try slots[index].core.records(after: id, limit: limit - out.count)
            used(index)
        }
        return out
    }

    func records(consultationID: String) throws -> [CorpusRecord] {
        try usable()
        var out: [CorpusRecord] = []
        for index in slots.indices where slots[index].core.mayHold(consultationID) {
            out += try slots[index].core.records(consultationID: consultationID)
            used(index)
        }
        return out
    }

    /// The segments as this reader sees them now, in order.
    var segments: [(name: String, closed: Bool, rows: Int)] {
        slots.map { ($0.name, $0.closed, $0.rows) }
    }
}
