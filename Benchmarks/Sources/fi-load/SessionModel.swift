import Foundation

/// A seeded generator (SplitMix64), so a run can be repeated exactly.
struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// An exponential variate with this mean (Poisson inter-arrival times).
    mutating func exponential(mean: Double) -> Double {
        -mean * log(1 - Double.random(in: 0..<1, using: &self))
    }
}

/// One consultation as the reference plan describes it: 10 messages and 10 events, all POSTed to
/// `/consultations/{id}/events`, spread over the session's span.
struct SessionPlan: Sendable {
    struct Request: Sendable {
        /// Seconds after the session's start, in simulated time.
        let offsetSeconds: Double
        let eventID: String
        let body: Data
    }

    let consultationID: String
    /// `nil`: no `metadata.site_id` (a hash partition).
    let site: String?
    let requests: [Request]

    static let messageRoles = ["clinician", "patient"]
    static let eventTypes = ["TRANSCRIPTION_SEGMENT", "VITALS", "NOTE_UPDATED", "CODING_SUGGESTION", "ORDER_DRAFT"]
    static let words = Array(
        "the patient reports mild pain since tuesday no fever blood pressure one thirty over eighty five taking ibuprofen twice daily follow up in two weeks advised rest fluids and review of medication history allergy to penicillin noted"
            .split(separator: " ").map(String.init)
    )

    /// Makes a session.
    /// - Parameters:
    ///   - index: The session's number in the run.
    ///   - runID: Makes consultation ids unique per run.
    ///   - spanSeconds: Simulated seconds the session lasts.
    ///   - siteFraction: Share of sessions with a `metadata.site_id`.
    ///   - sites: How many distinct sites.
    ///   - messages: Messages per session.
    ///   - events: Events per session.
    static func make(
        index: Int, runID: String, spanSeconds: Double, siteFraction: Double, sites: Int,
        messages: Int, events: Int, using rng: inout SeededGenerator
    ) -> SessionPlan {
        let consultation = "load-\(runID)-\(index)"
        let site: String? = Double.random(in: 0..<1, using: &rng) < siteFraction ? "site\(Int.random(in: 1...sites, using: &rng))" : nil
        var kinds = Array(repeating: true, count: messages) + Array(repeating: false, count: events)
        kinds.shuffle(using: &rng)
        let offsets = (0..<kinds.count).map { _ in Double.random(in: 0..<spanSeconds, using: &rng) }.sorted()
        var requests: [Request] = []
        for (seq, isMessage) in kinds.enumerated() {
            let eventID = "\(consultation)-\(seq)"
            var object: [String: Any] = [
                "event_id": eventID,
                "seq": seq,
                "occurred_at_offset_s": (offsets[seq] * 1000).rounded() / 1000,
                "metadata": site.map { ["site_id": $0, "source": "fi-load"] } ?? ["source": "fi-load"],
            ]
            if isMessage {
                // Chat messages: 1–3 sentences, ~150–700 bytes of JSON.
                object["event_type"] = "MESSAGE"
                object["payload"] = [
                    "role": messageRoles[seq % 2],
                    "text": sentence(words: Int.random(in: 15...90, using: &rng), using: &rng),
                ]
            } else {
                // Events: a transcription segment or structured data, ~400 B–2.5 KB of JSON.
                let type = eventTypes.randomElement(using: &rng)!
                object["event_type"] = type
                object["payload"] = [
                    "text": sentence(words: Int.random(in: 40...300, using: &rng), using: &rng),
                    "confidence": (Double.random(in: 0.7..<1, using: &rng) * 1000).rounded() / 1000,
                    "codes": (0..<Int.random(in: 0...4, using: &rng)).map { _ in "Z\(Int.random(in: 10...99, using: &rng)).\(Int.random(in: 0...9, using: &rng))" },
                ]
            }
            let body = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            requests.append(Request(offsetSeconds: offsets[seq], eventID: eventID, body: body))
        }
        return SessionPlan(consultationID: consultation, site: site, requests: requests)
    }

    static func sentence(words count: Int, using rng: inout SeededGenerator) -> String {
        (0..<count).map { _ in words.randomElement(using: &rng)! }.joined(separator: " ")
    }
}
