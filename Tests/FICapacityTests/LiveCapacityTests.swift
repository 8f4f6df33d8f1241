import Foundation
import Testing
@testable import FICapacity

@Suite("Live capacity estimate")
struct LiveCapacityTests {
    static let earlier = try! PrometheusExposition(parsing: SampleMetrics.earlier)
    static let later = try! PrometheusExposition(parsing: SampleMetrics.later)

    @Test("service time = the route's mean latency over the interval; capacity = MeasuredCapacity with it")
    func measuredServiceTime() throws {
        let options = LiveCapacity.Options(workers: 4, workersSource: "test")
        let live = try LiveCapacity(earlier: Self.earlier, later: Self.later, intervalSeconds: 60, options: options)
        // 6,066 requests on the events route, 72 s of latency between the snapshots.
        let service = try #require(live.meanServiceTimeSeconds)
        #expect(abs(service - 72.0 / 6066.0) < 1e-12)
        #expect(live.serviceTimeSource.contains("over the interval"))
        let observed = try ObservedLoad(
            from: ServiceMetrics(exposition: Self.earlier, route: SampleMetrics.route),
            to: ServiceMetrics(exposition: Self.later, route: SampleMetrics.route),
            intervalSeconds: 60
        )
        #expect(live.observed == observed)
        #expect(abs(observed.requestsPerSecond - 6066.0 / 60) < 1e-9)
        let expected = try MeasuredCapacity(observed: observed, workers: 4, meanServiceTimeSeconds: service)
        #expect(live.capacity == expected)
        #expect(live.notes.contains { $0.contains("5xx") })
        #expect(live.notes.contains { $0.contains("429") })
        #expect(live.table().contains("Live estimate"))
        #expect(live.table().contains("headroom"))
    }

    @Test("a given service time is used as given; route nil counts every route")
    func givenServiceTime() throws {
        var options = LiveCapacity.Options(workers: 2, workersSource: "given")
        options.meanServiceTimeSeconds = 0.004
        options.route = nil
        let live = try LiveCapacity(earlier: Self.earlier, later: Self.later, intervalSeconds: 60, options: options)
        #expect(live.meanServiceTimeSeconds == 0.004)
        #expect(live.serviceTimeSource == "given")
        #expect(abs(live.observed.requestsPerSecond - 6072.0 / 60) < 1e-9, "6 more GET /health")
        let max = try MMcQueue.maxArrivalRate(servers: 2, meanServiceTimeSeconds: 0.004, percentile: 0.95, targetSeconds: 0.05)
        #expect(live.capacity?.maxRequestsPerSecondAtTarget == max.arrivalRatePerSecond)
    }

    @Test("an idle interval falls back to the mean latency since start; no traffic at all leaves the service time unknown")
    func idle() throws {
        let options = LiveCapacity.Options(workers: 2, workersSource: "test")
        let idle = try LiveCapacity(earlier: Self.later, later: Self.later, intervalSeconds: 10, options: options)
        #expect(idle.observed.requestsPerSecond == 0)
        #expect(idle.meanServiceTimeSeconds == 80.5 / 7066)
        #expect(idle.serviceTimeSource.contains("since the server started"))
        #expect(idle.capacity?.headroomFactor == nil, "no observed load, no ratio")

        let fresh = try PrometheusExposition(parsing: "# TYPE fi_queue_backlog gauge\nfi_queue_backlog{partition=\"site_a\"} 0\n")
        let none = try LiveCapacity(earlier: nil, later: fresh, intervalSeconds: 5, options: options, requireRequestMetric: false)
        #expect(none.capacity == nil)
        #expect(none.meanServiceTimeSeconds == nil)
        #expect(none.notes.contains { $0.contains("no service time") })
        #expect(none.table().contains("unknown"))
        let json = try #require(try JSONSerialization.jsonObject(with: none.jsonData()) as? [String: Any])
        #expect(json["workers"] as? Int == 2)
        #expect(json["observed"] != nil)

        let error = #expect(throws: CapacityError.self) {
            try LiveCapacity(earlier: nil, later: fresh, intervalSeconds: 5, options: options)
        }
        #expect(error?.code == .missingMetric)
    }

    @Test("invalid options are rejected, each naming its input")
    func invalidOptions() {
        func input(_ change: (inout LiveCapacity.Options) -> Void) -> String? {
            var options = LiveCapacity.Options(workers: 2, workersSource: "test")
            change(&options)
            do {
                _ = try LiveCapacity(earlier: Self.earlier, later: Self.later, intervalSeconds: 60, options: options)
                return nil
            } catch {
                return error.input
            }
        }
        #expect(input { $0.workers = 0 } == "workers")
        #expect(input { $0.meanServiceTimeSeconds = .nan } == "mean_service_time_seconds")
        #expect(input { $0.requestsPerSession = -1 } == "requests_per_session")
        #expect(input { $0.percentile = 1 } == "percentile")
        #expect(input { $0.responseTimeTargetSeconds = 0 } == "response_time_target_seconds")
        #expect(input { _ in } == nil)
    }

    @Test("MetricsHistory: the baseline is the newest snapshot at least a window old, and few are kept")
    func history() throws {
        let snapshot = try PrometheusExposition(parsing: "fi_http_requests_total 1\n")
        var h = try MetricsHistory(windowSeconds: 60, start: 0, baseline: nil)
        #expect(h.record(snapshot, at: 10).time == 0)
        #expect(h.record(snapshot, at: 30).time == 0)
        #expect(h.record(snapshot, at: 70).time == 10)
        #expect(h.record(snapshot, at: 200).time == 70)

        var every = try MetricsHistory(windowSeconds: 60, start: 0, baseline: nil)
        for t in 1...1_000 {
            let baseline = every.record(snapshot, at: Double(t))
            let age = Double(t) - baseline.time
            if t >= 60 {
                #expect(age >= 60 && age <= 66, "t=\(t) baseline age \(age)")
            } else {
                #expect(baseline.time == 0)
            }
            #expect(every.count <= 40)
        }
        #expect(throws: CapacityError.self) { try MetricsHistory(windowSeconds: 0, start: 0, baseline: nil) }
    }
}
