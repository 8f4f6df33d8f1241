import FILocking
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// An ``EventQueue`` on Redis Streams, on one Redis server or a Redis Cluster, plain or over TLS.
///
/// Every Redis connection is a SwiftNIO channel: commands are RESP-encoded into the channel's
/// buffer and hiredis' reader parses the replies on the event loop. Each node has a pipelined
/// connection on every event loop of the group; a caller running on one of those loops (a
/// fi-server request handler, when the HTTP server shares the group) sends its command and gets
/// its reply without leaving the loop, and everything sent in one loop tick goes out in one write.
/// Blocking reads use connections of their own. In a cluster, each command goes to the master of
/// its key's slot and follows MOVED and ASK redirects (``RedisClusterRouter``).
public final class RedisEventQueue: EventQueue {
    /// Connection settings.
    public struct Options: Sendable {
        /// How long one TCP connect (and TLS handshake) may take.
        public var connectTimeout: Duration = .seconds(2)
        /// How long to wait for a reply (blocking reads wait their BLOCK time on top).
        public var commandTimeout: Duration = .seconds(5)
        /// Pipelined connections per node on each event loop. One gives the largest pipelines and
        /// the least CPU per command (see Docs/benchmarks.md).
        public var pipelineConnections: Int = 1
        /// Most connections per node held by blocking reads at once; further readers wait.
        public var maxBlockingConnections: Int = 64
        /// Most MOVED/ASK/TRYAGAIN redirects followed for one command.
        public var maxRedirects: Int = 10
        /// First and longest wait between reconnect attempts to a node that refused.
        public var reconnectBackoff: (first: Duration, max: Duration) = (.milliseconds(50), .seconds(2))
        /// Replicas that must acknowledge a write before it counts as done (`WAIT`, one per
        /// connection and event-loop tick for all writes of that tick): appends, append-once and
        /// lease acquisition and renewal. When fewer acknowledge within ``replicaTimeout`` the call
        /// throws `.notReplicated` — the write was applied on the master, and a failover may lose it.
        /// 0 (the default): no waiting; replication stays asynchronous.
        public var minReplicas: Int = 0
        /// How long a write waits for ``minReplicas`` acknowledgements.
        public var replicaTimeout: Duration = .seconds(1)
        /// Credentials for cluster nodes (single-node credentials come from the URL).
        public var username: String?
        public var password: String?
        /// TLS: for a `rediss://` URL, `nil` means the system's trust store and no client
        /// certificate. For a cluster, TLS is used when this is set. Not allowed with `redis://`.
        public var tls: TLS?
        /// The event loops the connections run on; `nil`: NIO's shared
        /// `MultiThreadedEventLoopGroup.singleton`, which Hummingbird also uses by default, so a
        /// request and its append stay on one loop.
        public var eventLoopGroup: (any EventLoopGroup)?

        public init() {}
    }

    private let options: Options
    private let logger: Logger
    private let pool: RedisNodePool
    /// The node of a single-server queue; `nil` for a cluster.
    private let single: RedisNode?
    /// Cluster only.
    private let seeds: [RedisEndpoint]
    private let router: Locked<RedisClusterRouter>

    private init(seeds: [RedisEndpoint], clustered: Bool, options: Options, tls: Bool, logger: Logger) throws {
        self.options = options
        let settings = ConnectionSettings(
            connectTimeout: options.connectTimeout, commandTimeout: options.commandTimeout,
            minBackoff: options.reconnectBackoff.first, maxBackoff: options.reconnectBackoff.max,
            tls: tls ? try (options.tls ?? TLS()).makeContext() : nil
        )
        self.logger = logger
        self.seeds = seeds
        self.router = Locked(RedisClusterRouter(maxRedirects: options.maxRedirects))
        self.pool = RedisNodePool(group: options.eventLoopGroup ?? MultiThreadedEventLoopGroup.singleton, options: options, settings: settings, logger: logger)
        self.single = clustered ? nil : try pool.node(seeds[0])
    }

    /// Connects to one Redis server: `redis://[[username]:password@]host[:port][/db]`, or
    /// `rediss://…` for TLS (``Options/tls``).
    /// - Throws: `.invalidArgument` for a bad URL or unusable TLS files, `.unavailable` at once if
    ///   the server cannot be reached (or the TLS handshake fails).
    public static func connect(url: String, options: Options = .init(), logger: Logger = .disabled) async throws -> RedisEventQueue {
        let endpoint = try RedisEndpoint(url: url)
        let tls = url.hasPrefix("rediss://")
        if !tls && options.tls != nil {
            throw EventQueueError(.invalidArgument, "TLS settings need a rediss:// URL, got redis://")
        }
        let queue = try RedisEventQueue(seeds: [endpoint], clustered: false, options: options, tls: tls, logger: logger)
        do {
            try await queue.ping()
        } catch {
            await queue.close()
            throw error
        }
        logger.debug("connected to redis", metadata: ["fi.redis": "\(endpoint.address)", "fi.redis.db": "\(endpoint.database)", "fi.tls": "\(tls)"])
        return queue
    }

    /// Connects to a Redis Cluster through any of `clusterSeeds` (`host:port`); over TLS when
    /// ``Options/tls`` is set.
    /// - Throws: `.invalidArgument` for a bad seed, `.unavailable` if no seed answers CLUSTER SLOTS.
    public static func connect(clusterSeeds: [String], options: Options = .init(), logger: Logger = .disabled) async throws -> RedisEventQueue {
        guard !clusterSeeds.isEmpty else { throw EventQueueError(.invalidArgument, "no cluster seed given") }
        let seeds = try clusterSeeds.map { seed -> RedisEndpoint in
            let (host, port) = try RedisEndpoint.hostPort(seed.trimmingCharacters(in: .whitespaces), defaultPort: 6379)
            return RedisEndpoint(host: host, port: port, username: options.username, password: options.password)
        }
        let queue = try RedisEventQueue(seeds: seeds, clustered: true, options: options, tls: options.tls != nil, logger: logger)
        do {
            try await queue.refreshSlots()
        } catch {
            await queue.close()
            throw error
        }
        logger.debug("connected to redis cluster", metadata: ["fi.redis.masters": "\(queue.router.withLock { $0.masters })", "fi.tls": "\(options.tls != nil)"])
        return queue
    }

    // MARK: - EventQueue

    public func append(to stream: String, fields: [StreamField]) async throws -> StreamEntryID {
        try Validate.key(stream, "stream name")
        try Validate.fields(fields)
        // Encoded straight into the bytes the connection writes: no argument arrays per append.
        var command = RedisCommand()
        command.begin(arguments: 3 + 2 * fields.count, reserving: fields.reduce(64 + stream.utf8.count) { $0 + $1.name.utf8.count + $1.value.count + 32 })
        command.argument(Self.XADD)
        command.argument(stream)
        command.argument(Self.STAR)
        for f in fields {
            command.argument(f.name)
            command.argument(f.value)
        }
        let reply = try check(try await run(key: stream, command, retryable: false, replicated: true))
        guard let bytes = reply.bytes, let id = StreamEntryID(bytes: bytes) else {
            throw EventQueueError(.protocol, "XADD replied \(reply), not an entry id")
        }
        return id
    }

    public func createGroup(_ group: String, on stream: String) async throws {
        try Validate.key(stream, "stream name")
        try Validate.key(group, "group name")
        let reply = try await run(key: stream, RedisCommand("XGROUP", "CREATE", stream, group, "0", "MKSTREAM"), retryable: true)
        if let text = reply.errorText, text.hasPrefix("BUSYGROUP") { return }
        _ = try check(reply)
    }

    public func readGroup(_ group: String, consumer: String, from stream: String, count: Int, block: Duration?, ownPending: Bool) async throws -> [StreamEntry] {
        try Validate.key(stream, "stream name")
        try Validate.key(group, "group name")
        try Validate.key(consumer, "consumer name")
        try Validate.count(count)
        var arguments = ["XREADGROUP", "GROUP", group, consumer, "COUNT", String(count)]
        var blocking: Duration?
        if let block, block > .zero, !ownPending {
            arguments += ["BLOCK", String(max(1, block.milliseconds))]
            blocking = block
        }
        arguments += ["STREAMS", stream, ownPending ? "0" : ">"]
        let reply = try await run(key: stream, RedisCommand(arguments), retryable: true, block: blocking, shape: .streamEntries)
        return try RedisReplies.decodeReadGroup(try check(reply))
    }

    public func ack(_ group: String, on stream: String, ids: [StreamEntryID]) async throws -> Int {
        try Validate.key(stream, "stream name")
        try Validate.key(group, "group name")
        if ids.isEmpty { return 0 }
        // Ids are written straight into the command: a worker acknowledges every entry it stores.
        var command = RedisCommand()
        command.begin(arguments: 3 + ids.count, reserving: 32 + stream.utf8.count + group.utf8.count + ids.count * 24)
        command.argument(Self.XACK)
        command.argument(stream)
        command.argument(group)
        for id in ids { command.argument(id) }
        return try integer(try await run(key: stream, command, retryable: true), "XACK")
    }

    public func autoClaim(_ group: String, consumer: String, on stream: String, minIdle: Duration, start: StreamEntryID, count: Int) async throws -> ClaimResult {
        try Validate.key(stream, "stream name")
        try Validate.key(group, "group name")
        try Validate.key(consumer, "consumer name")
        try Validate.count(count)
        let minIdleMs = try Validate.minIdle(minIdle)
        let command = RedisCommand("EVAL", Self.claimScript, "1", stream, group, consumer, String(minIdleMs), start.description, String(count))
        return try RedisReplies.decodeClaim(try check(try await run(key: stream, command, retryable: true)))
    }

    public func pending(_ group: String, on stream: String) async throws -> PendingSummary {
        try Validate.key(stream, "stream name")
        try Validate.key(group, "group name")
        return try RedisReplies.decodePending(try check(try await run(key: stream, RedisCommand("XPENDING", stream, group), retryable: true)))
    }

    public func oldestPendingIdle(_ group: String, on stream: String) async throws -> Duration? {
        try Validate.key(stream, "stream name")
        try Validate.key(group, "group name")
        return try RedisReplies.decodeOldestPendingIdle(try check(try await run(key: stream, RedisCommand("XPENDING", stream, group, "-", "+", "1"), retryable: true)))
    }

    public func length(of stream: String) async throws -> Int {
        try Validate.key(stream, "stream name")
        return try integer(try await run(key: stream, RedisCommand("XLEN", stream), retryable: true), "XLEN")
    }

    public func delete(from stream: String, ids: [StreamEntryID]) async throws -> Int {
        try Validate.key(stream, "stream name")
        if ids.isEmpty { return 0 }
        var command = RedisCommand()
        command.begin(arguments: 2 + ids.count, reserving: 16 + stream.utf8.count + ids.count * 24)
        command.argument("XDEL")
        command.argument(stream)
        for id in ids { command.argument(id) }
        return try integer(try await run(key: stream, command, retryable: true), "XDEL")
    }

    public func trim(_ stream: String, through id: StreamEntryID) async throws -> Int {
        try Validate.key(stream, "stream name")
        let command: RedisCommand
        if id.seq < .max {
            command = RedisCommand("XTRIM", stream, "MINID", StreamEntryID(ms: id.ms, seq: id.seq + 1).description)
        } else if id.ms < .max {
            command = RedisCommand("XTRIM", stream, "MINID", StreamEntryID(ms: id.ms + 1, seq: 0).description)
        } else {
            command = RedisCommand("XTRIM", stream, "MAXLEN", "0")  // through the largest id there is: everything
        }
        return try integer(try await run(key: stream, command, retryable: true), "XTRIM")
    }

    public func range(_ stream: String, after: StreamEntryID?, count: Int) async throws -> [StreamEntry] {
        try Validate.key(stream, "stream name")
        try Validate.count(count)
        let start = after.map { "(" + $0.description } ?? "-"
        let reply = try check(try await run(key: stream, RedisCommand("XRANGE", stream, start, "+", "COUNT", String(count)), retryable: true))
        guard let entries = reply.array else { throw EventQueueError(.protocol, "XRANGE replied \(reply)") }
        return try entries.map(RedisReplies.decodeEntry)
    }

    public func appendOnce(to stream: String, fields: [StreamField], token: String, ledger: String) async throws -> (id: StreamEntryID, appended: Bool) {
        try Validate.key(stream, "stream name")
        try Validate.key(ledger, "ledger name")
        try Validate.fields(fields)
        var command = RedisCommand()
        command.begin(arguments: 6 + 2 * fields.count, reserving: fields.reduce(256) { $0 + $1.name.utf8.count + $1.value.count + 32 })
        for argument in ["EVAL", Self.appendOnceScript, "2", stream, ledger, token] { command.argument(argument) }
        for field in fields {
            command.argument(field.name)
            command.argument(field.value)
        }
        // Retryable by construction: a repeat after a lost reply appends nothing new.
        let reply = try check(try await run(key: stream, command, retryable: true, replicated: true))
        guard let pair = reply.array, pair.count == 2, let bytes = pair[0].bytes, let id = StreamEntryID(bytes: bytes), let appended = pair[1].int else {
            throw EventQueueError(.protocol, "append-once script replied \(reply)")
        }
        return (id, appended == 1)
    }

    public func ledger(_ ledger: String) async throws -> [String: StreamEntryID] {
        try Validate.key(ledger, "ledger name")
        let reply = try check(try await run(key: ledger, RedisCommand("HGETALL", ledger), retryable: true))
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
            if let owner = try check(try await run(key: key, RedisCommand("GET", key), retryable: true)).string {
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
                let reply = try check(try await send(to: node, RedisCommand("SCAN", cursor, "MATCH", pattern, "COUNT", "1000", "TYPE", type), retryable: true)[0])
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
            let reply = try check(try await send(to: node, RedisCommand("PING"), retryable: true)[0])
            guard reply.string == "PONG" else { throw EventQueueError(.protocol, "PING replied \(reply)") }
        }
    }

    public func acquireLease(_ key: String, owner: String, ttl: Duration) async throws -> Bool {
        try Validate.key(key, "lease key")
        let ttlMs = try Validate.ttl(ttl)
        return try integer(try await run(key: key, RedisCommand("EVAL", Self.acquireScript, "1", key, owner, String(ttlMs)), retryable: true, replicated: true), "lease") == 1
    }

    public func acquireLease(_ key: String, owner: String, ttl: Duration, epochKey: String) async throws -> UInt64? {
        try Validate.key(key, "lease key")
        try Validate.key(epochKey, "epoch key")
        let ttlMs = try Validate.ttl(ttl)
        let command = RedisCommand("EVAL", Self.acquireFencedScript, "2", key, epochKey, owner, String(ttlMs))
        let epoch = try integer(try await run(key: key, command, retryable: true, replicated: true), "lease")
        return epoch > 0 ? UInt64(epoch) : nil
    }

    public func renewLease(_ key: String, owner: String, ttl: Duration) async throws -> Bool {
        try Validate.key(key, "lease key")
        let ttlMs = try Validate.ttl(ttl)
        return try integer(try await run(key: key, RedisCommand("EVAL", Self.renewScript, "1", key, owner, String(ttlMs)), retryable: true, replicated: true), "lease") == 1
    }

    public func releaseLease(_ key: String, owner: String) async throws -> Bool {
        try Validate.key(key, "lease key")
        return try integer(try await run(key: key, RedisCommand("EVAL", Self.releaseScript, "1", key, owner), retryable: false), "lease") == 1
    }

    public func close() async {
        await pool.close()
    }

    // MARK: - Scripts

    /// KEYS: stream, ledger; ARGV: token, field, value, …. Appends unless the ledger has the token.
    static let appendOnceScript = """
        local id = redis.call('HGET', KEYS[2], ARGV[1])
        if id then return {id, 0} end
        id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
        redis.call('HSET', KEYS[2], ARGV[1], id)
        return {id, 1}
        """

    /// XAUTOCLAIM and the delivery count of every claimed entry, atomically.
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
    /// KEYS: lease, epoch counter; ARGV: owner, ttl ms. Returns the epoch, or 0 if another owner
    /// holds the lease. The counter grows only when the lease is newly taken.
    static let acquireFencedScript = """
        if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return redis.call('INCR', KEYS[2]) end
        if redis.call('GET', KEYS[1]) == ARGV[1] then
          redis.call('PEXPIRE', KEYS[1], ARGV[2])
          return tonumber(redis.call('GET', KEYS[2]) or '0')
        end
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

    private func check(_ reply: RESPValue) throws -> RESPValue {
        if case .error(let text) = reply { throw RedisReplies.serverError(text) }
        return reply
    }

    private func integer(_ reply: RESPValue, _ what: String) throws -> Int {
        let r = try check(reply)
        guard case .integer(let n) = r else { throw EventQueueError(.protocol, "\(what) replied \(r), not an integer") }
        return Int(n)
    }

    // MARK: - Routing

    private static let asking = RedisCommand("ASKING")

    /// Sends one command to the node serving `key`, following cluster redirects. A command that
    /// may be retried is sent once more when its connection was lost (a server that closed an idle
    /// connection fails the first command on it).
    /// - Parameter replicated: wait for ``Options/minReplicas`` acknowledgements (a write that must survive a failover).
    private func run(key: String, _ command: RedisCommand, retryable: Bool, block: Duration? = nil, shape: ReplyShape = .generic, replicated: Bool = false) async throws -> RESPValue {
        let replicas = replicated ? options.minReplicas : 0
        if let single {
            do {
                return try await send(to: single, command, retryable: retryable, block: block, shape: shape, replicas: replicas)[0]
            } catch let error as EventQueueError where error.code == .unavailable && retryable && !pool.isClosed {
                return try await send(to: single, command, retryable: retryable, block: block, shape: shape, replicas: replicas)[0]
            }
        }
        let slot = ClusterSlot.of(key)
        var redirects = 0
        var ask: String?
        var retried = false
        while true {
            let address = try ask ?? self.master(ofSlot: slot)
            let node = try self.node(address)
            let replies: [RESPValue]
            do {
                replies = try await send(to: node, ask == nil ? command : Self.asking + command, retryable: retryable, block: block, shape: shape, replicas: replicas)
            } catch let error as EventQueueError where error.code == .unavailable || error.code == .timeout {
                router.withLock { $0.nodeFailed() }
                refreshIfWanted()
                if error.code == .unavailable && retryable && !retried && !pool.isClosed {
                    retried = true
                    continue
                }
                throw error
            }
            ask = nil
            let reply = replies[replies.count - 1]
            let next = router.withLock { $0.next(afterReply: reply.errorText, slot: slot, from: address, redirects: &redirects) }
            switch next {
            case .done:
                return reply
            case .moved(let target):
                logger.debug("redis cluster MOVED", metadata: ["fi.redis.slot": "\(slot)", "fi.redis": "\(target)"])
                refreshIfWanted()
            case .ask(let target):
                ask = target
            case .retry(let pause):
                try await Task.sleep(for: pause)
            case .tooManyRedirects:
                throw EventQueueError(.redirectLimit, "more than \(options.maxRedirects) redirects for a command on '\(key)'; last: \(reply.errorText ?? "")")
            }
        }
    }

    private func send(to node: RedisNode, _ command: RedisCommand, retryable: Bool, block: Duration? = nil, shape: ReplyShape = .generic, replicas: Int = 0) async throws -> [RESPValue] {
        if let block {
            return try await node.withBlockingConnection { c in
                try await c.send(command, retryable: retryable, timeout: block + options.commandTimeout, shape: shape)
            }
        }
        return try await node.connection().send(command, retryable: retryable, shape: shape, replicas: replicas, replicaTimeout: options.replicaTimeout)
    }

    /// The master of `slot`, or any known node (it answers with MOVED to the owner).
    private func master(ofSlot slot: Int) throws -> String {
        let (owner, known) = router.withLock { r in r.master(ofSlot: slot).map { ($0, nil) } ?? (nil, r.masters.first) }
        if let owner { return owner }
        refreshIfWanted()
        guard let any = known ?? seeds.first?.address else { throw EventQueueError(.unavailable, "no cluster node serves slot \(slot)") }
        return any
    }

    /// The node at `address` (`host:port`), with the cluster's credentials.
    private func node(_ address: String) throws -> RedisNode {
        let (host, port) = try RedisEndpoint.hostPort(address, defaultPort: 6379)
        return try pool.node(RedisEndpoint(host: host, port: port, username: options.username, password: options.password))
    }

    private func currentMasters() throws -> [RedisNode] {
        if pool.isClosed { throw EventQueueError(.unavailable, "the queue is closed") }
        if let single { return [single] }
        let masters = router.withLock { $0.masters }
        if masters.isEmpty { throw EventQueueError(.unavailable, "no cluster master known") }
        return try masters.map { try node($0) }
    }

    /// Reads the slot map in the background when the router wants it and no read is running.
    private func refreshIfWanted() {
        guard !pool.isClosed, router.withLock({ $0.startRefresh() }) else { return }
        Task {
            do {
                try await readSlots()
            } catch {
                router.withLock { $0.refreshFailed() }
                logger.debug("redis cluster slot refresh failed", metadata: ["fi.reason": "\(error)"])
            }
        }
    }

    /// Reads the slot map now (at connect).
    func refreshSlots() async throws {
        _ = router.withLock { r in
            r.nodeFailed()
            return r.startRefresh()
        }
        do {
            try await readSlots()
        } catch {
            router.withLock { $0.refreshFailed() }
            throw error
        }
    }

    /// Reads CLUSTER SLOTS from the first node that answers — known masters first, then the
    /// seeds — and replaces the slot map.
    private func readSlots() async throws {
        var candidates = router.withLock { $0.masters }
        for s in seeds where !candidates.contains(s.address) { candidates.append(s.address) }
        var lastError: (any Error)?
        for address in candidates {
            do {
                let node = try self.node(address)
                let reply = try check(try await send(to: node, RedisCommand("CLUSTER", "SLOTS"), retryable: true)[0])
                let ranges = try RedisReplies.decodeSlotRanges(reply, defaultHost: node.endpoint.host)
                router.withLock { $0.refreshed(ranges, answeredBy: node.endpoint.host) }
                return
            } catch {
                lastError = error
            }
        }
        let reason = (lastError as? EventQueueError)?.message ?? lastError.map { "\($0)" } ?? "no node known"
        throw EventQueueError(.unavailable, "no cluster node answered CLUSTER SLOTS (tried \(candidates.joined(separator: ", "))): \(reason)", underlying: lastError)
    }
}
