import FILocking
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import Synchronization

/// The outermost middleware: turns every error into the contract's JSON,
/// records `fi_http_requests_total{route,method,status}` and
/// `fi_http_request_duration_seconds{route,method,status}` with the route
/// *template* (never the raw path), tags the response with `X-Request-Id`, and
/// logs the request with that id (server errors at warning, the rest at debug).
struct RequestMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics = HTTPMetrics()

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as APIError {
            response = error.response()
        } catch let error as HTTPError {
            response = Self.translate(error).response()
        } catch {
            context.logger.error("request failed", metadata: ["fi.error": "\(error)"])
            response = APIError.internalError.response()
        }
        let route = context.endpointPath ?? "unmatched"
        let elapsed = ContinuousClock.now - start
        metrics.record(route: route, method: request.method, status: response.status, elapsed: elapsed)
        response.headers[.requestID] = context.id
        // A probe's 503 (not ready: draining, Redis down) is the balancer's business, not a warning per check.
        let level: Logger.Level = response.status.code >= 500 && !route.hasPrefix("/health") ? .warning : .debug
        context.logger.log(
            level: level,
            "request",
            metadata: [
                "http.request.method": "\(request.method)",
                "http.route": "\(route)",
                "http.response.status_code": "\(response.status.code)",
                "duration_ms": "\(Double(elapsed.components.attoseconds / 1_000_000_000_000) / 1000 + Double(elapsed.components.seconds) * 1000)",
            ]
        )
        return response
    }

    /// Hummingbird's own errors (unknown route, body too large, …) as contract JSON.
    static func translate(_ error: HTTPError) -> APIError {
        switch error.status {
        case .notFound:
            return .notFound
        case .contentTooLarge:
            return APIError(.contentTooLarge, "body_too_large", "the body is larger than the limit")
        case .methodNotAllowed:
            return APIError(.methodNotAllowed, "method_not_allowed", "this route does not accept that method")
        default:
            let code = error.status.reasonPhrase.lowercased().replacingOccurrences(of: " ", with: "_")
            return APIError(error.status, code.isEmpty ? "http_error" : code, error.body ?? error.status.reasonPhrase)
        }
    }
}

extension HTTPField.Name {
    static let requestID = Self("X-Request-Id")!
}

/// Per (route, method, status) request counters and duration histograms, created once each.
final class HTTPMetrics: Sendable {
    private struct Key: Hashable {
        let route: String
        let method: HTTPRequest.Method
        let status: Int
    }

    private let instruments = Locked<[Key: (Counter, Timer)]>([:])

    func record(route: String, method: HTTPRequest.Method, status: HTTPResponse.Status, elapsed: Duration) {
        let key = Key(route: route, method: method, status: status.code)
        let (counter, timer) = instruments.withLock { instruments in
            if let existing = instruments[key] { return existing }
            let dimensions = [("route", route), ("method", method.rawValue), ("status", String(status.code))]
            let made = (
                Counter(label: "fi_http_requests_total", dimensions: dimensions),
                Timer(label: "fi_http_request_duration_seconds", dimensions: dimensions, preferredDisplayUnit: .seconds)
            )
            instruments[key] = made
            return made
        }
        counter.increment()
        let c = elapsed.components
        timer.recordNanoseconds(c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000)
    }
}
