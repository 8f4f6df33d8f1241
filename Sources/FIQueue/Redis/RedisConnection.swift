import Logging
import NIOCore
import NIOPosix
import NIOSSL

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

/// Timeouts, backoff and TLS of a queue's connections.
struct ConnectionSettings: Sendable {
    var connectTimeout: Duration
    var commandTimeout: Duration
    var minBackoff: Duration
    var maxBackoff: Duration
    /// TLS to every node, or `nil` for plain TCP.
    var tls: NIOSSLContext? = nil
}

/// One Redis connection: a NIO channel on one event loop, connected on first use.
///
/// Every mutable property is touched only on `eventLoop`. A caller already on that loop (a
/// request handled there) sends without leaving it; others hop onto it. A broken connection is
/// dropped and re-established by the next request — at once, then with exponential backoff while
/// the server refuses, during which requests fail fast with `.unavailable`.
final class RedisConnection: @unchecked Sendable {
    let endpoint: RedisEndpoint
    let eventLoop: any EventLoop
    private let settings: ConnectionSettings
    private let logger: Logger

    private enum State {
        case idle
        case connecting([RedisRequest])
        case connected(RedisChannelHandler, any Channel)
        case closed
    }

    private var state = State.idle
    private var backoff: Duration = .zero
    private var nextAttempt: NIODeadline?
    private var lastConnectError = ""

    init(endpoint: RedisEndpoint, eventLoop: any EventLoop, settings: ConnectionSettings, logger: Logger) {
        self.endpoint = endpoint
        self.eventLoop = eventLoop
        self.settings = settings
        self.logger = logger
    }

    /// Sends commands (encoded back to back) and returns their replies, error replies included.
    /// - Parameters:
    ///   - retryable: whether the command may be sent again if the connection breaks before its
    ///     reply (see ``RedisRequest/retryable``).
    ///   - timeout: how long to wait for the replies; the command timeout by default.
    ///   - replicas: how many replicas must acknowledge the command before its replies are
    ///     returned (`.notReplicated` otherwise), waiting at most `replicaTimeout` for them.
    func send(_ command: RedisCommand, retryable: Bool, timeout: Duration? = nil, shape: ReplyShape = .generic, replicas: Int = 0, replicaTimeout: Duration = .zero) async throws -> [RESPValue] {
        let wait = TimeAmount(timeout ?? settings.commandTimeout)
        // Unchecked: every request is completed exactly once, by the channel handler or here.
        return try await withUnsafeThrowingContinuation { continuation in
            var pending = RedisRequest(command: command, shape: shape, retryable: retryable, timeout: wait, completion: .task(continuation))
            pending.replicas = replicas
            pending.replicaTimeoutMs = replicaTimeout.milliseconds
            let request = pending
            if eventLoop.inEventLoop {
                submit(request)
            } else {
                eventLoop.execute { self.submit(request) }
            }
        }
    }

    func send(_ command: RedisCommand, retryable: Bool) async throws -> RESPValue {
        try await send(command, retryable: retryable)[0]
    }

    /// Closes the connection once the requests sent have their replies; later requests fail with `.unavailable`.
    func close() async {
        let closed: EventLoopFuture<Void> = eventLoop.submit {
            let previous = self.state
            self.state = .closed
            switch previous {
            case .connecting(let requests):
                for r in requests { r.fail(EventQueueError(.unavailable, "the queue is closed")) }
            case .connected(let handler, let channel):
                handler.closeAfterPendingReplies()
                return channel.closeFuture
            case .idle, .closed:
                break
            }
            return self.eventLoop.makeSucceededVoidFuture()
        }.flatMap { $0 }
        try? await closed.get()
    }

    // MARK: On the event loop

    private func submit(_ request: RedisRequest) {
        switch state {
        case .connected(let handler, _):
            handler.send(request)
        case .connecting(var requests):
            requests.append(request)
            state = .connecting(requests)
        case .closed:
            request.fail(EventQueueError(.unavailable, "the queue is closed"))
        case .idle:
            if let nextAttempt, NIODeadline.now() < nextAttempt {
                request.fail(EventQueueError(.unavailable, "cannot connect to Redis at \(endpoint.address): \(lastConnectError)"))
                return
            }
            state = .connecting([request])
            connect()
        }
    }

    private func connect() {
        let address = endpoint.address
        let logger = self.logger
        let tls = settings.tls
        let serverName = Self.serverName(endpoint.host)
        let ready = eventLoop.makePromise(of: Void.self)
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(TimeAmount(settings.connectTimeout))
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    if let tls {
                        try pipeline.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName))
                    }
                    try pipeline.addHandler(RedisChannelHandler(address: address, tls: tls != nil, ready: ready, logger: logger))
                }
            }
        let connectTimeout = settings.connectTimeout
        bootstrap.connect(host: endpoint.host, port: endpoint.port)
            .hop(to: eventLoop)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .failure(let error):
                    ready.fail(error)  // a refused connect never reached the handler
                    self.connectFailed(Self.reason(error))
                case .success(let channel):
                    // The TLS handshake is bounded by the connect timeout too: a TLS client on a
                    // plain port may otherwise wait for a ServerHello that never comes.
                    let deadline = self.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(connectTimeout)) {
                        ready.fail(EventQueueError(.unavailable, "no TLS handshake within \(connectTimeout) (not a TLS port? then use redis://)"))
                    }
                    ready.futureResult.assumeIsolated().whenComplete { readiness in
                        deadline.cancel()
                        switch readiness {
                        case .success:
                            self.handshake(channel)
                        case .failure(let error):
                            channel.close(promise: nil)
                            self.connectFailed(Self.reason(error))
                        }
                    }
                }
            }
    }

    /// AUTH and SELECT, before any request of a caller is written.
    private func handshake(_ channel: any Channel) {
        guard let handler = try? channel.pipeline.syncOperations.handler(type: RedisChannelHandler.self) else {
            channel.close(promise: nil)
            connectFailed("the channel has no Redis handler")
            return
        }
        var setup = RedisCommand()
        if let password = endpoint.password {
            if let user = endpoint.username {
                setup = setup + RedisCommand("AUTH", user, password)
            } else {
                setup = setup + RedisCommand("AUTH", password)
            }
        }
        if endpoint.database != 0 {
            setup = setup + RedisCommand("SELECT", String(endpoint.database))
        }
        guard setup.count > 0 else {
            connected(handler, channel)
            return
        }
        let promise = eventLoop.makePromise(of: [RESPValue].self)
        handler.send(RedisRequest(command: setup, shape: .generic, retryable: true, timeout: TimeAmount(settings.commandTimeout), completion: .promise(promise)))
        promise.futureResult.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let replies):
                if let text = replies.lazy.compactMap(\.errorText).first {
                    channel.close(promise: nil)
                    self.connectFailed(text)
                } else {
                    self.connected(handler, channel)
                }
            case .failure(let error):
                self.connectFailed(Self.reason(error))
            }
        }
    }

    private func connected(_ handler: RedisChannelHandler, _ channel: any Channel) {
        guard case .connecting(let requests) = state else {
            // Closed meanwhile.
            channel.close(promise: nil)
            return
        }
        state = .connected(handler, channel)
        backoff = .zero
        nextAttempt = nil
        logger.debug("redis connected", metadata: ["fi.redis": "\(endpoint.address)", "fi.tls": "\(settings.tls != nil)"])
        handler.onClose = { [weak handler] reason in
            guard let handler, case .connected(let live, _) = self.state, live === handler else { return }
            self.logger.debug("redis connection lost", metadata: ["fi.redis": "\(self.endpoint.address)", "fi.reason": "\(reason)"])
            // The server may simply have closed an idle connection: the next request reconnects at once.
            self.state = .idle
            self.nextAttempt = nil
        }
        for r in requests { handler.send(r) }
    }

    private func connectFailed(_ reason: String) {
        guard case .connecting(let requests) = state else { return }
        state = .idle
        lastConnectError = reason
        backoff = backoff == .zero ? settings.minBackoff : min(backoff * 2, settings.maxBackoff)
        nextAttempt = .now() + TimeAmount(backoff)
        logger.debug("redis connect failed", metadata: [
            "fi.redis": "\(endpoint.address)", "fi.reason": "\(reason)", "fi.retry_in": "\(backoff)",
        ])
        let error = EventQueueError(.unavailable, "cannot connect to Redis at \(endpoint.address): \(reason)")
        for r in requests { r.fail(error) }
    }

    /// A connect or handshake failure in one line.
    private static func reason(_ error: any Error) -> String {
        if let error = error as? EventQueueError { return error.message }
        return RedisChannelHandler.describe(error)
    }

    /// The TLS server name: the host, unless it is an IP address (no SNI; the certificate's IP
    /// address entries are checked against the address connected to instead).
    static func serverName(_ host: String) -> String? {
        (try? SocketAddress(ipAddress: host, port: 0)) == nil ? host : nil
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let c = duration.components
        let (product, overflow) = c.seconds.multipliedReportingOverflow(by: 1_000_000_000)
        self = .nanoseconds(overflow ? .max : product.addingReportingOverflow(c.attoseconds / 1_000_000_000).partialValue)
    }
}
