import FILocking
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An in-process ``EventQueue`` with the semantics of Redis Streams: monotonic ids, consumer
/// groups, per-consumer pending lists with delivery counts and idle times, blocking reads that
/// wake on append, claims and leases. Used by embedded mode and by tests.
///
/// All state sits behind one `Mutex`; blocking readers wait on continuations, never on a thread.
public final class InMemoryEventQueue: EventQueue {
    /// Configuration.
    public struct Options: Sendable {
        /// Wall-clock milliseconds since the Unix epoch; used for ids, idle times and lease expiry.
        public var now: @Sendable () -> UInt64 = InMemoryEventQueue.systemMilliseconds

        public init() {}
    }

    private let options: Options
    private let state = Locked(MemoryState())

    public init(options: Options = .init()) {
        self.options = options
    }

    /// The system's real-time clock in milliseconds.
    @Sendable public static func systemMilliseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
    }

    public func append(to stream: String, fields: [StreamField]) async throws -> StreamEntryID {
        try Validate.key(stream, "stream name")
        try Validate.fields(fields)
        let now = options.now()
        let (id, woken) = try state.withLock { s -> (StreamEntryID, [Waiter]) in
            try s.checkOpen()
            try s.checkNotLease(stream, now: now)
            let id = s.streams[stream, default: StreamState()].append(fields: fields, now: now)
            return (id, s.takeWaiters(for: stream))
        }
        for w in woken { w.continuation.resume(returning: .woken) }
        return id
    }

    public func createGroup(_ group: String, on stream: String) async throws {
        try Validate.key(stream, "stream name")
        try Validate.key(group, "group name")
        let now = options.now()
        try state.withLock { s in
            try s.checkOpen()
            try s.checkNotLease(stream, now: now)
            if s.streams[stream]?.groups[group] != nil { return }
            s.streams[stream, default: StreamState()].groups[group] = GroupState()
        }
    }

    public func readGroup(_ group: String, consumer: String, from stream: String, count: Int, block: Duration?, ownPending: Bool) async throws -> [StreamEntry] {
        try Validate.key(stream, "stream name")
        try Validate.key(group, "group name")
        try Validate.key(consumer, "consumer name")
        try Validate.count(count)
        let clock = ContinuousClock()
        var deadline: ContinuousClock.Instant?
        if let block, block > .zero, !ownPending { deadline = clock.now + block }
        while true {
            let waiterID = state.withLock { s in s.allocateWaiterID() }
            let timer = deadline.map { armTimer(waiterID, deadline: $0) }
            defer { timer?.cancel() }
            let outcome: WaitOutcome = try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (cont: CheckedContinuation<WaitOutcome, any Error>) in
                    let now = options.now()
                    let result: Result<WaitOutcome?, any Error> = state.withLock { s in
                        do {
                            try s.checkOpen()
                            try s.checkNotLease(stream, now: now)
                            let entries = try s.read(group: group, consumer: consumer, stream: stream, count: count, ownPending: ownPending, now: now)
                            // The deadline is checked under the lock the timer takes, so a waiter
                            // is either registered before the timer fires or not at all.
                            let expired = deadline.map { clock.now >= $0 } ?? true
                            if entries.isEmpty && !expired && !Task.isCancelled {
                                s.waiters[waiterID] = Waiter(stream: stream, continuation: cont)
                                return .success(nil)
                            }
                            return .success(.entries(entries))
                        } catch {
                            return .failure(error)
                        }
                    }
                    switch result {
                    case .failure(let error): cont.resume(throwing: error)
                    case .success(let outcome?): cont.resume(returning: outcome)
                    case .success(nil): break
                    }
                }
            } onCancel: {
                self.wake(waiterID, .timedOut)
            }
            switch outcome {
            case .entries(let entries):
                return entries
            case .timedOut:
                // Woken by the timer, cancellation or close: one last non-blocking read.
                return try await readGroup(group, consumer: consumer, from: stream, count: count, block: nil, ownPending: ownPending)
            case .woken:
                continue
            }
        }
    }

    /// Resumes a registered waiter, if it is still waiting.
    private func wake(_ id: Int, _ outcome: WaitOutcome) {
        let waiter = state.withLock { s in s.waiters.removeValue(forKey: id) }
        waiter?.continuation.resume(returning: outcome)
    }

    public func ack(_ group: String, on stream: String, ids: [StreamEntryID]) async throws -> Int {
        try Validate.key(stream, "stream name")
        try Validate.key(group, "group name")
        let now = options.now()
        return try state.withLock { s in
            try s.checkOpen()
            try s.checkNotLease(stream, now: now)
            return s.streams[stream]?.groups[group]?.ack(ids) ?? 0
        }
    }

    public func autoClaim(_ group: String, consumer: String, on stream: String, minIdle: Duration, start: StreamEntryID, count: Int) async throws -> ClaimResult {
        try Validate.key(stream, "stream name")
        try Validate.key(group, "group name")
        try Validate.key(consumer, "consumer name")
        try Validate.count(count)
        let minIdleMs = try Validate.minIdle(minIdle)
        let now = options.now()
        return try state.withLock { s in
            try s.checkOpen()
            try s.checkNotLease(stream, now: now)
            guard var st = s.streams.removeValue(forKey: stream) else { throw MemoryState.noGroup(stream, group) }
            defer { s.streams[stream] = st }
            guard st.groups[group] != nil else { throw MemoryState.noGroup(stream, group) }
            return st.autoClaim(group: group, consumer: consumer, minIdle: minIdleMs, start: start, count: count, now: now)
        }
    }

    public func pending(_ group: String, on stream: String) async throws -> PendingSummary {
        try Validate.key(stream, "stream name")
        try Validate.key(group, "group name")
        let now = options.now()
        return try state.withLock { s in
            try s.checkOpen()
            try s.checkNotLease(stream, now: now)
            guard let g = s.streams[stream]?.groups[group] else { throw MemoryState.noGroup(stream, group) }
            var consumers: [String: Int] = [:]
            for nack in g.pel.values { consumers[nack.consumer, default: 0] += 1 }
            return PendingSummary(count: g.pel.count, lowest: g.pelOrder.first, highest: g.pelOrder.last, consumers: consumers)
        }
    }

    public func oldestPendingIdle(_ group: String, on stream: String) async throws -> Duration? {
        try Validate.key(stream, "stream name")
        try Validate.key(group, "group name")
        let now = options.now()
        return try state.withLock { s in
            try s.checkOpen()
            try s.checkNotLease(stream, now: now)
            guard let g = s.streams[stream]?.groups[group] else { throw MemoryState.noGroup(stream, group) }
            guard let first = g.pelOrder.first, let nack = g.pel[first] else { return nil }
            return .milliseconds(Int64(now) - Int64(nack.deliveryTime))
        }
    }

    public func length(of stream: String) async throws -> Int {
        try Validate.key(stream, "stream name")
        let now = options.now()
        return try state.withLock { s in
            try s.checkOpen()
            try s.checkNotLease(stream, now: now)
            return s.streams[stream]?.entries.count ?? 0
        }
    }

    public func delete(from stream: String, ids: [StreamEntryID]) async throws -> Int {
        try Validate.key(stream, "stream name")
        let now = options.now()
        return try state.withLock { s in
            try s.checkOpen()
            try s.checkNotLease(stream, now: now)
            return s.streams[stream]?.delete(ids) ?? 0
        }
    }

    public func trim(_ stream: String, through id: StreamEntryID) async throws -> Int {
        try Validate.key(stream, "stream name")
        let now = options.now()
        return try state.withLock { s in
            try s.checkOpen()
            try s.checkNotLease(stream, now: now)
            return s.streams[stream]?.trim(through: id) ?? 0
        }
    }

    public func range(_ stream: String, after: StreamEntryID?, count: Int) async throws -> [StreamEntry] {
        try Validate.key(stream, "stream name")
        let now = options.now()
        return try state.withLock { s in
            try s.checkOpen()
            try s.checkNotLease(stream, now: now)
            guard let entries = s.streams[stream]?.entries, count > 0 else { return [] }
            let start = after.map { after in entries.firstIndex { $0.id > after } ?? entries.count } ?? 0
            return Array(entries[start..<min(entries.count, start + count)])
        }
    }

    public func appendOnce(to stream: String, fields: [StreamField], token: String, ledger: String) async throws -> (id: StreamEntryID, appended: Bool) {
        try Validate.key(stream, "stream name")
        try Validate.key(ledger, "ledger name")
        try Validate.fields(fields)
        let now = options.now()
        let (result, woken) = try state.withLock { s -> ((StreamEntryID, Bool), [Waiter]) in
            try s.checkOpen()
            try s.checkNotLease(stream, now: now)
            if let id = s.ledgers[ledger]?[token] { return ((id, false), []) }
            let id = s.streams[stream, default: StreamState()].append(fields: fields, now: now)
            s.ledgers[ledger, default: [:]][token] = id
            return ((id, true), s.takeWaiters(for: stream))
        }
        for w in woken { w.continuation.resume(returning: .woken) }
        return result
    }

    public func ledger(_ ledger: String) async throws -> [String: StreamEntryID] {
        try Validate.key(ledger, "ledger name")
        return try state.withLock { s in
            try s.checkOpen()
            return s.ledgers[ledger] ?? [:]
        }
    }

    public func streams(withPrefix prefix: String) async throws -> [String] {
        try state.withLock { s in
            try s.checkOpen()
            return s.streams.keys.filter { $0.hasPrefix(prefix) }.sorted()
        }
    }

    public func ping() async throws {
        try state.withLock { s in try s.checkOpen() }
    }

    public func acquireLease(_ key: String, owner: String, ttl: Duration) async throws -> Bool {
        try Validate.key(key, "lease key")
        let ttlMs = try Validate.ttl(ttl)
        let now = options.now()
        return try state.withLock { s in
            try s.checkOpen()
            try s.checkNotStream(key)
            if let lease = s.liveLease(key, now: now), lease.owner != owner { return false }
            s.leases[key] = Lease(owner: owner, expiresAt: now + UInt64(ttlMs))
            return true
        }
    }

    public func acquireLease(_ key: String, owner: String, ttl: Duration, epochKey: String) async throws -> UInt64? {
        try Validate.key(key, "lease key")
        try Validate.key(epochKey, "epoch key")
        let ttlMs = try Validate.ttl(ttl)
        let now = options.now()
        return try state.withLock { s in
            try s.checkOpen()
            try s.checkNotStream(key)
            try s.checkNotStream(epochKey)
            if let lease = s.liveLease(key, now: now) {
                guard lease.owner == owner else { return nil }
            } else {
                s.epochs[epochKey, default: 0] += 1
            }
            s.leases[key] = Lease(owner: owner, expiresAt: now + UInt64(ttlMs))
            return s.epochs[epochKey, default: 0]
        }
    }

    public func renewLease(_ key: String, owner: String, ttl: Duration) async throws -> Bool {
        try Validate.key(key, "lease key")
        let ttlMs = try Validate.ttl(ttl)
        let now = options.now()
        return try state.withLock { s in
            try s.checkOpen()
            try s.checkNotStream(key)
            guard let lease = s.liveLease(key, now: now), lease.owner == owner else { return false }
            s.leases[key] = Lease(owner: owner, expiresAt: now + UInt64(ttlMs))
            return true
        }
    }

    public func releaseLease(_ key: String, owner: String) async throws -> Bool {
        try Validate.key(key, "lease key")
        let now = options.now()
        return try state.withLock { s in
            try s.checkOpen()
            try s.checkNotStream(key)
            guard let lease = s.liveLease(key, now: now), lease.owner == owner else { return false }
            s.leases[key] = nil
            return true
        }
    }

    public func leaseOwners(withPrefix prefix: String) async throws -> [String: String] {
        let now = options.now()
        return try state.withLock { s in
            try s.checkOpen()
            var owners: [String: String] = [:]
            for key in s.leases.keys where key.hasPrefix(prefix) {
                if let lease = s.liveLease(key, now: now) { owners[key] = lease.owner }
            }
            return owners
        }
    }

    public func close() async {
        let waiters = state.withLock { s in
            s.closed = true
            let w = Array(s.waiters.values)
            s.waiters.removeAll()
            return w
        }
        for w in waiters { w.continuation.resume(returning: .timedOut) }
    }
}

// MARK: - Blocking reads

enum WaitOutcome: Sendable {
    case entries([StreamEntry])
    case woken
    case timedOut
}

struct Waiter {
    var stream: String
    var continuation: CheckedContinuation<WaitOutcome, any Error>
}

extension InMemoryEventQueue {
    /// Starts the timer of a blocking read: resumes the waiter with `.timedOut` at `deadline`.
    fileprivate func armTimer(_ id: Int, deadline: ContinuousClock.Instant) -> Task<Void, Never> {
        Task { [weak self] in
            try? await Task.sleep(until: deadline, clock: .continuous)
            if Task.isCancelled { return }
            self?.wake(id, .timedOut)
        }
    }
}

// MARK: - State

struct Nack {
    var consumer: String
    var deliveryTime: UInt64
    var deliveryCount: Int
}

struct Lease {
    var owner: String
    var expiresAt: UInt64
}

struct GroupState {
    var lastDelivered = StreamEntryID.zero
    var pel: [StreamEntryID: Nack] = [:]
    /// The keys of `pel`, sorted.
    var pelOrder: [StreamEntryID] = []

    mutating func ack(_ ids: [StreamEntryID]) -> Int {
        var n = 0
        for id in ids where pel.removeValue(forKey: id) != nil {
            n += 1
            let i = lowerBound(pelOrder, id)
            if i < pelOrder.count, pelOrder[i] == id { pelOrder.remove(at: i) }
        }
        return n
    }

    mutating func addPending(_ id: StreamEntryID, consumer: String, now: UInt64) {
        if pel[id] == nil {
            let i = lowerBound(pelOrder, id)
            pelOrder.insert(id, at: i)
        }
        pel[id] = Nack(consumer: consumer, deliveryTime: now, deliveryCount: 1)
    }
}

struct StreamState {
    /// Sorted by id.
    var entries: [StreamEntry] = []
    var lastID = StreamEntryID.zero
    var groups: [String: GroupState] = [:]

    mutating func append(fields: [StreamField], now: UInt64) -> StreamEntryID {
        let id = now > lastID.ms ? StreamEntryID(ms: now, seq: 0) : StreamEntryID(ms: lastID.ms, seq: lastID.seq + 1)
        lastID = id
        entries.append(StreamEntry(id: id, fields: fields))
        return id
    }

    func index(of id: StreamEntryID) -> Int? {
        let i = lowerBound(entries, id, by: \.id)
        return i < entries.count && entries[i].id == id ? i : nil
    }

    mutating func delete(_ ids: [StreamEntryID]) -> Int {
        var n = 0
        var doomed = Set<Int>()
        for id in ids {
            if let i = index(of: id), doomed.insert(i).inserted { n += 1 }
        }
        if n == 0 { return 0 }
        if n == 1 {
            entries.remove(at: doomed.first!)
        } else {
            var kept: [StreamEntry] = []
            kept.reserveCapacity(entries.count - n)
            for (i, e) in entries.enumerated() where !doomed.contains(i) { kept.append(e) }
            entries = kept
        }
        return n
    }

    mutating func trim(through id: StreamEntryID) -> Int {
        let n = lowerBound(entries, id, by: \.id) + (index(of: id) == nil ? 0 : 1)
        entries.removeFirst(n)
        return n
    }

    mutating func autoClaim(group: String, consumer: String, minIdle: Int64, start: StreamEntryID, count: Int, now: UInt64) -> ClaimResult {
        var g = groups[group]!
        defer { groups[group] = g }
        var i = lowerBound(g.pelOrder, start)
        var attempts = count * 10
        var remaining = count
        var claimed: [ClaimedEntry] = []
        var deleted: [StreamEntryID] = []
        while attempts > 0, remaining > 0, i < g.pelOrder.count {
            attempts -= 1
            let id = g.pelOrder[i]
            guard let at = index(of: id) else {
                g.pel[id] = nil
                g.pelOrder.remove(at: i)
                deleted.append(id)
                remaining -= 1  // as in Redis: count limits the reply, deleted ids included
                continue
            }
            var nack = g.pel[id]!
            if minIdle > 0, Int64(now) - Int64(nack.deliveryTime) < minIdle {
                i += 1
                continue
            }
            nack.consumer = consumer
            nack.deliveryTime = now
            nack.deliveryCount += 1
            g.pel[id] = nack
            claimed.append(ClaimedEntry(entry: entries[at], deliveryCount: nack.deliveryCount))
            remaining -= 1
            i += 1
        }
        let next = i < g.pelOrder.count ? g.pelOrder[i] : nil
        return ClaimResult(entries: claimed, deletedIDs: deleted, nextStart: next)
    }
}

struct MemoryState {
    var streams: [String: StreamState] = [:]
    var leases: [String: Lease] = [:]
    /// Fencing lease epochs: never expire, never go down.
    var epochs: [String: UInt64] = [:]
    /// appendOnce's hashes: token → entry id.
    var ledgers: [String: [String: StreamEntryID]] = [:]
    var waiters: [Int: Waiter] = [:]
    var nextWaiterID = 0
    var closed = false

    static func noGroup(_ stream: String, _ group: String) -> EventQueueError {
        EventQueueError(.noGroup, "no such key '\(stream)' or consumer group '\(group)'")
    }

    func checkOpen() throws {
        if closed { throw EventQueueError(.unavailable, "the queue is closed") }
    }

    mutating func liveLease(_ key: String, now: UInt64) -> Lease? {
        guard let lease = leases[key] else { return nil }
        if lease.expiresAt <= now {
            leases[key] = nil
            return nil
        }
        return lease
    }

    mutating func checkNotLease(_ key: String, now: UInt64) throws {
        if liveLease(key, now: now) != nil {
            throw EventQueueError(.wrongType, "WRONGTYPE '\(key)' holds a lease, not a stream")
        }
    }

    func checkNotStream(_ key: String) throws {
        if streams[key] != nil {
            throw EventQueueError(.wrongType, "WRONGTYPE '\(key)' holds a stream, not a lease")
        }
    }

    mutating func allocateWaiterID() -> Int {
        nextWaiterID += 1
        return nextWaiterID
    }

    mutating func takeWaiters(for stream: String) -> [Waiter] {
        guard !waiters.isEmpty else { return [] }
        var taken: [Waiter] = []
        for (id, w) in waiters where w.stream == stream {
            taken.append(w)
            waiters[id] = nil
        }
        return taken
    }

    mutating func read(group: String, consumer: String, stream: String, count: Int, ownPending: Bool, now: UInt64) throws -> [StreamEntry] {
        guard var st = streams.removeValue(forKey: stream) else { throw Self.noGroup(stream, group) }
        defer { streams[stream] = st }
        guard var g = st.groups[group] else { throw Self.noGroup(stream, group) }
        defer { st.groups[group] = g }
        var out: [StreamEntry] = []
        if ownPending {
            for id in g.pelOrder where out.count < count {
                guard var nack = g.pel[id], nack.consumer == consumer else { continue }
                if let at = st.index(of: id) {
                    nack.deliveryTime = now
                    nack.deliveryCount += 1
                    g.pel[id] = nack
                    out.append(st.entries[at])
                } else {
                    out.append(StreamEntry(id: id, fields: []))
                }
            }
            return out
        }
        var i = upperBound(st.entries, g.lastDelivered, by: \.id)
        while i < st.entries.count, out.count < count {
            let e = st.entries[i]
            g.addPending(e.id, consumer: consumer, now: now)
            out.append(e)
            i += 1
        }
        if let last = out.last { g.lastDelivered = last.id }
        return out
    }
}

// MARK: - Sorted-array helpers

func lowerBound(_ a: [StreamEntryID], _ key: StreamEntryID) -> Int {
    var lo = 0, hi = a.count
    while lo < hi {
        let mid = (lo + hi) / 2
        if a[mid] < key { lo = mid + 1 } else { hi = mid }
    }
    return lo
}

func lowerBound<T>(_ a: [T], _ key: StreamEntryID, by id: (T) -> StreamEntryID) -> Int {
    var lo = 0, hi = a.count
    while lo < hi {
        let mid = (lo + hi) / 2
        if id(a[mid]) < key { lo = mid + 1 } else { hi = mid }
    }
    return lo
}

func upperBound<T>(_ a: [T], _ key: StreamEntryID, by id: (T) -> StreamEntryID) -> Int {
    var lo = 0, hi = a.count
    while lo < hi {
        let mid = (lo + hi) / 2
        if id(a[mid]) <= key { lo = mid + 1 } else { hi = mid }
    }
    return lo
}
