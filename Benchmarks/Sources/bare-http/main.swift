// The framework's ceiling: a Hummingbird 2 route shaped like fi-server's
// POST that reads the body and answers 202 without validating or queueing.
//   bare-http [PORT]
import Foundation
import Hummingbird

let port = CommandLine.arguments.dropFirst().first.flatMap(Int.init) ?? 7201
let router = Router()
router.post("/consultations/{consultation_id}/events") { request, _ -> Response in
    _ = try await request.body.collect(upTo: 1 << 20)
    return Response(
        status: .accepted,
        headers: [.contentType: "application/json"],
        body: .init(byteBuffer: ByteBuffer(staticString: #"{"status":"accepted"}"#))
    )
}
let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)))
try await app.runService()
