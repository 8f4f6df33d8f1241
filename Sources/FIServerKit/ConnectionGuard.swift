import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// Closes connections that could otherwise be held open or fed forever:
///
/// - a request not received whole — head to the end of its body — within
///   ``ServerSettings/requestReadTimeout`` of its head. Hummingbird's idle
///   timeout (``ServerSettings/idleTimeout``) closes a connection that sends
///   nothing, or whose request head never completes, but every body chunk
///   counts as activity: a body trickled in a byte every few seconds could
///   hold a connection (and a request task) for as long as the body limit
///   allows.
/// - a connection whose request the HTTP decoder rejected (a header over
///   ``ServerSettings/maxHeaderBytes``, too many fields, malformed HTTP), once
///   Hummingbird's `400` is written. Hummingbird only half-closes it and goes
///   on reading (and discarding) whatever the client sends.
final class ConnectionGuardHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let timeout: TimeAmount
    private let logger: Logger
    /// When the request being received started (its head), `nil` between requests.
    private var requestStarted: NIODeadline?
    /// The one pending check of this connection, if any. It is not cancelled
    /// when a request completes: scheduling and cancelling a timer for every
    /// request cost the event loops more than the rest of this handler.
    private var check: Scheduled<Void>?
    private var closeAfterResponse = false
    private var parseErrorDeadline: Scheduled<Void>?

    init(readTimeout: TimeAmount, logger: Logger) {
        self.timeout = readTimeout
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            let now = NIODeadline.now()
            requestStarted = now
            if check == nil { scheduleCheck(context, at: now + timeout) }
        case .end:
            requestStarted = nil
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is HTTPParserError, !closeAfterResponse {
            closeAfterResponse = true
            // Should no answer come, close anyway.
            let logger = self.logger
            parseErrorDeadline = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(2)) {
                logger.debug("HTTP parse error; closing the connection")
                context.close(promise: nil)
            }
        }
        context.fireErrorCaught(error)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if closeAfterResponse, case .end = unwrapOutboundIn(data) {
            context.writeAndFlush(data, promise: promise)
            context.close(promise: nil)
            return
        }
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimers()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimers()
    }

    /// At `deadline`: closes the connection if the request then in progress
    /// started a read timeout ago or more; otherwise checks again when the
    /// request in progress would time out, or stops checking while idle.
    private func scheduleCheck(_ context: ChannelHandlerContext, at deadline: NIODeadline) {
        check = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
            guard let self else { return }
            self.check = nil
            guard let started = self.requestStarted else { return }
            let due = started + self.timeout
            if due <= NIODeadline.now() {
                self.logger.debug(
                    "request not received within the read timeout; closing the connection",
                    metadata: ["fi.after_ms": "\(self.timeout.nanoseconds / 1_000_000)"]
                )
                context.close(promise: nil)
            } else {
                self.scheduleCheck(context, at: due)
            }
        }
    }

    private func cancelTimers() {
        check?.cancel()
        check = nil
        parseErrorDeadline?.cancel()
        parseErrorDeadline = nil
    }
}

@available(*, unavailable)
extension ConnectionGuardHandler: Sendable {}

extension ServerApplication {
    /// HTTP/1.1 limits: idle timeout, request read timeout, header sizes.
    static func http1Configuration(_ settings: ServerSettings, logger: Logger) -> HTTP1Channel.Configuration {
        let readTimeout = TimeAmount.nanoseconds(settings.requestReadTimeout.nanosecondsClamped)
        return HTTP1Channel.Configuration(
            additionalChannelHandlers: [ConnectionGuardHandler(readTimeout: readTimeout, logger: logger)],
            idleTimeout: .nanoseconds(settings.idleTimeout.nanosecondsClamped),
            httpDecoderConfiguration: .init(
                maxHeaderFieldSize: settings.maxHeaderBytes,
                maxHeaderListSize: settings.maxHeaderBytes,
                maxHeaderFieldCount: settings.maxHeaderFields
            )
        )
    }
}

extension Duration {
    fileprivate var nanosecondsClamped: Int64 {
        let c = components
        let (product, overflow) = c.seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? .max : product.addingReportingOverflow(c.attoseconds / 1_000_000_000).partialValue
    }
}
