import FILocking
import FIPartitioning
import FIQueue
import FIStorage
import Foundation
import HTTPTypes
import Hummingbird
import Instrumentation
import Logging
import Metrics
import Synchronization
import Tracing

/// The contract's routes (Docs/contract.md §3), independent of how the server is run.
final class IngestAPI: Sendable {
    let settings: ServerSettings
    private let queue: any EventQueue
    private let partitioner: Partitioner
    private let tokens: TokenStore?
    private let backlog: BacklogMonitor
    private let readers: CorpusReaders
    private let accepted = Locked<[PartitionKey: Counter]>([:])
    private let queueErrors = Locked<[String: Counter]>([:])

    init(settings: ServerSettings, queue: any EventQueue, tokens: TokenStore?, backlog: BacklogMonitor, readers: CorpusReaders) throws {
        self.settings = settings
        self.queue = queue
        self.partitioner = try Partitioner(partitions: settings.partitions)
        self.tokens = tokens
        self.backlog = backlog
        self.readers = readers
    }

    static let eventsRoute = "/consultations/{consultation_id}/events"
    static let traceparent = HTTPField.Name("traceparent")!
    /// Whether a tracer is bootstrapped: spans are made and their context injected.
    private let tracing = Traces.isEnabled

    func addRoutes(to router: Router<some RequestContext>) {
        router.post(RouterPath(Self.eventsRoute)) { request, context in try await self.postEvent(request, context: context) }
        router.get(RouterPath(Self.eventsRoute)) { request, context in try await self.getEvents(request, context: context) }
        router.get("/health") { _, _ in await self.health() }
    }

    // MARK: POST /consultations/{consultation_id}/events

    func postEvent(_ request: Request, context: some RequestContext) async throws -> Response {
        let consultation = try consultationID(context)
        let grant = try authorize(request)
        if let length = request.headers[.contentLength].flatMap(Int.init), length > settings.maxBodyBytes {
            throw APIError.tooLarge(limit: settings.maxBodyBytes)
        }
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: settings.maxBodyBytes)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw APIError.tooLarge(limit: settings.maxBodyBytes)
        } catch {
            // The connection ended before the body did: the client went away,
            // or sent it too slowly (ServerSettings.requestReadTimeout).
            throw APIError.badRequest("incomplete_body", "the request body ended before it was complete")
        }
        let body: EventBody
        do {
            body = try buffer.withUnsafeReadableBytes { raw in Result { () throws(EventBody.Problem) in try EventBody.parse(raw) } }.get()
        } catch {
            switch error.kind {
            case .invalidJSON: throw APIError.badRequest("invalid_json", error.message)
            case .notAnObject: throw APIError.badRequest("not_an_object", error.message)
            case .siteNotAString: throw APIError.badRequest("invalid_site_id", error.message)
            }
        }
        let key = try partitionKey(consultation, site: body.siteID)
        try check(grant, site: body.siteID)
        if backlog.isOverLimit(key) {
            throw APIError.backlog(partition: key.rawValue, retryAfter: settings.retryAfterSeconds)
        }

        var fields = [
            StreamField(name: "consultation_id", value: Array(consultation.rawValue.utf8)),
            StreamField(name: "event_json", value: Array(buffer.readableBytesView)),
            StreamField(name: "received_at_ms", value: Array(String(Self.nowMilliseconds()).utf8)),
        ]
        let id: StreamEntryID
        do {
            if tracing {
                // The entry carries the queue span's context: the worker's span continues the trace from it.
                id = try await withSpan("fi.queue.append", ofKind: .producer) { span in
                    span.attributes["fi.partition"] = key.rawValue
                    InstrumentationSystem.instrument.inject(span.context, into: &fields, using: StreamFieldsInjector())
                    return try await queue.append(to: key.streamName, fields: fields)
                }
            } else {
                // Not tracing here: a client's trace context still travels to the worker as it came.
                if let parent = request.headers[Self.traceparent], Traces.isValidTraceparent(parent) {
                    fields.append(StreamField(Traces.field, parent))
                }
                id = try await queue.append(to: key.streamName, fields: fields)
            }
        } catch {
            throw queueFailure(error, operation: "append", logger: context.logger)
        }
        acceptedCounter(key).increment()

        var out = ByteBuffer()
        out.reserveCapacity(160)
        out.writeStaticString(#"{"status":"accepted","partition":"#)
        JSONText.writeString(key.rawValue, into: &out)
        out.writeStaticString(#","stream":"#)
        JSONText.writeString(key.streamName, into: &out)
        out.writeStaticString(#","message_id":"#)
        JSONText.writeString(id.description, into: &out)
        out.writeStaticString("}")
        return Response(status: .accepted, headers: [.contentType: "application/json"], body: .init(byteBuffer: out))
    }

    // MARK: GET /consultations/{consultation_id}/events?site_id=

    func getEvents(_ request: Request, context: some RequestContext) async throws -> Response {
        let consultation = try consultationID(context)
        let grant = try authorize(request)
        let site = request.uri.queryParameters.get("site_id").flatMap { $0.isEmpty ? nil : $0 }
        let key = try partitionKey(consultation, site: site)
        try check(grant, site: site)

        let records: [CorpusRecord]
        do {
            records = try await readers.records(consultationID: consultation.rawValue, partition: key)
        } catch {
            context.logger.error("reading the corpus failed", metadata: ["fi.partition": "\(key)", "fi.error": "\(error)"])
            throw APIError(.internalServerError, "storage_error", "the corpus of partition \(key.rawValue) could not be read")
        }
        var out = ByteBuffer()
        out.reserveCapacity(96 + records.reduce(0) { $0 + $1.payload.count + 1 })
        out.writeStaticString(#"{"consultation_id":"#)
        JSONText.writeString(consultation.rawValue, into: &out)
        out.writeStaticString(#","partition":"#)
        JSONText.writeString(key.rawValue, into: &out)
        out.writeStaticString(#","events":["#)
        for (index, record) in records.enumerated() {
            if index > 0 { out.writeStaticString(",") }
            if (try? EventBody.parse(record.payload)) != nil {
                out.writeBytes(record.payload)  // the stored JSON object, byte for byte
            } else {
                // Written by another producer and not a JSON object: returned as a string.
                JSONText.writeString(String(decoding: record.payload, as: UTF8.self), into: &out)
            }
        }
        out.writeStaticString("]}")
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: out))
    }

    // MARK: GET /health

    func health() async -> Response {
        do {
            try await queue.ping()
            return Response(
                status: .ok,
                headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(staticString: #"{"status":"ok"}"#))
            )
        } catch {
            var out = ByteBuffer()
            out.writeStaticString(#"{"status":"unavailable","reason":"#)
            JSONText.writeString("the event queue cannot be reached", into: &out)
            out.writeStaticString("}")
            return Response(
                status: .serviceUnavailable,
                headers: [.contentType: "application/json", .retryAfter: String(settings.retryAfterSeconds)],
                body: .init(byteBuffer: out)
            )
        }
    }

    // MARK: Helpers

    private func consultationID(_ context: some RequestContext) throws -> ConsultationID {
        let raw = context.parameters.get("consultation_id") ?? ""
        do {
            return try ConsultationID(validating: raw)
        } catch {
            throw APIError.badRequest("invalid_consultation_id", error.message)
        }
    }

    private func partitionKey(_ consultation: ConsultationID, site: String?) throws -> PartitionKey {
        do {
            return try partitioner.key(consultationID: consultation.rawValue, siteID: site)
        } catch {
            throw APIError.badRequest("invalid_site_id", "metadata.site_id: \(error.message)")
        }
    }

    /// 401 before anything else is read when tokens are configured and the
    /// request has none, or an unknown one.
    private func authorize(_ request: Request) throws -> TokenStore.Grant? {
        guard let tokens else { return nil }
        guard let grant = tokens.grant(authorization: request.headers[.authorization]) else {
            throw APIError.unauthorized
        }
        return grant
    }

    private func check(_ grant: TokenStore.Grant?, site: String?) throws {
        guard let grant else { return }
        guard grant.allows(site: site) else {
            throw APIError.forbidden(
                site == nil
                    ? "only a '*' token may use hash partitions (events without metadata.site_id)"
                    : "this token may not use that site"
            )
        }
    }

    private func queueFailure(_ error: any Error, operation: String, logger: Logger) -> APIError {
        queueErrors.withLock { counters in
            if counters[operation] == nil {
                counters[operation] = Counter(label: "fi_queue_errors_total", dimensions: [("operation", operation)])
            }
            return counters[operation]!
        }.increment()
        logger.warning("queue operation failed", metadata: ["fi.operation": "\(operation)", "fi.error": "\(error)"])
        // Whatever went wrong, the event was not stored (or may not have been):
        // never 202. Clients retry on 503.
        return .queueUnavailable(retryAfter: settings.retryAfterSeconds)
    }

    private func acceptedCounter(_ key: PartitionKey) -> Counter {
        accepted.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = Counter(label: "fi_events_accepted_total", dimensions: [("partition", key.rawValue)])
            counters[key] = counter
            return counter
        }
    }

    static func nowMilliseconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }
}
