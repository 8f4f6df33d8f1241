import Logging
import NIOCore
import NIOSSL
import NIOTLS

/// One request on a connection: commands encoded back to back, and where their replies go.
struct RedisRequest: Sendable {
    /// Where the replies of a request go: a waiting task, or a future on the event loop
    /// (the connection's own AUTH/SELECT).
    enum Completion: Sendable {
        case task(UnsafeContinuation<[RESPValue], any Error>)
        case promise(EventLoopPromise<[RESPValue]>)
        /// The handler's own `WAIT`, which releases the requests held for it.
        case replicaWait
    }

    var command: RedisCommand
    var shape: ReplyShape
    /// Whether the command may be sent again when the connection breaks before its reply: true
    /// for commands whose repetition cannot change the outcome (reads, XACK, XTRIM, lease
    /// acquisition, group creation). A command that may not (XADD, lease release) fails with
    /// `.unknownResult` instead: it may or may not have been applied.
    var retryable: Bool
    /// Replicas that must acknowledge the command before its replies are handed over (0: none):
    /// the handler follows each tick's writes that ask for replicas with one `WAIT`.
    var replicas: Int = 0
    /// How long that `WAIT` may take on the server, in milliseconds.
    var replicaTimeoutMs: Int64 = 0
    /// How long to wait for the replies once sent (a blocking read: its BLOCK time plus the command timeout).
    var timeout: TimeAmount
    var completion: Completion

    func succeed(_ replies: [RESPValue]) {
        switch completion {
        case .task(let continuation): continuation.resume(returning: replies)
        case .promise(let promise): promise.succeed(replies)
        case .replicaWait: break
        }
    }

    func fail(_ error: EventQueueError) {
        switch completion {
        case .task(let continuation): continuation.resume(throwing: error)
        case .promise(let promise): promise.fail(error)
        case .replicaWait: break
        }
    }
}

/// The NIO side of one Redis connection, on its channel's event loop.
///
/// Requests are appended to one outbound buffer and flushed together once per event-loop tick
/// (every request written in one tick shares one `write`: pipelining without a thread). Replies
/// are parsed on the loop by hiredis' reader (``RedisReplyDecoder``) and handed, in order, to the
/// requests waiting for them. One timer per connection watches the oldest request's deadline; a
/// request not answered in time closes the connection. When the connection closes, every request
/// still waiting fails: with `.unavailable` (or `.timeout`) if it may be retried, with
/// `.unknownResult` if not — it may or may not have been applied.
///
/// **Replica acknowledgement.** A request that asks for replicas (``RedisRequest/replicas``) is
/// followed, at the end of its tick's writes, by one `WAIT <replicas> <timeout>` for every such
/// request of that tick: Redis answers it once the replicas have everything this connection wrote
/// before it. The requests' replies are held until then, and handed over only if enough replicas
/// acknowledged; otherwise they fail with `.notReplicated` (applied on the master, and a failover
/// may lose them).
final class RedisChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private struct Waiting {
        var request: RedisRequest
        var deadline: NIODeadline
        var replies: [RESPValue] = []
    }

    let address: String
    private let logger: Logger
    private let tls: Bool
    private var context: ChannelHandlerContext?
    /// Requests sent and not yet answered, oldest first from `head` (a plain array: the standard
    /// library's operations are optimized even in a debug build).
    private var waiting: [Waiting] = []
    private var head = 0
    private var outbound = ByteBuffer()
    private var flushScheduled = false
    /// The most replicas asked for by a request of this tick, and the longest replica timeout:
    /// one `WAIT` for them goes out with the tick's flush.
    private var replicasThisTick = 0
    private var replicaTimeoutThisTick: Int64 = 0
    /// Requests answered and waiting for the `WAIT` sent after them, with their replies.
    private var held: [(request: RedisRequest, replies: [RESPValue])] = []
    private let decoder = RedisReplyDecoder()
    private var timer: Scheduled<Void>?
    /// Why the connection closed (a TLS or socket error, a timeout), for the errors of waiting requests.
    private var closeReason: String?
    private var timedOut = false
    private var closeWhenIdle = false
    /// Whether any reply has come: a plain connection closed before the first one may have
    /// reached a TLS port.
    private var answered = false
    private let ready: EventLoopPromise<Void>
    private var readyDone = false
    /// Called once when the channel goes inactive.
    var onClose: ((String) -> Void)?

    /// - Parameter ready: succeeded once the channel can carry commands (connected, and with TLS
    ///   the handshake done); failed with the reason if it closes before.
    init(address: String, tls: Bool, ready: EventLoopPromise<Void>, logger: Logger) {
        self.address = address
        self.tls = tls
        self.ready = ready
        self.logger = logger
    }

    // MARK: Requests

    /// Sends a request (on the event loop): its bytes go out with this tick's flush.
    func send(_ request: RedisRequest) {
        guard let context, context.channel.isActive, closeReason == nil else {
            request.fail(EventQueueError(.unavailable, "connection to \(address) is closed; nothing was sent"))
            return
        }
        let deadline = NIODeadline.now() + request.timeout
        waiting.append(Waiting(request: request, deadline: deadline))
        outbound.writeBytes(request.command.bytes)
        if request.replicas > 0 {
            replicasThisTick = max(replicasThisTick, request.replicas)
            replicaTimeoutThisTick = max(replicaTimeoutThisTick, request.replicaTimeoutMs)
        }
        if !flushScheduled {
            flushScheduled = true
            context.eventLoop.assumeIsolated().execute { self.flush() }
        }
        if timer == nil { armTimer(at: deadline) }
    }

    /// Closes the channel once every request sent has its reply.
    func closeAfterPendingReplies() {
        closeWhenIdle = true
        if waiting.isEmpty { context?.close(promise: nil) }
    }

    private func flush() {
        flushScheduled = false
        guard let context, outbound.readableBytes > 0 else { return }
        if replicasThisTick > 0 {
            // One WAIT after everything this tick wrote: it covers every earlier write of the connection.
            let timeoutMs = max(1, replicaTimeoutThisTick)
            let wait = RedisRequest(
                command: RedisCommand("WAIT", String(replicasThisTick), String(timeoutMs)), shape: .generic, retryable: true,
                timeout: .milliseconds(timeoutMs) + (waiting.last?.request.timeout ?? .seconds(5)), completion: .replicaWait)
            waiting.append(Waiting(request: wait, deadline: .now() + wait.timeout))
            outbound.writeBytes(wait.command.bytes)
            replicasThisTick = 0
            replicaTimeoutThisTick = 0
        }
        context.writeAndFlush(wrapOutboundOut(outbound), promise: nil)
        // Usually written at once and released: then clearing reuses the same storage.
        outbound.clear()
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive && !tls { becomeReady(nil) }
    }

    func channelActive(context: ChannelHandlerContext) {
        if !tls { becomeReady(nil) }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent { becomeReady(nil) }
        context.fireUserInboundEventTriggered(event)
    }

    private func becomeReady(_ failure: String?) {
        guard !readyDone else { return }
        readyDone = true
        if let failure {
            ready.fail(EventQueueError(.unavailable, failure))
        } else {
            ready.succeed()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        unwrapInboundIn(data).withUnsafeReadableBytes { decoder.feed($0) }
        do {
            while head < waiting.count, let reply = try decoder.next(shape: waiting[head].request.shape) {
                answered = true
                if waiting[head].request.command.count == 1 {
                    let done = waiting[head].request
                    head += 1
                    complete(done, [reply])
                } else {
                    waiting[head].replies.append(reply)
                    if waiting[head].replies.count == waiting[head].request.command.count {
                        let done = waiting[head]
                        head += 1
                        complete(done.request, done.replies)
                    }
                }
            }
            if head == waiting.count {
                waiting.removeAll(keepingCapacity: true)
                head = 0
            } else if head >= 1024 {
                waiting.removeFirst(head)
                head = 0
            }
            if waiting.isEmpty, try decoder.next() != nil {
                close(context, reason: "a reply came that no command asked for")
                return
            }
        } catch {
            close(context, reason: "protocol error: \(error)")
            return
        }
        if waiting.isEmpty && closeWhenIdle { context.close(promise: nil) }
    }

    /// Hands a request its replies — or holds them for the `WAIT` that follows it, or, for that
    /// `WAIT`, releases the requests it covers.
    ///
    /// A request whose (last) reply is an error reply (`MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN`, `READONLY`,
    /// a script error, …) is handed it at once: Redis applied nothing for it, so there is nothing for
    /// replicas to acknowledge, and the caller must see the reply itself — a redirect is followed and
    /// corrects the slot map. (Held for the `WAIT`, a `MOVED` from a master turned replica by a
    /// failover came back as `.notReplicated`, since `WAIT` fails on a replica, and the stale slot map
    /// was never corrected: every later write to that slot failed the same way.)
    private func complete(_ request: RedisRequest, _ replies: [RESPValue]) {
        if case .replicaWait = request.completion {
            let waitReply = replies[0]
            let acknowledged: Int64
            if case .integer(let n) = waitReply { acknowledged = n } else { acknowledged = -1 }
            let released = held
            held.removeAll(keepingCapacity: true)
            for (r, heldReplies) in released {
                if acknowledged >= r.replicas {
                    r.succeed(heldReplies)
                } else {
                    let got = acknowledged < 0 ? "WAIT failed: \(waitReply.errorText ?? "\(waitReply)")" : "\(acknowledged) acknowledged"
                    r.fail(EventQueueError(.notReplicated, "applied on \(address) but not acknowledged by \(r.replicas) replica(s) within \(r.replicaTimeoutMs) ms (\(got))"))
                }
            }
        } else if request.replicas > 0 && replies.last?.errorText == nil {
            held.append((request, replies))
        } else {
            request.succeed(replies)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        decoder.trim()
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        close(context, reason: Self.describe(error))
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        let reason = closeReason ?? (answered || tls
            ? "connection closed by the server"
            : "connection closed by the server before any reply (a TLS port? then use rediss://)")
        closeReason = reason
        becomeReady(reason)
        let failed = waiting[head...]
        waiting = []
        head = 0
        let heldForWait = held
        held = []
        for (r, _) in heldForWait {
            r.fail(EventQueueError(.notReplicated, "applied on \(address), but the connection was lost (\(reason)) before its replicas acknowledged it"))
        }
        for w in failed {
            if case .replicaWait = w.request.completion { continue }
            let error: EventQueueError
            if !w.request.retryable {
                error = EventQueueError(.unknownResult, "connection to \(address) lost before the reply (\(reason)); the command may or may not have been applied")
            } else if timedOut {
                error = EventQueueError(.timeout, "no reply from \(address) within \(w.request.timeout.milliseconds) ms")
            } else {
                error = EventQueueError(.unavailable, "connection to \(address) lost: \(reason)")
            }
            w.request.fail(error)
        }
        onClose?(reason)
        onClose = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        self.context = nil
    }

    private func close(_ context: ChannelHandlerContext, reason: String) {
        if closeReason == nil {
            closeReason = reason
            logger.debug("redis connection closing", metadata: ["fi.redis": "\(address)", "fi.reason": "\(reason)"])
        }
        context.close(promise: nil)
    }

    // MARK: Timeouts

    /// One timer per connection: at the oldest request's deadline, close the connection if that
    /// request is still unanswered; otherwise look again at the next deadline, or stop while idle.
    private func armTimer(at deadline: NIODeadline) {
        guard let context else { return }
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.timer = nil
            guard let context = self.context, self.head < self.waiting.count else { return }
            let first = self.waiting[self.head]
            if first.deadline <= .now() {
                self.timedOut = true
                self.close(context, reason: "no reply within \(first.request.timeout.milliseconds) ms")
            } else {
                self.armTimer(at: first.deadline)
            }
        }
    }

    /// A socket or TLS error in one line.
    static func describe(_ error: any Error) -> String {
        switch error {
        case NIOSSLError.handshakeFailed(let cause): return "TLS handshake failed: \(cause)"
        case let error as NIOSSLError: return "TLS: \(error)"
        case let error as NIOSSLExtraError: return "TLS: \(error)"
        case let error as BoringSSLError: return "TLS: \(error)"
        case let error as IOError: return error.description
        default: return "\(error)"
        }
    }
}

@available(*, unavailable)
extension RedisChannelHandler: Sendable {}

extension TimeAmount {
    var milliseconds: Int64 { nanoseconds / 1_000_000 }
}
