/// Turning Redis replies into queue values, apart from the I/O so that tests
/// and the reply fuzzer (`Fuzz/Targets/RedisReplyFuzz.swift`) reach them.
/// Anything unexpected throws `.protocol`; nothing here may trap on a reply,
/// whatever the server (or something impersonating it) sends.
enum RedisReplies {
    /// An XREADGROUP reply (after ``ReplyShape/streamEntries`` conversion):
    /// nil, the decoded entries, or the generic `[[stream, [entry, …]], …]` tree.
    static func decodeReadGroup(_ reply: RESPValue) throws -> [StreamEntry] {
        if reply == .null { return [] }
        if case .entries(let entries) = reply { return entries }
        guard let streams = reply.array else { throw EventQueueError(.protocol, "XREADGROUP replied \(reply)") }
        var out: [StreamEntry] = []
        for s in streams {
            guard let pair = s.array, pair.count == 2, let entries = pair[1].array else {
                throw EventQueueError(.protocol, "XREADGROUP replied a malformed stream")
            }
            out.reserveCapacity(entries.count)
            for e in entries { out.append(try decodeEntry(e)) }
        }
        return out
    }

    /// One stream entry: `[id, [field, value, …] | nil]`.
    static func decodeEntry(_ v: RESPValue) throws -> StreamEntry {
        guard let pair = v.array, pair.count == 2, let idBytes = pair[0].bytes, let id = StreamEntryID(bytes: idBytes) else {
            throw EventQueueError(.protocol, "malformed stream entry \(v)")
        }
        var fields: [StreamField] = []
        switch pair[1] {
        case .null:
            break
        case .array(let flat):
            guard flat.count % 2 == 0 else { throw EventQueueError(.protocol, "odd field list in entry \(id)") }
            fields.reserveCapacity(flat.count / 2)
            var i = 0
            while i < flat.count {
                guard let name = flat[i].string, let value = flat[i + 1].bytes else {
                    throw EventQueueError(.protocol, "malformed field in entry \(id)")
                }
                fields.append(StreamField(name: name, value: value))
                i += 2
            }
        default:
            throw EventQueueError(.protocol, "malformed field list in entry \(id)")
        }
        return StreamEntry(id: id, fields: fields)
    }

    /// The claim script's reply: `[cursor, [entry, …], [deleted id, …], [delivery count, …]]`.
    static func decodeClaim(_ reply: RESPValue) throws -> ClaimResult {
        guard let parts = reply.array, parts.count == 4,
              let cursorBytes = parts[0].bytes, let cursor = StreamEntryID(bytes: cursorBytes),
              let entries = parts[1].array, let deleted = parts[2].array, let counts = parts[3].array,
              counts.count == entries.count
        else { throw EventQueueError(.protocol, "claim script replied \(reply)") }
        var claimed: [ClaimedEntry] = []
        for (e, c) in zip(entries, counts) {
            claimed.append(ClaimedEntry(entry: try decodeEntry(e), deliveryCount: Int(c.int ?? 0)))
        }
        let deletedIDs = try deleted.map { v -> StreamEntryID in
            guard let b = v.bytes, let id = StreamEntryID(bytes: b) else { throw EventQueueError(.protocol, "bad deleted id \(v)") }
            return id
        }
        return ClaimResult(entries: claimed, deletedIDs: deletedIDs, nextStart: cursor == .zero ? nil : cursor)
    }

    /// The summary form of XPENDING: `[count, lowest, highest, [[consumer, count], …] | nil]`.
    static func decodePending(_ reply: RESPValue) throws -> PendingSummary {
        guard let parts = reply.array, parts.count == 4, let count = parts[0].int else {
            throw EventQueueError(.protocol, "XPENDING replied \(reply)")
        }
        var consumers: [String: Int] = [:]
        for c in parts[3].array ?? [] {
            guard let pair = c.array, pair.count == 2, let name = pair[0].string, let n = pair[1].int else {
                throw EventQueueError(.protocol, "XPENDING replied a malformed consumer \(c)")
            }
            consumers[name] = Int(n)
        }
        return PendingSummary(
            count: Int(count),
            lowest: parts[1].bytes.flatMap { StreamEntryID(bytes: $0) },
            highest: parts[2].bytes.flatMap { StreamEntryID(bytes: $0) },
            consumers: consumers
        )
    }

    /// The extended form of XPENDING for one entry: `[[id, consumer, idle ms, deliveries]]` or `[]`.
    static func decodeOldestPendingIdle(_ reply: RESPValue) throws -> Duration? {
        guard let rows = reply.array else { throw EventQueueError(.protocol, "XPENDING replied \(reply)") }
        guard let first = rows.first else { return nil }
        guard let row = first.array, row.count == 4, let idle = row[2].int, idle >= 0 else {
            throw EventQueueError(.protocol, "XPENDING replied \(reply)")
        }
        return .milliseconds(idle)
    }

    /// One slot range of CLUSTER SLOTS and the master serving it.
    struct SlotRange: Equatable {
        var slots: ClosedRange<Int>
        var host: String
        var port: Int
    }

    /// CLUSTER SLOTS: `[[first, last, [host, port, …], replicas…], …]`. An
    /// empty or `?` host means the node that answered (`defaultHost`).
    static func decodeSlotRanges(_ reply: RESPValue, defaultHost: String) throws -> [SlotRange] {
        guard let ranges = reply.array, !ranges.isEmpty else {
            throw EventQueueError(.protocol, "CLUSTER SLOTS replied \(reply)")
        }
        return try ranges.map { r in
            guard let parts = r.array, parts.count >= 3,
                  let lo = parts[0].int, let hi = parts[1].int, lo >= 0, hi < ClusterSlot.count, lo <= hi,
                  let master = parts[2].array, master.count >= 2, let port = master[1].int, (1...65_535).contains(port)
            else { throw EventQueueError(.protocol, "CLUSTER SLOTS replied a malformed range \(r)") }
            var host = master[0].string ?? ""
            if host.isEmpty || host == "?" { host = defaultHost }
            return SlotRange(slots: Int(lo)...Int(hi), host: host, port: Int(port))
        }
    }

    /// An error reply as a typed error.
    static func serverError(_ text: String) -> EventQueueError {
        let code: EventQueueError.Code
        if text.hasPrefix("WRONGTYPE") {
            code = .wrongType
        } else if text.hasPrefix("NOGROUP") {
            code = .noGroup
        } else if text.hasPrefix("LOADING") || text.hasPrefix("MASTERDOWN") || text.hasPrefix("CLUSTERDOWN") || text.hasPrefix("TRYAGAIN") {
            code = .unavailable
        } else if text.hasPrefix("ERR Invalid stream ID") || text.hasPrefix("ERR The ID specified") || text.hasPrefix("ERR value is not") || text.hasPrefix("ERR invalid") {
            code = .invalidArgument
        } else {
            code = .server
        }
        return EventQueueError(code, text)
    }
}
