internal import CHiredis

/// A reply from Redis.
enum RESPValue: Sendable, Equatable {
    case bulk([UInt8])
    case simple(String)
    case error(String)
    case integer(Int64)
    case null
    case array([RESPValue])
    /// An XREADGROUP/XREAD reply decoded straight from the flat buffer (``ReplyShape/streamEntries``).
    case entries([StreamEntry])

    var string: String? {
        switch self {
        case .bulk(let b): return String(decoding: b, as: UTF8.self)
        case .simple(let s): return s
        default: return nil
        }
    }

    var bytes: [UInt8]? {
        switch self {
        case .bulk(let b): return b
        case .simple(let s): return Array(s.utf8)
        default: return nil
        }
    }

    var int: Int64? {
        switch self {
        case .integer(let i): return i
        case .bulk, .simple: return string.flatMap { Int64($0) }
        default: return nil
        }
    }

    var array: [RESPValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    var errorText: String? {
        if case .error(let e) = self { return e }
        return nil
    }
}

/// How to turn a reply into a ``RESPValue``.
enum ReplyShape: Sendable {
    /// The generic tree.
    case generic
    /// An XREADGROUP reply: `[[stream, [[id, [field, value, …] | nil], …]], …]` → `.entries`, or nil.
    case streamEntries
}

/// The reply decoder of the Redis backend: hiredis' reader (`redisReaderCreate` / `redisReaderFeed`
/// / `redisReaderGetReply`) parses RESP fed from the channel, building each reply with CHiredis' flat
/// builder into one reusable buffer, which ``FlatReply`` walks into a ``RESPValue``.
///
/// Pure parsing, no I/O: the channel handler calls it on its event loop; tests and the reply fuzzer
/// (`Fuzz/Targets/RedisReplyFuzz.swift`) feed it raw bytes.
final class RedisReplyDecoder {
    private let reader: UnsafeMutablePointer<redisReader>
    private let flat: UnsafeMutablePointer<CHiredis_Flat>

    init() {
        flat = CHiredis_flatCreate()!
        reader = redisReaderCreate()!
        CHiredis_flatInstall(reader, flat)
        // Keep the read buffer between replies instead of freeing it after every large one.
        reader.pointee.maxbuf = 0
    }

    deinit {
        redisReaderFree(reader)
        CHiredis_flatDestroy(flat)
    }

    enum ReadError: Error, Equatable { case protocolError(String) }

    /// Feeds raw bytes from the server.
    func feed(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { feed($0) }
    }

    /// Feeds bytes read from the channel.
    func feed(_ raw: UnsafeRawBufferPointer) {
        guard let base = raw.baseAddress, raw.count > 0 else { return }
        _ = redisReaderFeed(reader, base.assumingMemoryBound(to: CChar.self), raw.count)
    }

    /// The next complete reply, `nil` if more bytes are needed.
    func next(shape: ReplyShape = .generic) throws(ReadError) -> RESPValue? {
        var token: UnsafeMutableRawPointer?
        if redisReaderGetReply(reader, &token) != CHiredis_OK() {
            let message = withUnsafeBytes(of: reader.pointee.errstr) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            throw .protocolError(message)
        }
        guard token != nil else { return nil }
        return FlatReply.decode(flat.pointee.bytes(), shape: shape)
    }

    /// Forgets a reply buffer grown past `keep` bytes: one huge reply (say, a long XRANGE) should
    /// not pin its memory for good.
    func trim(keeping keep: Int = 8 << 20) {
        CHiredis_flatTrim(flat, keep)
    }
}

/// Reads a reply that hiredis' reader built with CHiredis' flat builder.
///
/// The default hiredis reader allocates a `redisReply` per element and copies
/// every string into it; a batch of 256 stream entries is thousands of small
/// allocations, freed again right after. The flat builder appends every
/// element to one buffer owned by the connection instead, and this walks it
/// once: a 1-byte kind, an 8-byte native-endian value (string length, array
/// count or integer), then a string's bytes. Arrays come before their
/// elements. A malformed buffer (it cannot be, but the walk never trusts it)
/// gives an `.error` value, never a crash.
struct FlatReply {
    private let bytes: UnsafeRawBufferPointer
    private var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    private static let string = UInt8(CHiredis_FLAT_STRING)
    private static let array = UInt8(CHiredis_FLAT_ARRAY)
    private static let integer = UInt8(CHiredis_FLAT_INTEGER)
    private static let null = UInt8(CHiredis_FLAT_NIL)
    private static let status = UInt8(CHiredis_FLAT_STATUS)
    private static let error = UInt8(CHiredis_FLAT_ERROR)
    private static let malformed = RESPValue.error("ERR malformed reply")

    /// The reply as a ``RESPValue`` of the given shape.
    static func decode(_ bytes: UnsafeRawBufferPointer, shape: ReplyShape) -> RESPValue {
        var reader = FlatReply(bytes)
        switch shape {
        case .generic:
            return reader.value(depth: 0)
        case .streamEntries:
            if let entries = reader.streamEntries() { return .entries(entries) }
            var generic = FlatReply(bytes)
            return generic.value(depth: 0)
        }
    }

    private mutating func header() -> (kind: UInt8, value: Int64)? {
        guard bytes.count - offset >= 9 else { return nil }
        let kind = bytes[offset]
        let value = bytes.loadUnaligned(fromByteOffset: offset + 1, as: Int64.self)
        offset += 9
        return (kind, value)
    }

    /// The next `count` bytes (a string's payload).
    private mutating func payload(_ count: Int64) -> UnsafeRawBufferPointer? {
        guard count >= 0, count <= bytes.count - offset else { return nil }
        let start = offset
        offset += Int(count)
        return UnsafeRawBufferPointer(rebasing: bytes[start..<offset])
    }

    /// The next element and everything under it.
    private mutating func value(depth: Int) -> RESPValue {
        guard depth < 16, let (kind, value) = header() else { return Self.malformed }
        switch kind {
        case Self.string:
            guard let raw = payload(value) else { return Self.malformed }
            return .bulk(Array(raw))
        case Self.status:
            guard let raw = payload(value) else { return Self.malformed }
            return .simple(String(decoding: raw, as: UTF8.self))
        case Self.error:
            guard let raw = payload(value) else { return Self.malformed }
            return .error(String(decoding: raw, as: UTF8.self))
        case Self.integer:
            return .integer(value)
        case Self.null:
            return .null
        case Self.array:
            // Each element takes at least 9 bytes: a count larger than what is left is malformed.
            guard value >= 0, value <= (bytes.count - offset) / 9 else { return Self.malformed }
            var out: [RESPValue] = []
            out.reserveCapacity(Int(value))
            for _ in 0..<value {
                let element = self.value(depth: depth + 1)
                if case .error("ERR malformed reply") = element { return element }
                out.append(element)
            }
            return .array(out)
        default:
            return Self.malformed
        }
    }

    /// An XREADGROUP/XREAD reply, `[[stream, [[id, [field, value, …] | nil], …]], …]`,
    /// decoded straight into entries; `nil` if the reply has any other shape.
    private mutating func streamEntries() -> [StreamEntry]? {
        guard let (kind, streams) = header(), kind == Self.array, streams >= 0 else { return nil }
        var out: [StreamEntry] = []
        for _ in 0..<streams {
            guard let (pairKind, pairCount) = header(), pairKind == Self.array, pairCount == 2,
                  let (nameKind, nameLength) = header(), nameKind == Self.string, payload(nameLength) != nil,
                  let (listKind, count) = header(), listKind == Self.array, count >= 0, count <= (bytes.count - offset) / 9
            else { return nil }
            out.reserveCapacity(out.count + Int(count))
            for _ in 0..<count {
                guard let (entryKind, entryCount) = header(), entryKind == Self.array, entryCount == 2,
                      let (idKind, idLength) = header(), idKind == Self.string,
                      let idBytes = payload(idLength), let id = StreamEntryID(bytes: idBytes),
                      let (fieldsKind, flatCount) = header()
                else { return nil }
                var fields: [StreamField] = []
                if fieldsKind == Self.array {
                    guard flatCount >= 0, flatCount % 2 == 0, flatCount <= (bytes.count - offset) / 9 else { return nil }
                    fields.reserveCapacity(Int(flatCount / 2))
                    for _ in 0..<(flatCount / 2) {
                        guard let (k1, nameCount) = header(), k1 == Self.string, let name = payload(nameCount),
                              let (k2, valueCount) = header(), k2 == Self.string, let value = payload(valueCount)
                        else { return nil }
                        fields.append(StreamField(name: String(decoding: name, as: UTF8.self), value: Array(value)))
                    }
                } else if fieldsKind != Self.null {
                    return nil
                }
                out.append(StreamEntry(id: id, fields: fields))
            }
        }
        return offset == bytes.count ? out : nil
    }
}

extension CHiredis_Flat {
    /// The current reply's bytes (valid until the next reply is read).
    func bytes() -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: buf, count: len)
    }
}
