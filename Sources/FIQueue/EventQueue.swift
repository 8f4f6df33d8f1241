@_exported import FIStreamID

/// One field of a stream entry. Values are bytes: `event_json` is stored byte for byte.
public struct StreamField: Sendable, Equatable {
    public var name: String
    public var value: [UInt8]

    public init(name: String, value: [UInt8]) {
        self.name = name
        self.value = value
    }

    public init(_ name: String, _ value: String) {
        self.init(name: name, value: Array(value.utf8))
    }
}

/// A stream entry. An entry that was deleted while still pending comes back from a
/// history read (`ownPending: true`) with no fields, as Redis reports it.
public struct StreamEntry: Sendable, Equatable {
    public var id: StreamEntryID
    public var fields: [StreamField]

    public init(id: StreamEntryID, fields: [StreamField]) {
        self.id = id
        self.fields = fields
    }

    /// The value of the first field called `name`.
    public subscript(field name: String) -> [UInt8]? {
        fields.first(where: { $0.name == name })?.value
    }
}

/// An entry taken over by ``EventQueue/autoClaim(_:consumer:on:minIdle:start:count:)``.
public struct ClaimedEntry: Sendable, Equatable {
    public var entry: StreamEntry
    /// How many times the entry has been delivered, this claim included.
    public var deliveryCount: Int

    public init(entry: StreamEntry, deliveryCount: Int) {
        self.entry = entry
        self.deliveryCount = deliveryCount
    }
}

/// The result of one claim scan.
public struct ClaimResult: Sendable, Equatable {
    public var entries: [ClaimedEntry]
    /// Pending ids whose entries no longer exist; they were removed from the pending list.
    public var deletedIDs: [StreamEntryID]
    /// Where the next scan should start; `nil` when the scan reached the end of the pending list.
    public var nextStart: StreamEntryID?

    public init(entries: [ClaimedEntry], deletedIDs: [StreamEntryID], nextStart: StreamEntryID?) {
        self.entries = entries
        self.deletedIDs = deletedIDs
        self.nextStart = nextStart
    }
}

/// The pending (delivered, not acknowledged) entries of a consumer group.
public struct PendingSummary: Sendable, Equatable {
    public var count: Int
    public var lowest: StreamEntryID?
    public var highest: StreamEntryID?
    /// Pending entries per consumer; consumers with none are not listed.
    public var consumers: [String: Int]

    public init(count: Int, lowest: StreamEntryID?, highest: StreamEntryID?, consumers: [String: Int]) {
        self.count = count
        self.lowest = lowest
        self.highest = highest
        self.consumers = consumers
    }
}

/// A queue with Redis Streams semantics: append-only streams, consumer groups,
/// per-consumer pending lists, claims of idle entries, and partition leases.
///
/// Implemented by ``InMemoryEventQueue`` and ``RedisEventQueue``; both pass the same
/// conformance suite. Every failure is an ``EventQueueError``.
public protocol EventQueue: Sendable {
    /// Appends an entry (`XADD stream * …`) and returns its id.
    /// - Throws: `.invalidArgument` for no fields, `.wrongType` if the key is not a stream,
    ///   `.unknownResult` if the command was sent but the reply was lost.
    func append(to stream: String, fields: [StreamField]) async throws -> StreamEntryID

    /// Creates a consumer group that starts at the beginning of the stream, creating the
    /// stream if missing. Creating an existing group succeeds and changes nothing.
    func createGroup(_ group: String, on stream: String) async throws

    /// Reads up to `count` entries for `consumer`.
    /// - Parameters:
    ///   - block: wait up to this long for new entries; `nil` (or zero) returns at once.
    ///   - ownPending: read this consumer's pending history instead of new entries (never blocks).
    /// - Throws: `.noGroup` if the stream or group does not exist.
    func readGroup(_ group: String, consumer: String, from stream: String, count: Int, block: Duration?, ownPending: Bool) async throws -> [StreamEntry]

    /// Acknowledges entries; returns how many were pending.
    func ack(_ group: String, on stream: String, ids: [StreamEntryID]) async throws -> Int

    /// Claims entries idle for at least `minIdle` (XAUTOCLAIM), with their delivery counts.
    func autoClaim(_ group: String, consumer: String, on stream: String, minIdle: Duration, start: StreamEntryID, count: Int) async throws -> ClaimResult

    /// The group's pending entries.
    func pending(_ group: String, on stream: String) async throws -> PendingSummary

    /// How long the oldest (lowest id) pending entry has been idle; `nil` when none is pending.
    func oldestPendingIdle(_ group: String, on stream: String) async throws -> Duration?

    /// The number of entries in the stream; 0 if it does not exist.
    func length(of stream: String) async throws -> Int

    /// Deletes entries (XDEL). Only for entries already acknowledged and persisted.
    func delete(from stream: String, ids: [StreamEntryID]) async throws -> Int

    /// Deletes every entry with an id up to and including `id` (`XTRIM stream MINID <id + 1>`, exact);
    /// returns how many were deleted. Cheaper than ``delete(from:ids:)`` for a consumer that has
    /// persisted everything up to `id` in order; never use it past what is persisted.
    func trim(_ stream: String, through id: StreamEntryID) async throws -> Int

    /// Up to `count` entries with ids above `after` (from the first when `nil`), in id order (`XRANGE`).
    func range(_ stream: String, after: StreamEntryID?, count: Int) async throws -> [StreamEntry]

    /// Appends an entry once per `token`: atomically, unless the hash `ledger` already maps
    /// `token` to an entry id, appends (`XADD stream * …`) and records `token` → the new id.
    /// Retrying it is always safe. In a Redis Cluster `ledger` must hash to `stream`'s slot:
    /// name it `{<stream>}:<suffix>`.
    /// - Returns: The entry's id, and whether this call appended it.
    func appendOnce(to stream: String, fields: [StreamField], token: String, ledger: String) async throws -> (id: StreamEntryID, appended: Bool)

    /// Every token → entry id recorded in `ledger` by ``appendOnce(to:fields:token:ledger:)``.
    func ledger(_ ledger: String) async throws -> [String: StreamEntryID]

    /// The names of the streams whose names start with `prefix` (every master in a cluster), sorted.
    func streams(withPrefix prefix: String) async throws -> [String]

    /// Checks the queue is reachable.
    func ping() async throws

    /// Takes a lease (`SET key owner NX PX ttl`); `true` also if `owner` already holds it, then extended.
    func acquireLease(_ key: String, owner: String, ttl: Duration) async throws -> Bool
    /// Takes a fencing lease: as ``acquireLease(_:owner:ttl:)``, and each time the lease is newly
    /// taken (not when `owner` already held it) the counter `epochKey` is incremented in the same
    /// atomic step. The counter never expires and never goes down, so a later holder of the lease
    /// always has a higher epoch than every earlier one: the fencing token a holder passes to what
    /// it writes. In a Redis Cluster `epochKey` must hash to `key`'s slot (``fencingEpochKey(for:)``).
    /// - Returns: The lease epoch if `owner` holds the lease now, `nil` if another owner does.
    func acquireLease(_ key: String, owner: String, ttl: Duration, epochKey: String) async throws -> UInt64?
    /// Extends a lease held by `owner`; `false` if it was lost.
    func renewLease(_ key: String, owner: String, ttl: Duration) async throws -> Bool
    /// Releases a lease held by `owner`; `false` if it was not held by `owner`.
    func releaseLease(_ key: String, owner: String) async throws -> Bool
    /// The live leases whose keys start with `prefix`, as key → owner (SCAN … TYPE string on every master, then GET).
    func leaseOwners(withPrefix prefix: String) async throws -> [String: String]

    /// Releases connections and threads. Later calls fail with `.unavailable`.
    func close() async
}

/// The epoch counter of the fencing lease `key`, in `key`'s cluster slot: `{<key>}:epoch` for a
/// key without a hash tag, `<key>:epoch` for one with a tag. (A key with braces but no hash tag,
/// such as `a{}b`, has no such name; FI Scale's lease keys have no braces.)
public func fencingEpochKey(for key: String) -> String {
    if let open = key.firstIndex(of: "{"), let close = key[key.index(after: open)...].firstIndex(of: "}"), close > key.index(after: open) {
        return key + ":epoch"
    }
    return "{" + key + "}:epoch"
}

extension EventQueue {
    /// Reads new entries for `consumer`, without blocking unless `block` is given.
    public func readGroup(_ group: String, consumer: String, from stream: String, count: Int, block: Duration? = nil) async throws -> [StreamEntry] {
        try await readGroup(group, consumer: consumer, from: stream, count: count, block: block, ownPending: false)
    }
}

/// A queue failure: a ``Code`` to branch on, a message for people, and the cause.
public struct EventQueueError: Error, CustomStringConvertible {
    /// What kind of failure. A struct so that new codes are not a breaking change.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case unavailable, timeout, `protocol`, wrongType, invalidArgument, unknownResult, notReplicated, redirectLimit, server, noGroup
        }
        private var base: Base
        private init(_ base: Base) { self.base = base }

        /// The server cannot be reached (connection refused or lost before sending, backing off, closed).
        public static var unavailable: Code { Code(.unavailable) }
        /// No reply within the command timeout (for a read or other command safe to repeat).
        public static var timeout: Code { Code(.timeout) }
        /// The server's reply was not what the command returns.
        public static var `protocol`: Code { Code(.protocol) }
        /// The key holds a value of another type (`WRONGTYPE`).
        public static var wrongType: Code { Code(.wrongType) }
        /// The arguments were rejected before anything was sent (or by the server as invalid).
        public static var invalidArgument: Code { Code(.invalidArgument) }
        /// A command that changes data was sent and its reply was lost: it may or may not have been applied.
        public static var unknownResult: Code { Code(.unknownResult) }
        /// The command was applied on the master, but fewer replicas than asked for
        /// (``RedisEventQueue/Options/minReplicas``) acknowledged it in time: a failover may still lose it.
        public static var notReplicated: Code { Code(.notReplicated) }
        /// Too many cluster redirects (MOVED/ASK/TRYAGAIN) for one command.
        public static var redirectLimit: Code { Code(.redirectLimit) }
        /// Any other error reply from the server.
        public static var server: Code { Code(.server) }
        /// The stream or consumer group does not exist (`NOGROUP`).
        public static var noGroup: Code { Code(.noGroup) }

        public var description: String { base.rawValue }
    }

    public var code: Code
    public var message: String
    public var underlying: (any Error)?
    public var file: String
    public var line: Int

    public init(_ code: Code, _ message: String, underlying: (any Error)? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.underlying = underlying
        self.file = file
        self.line = line
    }

    public var description: String {
        var text = "EventQueueError(\(code)): \(message)"
        if let underlying { text += " (underlying: \(underlying))" }
        return text
    }
}

/// Argument checks shared by the backends, so both reject the same input the same way.
enum Validate {
    static func key(_ name: String, _ what: String, file: String = #fileID, line: Int = #line) throws {
        if name.isEmpty { throw EventQueueError(.invalidArgument, "\(what) must not be empty", file: file, line: line) }
    }

    static func fields(_ fields: [StreamField]) throws {
        if fields.isEmpty { throw EventQueueError(.invalidArgument, "a stream entry needs at least one field") }
    }

    static func count(_ count: Int) throws {
        if count < 1 { throw EventQueueError(.invalidArgument, "count must be at least 1, got \(count)") }
    }

    static func ttl(_ ttl: Duration) throws -> Int64 {
        let ms = ttl.milliseconds
        if ms < 1 { throw EventQueueError(.invalidArgument, "lease ttl must be at least 1 ms") }
        return ms
    }

    static func minIdle(_ d: Duration) throws -> Int64 {
        if d < .zero { throw EventQueueError(.invalidArgument, "minIdle must not be negative") }
        return d.milliseconds
    }
}

extension Duration {
    /// Whole milliseconds, rounded down.
    var milliseconds: Int64 {
        let c = components
        return c.seconds * 1000 + c.attoseconds / 1_000_000_000_000_000
    }
}
