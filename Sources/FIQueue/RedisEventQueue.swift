import FILocking
import Foundation
import Logging
import Synchronization

/// An ``EventQueue`` on Redis Streams, through hiredis, on one Redis server or a Redis Cluster.
///
/// Every hiredis context lives on its own thread. Commands from concurrent callers are
/// coalesced into pipelines on a few connections per node; blocking reads use connections of
/// their own whose socket timeout is longer than the BLOCK time. In a cluster, each command
/// goes to the master of its key's slot and follows MOVED and ASK redirects.
public final class RedisEventQueue: EventQueue {
    /// Connection settings.
    public struct Options: Sendable {
        /// How long one TCP connect may take.
        public var connectTimeout: Duration = .seconds(2)
        /// How long to wait for a reply (blocking reads wait their BLOCK time on top).
        public var commandTimeout: Duration = .seconds(5)
        /// Pipelined connections per node, shared by all non-blocking commands. One gives the largest
        /// pipelines and the least CPU per command (see Docs/benchmarks.md); more spread head-of-line delay.
        public var pipelineConnections: Int = 1
        /// Most connections per node held by blocking reads at once; further readers wait.
        public var maxBlockingConnections: Int = 64
        /// Most MOVED/ASK/TRYAGAIN redirects followed for one command.
        public var maxRedirects: Int = 10
        /// First and longest wait between reconnect attempts to a node that refused.
        public var reconnectBackoff: (first: Duration, max: Duration) = (.milliseconds(50), .seconds(2))
        /// Credentials for cluster nodes (single-node credentials come from the URL).
        public var username: String?
        public var password: String?

        public init() {}
    }

    private let options: Options
    private let settings: ConnectionSettings
    private let logger: Logger
    private let clustered: Bool
    private let seeds: [RedisEndpoint]
    private let topology: Locked<Topology>
    /// The node of a single-server queue.
    private let single: NodeClient?

    private struct Topology {
        var nodes: [String: NodeClient] = [:]
        /// Cluster only: the master serving each slot.
        var slots: [NodeClient?] = []
        var refreshing = false
        var closed = false
    }

    private init(seeds: [RedisEndpoint], clustered: Bool, options: Options, logger: Logger) {
        self.options = options
        let settings = ConnectionSettings(
            connectTimeout: options.connectTimeout, commandTimeout: options.commandTimeout,
            minBackoff: options.reconnectBackoff.first, maxBackoff: options.reconnectBackoff.max
        )
        self.settings = settings
        self.logger = logger
        self.clustered = clustered
        self.seeds = seeds
        var topology = Topology(slots: clustered ? Array(repeating: nil, count: ClusterSlot.count) : [])
        if clustered {
            single = nil
        } else {
            let node = NodeClient(endpoint: seeds[0], options: options, settings: settings, logger: logger)
            topology.nodes[seeds[0].address] = node
            single = node
        }
        self.topology = Locked(topology)
    }

    /// Connects to one Redis server: `redis://[[username]:password@]host[:port][/db]`.
    /// - Throws: `.invalidArgument` for a bad URL, `.unavailable` at once if the server cannot be reached.
    public static func connect(url: String, options: Options = .init(), logger: Logger = .disabled) async throws -> RedisEventQueue {
        let endpoint = try RedisEndpoint(url: url)
        let queue = RedisEventQueue(seeds: [endpoint], clustered: false, options: options, logger: logger)
        do {
            try await queue.ping()
        } catch {
            await queue.close()
            throw error
        }
        logger.debug("connected to redis", metadata: ["fi.redis": "\(endpoint.address)", "fi.redis.db": "\(endpoint.database)"])
        return queue
    }

    /// Connects to a Redis Cluster through any of `clusterSeeds` (`host:port`).
    /// - Throws: `.invalidArgument` for a bad seed, `.unavailable` if no seed answers CLUSTER SLOTS.
    public static func connect(clusterSeeds: [String], options: Options = .init(), logger: Logger = .disabled) async throws -> RedisEventQueue {
        guard !clusterSeeds.isEmpty else { throw EventQueueError(.invalidArgument, "no cluster seed given") }
        let seeds = try clusterSeeds.map { seed -> RedisEndpoint in
            let (host, port) = try RedisEndpoint.hostPort(seed.trimmingCharacters(in: .whitespaces), defaultPort: 6379)
            return RedisEndpoint(host: host, port: port, username: options.username, password: options.password)
        }
        let queue = RedisEventQueue(seeds: seeds, clustered: true, options: options, logger: logger)
        do {
            try await queue.refreshSlots()
        } catch {
            await queue.close()
            throw error
        }
        logger.debug("connected to redis cluster", metadata: ["fi.redis.masters": "\(queue.masters().map(\.endpoint.address).sorted())"])
        return queue
    }

    // MARK: - EventQueue

    public func append(to stream: String, fields: [StreamField]) async throws -> StreamEntryID {
        try Validate.key(stream, "stream name")
        try Validate.fields(fields)
        // Encoded straight into the bytes the connection writes: no argument arrays per append.
        var command = RESPCommands()
        command.begin(arguments: 3 + 2 * fields.count, reserving: fields.reduce(64 + stream.utf8.count) { $0 + $1.name.utf8.count + $1.value.count + 32 })
        command.argument(Self.XADD)
        command.argument(stream)
        command.argument(Self.STAR)
        for f in fields {
            command.argument(f.name)
            command.argument(f.value)
        }
        let reply = try check(try await run(key: stream, command, sideEffects: true))
        guard let bytes = reply.bytes, let id = StreamEntryID(bytes: bytes) else {
            throw EventQueueError(.protocol, "XADD replied \(reply), not an entry id")
        }
        return id
    }

    public func createGroup(_ group: String, on stream: String) async throws {
        try Validate.key(stream, "stream name")
        try Validate.key(group, "group name")
        let reply = try await run(key: stream, args("XGROUP", "CREATE", stream, group, "0", "MKSTREAM"), sideEffects: false)
        if let text = reply.errorText, text.hasPrefix("BUSYGROUP") { return }
        _ = try check(reply)
    }

    public func readGroup(_ group: String, consumer: String, from stream: String, count: Int, block: Duration?, ownPending: Bool) async throws -> [StreamEntry] {
        try Validate.key(stream, "stream name")
        try Validate.key(group, "group name")
        try Validate.key(consumer, "consumer name")
        try Validate.count(count)
        var command = args("XREADGROUP", "GROUP", group, consumer, "COUNT", String(count))
        var blocking: Duration?
        if let block, block > .zero, !ownPending {
            command += args("BLOCK", String(max(1, block.milliseconds)))
            blocking = block
        }
        command += args("STREAMS", stream, ownPending ? "0" : ">")
        return try Self.decodeReadGroup(try check(try await run(key: stream, command, sideEffects: false, block: blocking, shape: .streamEntries)))
    }

    public func ack(_ group: String, on stream: String, ids: [StreamEntryID]) async throws -> Int {
        try Validate.key(stream, "stream name")
        try Validate.key(group, "group name")
        if ids.isEmpty { return 0 }
        // Ids are written straight into the command: a worker acknowledges every entry it stores.
        var command = RESPCommands()
        command.begin(arguments: 3 + ids.count, reserving: 32 + stream.utf8.count + group.utf8.count + ids.count * 24)
        command.argument(Self.XACK)
        command.argument(stream)
        command.argument(group)
        for id in ids { command.argument(id) }
        return try integer(try await run(key: stream, command, sideEffects: false), "XACK")
    }

    public func autoClaim(_ group: String, consumer: String, on stream: String, minIdle: Duration, start: StreamEntryID, count: Int) async throws -> ClaimResult {
        try Validate.key(stream, "stream name")
        try Validate.key(group, "group name")
        try Validate.key(consumer, "consumer name")
        try Validate.count(count)
        let minIdleMs = try Validate.minIdle(minIdle)
        let command = args("EVAL", Self.claimScript, "1", stream, group, consumer, String(minIdleMs), start.description, String(count))
        return try Self.decodeClaim(try check(try await run(key: stream, command, sideEffects: false)))
    }

    public func pending(_ group: String, on stream: String) async throws -> PendingSummary {
        try Validate.key(stream, "stream name")
        try Validate.key(group, "group name")
        return try Self.decodePending(try check(try await run(key: stream, args("XPENDING", stream, group), sideEffects: false)))
    }

    public func oldestPendingIdle(_ group: String, on stream: String) async throws -> Duration? {
        try Validate.key(stream, "stream name")
        try Validate.key(group, "group name")
        return try Self.decodeOldestPendingIdle(try check(try await run(key: stream, args("XPENDING", stream, group, "-", "+", "1"), sideEffects: false)))
    }

    public func length(of stream: String) async throws -> Int {
        try Validate.key(stream, "stream name")
        return try integer(try await run(key: stream, args("XLEN", stream), sideEffects: false), "XLEN")
    }

    public func delete(from stream: String, ids: [StreamEntryID]) async throws -> Int {
        try Validate.key(stream, "stream name")
        if ids.isEmpty { return 0 }
        let command = args("XDEL", stream) + ids.map(\.bytes)
        return try integer(try await run(key: stream, command, sideEffects: false), "XDEL")
    }

    public func trim(_ stream: String, through id: StreamEntryID) async throws -> Int {
        try Validate.key(stream, "stream name")
        let command: [[UInt8]]
        if id.seq < .max {
            command = args("XTRIM", stream, "MINID") + [StreamEntryID(ms: id.ms, seq: id.seq + 1).bytes]
        } else if id.ms < .max {
            command = args("XTRIM", stream, "MINID") + [StreamEntryID(ms: id.ms + 1, seq: 0).bytes]
        } else {
            command = args("XTRIM", stream, "MAXLEN", "0")  // through the largest id there is: everything
        }
        return try integer(try await run(key: stream, command, sideEffects: false), "XTRIM")
    }

    public func range(_ stream: String, after: StreamEntryID?, count: Int) async throws -> [StreamEntry] {
        try Validate.key(stream, "stream name")
        try Validate.count(count)
        let start = after.map { "(" + $0.description } ?? "-"
        let reply = try check(try await run(key: stream, args("XRANGE", stream, start, "+", "COUNT", String(count)), sideEffects: false))
        guard let entries = reply.array else { throw EventQueueError(.protocol, "XRANGE replied \(reply)") }
        return try entries.map(Self.decodeEntry)
    }

    public func appendOnce(to stream: String, fields: [StreamField], token: String, ledger: String) async throws -> (id: StreamEntryID, appended: Bool) {
        try Validate.key(stream, "stream name")
        try Validate.key(ledger, "ledger name")
        try Validate.fields(fields)
        var command = args("EVAL", Self.appendOnceScript, "2", stream, ledger, token)
        for field in fields { command += [Array(field.name.utf8), field.value] }
        // Idempotent by construction: a retry after an unknown result appends nothing new.
        let reply = try check(try await run(key: stream, command, sideEffects: false))
        guard let pair = reply.array, pair.count == 2, let bytes = pair[0].bytes, let id = StreamEntryID(bytes: bytes), let appended = pair[1].int else {
            throw EventQueueError(.protocol, "append-once script replied \(reply)")
        }
        return (id, appended == 1)
    }

    public func ledger(_ ledger: String) async throws -> [String: StreamEntryID] {
        try Validate.key(ledger, "ledger name")
        let reply = try check(try await run(key: ledger, args("HGETALL", ledger), sideEffects: false))
        guard let flat = reply.array, flat.count % 2 == 0 else { throw EventQueueError(.protocol, "HGETALL replied \(reply)") }
        var out: [String: StreamEntryID] = [:]
        var i = 0
        while i < flat.count {
            guard let token = flat[i].string, let bytes = flat[i + 1].bytes, let id = StreamEntryID(bytes: bytes) else {
                throw EventQueueError(.protocol, "malformed ledger entry in \(ledger)")
            }
            out[token] = id
            i += 2
        }
        return out
    }

    public func streams(withPrefix prefix: String) async throws -> [String] {
        try await scanKeys(withPrefix: prefix, type: "stream")
    }

    public func leaseOwners(withPrefix prefix: String) async throws -> [String: String] {
        var owners: [String: String] = [:]
        for key in try await scanKeys(withPrefix: prefix, type: "string") {
            // A lease may expire between SCAN and GET: then it is simply not listed.
            if let owner = try check(try await run(key: key, args("GET", key), sideEffects: false)).string {
                owners[key] = owner
            }
        }
        return owners
    }

    /// Every key of `type` starting with `prefix`, from every master.
    private func scanKeys(withPrefix prefix: String, type: String) async throws -> [String] {
        var pattern = ""
        for ch in prefix {
            if "*?[]\\".contains(ch) { pattern.append("\\") }
            pattern.append(ch)
        }
        pattern += "*"
        var found = Set<String>()
        for node in try currentMasters() {
            var cursor = "0"
            repeat {
                let reply = try check(try await send(to: node, [args("SCAN", cursor, "MATCH", pattern, "COUNT", "1000", "TYPE", type)], sideEffects: false)[0])
                guard let parts = reply.array, parts.count == 2, let next = parts[0].string, let keys = parts[1].array else {
                    throw EventQueueError(.protocol, "SCAN replied \(reply)")
                }
                for k in keys { if let name = k.string { found.insert(name) } }
                cursor = next
            } while cursor != "0"
        }
        return found.sorted()
    }

    public func ping() async throws {
        for node in try currentMasters() {
            let reply = try check(try await send(to: node, [args("PING")], sideEffects: false)[0])
            guard reply.string == "PONG" else { throw EventQueueError(.protocol, "PING replied \(reply)") }
        }
    }

    public func acquireLease(_ key: String, owner: String, ttl: Duration) async throws -> Bool {
        try Validate.key(key, "lease key")
        let ttlMs = try Validate.ttl(ttl)
        return try integer(try await run(key: key, args("EVAL", Self.acquireScript, "1", key, owner, String(ttlMs)), sideEffects: false), "lease") == 1
    }

    public func renewLease(_ key: String, owner: String, ttl: Duration) async throws -> Bool {
        try Validate.key(key, "lease key")
        let ttlMs = try Validate.ttl(ttl)
        return try integer(try await run(key: key, args("EVAL", Self.renewScript, "1", key, owner, String(ttlMs)), sideEffects: false), "lease") == 1
    }

    public func releaseLease(_ key: String, owner: String) async throws -> Bool {
        try Validate.key(key, "lease key")
        return try integer(try await run(key: key, args("EVAL", Self.releaseScript, "1", key, owner), sideEffects: true), "lease") == 1
    }

    public func close() async {
        let nodes = topology.withLock { t -> [NodeClient] in
            t.closed = true
            return Array(t.nodes.values)
        }
        for n in nodes { n.close() }
    }

    // MARK: - Scripts

    /// XAUTOCLAIM and the delivery count of every claimed entry, atomically.
    /// KEYS: stream, ledger; ARGV: token, field, value, …. Appends unless the ledger has the token.
    static let appendOnceScript = """
        local id = redis.call('HGET', KEYS[2], ARGV[1])
        if id then return {id, 0} end
        id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
        redis.call('HSET', KEYS[2], ARGV[1], id)
        return {id, 1}
        """

    static let claimScript = """
        local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
        local counts = {}
        for i, e in ipairs(r[2]) do
          local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
          if p[1] then counts[i] = p[1][4] else counts[i] = 0 end
        end
        return {r[1], r[2], r[3] or {}, counts}
        """
    static let acquireScript = """
        if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
        if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
        return 0
        """
    static let renewScript = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
        return 0
        """
    static let releaseScript = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
        return 0
        """

    private static let XADD = Array("XADD".utf8)
    private static let STAR = Array("*".utf8)
    private static let XACK = Array("XACK".utf8)

    // MARK: - Replies

    private func args(_ items: String...) -> [[UInt8]] {
        items.map { Array($0.utf8) }
    }

    private func check(_ reply: RESPValue) throws -> RESPValue {
        if case .error(let text) = reply { throw Self.serverError(text) }
        return reply
    }

    private func integer(_ reply: RESPValue, _ what: String) throws -> Int {
        let r = try check(reply)
        guard case .integer(let n) = r else { throw EventQueueError(.protocol, "\(what) replied \(r), not an integer") }
        return Int(n)
    }

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

    // MARK: - Routing

    /// Runs one command on the node serving `key`, following cluster redirects.
    private func run(key: String, _ command: [[UInt8]], sideEffects: Bool, block: Duration? = nil, shape: ReplyShape = .generic) async throws -> RESPValue {
        try await run(key: key, RESPCommands([command]), sideEffects: sideEffects, block: block, shape: shape)
    }

    private static let asking = RESPCommands([[Array("ASKING".utf8)]])

    /// Sends one encoded command to the node serving `key`, following cluster redirects.
    private func run(key: String, _ command: RESPCommands, sideEffects: Bool, block: Duration? = nil, shape: ReplyShape = .generic) async throws -> RESPValue {
        var redirects = 0
        var askNode: NodeClient?
        var retried = false
        let slot = clustered ? ClusterSlot.of(key) : 0
        while true {
            let node = try askNode ?? self.node(forSlot: slot)
            let commands = askNode == nil ? command : Self.asking + command
            let replies: [RESPValue]
            do {
                replies = try await send(to: node, commands, sideEffects: sideEffects, block: block, shape: shape)
            } catch let error as EventQueueError where error.code == .unavailable || error.code == .timeout {
                if clustered { scheduleRefresh() }
                // A connection the server closed while idle fails the first command on it;
                // commands that change nothing are sent again once.
                if error.code == .unavailable && !sideEffects && !retried {
                    retried = true
                    continue
                }
                throw error
            }
            askNode = nil
            let reply = replies[replies.count - 1]
            guard clustered, case .error(let text) = reply else { return reply }
            let redirect = text.split(separator: " ")
            switch redirect.first {
            case "MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN":
                redirects += 1
                if redirects > options.maxRedirects {
                    throw EventQueueError(.redirectLimit, "more than \(options.maxRedirects) redirects for a command on '\(key)'; last: \(text)")
                }
            default:
                return reply
            }
            if redirect.first == "MOVED" || redirect.first == "ASK", redirect.count >= 3 {
                let (host, port) = try RedisEndpoint.hostPort(String(redirect[2]), defaultPort: 6379)
                let target = self.node(for: RedisEndpoint(host: host, port: port, username: options.username, password: options.password))
                if redirect.first == "MOVED" {
                    logger.debug("redis cluster MOVED", metadata: ["fi.redis.slot": "\(slot)", "fi.redis": "\(target.endpoint.address)"])
                    topology.withLock { t in t.slots[slot] = target }
                    scheduleRefresh()
                } else {
                    askNode = target
                }
            } else {
                try await Task.sleep(for: .milliseconds(20 * redirects))
            }
        }
    }

    private func send(to node: NodeClient, _ commands: [[[UInt8]]], sideEffects: Bool, block: Duration? = nil, shape: ReplyShape = .generic) async throws -> [RESPValue] {
        try await send(to: node, RESPCommands(commands), sideEffects: sideEffects, block: block, shape: shape)
    }

    private func send(to node: NodeClient, _ commands: RESPCommands, sideEffects: Bool, block: Duration? = nil, shape: ReplyShape = .generic) async throws -> [RESPValue] {
        if let block {
            return try await node.withBlockingConnection { c in
                try await c.send(commands, timeout: block + options.commandTimeout, sideEffects: sideEffects, shape: shape)
            }
        }
        return try await node.pipelined().send(commands, sideEffects: sideEffects, shape: shape)
    }

    private func node(forSlot slot: Int) throws -> NodeClient {
        if let single { return single }
        let (owner, any) = try topology.withLock { t -> (NodeClient?, NodeClient?) in
            if t.closed { throw EventQueueError(.unavailable, "the queue is closed") }
            return (t.slots[slot], t.nodes.values.first)
        }
        if let owner { return owner }
        scheduleRefresh()
        // Any node answers with MOVED to the owner.
        guard let any else { throw EventQueueError(.unavailable, "no cluster node serves slot \(slot)") }
        return any
    }

    private func node(for endpoint: RedisEndpoint) -> NodeClient {
        let (node, closed) = topology.withLock { t -> (NodeClient, Bool) in
            if let n = t.nodes[endpoint.address] { return (n, t.closed) }
            let n = NodeClient(endpoint: endpoint, options: options, settings: settings, logger: logger)
            t.nodes[endpoint.address] = n
            return (n, t.closed)
        }
        if closed { node.close() }
        return node
    }

    private func masters() -> [NodeClient] {
        topology.withLock { t in
            var seen = Set<String>()
            var out: [NodeClient] = []
            for case let n? in t.slots where seen.insert(n.endpoint.address).inserted { out.append(n) }
            return out
        }
    }

    private func currentMasters() throws -> [NodeClient] {
        if topology.withLock({ $0.closed }) { throw EventQueueError(.unavailable, "the queue is closed") }
        if let single { return [single] }
        let m = masters()
        if m.isEmpty { throw EventQueueError(.unavailable, "no cluster master known") }
        return m
    }

    /// Starts a slot-map refresh unless one is running.
    private func scheduleRefresh() {
        let start = topology.withLock { t -> Bool in
            if t.refreshing || t.closed { return false }
            t.refreshing = true
            return true
        }
        guard start else { return }
        Task {
            defer { topology.withLock { $0.refreshing = false } }
            do {
                try await refreshSlots()
            } catch {
                logger.debug("redis cluster slot refresh failed", metadata: ["fi.reason": "\(error)"])
            }
        }
    }

    /// Reads CLUSTER SLOTS from the first node that answers and replaces the slot map.
    func refreshSlots() async throws {
        var candidates = masters().map(\.endpoint)
        for s in seeds where !candidates.contains(s) { candidates.append(s) }
        var lastError: (any Error)?
        for endpoint in candidates {
            do {
                let reply = try check(try await send(to: node(for: endpoint), [args("CLUSTER", "SLOTS")], sideEffects: false)[0])
                var map = [NodeClient?](repeating: nil, count: ClusterSlot.count)
                for range in try Self.decodeSlotRanges(reply, defaultHost: endpoint.host) {
                    let n = node(for: RedisEndpoint(host: range.host, port: range.port, username: options.username, password: options.password))
                    for s in range.slots { map[s] = n }
                }
                topology.withLock { $0.slots = map }
                return
            } catch {
                lastError = error
            }
        }
        throw EventQueueError(.unavailable, "no cluster node answered CLUSTER SLOTS (tried \(candidates.map(\.address)))", underlying: lastError)
    }
}

/// The connections to one node: a few pipelined ones and a pool for blocking reads.
final class NodeClient: Sendable {
    let endpoint: RedisEndpoint
    private let connections: [RedisConnection]
    private let next = Atomic<Int>(0)
    private let settings: ConnectionSettings
    private let logger: Logger
    private let maxBlocking: Int
    private let pool = Locked(Pool())

    private struct Pool {
        var idle: [RedisConnection] = []
        var total = 0
        var waiters: [CheckedContinuation<RedisConnection, any Error>] = []
        var closed = false
    }

    init(endpoint: RedisEndpoint, options: RedisEventQueue.Options, settings: ConnectionSettings, logger: Logger) {
        self.endpoint = endpoint
        self.settings = settings
        self.logger = logger
        self.maxBlocking = max(1, options.maxBlockingConnections)
        self.connections = (0..<max(1, options.pipelineConnections)).map { _ in
            RedisConnection(endpoint: endpoint, settings: settings, logger: logger)
        }
    }

    /// The pipelined connection with the fewest queued requests (round robin among equals).
    func pipelined() -> RedisConnection {
        if connections.count == 1 { return connections[0] }
        let start = next.add(1, ordering: .relaxed).newValue
        var best = connections[start % connections.count]
        var bestDepth = best.depth
        if bestDepth == 0 { return best }
        for i in 1..<connections.count {
            let c = connections[(start + i) % connections.count]
            let d = c.depth
            if d < bestDepth { best = c; bestDepth = d }
        }
        return best
    }

    func withBlockingConnection<T: Sendable>(_ body: (RedisConnection) async throws -> T) async throws -> T {
        let c = try await acquire()
        defer { release(c) }
        return try await body(c)
    }

    private func acquire() async throws -> RedisConnection {
        enum Step { case got(RedisConnection), create, wait }
        let step = try pool.withLock { p -> Step in
            if p.closed { throw EventQueueError(.unavailable, "the queue is closed") }
            if let c = p.idle.popLast() { return .got(c) }
            if p.total < maxBlocking {
                p.total += 1
                return .create
            }
            return .wait
        }
        switch step {
        case .got(let c): return c
        case .create: return RedisConnection(endpoint: endpoint, settings: settings, logger: logger)
        case .wait:
            return try await withCheckedThrowingContinuation { cont in
                let handoff = pool.withLock { p -> RedisConnection? in
                    if let c = p.idle.popLast() { return c }
                    p.waiters.append(cont)
                    return nil
                }
                if let handoff { cont.resume(returning: handoff) }
            }
        }
    }

    private func release(_ c: RedisConnection) {
        let (waiter, closed) = pool.withLock { p -> (CheckedContinuation<RedisConnection, any Error>?, Bool) in
            if p.closed { return (nil, true) }
            if !p.waiters.isEmpty { return (p.waiters.removeFirst(), false) }
            p.idle.append(c)
            return (nil, false)
        }
        if closed { c.close() }
        waiter?.resume(returning: c)
    }

    func close() {
        let (idle, waiters) = pool.withLock { p -> ([RedisConnection], [CheckedContinuation<RedisConnection, any Error>]) in
            p.closed = true
            defer { p.idle.removeAll(); p.waiters.removeAll() }
            return (p.idle, p.waiters)
        }
        for c in idle { c.close() }
        for w in waiters { w.resume(throwing: EventQueueError(.unavailable, "the queue is closed")) }
        for c in connections { c.close() }
    }
}
