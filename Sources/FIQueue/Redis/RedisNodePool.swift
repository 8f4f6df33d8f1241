import FILocking
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The connections of a queue, by node address (`host:port`): created on first use, closed together.
final class RedisNodePool: Sendable {
    private let group: any EventLoopGroup
    private let options: RedisEventQueue.Options
    private let settings: ConnectionSettings
    private let logger: Logger
    private let nodes = Locked<(byAddress: [String: RedisNode], closed: Bool)>(([:], false))

    init(group: any EventLoopGroup, options: RedisEventQueue.Options, settings: ConnectionSettings, logger: Logger) {
        self.group = group
        self.options = options
        self.settings = settings
        self.logger = logger
    }

    var isClosed: Bool { nodes.withLock { $0.closed } }

    /// The node at `endpoint`'s address.
    /// - Throws: `.unavailable` once the pool is closed.
    func node(_ endpoint: RedisEndpoint) throws -> RedisNode {
        try nodes.withLock { state in
            if state.closed { throw EventQueueError(.unavailable, "the queue is closed") }
            if let node = state.byAddress[endpoint.address] { return node }
            let node = RedisNode(endpoint: endpoint, group: group, options: options, settings: settings, logger: logger)
            state.byAddress[endpoint.address] = node
            return node
        }
    }

    /// Closes every connection once its requests have their replies; later calls fail with `.unavailable`.
    func close() async {
        let all = nodes.withLock { state -> [RedisNode] in
            state.closed = true
            return Array(state.byAddress.values)
        }
        for node in all { await node.close() }
    }
}

/// The connections to one node: pipelined connections on every event loop of the group, and a
/// pool of connections for blocking reads.
///
/// A caller on one of the group's event loops (fi-server's request handlers, with the HTTP server
/// and the queue on one group) uses that loop's connection, so its command is written, and its
/// reply read, without leaving the loop; the requests of one loop tick share one write.
final class RedisNode: Sendable {
    let endpoint: RedisEndpoint
    private let group: any EventLoopGroup
    private let settings: ConnectionSettings
    private let logger: Logger
    /// Pipelined connections per event loop, by the loop's identity.
    private let pipelined: [ObjectIdentifier: [RedisConnection]]
    private let fallback: [RedisConnection]
    private let next = Atomic<Int>(0)
    private let maxBlocking: Int
    private let pool = Locked(Pool())

    private struct Pool {
        var idle: [RedisConnection] = []
        var total = 0
        var waiters: [CheckedContinuation<RedisConnection, any Error>] = []
        var closed = false
    }

    init(endpoint: RedisEndpoint, group: any EventLoopGroup, options: RedisEventQueue.Options, settings: ConnectionSettings, logger: Logger) {
        self.endpoint = endpoint
        self.group = group
        self.settings = settings
        self.logger = logger
        self.maxBlocking = max(1, options.maxBlockingConnections)
        var byLoop: [ObjectIdentifier: [RedisConnection]] = [:]
        var all: [RedisConnection] = []
        for loop in group.makeIterator() {
            let connections = (0..<max(1, options.pipelineConnections)).map { _ in
                RedisConnection(endpoint: endpoint, eventLoop: loop, settings: settings, logger: logger)
            }
            byLoop[ObjectIdentifier(loop)] = connections
            all += connections
        }
        if all.isEmpty {
            all = [RedisConnection(endpoint: endpoint, eventLoop: group.next(), settings: settings, logger: logger)]
        }
        pipelined = byLoop
        fallback = all
    }

    /// The pipelined connection for the caller: one on the caller's own event loop if it runs on
    /// one of the group's, otherwise the next in turn.
    func connection() -> RedisConnection {
        let n = next.add(1, ordering: .relaxed).newValue
        if let current = MultiThreadedEventLoopGroup.currentEventLoop, let mine = pipelined[ObjectIdentifier(current)] {
            return mine.count == 1 ? mine[0] : mine[n % mine.count]
        }
        return fallback[n % fallback.count]
    }

    /// Runs `body` with a connection of its own (a blocking read), returned to the pool after.
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
        case .create: return RedisConnection(endpoint: endpoint, eventLoop: group.next(), settings: settings, logger: logger)
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
        if closed { Task { await c.close() } }
        waiter?.resume(returning: c)
    }

    func close() async {
        let (idle, waiters) = pool.withLock { p -> ([RedisConnection], [CheckedContinuation<RedisConnection, any Error>]) in
            p.closed = true
            defer { p.idle.removeAll(); p.waiters.removeAll() }
            return (p.idle, p.waiters)
        }
        for w in waiters { w.resume(throwing: EventQueueError(.unavailable, "the queue is closed")) }
        for c in idle { await c.close() }
        for c in fallback { await c.close() }
    }
}
