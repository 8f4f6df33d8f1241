import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// `fi-load`: consultation sessions against any fi-server, arriving as a Poisson process at a
/// target sessions/day, time compressed by a factor; then checks every accepted event reached the corpus.
@main
struct FILoad: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fi-load",
        abstract: "Simulate consultation sessions against an fi-server and report what it sustained.",
        discussion: """
            Sessions arrive as a Poisson process at --sessions-per-day (real time). --compression C runs C \
            simulated seconds per wall second: arrivals C times as often and each session's span C times \
            shorter, so the load applied is sessions-per-day × C in real-time terms. New sessions start for \
            --duration wall seconds; sessions in progress then finish, and every accepted event is looked \
            up with GET /consultations/{id}/events until it is found or --drain-timeout passes.
            """
    )

    @Option(help: "fi-server base URL.") var url = "http://127.0.0.1:7001"
    @Option(help: "Target sessions per day, in real (uncompressed) time.") var sessionsPerDay: Double = 10_000
    @Option(help: "Simulated seconds per wall second.") var compression: Double = 1
    @Option(help: "Wall seconds during which new sessions start.") var duration: Double = 30
    @Option(help: "Simulated seconds a session spans (its 20 requests spread uniformly over it).") var sessionSpan: Double = 1_200
    @Option(help: "Messages per session.") var messages = 10
    @Option(help: "Events per session.") var events = 10
    @Option(help: "Share of sessions with a metadata.site_id (the rest use hash partitions).") var siteFraction = 0.75
    @Option(help: "Distinct sites.") var sites = 8
    @Option(help: "Wall seconds to wait for accepted events to reach the corpus.") var drainTimeout: Double = 120
    @Option(help: "Bearer token (needs '*' when some sessions have no site).") var token: String?
    @Option(help: "Random seed.") var seed: UInt64 = 1
    @Option(help: "Connections to the server at most.") var connections = 64
    @Option(help: "Append a result row to this CSV file.") var csv: String?
    @Option(help: "A label for the CSV row.") var label = ""
    @Flag(help: "Skip the corpus check.") var noVerify = false

    func validate() throws {
        guard URL(string: url)?.host != nil else { throw ValidationError("--url must be an http:// URL") }
        guard sessionsPerDay.isFinite, sessionsPerDay > 0 else { throw ValidationError("--sessions-per-day must be > 0") }
        guard compression.isFinite, compression >= 1 else { throw ValidationError("--compression must be ≥ 1") }
        guard duration.isFinite, duration > 0, duration <= 86_400 else { throw ValidationError("--duration must be 0…86400 s") }
        guard sessionSpan.isFinite, sessionSpan >= 0 else { throw ValidationError("--session-span must be ≥ 0") }
        guard messages >= 0, events >= 0, messages + events > 0 else { throw ValidationError("--messages + --events must be > 0") }
        guard (0...1).contains(siteFraction) else { throw ValidationError("--site-fraction must be 0…1") }
        guard sites >= 1 else { throw ValidationError("--sites must be ≥ 1") }
        guard drainTimeout >= 0 else { throw ValidationError("--drain-timeout must be ≥ 0") }
        guard connections >= 1 else { throw ValidationError("--connections must be ≥ 1") }
    }

    func run() async throws {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: connections)
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(30))
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            try await load(client)
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    func load(_ client: HTTPClient) async throws {
        let base = url.hasSuffix("/") ? String(url.dropLast()) : url
        let runID = String(UInt64(Date().timeIntervalSince1970 * 1000), radix: 36)
        let arrivalMeanWall = 86_400 / sessionsPerDay / compression
        let wallSpan = sessionSpan / compression
        let stats = Stats()
        let clock = ContinuousClock()
        let start = clock.now
        let end = start + .seconds(duration)
        var rng = SeededGenerator(seed: seed)
        let appliedSessionsPerDay = sessionsPerDay * compression
        log(
            "fi-load → \(base): \(fmt(sessionsPerDay)) sessions/day × compression \(fmt(compression)) = \(fmt(appliedSessionsPerDay)) sessions/day applied "
                + "(\(fmt(appliedSessionsPerDay * Double(messages + events) / 86_400, 2)) requests/s), span \(fmt(wallSpan, 2)) s wall, for \(fmt(duration)) s"
        )

        let progress = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(2))
                let s = stats.snapshot()
                let t = (clock.now - start).seconds
                log(
                    "[\(fmt(t, 1)) s] sessions \(s.sessionsStarted) started, \(s.sessionsDone) done; requests \(s.requests) "
                        + "(\(fmt(Double(s.requests) / max(t, 1e-9), 1))/s); p95 \(fmt(s.p95Ms, 2)) ms; errors \(s.errors)"
                )
            }
        }

        var sessions: [SessionPlan] = []
        await withTaskGroup(of: Void.self) { group in
            var next = start + .seconds(rng.exponential(mean: arrivalMeanWall))
            var index = 0
            while next < end {
                try? await Task.sleep(until: next, clock: clock)
                let plan = SessionPlan.make(
                    index: index, runID: runID, spanSeconds: sessionSpan, siteFraction: siteFraction, sites: sites,
                    messages: messages, events: events, using: &rng
                )
                sessions.append(plan)
                index += 1
                stats.sessionStarted()
                let sessionStart = next
                group.addTask { await self.runSession(plan, start: sessionStart, client: client, base: base, stats: stats) }
                next = next + .seconds(rng.exponential(mean: arrivalMeanWall))
            }
        }
        let loadSeconds = (clock.now - start).seconds
        progress.cancel()
        let s = stats.snapshot()

        var verified: (complete: Int, checked: Int, missing: Int, seconds: Double)?
        if !noVerify {
            verified = await verify(sessions, accepted: stats.acceptedBySession(), client: client, base: base)
        }

        let achievedSessionsPerDay = Double(s.sessionsStarted) / (duration * compression) * 86_400
        let requestRate = Double(s.requests) / loadSeconds
        let result: [(String, String)] = [
            ("label", label),
            ("target_sessions_per_day", fmtPlain(sessionsPerDay)),
            ("compression", fmtPlain(compression)),
            ("applied_sessions_per_day", fmtPlain(appliedSessionsPerDay)),
            ("duration_s", fmtPlain(duration)),
            ("sessions_started", "\(s.sessionsStarted)"),
            ("sessions_completed", "\(s.sessionsFullyAccepted)"),
            ("achieved_sessions_per_day", String(format: "%.1f", achievedSessionsPerDay)),
            ("achieved_applied_sessions_per_day", String(format: "%.0f", achievedSessionsPerDay * compression)),
            ("requests", "\(s.requests)"),
            ("request_rate", String(format: "%.2f", requestRate)),
            ("p50_ms", String(format: "%.3f", s.p50Ms)),
            ("p95_ms", String(format: "%.3f", s.p95Ms)),
            ("p99_ms", String(format: "%.3f", s.p99Ms)),
            ("max_ms", String(format: "%.3f", s.maxMs)),
            ("errors", "\(s.errors)"),
            ("errors_by_status", s.errorsByStatus.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }.joined(separator: ";")),
            ("accepted_events", "\(s.accepted)"),
            ("corpus_sessions_complete", verified.map { "\($0.complete)/\($0.checked)" } ?? "skipped"),
            ("corpus_missing_events", verified.map { "\($0.missing)" } ?? "skipped"),
            ("corpus_check_s", verified.map { String(format: "%.1f", $0.seconds) } ?? "skipped"),
        ]
        print("sessions/day achieved:  \(fmt(achievedSessionsPerDay)) real-time equivalent (\(fmt(achievedSessionsPerDay * compression)) applied at compression \(fmt(compression)))")
        print("sessions:               \(s.sessionsStarted) started, \(s.sessionsFullyAccepted) with every request accepted")
        print("requests:               \(s.requests) in \(fmt(loadSeconds, 1)) s = \(fmt(requestRate, 1)) requests/s")
        print("latency:                p50 \(fmt(s.p50Ms, 2)) ms, p95 \(fmt(s.p95Ms, 2)) ms, p99 \(fmt(s.p99Ms, 2)) ms, max \(fmt(s.maxMs, 2)) ms")
        print("errors:                 \(s.errors) \(s.errorsByStatus.isEmpty ? "" : "(\(s.errorsByStatus.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")))")")
        if let v = verified {
            let ok = v.complete == v.checked && v.missing == 0
            print("corpus:                 \(v.complete)/\(v.checked) sessions complete, \(v.missing) accepted events missing — \(ok ? "every accepted event reached the corpus" : "NOT every accepted event reached the corpus")")
        }
        print("RESULT " + result.filter { $0.0 != "label" || !label.isEmpty }.map { "\($0.0)=\($0.1.isEmpty ? "-" : $0.1)" }.joined(separator: " "))
        if let csv {
            let header = result.map(\.0).joined(separator: ",")
            let row = result.map { $0.1.contains(",") ? "\"\($0.1)\"" : $0.1 }.joined(separator: ",")
            if !FileManager.default.fileExists(atPath: csv) {
                try (header + "\n").write(toFile: csv, atomically: true, encoding: .utf8)
            }
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: csv))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data((row + "\n").utf8))
            try handle.close()
        }
        if let v = verified, v.complete != v.checked || v.missing != 0 { throw ExitCode(3) }
    }

    /// Sends one session's requests, each at its scheduled (compressed) time.
    func runSession(_ plan: SessionPlan, start: ContinuousClock.Instant, client: HTTPClient, base: String, stats: Stats) async {
        var allAccepted = true
        for request in plan.requests {
            // Latency runs from the request's scheduled time, not from when it was sent: a request that
            // waits behind a slow server (for a connection, or because an earlier one was late) counts
            // that wait, as a real client would (no coordinated omission).
            let scheduled = start + .seconds(request.offsetSeconds / compression)
            try? await Task.sleep(until: scheduled, clock: .continuous)
            var http = HTTPClientRequest(url: "\(base)/consultations/\(plan.consultationID)/events")
            http.method = .POST
            http.headers.add(name: "Content-Type", value: "application/json")
            if let token { http.headers.add(name: "Authorization", value: "Bearer \(token)") }
            http.body = .bytes(ByteBuffer(bytes: request.body))
            do {
                let response = try await client.execute(http, timeout: .seconds(30))
                _ = try await response.body.collect(upTo: 1 << 20)
                let elapsed = (ContinuousClock.now - scheduled).seconds
                if response.status == .accepted {
                    stats.record(seconds: elapsed, status: nil, accepted: (plan.consultationID, request.eventID))
                } else {
                    allAccepted = false
                    stats.record(seconds: elapsed, status: "\(response.status.code)", accepted: nil)
                }
            } catch {
                allAccepted = false
                stats.record(seconds: (ContinuousClock.now - scheduled).seconds, status: "transport", accepted: nil)
            }
        }
        stats.sessionDone(fullyAccepted: allAccepted)
    }

    /// GETs each session's events until all its accepted event ids are there, or the drain timeout.
    func verify(_ sessions: [SessionPlan], accepted: [String: [String]], client: HTTPClient, base: String) async -> (complete: Int, checked: Int, missing: Int, seconds: Double) {
        let started = ContinuousClock.now
        let deadline = started + .seconds(drainTimeout)
        var pending = sessions.filter { !(accepted[$0.consultationID] ?? []).isEmpty }
        let checked = pending.count
        var missing: [String: Int] = [:]
        log("checking the corpus: \(checked) sessions with accepted events")
        while !pending.isEmpty {
            var still: [SessionPlan] = []
            // 16 GETs at a time.
            for chunk in stride(from: 0, to: pending.count, by: 16).map({ Array(pending[$0..<min($0 + 16, pending.count)]) }) {
                let results = await withTaskGroup(of: (SessionPlan, Int).self) { group in
                    for plan in chunk {
                        group.addTask {
                            let want = accepted[plan.consultationID] ?? []
                            let have = await self.storedEventIDs(plan, client: client, base: base)
                            return (plan, Set(want).subtracting(have ?? []).count)
                        }
                    }
                    var out: [(SessionPlan, Int)] = []
                    for await r in group { out.append(r) }
                    return out
                }
                for (plan, gone) in results {
                    missing[plan.consultationID] = gone
                    if gone > 0 { still.append(plan) }
                }
            }
            pending = still
            if pending.isEmpty || ContinuousClock.now >= deadline { break }
            log("corpus: \(pending.count) sessions not complete yet")
            try? await Task.sleep(for: .seconds(1))
        }
        let complete = checked - pending.count
        return (complete, checked, pending.reduce(0) { $0 + (missing[$1.consultationID] ?? 0) }, (ContinuousClock.now - started).seconds)
    }

    func storedEventIDs(_ plan: SessionPlan, client: HTTPClient, base: String) async -> Set<String>? {
        var http = HTTPClientRequest(url: "\(base)/consultations/\(plan.consultationID)/events" + (plan.site.map { "?site_id=\($0)" } ?? ""))
        if let token { http.headers.add(name: "Authorization", value: "Bearer \(token)") }
        do {
            let response = try await client.execute(http, timeout: .seconds(30))
            let body = try await response.body.collect(upTo: 64 << 20)
            guard response.status == .ok,
                let object = try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any],
                let events = object["events"] as? [[String: Any]]
            else { return nil }
            return Set(events.compactMap { $0["event_id"] as? String })
        } catch {
            return nil
        }
    }

    func log(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

/// Counters and latencies, shared by every session task.
final class Stats: Sendable {
    struct Snapshot {
        var sessionsStarted = 0
        var sessionsDone = 0
        var sessionsFullyAccepted = 0
        var requests = 0
        var accepted = 0
        var errors = 0
        var errorsByStatus: [String: Int] = [:]
        var p50Ms = 0.0
        var p95Ms = 0.0
        var p99Ms = 0.0
        var maxMs = 0.0
    }

    private struct State {
        var snapshot = Snapshot()
        var latencies: [Double] = []
        var accepted: [String: [String]] = [:]
    }

    private let state = Mutex(State())

    func sessionStarted() { state.withLock { $0.snapshot.sessionsStarted += 1 } }

    func sessionDone(fullyAccepted: Bool) {
        state.withLock {
            $0.snapshot.sessionsDone += 1
            if fullyAccepted { $0.snapshot.sessionsFullyAccepted += 1 }
        }
    }

    func record(seconds: Double, status: String?, accepted: (String, String)?) {
        state.withLock { s in
            s.snapshot.requests += 1
            s.latencies.append(seconds)
            if let status {
                s.snapshot.errors += 1
                s.snapshot.errorsByStatus[status, default: 0] += 1
            }
            if let accepted {
                s.snapshot.accepted += 1
                s.accepted[accepted.0, default: []].append(accepted.1)
            }
        }
    }

    func acceptedBySession() -> [String: [String]] { state.withLock { $0.accepted } }

    func snapshot() -> Snapshot {
        let (snap, latencies) = state.withLock { ($0.snapshot, $0.latencies) }
        var out = snap
        let sorted = latencies.sorted()
        func q(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            // Nearest rank.
            let rank = Int((p * Double(sorted.count)).rounded(.up))
            return sorted[min(max(rank, 1), sorted.count) - 1] * 1000
        }
        out.p50Ms = q(0.50)
        out.p95Ms = q(0.95)
        out.p99Ms = q(0.99)
        out.maxMs = (sorted.last ?? 0) * 1000
        return out
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// Fixed decimals with thousands separators: 2131200 → "2,131,200".
func fmt(_ x: Double, _ decimals: Int = 0) -> String {
    guard x.isFinite else { return String(x) }
    let text = String(format: "%.\(decimals)f", abs(x))
    let parts = text.split(separator: ".", omittingEmptySubsequences: false)
    var integer = String(parts[0])
    var grouped = ""
    while integer.count > 3 {
        grouped = "," + integer.suffix(3) + grouped
        integer.removeLast(3)
    }
    return (x < 0 ? "-" : "") + integer + grouped + (parts.count > 1 ? "." + parts[1] : "")
}

func fmtPlain(_ x: Double) -> String {
    x == x.rounded() && abs(x) < 1e15 ? String(Int64(x)) : String(x)
}
