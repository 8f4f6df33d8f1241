internal import CHiredis
import Foundation
import Logging
import Synchronization

/// A reply from Redis, copied out of hiredis' reply object.
enum RESPValue: Sendable, Equatable {
    case bulk([UInt8])
    case simple(String)
    case error(String)
    case integer(Int64)
    case null
    case array([RESPValue])
    /// An XREADGROUP/XREAD reply decoded straight from hiredis' reply (``ReplyShape/streamEntries``).
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

/// Where and how to connect.
struct RedisEndpoint: Sendable, Hashable, CustomStringConvertible {
    var host: String
    var port: Int
    var username: String?
    var password: String?
    var database: Int = 0

    var address: String { "\(host):\(port)" }
    var description: String { address }
}

/// Timeouts and backoff of one connection.
struct ConnectionSettings: Sendable {
    var connectTimeout: Duration
    var commandTimeout: Duration
    var minBackoff: Duration
    var maxBackoff: Duration
    /// Most requests written in one pipeline.
    var maxBatch: Int = 1024
}

/// One hiredis connection, owned by its own thread.
///
/// Requests queue up while the thread waits for replies; the thread then takes every queued
/// request, writes all their commands (RESP-encoded by the callers) in one buffer and
/// reads the replies in order (`redisGetReply`) — concurrent callers share round trips
/// (auto-pipelining). A broken connection is dropped and re-established on the next request,
/// with exponential backoff after failed attempts; requests sent on a connection that broke
/// before their reply fail with `.unknownResult` if they change data.
final class RedisConnection: @unchecked Sendable {
    struct Request {
        /// The commands, RESP-encoded back to back.
        var payload: [UInt8]
        var count: Int
        var timeout: Duration?
        var sideEffects: Bool
        var shape: ReplyShape
        var continuation: UnsafeContinuation<[RESPValue], any Error>
    }

    let endpoint: RedisEndpoint
    private let settings: ConnectionSettings
    private let logger: Logger
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var queue: [Request] = []
    private var closed = false
    private var started = false
    // Owned by the connection thread.
    private var context: UnsafeMutablePointer<redisContext>?
    private var currentTimeout: Duration = .zero
    private var backoff: Duration = .zero
    private var nextAttempt: ContinuousClock.Instant?
    /// Set once a connection has succeeded: only then is a failure a lost
    /// connection worth logging (a first failure is reported by throwing).
    private var everConnected = false
    private var lastConnectError = ""
    private var writeBuffer: [UInt8] = []
    private var lastUsed = ContinuousClock.now
    /// Where hiredis' reader builds each reply (see ``FlatReply``); owned by the connection thread.
    private let flat: UnsafeMutablePointer<CHiredis_Flat>

    init(endpoint: RedisEndpoint, settings: ConnectionSettings, logger: Logger) {
        CHiredis_ignoreSIGPIPE()
        flat = CHiredis_flatCreate()!
        self.endpoint = endpoint
        self.settings = settings
        self.logger = logger
    }

    /// Requests queued and not yet answered (a load hint).
    var depth: Int {
        condition.lock()
        defer { condition.unlock() }
        return queue.count
    }

    /// Sends `commands` back to back and returns their replies (error replies included).
    /// - Parameter timeout: socket timeout for this request (blocking reads), else the command timeout.
    func send(_ commands: [[[UInt8]]], timeout: Duration? = nil, sideEffects: Bool, shape: ReplyShape = .generic) async throws -> [RESPValue] {
        try await send(RESPCommands(commands), timeout: timeout, sideEffects: sideEffects, shape: shape)
    }

    /// Sends commands already RESP-encoded back to back and returns their replies.
    func send(_ commands: RESPCommands, timeout: Duration? = nil, sideEffects: Bool, shape: ReplyShape = .generic) async throws -> [RESPValue] {
        let payload = commands.bytes
        // Unsafe (unchecked): every request is resumed exactly once, by the connection thread or by close().
        return try await withUnsafeThrowingContinuation { cont in
            condition.lock()
            if closed {
                condition.unlock()
                cont.resume(throwing: EventQueueError(.unavailable, "the queue is closed"))
                return
            }
            queue.append(Request(payload: payload, count: commands.count, timeout: timeout, sideEffects: sideEffects, shape: shape, continuation: cont))
            if !started {
                started = true
                let thread = Thread { [self] in self.run() }
                thread.name = "fi-redis \(endpoint.address)"
                thread.start()
            }
            condition.signal()
            condition.unlock()
        }
    }

    func send(_ command: [[UInt8]], timeout: Duration? = nil, sideEffects: Bool) async throws -> RESPValue {
        try await send([command], timeout: timeout, sideEffects: sideEffects)[0]
    }

    /// Stops the thread after the requests in hand; queued requests fail with `.unavailable`.
    deinit {
        CHiredis_flatDestroy(flat)
    }

    func close() {
        condition.lock()
        closed = true
        let dropped = queue
        queue.removeAll()
        condition.signal()
        condition.unlock()
        for r in dropped { r.continuation.resume(throwing: EventQueueError(.unavailable, "the queue is closed")) }
    }

    // MARK: Thread

    private func run() {
        while true {
            condition.lock()
            while queue.isEmpty && !closed { condition.wait() }
            if closed && queue.isEmpty {
                condition.unlock()
                break
            }
            let batch: [Request]
            if queue.count <= settings.maxBatch {
                batch = queue
                queue.removeAll(keepingCapacity: true)
            } else {
                batch = Array(queue.prefix(settings.maxBatch))
                queue.removeFirst(settings.maxBatch)
            }
            condition.unlock()
            process(batch)
        }
        disconnect()
    }

    private func process(_ batch: [Request]) {
        guard let ctx = connectIfNeeded() else {
            let error = EventQueueError(.unavailable, "cannot connect to Redis at \(endpoint.address): \(lastConnectError)")
            for r in batch { r.continuation.resume(throwing: error) }
            return
        }
        let timeout = batch.lazy.compactMap(\.timeout).max().map { max($0, settings.commandTimeout) } ?? settings.commandTimeout
        if timeout != currentTimeout {
            redisSetTimeout(ctx, timeval(timeout))
            currentTimeout = timeout
        }
        let total: Int
        let written: Int
        if batch.count == 1 {
            total = batch[0].payload.count
            written = writeAll(ctx, batch[0].payload)
        } else {
            writeBuffer.removeAll(keepingCapacity: true)
            for r in batch { writeBuffer.append(contentsOf: r.payload) }
            total = writeBuffer.count
            written = writeAll(ctx, writeBuffer)
        }
        if written < total {
            if written == 0 {
                // Nothing reached the server: nothing was applied.
                let reason = "write failed: \(String(cString: strerror(CHiredis_errno())))"
                logger.debug("redis connection lost", metadata: ["fi.redis": "\(endpoint.address)", "fi.reason": "\(reason)"])
                disconnect()
                nextAttempt = nil
                let error = EventQueueError(.unavailable, "connection to \(endpoint.address) lost: \(reason)")
                for r in batch { r.continuation.resume(throwing: error) }
            } else {
                fail(batch[...], ctx: ctx)
            }
            return
        }
        for (i, r) in batch.enumerated() {
            var replies: [RESPValue] = []
            replies.reserveCapacity(r.count)
            for _ in 0..<r.count {
                var raw: UnsafeMutableRawPointer?
                if redisGetReply(ctx, &raw) != CHiredis_OK() || raw == nil {
                    fail(batch[i...], ctx: ctx)
                    return
                }
                replies.append(FlatReply.decode(flat.pointee.bytes(), shape: r.shape))
            }
            r.continuation.resume(returning: replies)
        }
        // One huge reply (say, a long XRANGE) should not pin its buffer for good.
        CHiredis_flatTrim(flat, 8 << 20)
    }

    /// The connection broke while replies were outstanding.
    private func fail(_ requests: ArraySlice<Request>, ctx: UnsafeMutablePointer<redisContext>) {
        let reason = withUnsafeBytes(of: ctx.pointee.errstr) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        let timedOut = ctx.pointee.err == CHiredis_ERR_IO() && reason.contains("temporarily unavailable")
        logger.debug("redis connection lost", metadata: ["fi.redis": "\(endpoint.address)", "fi.reason": "\(reason)"])
        disconnect()
        // The server may simply have closed an idle connection: try again at once.
        nextAttempt = nil
        for r in requests {
            let error: EventQueueError
            if r.sideEffects {
                error = EventQueueError(.unknownResult, "connection to \(endpoint.address) lost before the reply (\(reason)); the command may or may not have been applied")
            } else if timedOut {
                error = EventQueueError(.timeout, "no reply from \(endpoint.address) within \(currentTimeout)")
            } else {
                error = EventQueueError(.unavailable, "connection to \(endpoint.address) lost: \(reason)")
            }
            r.continuation.resume(throwing: error)
        }
    }

    private func connectIfNeeded() -> UnsafeMutablePointer<redisContext>? {
        if let ctx = context {
            // A server that closed an idle connection (restart, `timeout`) would otherwise fail the
            // next append with an unknown result; a peek finds the EOF before anything is sent.
            let now = ContinuousClock.now
            defer { lastUsed = now }
            if now - lastUsed < .seconds(1) || peerStillOpen(ctx.pointee.fd) { return ctx }
            logger.debug("redis connection closed by the server while idle", metadata: ["fi.redis": "\(endpoint.address)"])
            disconnect()
        }
        let clock = ContinuousClock()
        if let nextAttempt, clock.now < nextAttempt { return nil }
        if let ctx = connect() {
            context = ctx
            backoff = .zero
            nextAttempt = nil
            everConnected = true
            return ctx
        }
        backoff = backoff == .zero ? settings.minBackoff : min(backoff * 2, settings.maxBackoff)
        nextAttempt = clock.now + backoff
        logger.log(level: everConnected ? .info : .debug, "redis connect failed", metadata: [
            "fi.redis": "\(endpoint.address)", "fi.reason": "\(lastConnectError)", "fi.retry_in": "\(backoff)",
        ])
        return nil
    }

    private func connect() -> UnsafeMutablePointer<redisContext>? {
        guard let ctx = redisConnectWithTimeout(endpoint.host, Int32(endpoint.port), timeval(settings.connectTimeout)) else {
            lastConnectError = "out of memory"
            return nil
        }
        if ctx.pointee.err != 0 {
            lastConnectError = withUnsafeBytes(of: ctx.pointee.errstr) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            redisFree(ctx)
            return nil
        }
        redisEnableKeepAlive(ctx)
        // Replies are built into one reusable buffer instead of a redisReply per element.
        CHiredis_flatInstall(ctx.pointee.reader, flat)
        // Keep the read buffer between replies instead of freeing it after every large one.
        ctx.pointee.reader.pointee.maxbuf = 0
        redisSetTimeout(ctx, timeval(settings.commandTimeout))
        currentTimeout = settings.commandTimeout
        var setup: [[[UInt8]]] = []
        if let password = endpoint.password {
            if let user = endpoint.username {
                setup.append([Array("AUTH".utf8), Array(user.utf8), Array(password.utf8)])
            } else {
                setup.append([Array("AUTH".utf8), Array(password.utf8)])
            }
        }
        if endpoint.database != 0 {
            setup.append([Array("SELECT".utf8), Array(String(endpoint.database).utf8)])
        }
        let setupBytes = RESP.encode(setup)
        if writeAll(ctx, setupBytes) < setupBytes.count {
            lastConnectError = "connection lost during AUTH/SELECT"
            redisFree(ctx)
            return nil
        }
        for _ in setup {
            var raw: UnsafeMutableRawPointer?
            guard redisGetReply(ctx, &raw) == CHiredis_OK(), raw != nil else {
                lastConnectError = "connection lost during AUTH/SELECT"
                redisFree(ctx)
                return nil
            }
            let reply = FlatReply.decode(flat.pointee.bytes(), shape: .generic)
            if case .error(let text) = reply {
                lastConnectError = text
                redisFree(ctx)
                return nil
            }
        }
        return ctx
    }

    private func disconnect() {
        if let context { redisFree(context) }
        context = nil
    }

    /// False if the peer has closed the socket (a non-blocking peek sees EOF or an error).
    private func peerStillOpen(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        if n > 0 { return true }
        if n == 0 { return false }
        let e = CHiredis_errno()
        return e == EAGAIN || e == EWOULDBLOCK || e == EINTR
    }

    /// Writes `bytes` to the socket; returns how many were written (all, unless the connection broke
    /// or the send timeout expired). hiredis' own output buffer stays empty, so `redisGetReply` only reads.
    private func writeAll(_ ctx: UnsafeMutablePointer<redisContext>, _ bytes: [UInt8]) -> Int {
        let fd = ctx.pointee.fd
        return bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n > 0 {
                    offset += n
                } else if n < 0 && CHiredis_errno() == EINTR {
                    continue
                } else {
                    break
                }
            }
            return offset
        }
    }
}

/// Commands RESP-encoded back to back, ready for the socket.
struct RESPCommands: Sendable {
    private(set) var bytes: [UInt8] = []
    private(set) var count = 0

    init() {}

    init(_ commands: [[[UInt8]]]) {
        bytes = RESP.encode(commands)
        count = commands.count
    }

    /// Starts a command of `arguments` arguments; append exactly that many next.
    mutating func begin(arguments: Int, reserving capacity: Int = 0) {
        bytes.reserveCapacity(bytes.count + capacity + 16)
        bytes.append(UInt8(ascii: "*"))
        RESP.appendDecimal(arguments, to: &bytes)
        bytes.append(13)
        bytes.append(10)
        count += 1
    }

    mutating func argument(_ value: some Collection<UInt8>) {
        bytes.append(UInt8(ascii: "$"))
        RESP.appendDecimal(value.count, to: &bytes)
        bytes.append(13)
        bytes.append(10)
        bytes.append(contentsOf: value)
        bytes.append(13)
        bytes.append(10)
    }

    /// An entry id as `<ms>-<seq>`, formatted in place.
    mutating func argument(_ id: StreamEntryID) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: StreamEntryID.maximumLength) { buffer in
            let n = id.write(into: buffer)
            argument(UnsafeBufferPointer(rebasing: buffer[..<n]))
        }
    }

    mutating func argument(_ value: String) {
        var value = value
        value.withUTF8 { argument($0) }
    }

    static func + (lhs: RESPCommands, rhs: RESPCommands) -> RESPCommands {
        var out = lhs
        out.bytes += rhs.bytes
        out.count += rhs.count
        return out
    }
}

/// RESP encoding of commands (arrays of bulk strings).
enum RESP {
    static func encode(_ commands: [[[UInt8]]]) -> [UInt8] {
        var size = 0
        for c in commands {
            size += 16
            for a in c { size += a.count + 16 }
        }
        var out: [UInt8] = []
        out.reserveCapacity(size)
        for c in commands {
            out.append(UInt8(ascii: "*"))
            appendDecimal(c.count, to: &out)
            out.append(13); out.append(10)
            for a in c {
                out.append(UInt8(ascii: "$"))
                appendDecimal(a.count, to: &out)
                out.append(13); out.append(10)
                out.append(contentsOf: a)
                out.append(13); out.append(10)
            }
        }
        return out
    }

    /// Appends a non-negative `n` in decimal (every argument's length goes through here).
    static func appendDecimal(_ n: Int, to out: inout [UInt8]) {
        if n < 10 {
            out.append(UInt8(truncatingIfNeeded: 48 &+ n))
            return
        }
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var value = UInt(n)
            var start = 20
            repeat {
                start -= 1
                digits[start] = UInt8(truncatingIfNeeded: 48 &+ value % 10)
                value /= 10
            } while value > 0
            out.append(contentsOf: UnsafeBufferPointer(rebasing: digits[start...]))
        }
    }
}

private func timeval(_ d: Duration) -> timeval {
    let c = d.components
    return Glibc.timeval(tv_sec: Int(c.seconds), tv_usec: Int(c.attoseconds / 1_000_000_000_000))
}
