import Hummingbird

/// An error answered as the contract's JSON:
/// `{"error":{"code":"<snake_case>","message":"<human readable>"}}`.
struct APIError: HTTPResponseError {
    let status: HTTPResponse.Status
    let code: String
    let message: String
    var retryAfterSeconds: Int?

    init(_ status: HTTPResponse.Status, _ code: String, _ message: String, retryAfterSeconds: Int? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.retryAfterSeconds = retryAfterSeconds
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        response()
    }

    func response() -> Response {
        var body = ByteBuffer()
        body.writeStaticString(#"{"error":{"code":"#)
        JSONText.writeString(code, into: &body)
        body.writeStaticString(#","message":"#)
        JSONText.writeString(message, into: &body)
        body.writeStaticString("}}")
        var headers: HTTPFields = [.contentType: "application/json"]
        if let retryAfterSeconds { headers[.retryAfter] = String(retryAfterSeconds) }
        return Response(status: status, headers: headers, body: .init(byteBuffer: body))
    }

    static func badRequest(_ code: String, _ message: String) -> APIError {
        APIError(.badRequest, code, message)
    }

    static let notFound = APIError(.notFound, "not_found", "no such route")
    static let unauthorized = APIError(.unauthorized, "unauthorized", "a valid bearer token is required")

    static func forbidden(_ message: String) -> APIError {
        APIError(.forbidden, "forbidden", message)
    }

    static func tooLarge(limit: Int) -> APIError {
        APIError(.contentTooLarge, "body_too_large", "the body is larger than the limit of \(limit) bytes")
    }

    static func backlog(partition: String, retryAfter: Int) -> APIError {
        APIError(
            .tooManyRequests,
            "backlog_full",
            "partition \(partition) has more queued events than the backlog limit; retry later",
            retryAfterSeconds: retryAfter
        )
    }

    static func queueUnavailable(retryAfter: Int) -> APIError {
        APIError(.serviceUnavailable, "queue_unavailable", "the event queue cannot be reached; retry later", retryAfterSeconds: retryAfter)
    }

    static let internalError = APIError(.internalServerError, "internal_error", "the server failed to handle the request")
}

/// Minimal JSON text output for the few strings the server writes itself.
enum JSONText {
    static func writeString(_ text: String, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): buffer.writeStaticString("\\\"")
            case UInt8(ascii: "\\"): buffer.writeStaticString("\\\\")
            case 0x0A: buffer.writeStaticString("\\n")
            case 0x0D: buffer.writeStaticString("\\r")
            case 0x09: buffer.writeStaticString("\\t")
            case 0x00..<0x20:
                let hex: [UInt8] = Array("0123456789abcdef".utf8)
                buffer.writeStaticString("\\u00")
                buffer.writeInteger(hex[Int(byte >> 4)])
                buffer.writeInteger(hex[Int(byte & 0xF)])
            default: buffer.writeInteger(byte)
            }
        }
        buffer.writeInteger(UInt8(ascii: "\""))
    }
}
