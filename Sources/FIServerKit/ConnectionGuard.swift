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
    private var deadline: Scheduled<Void>?
    private var closeAfterResponse = false

    init(readTimeout: TimeAmount, logger: Logger) {
        self.timeout = readTimeout
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            schedule(context, in: timeout, "request not received within the read timeout; closing the connection")
        case .end:
            cancelDeadline()
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is HTTPParserError {
            closeAfterResponse = true
            // Should no answer come, close anyway.
            schedule(context, in: .seconds(2), "HTTP parse error; closing the connection")
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
        cancelDeadline()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelDeadline()
    }

    private func schedule(_ context: ChannelHandlerContext, in delay: TimeAmount, _ reason: Logger.Message) {
        cancelDeadline()
        let logger = self.logger
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [weak self] in
            self?.deadline = nil
            logger.debug(reason, metadata: ["fi.after_ms": "\(delay.nanoseconds / 1_000_000)"])
            context.close(promise: nil)
        }
    }

    private func cancelDeadline() {
        deadline?.cancel()
        deadline = nil
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
