import Testing
@testable import FICapacity

/// A `/metrics` body shaped like swift-prometheus output from fi-server, 60 s apart.
enum SampleMetrics {
    static let route = "/consultations/{consultation_id}/events"

    static func text(post202: Int, post429: Int, post503: Int, get200: Int, buckets: [Int], sum: Double, a: Int, p0: Int, backlogA: Int, backlogP0: Int) -> String {
        let bounds = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "+Inf"]
        var t = """
        # HELP fi_http_requests_total Total HTTP requests.
        # TYPE fi_http_requests_total counter
        fi_http_requests_total{route="\(route)",method="POST",status="202"} \(post202)
        fi_http_requests_total{route="\(route)",method="POST",status="429"} \(post429)
        fi_http_requests_total{route="\(route)",method="POST",status="503"} \(post503)
        fi_http_requests_total{method="GET",route="/health",status="200"} \(get200)
        # HELP fi_http_request_duration_seconds HTTP request duration.
        # TYPE fi_http_request_duration_seconds histogram

        """
        for (b, n) in zip(bounds, buckets) {
            t += "fi_http_request_duration_seconds_bucket{route=\"\(route)\",method=\"POST\",le=\"\(b)\"} \(n)\n"
        }
        t += """
        fi_http_request_duration_seconds_sum{route="\(route)",method="POST"} \(sum)
        fi_http_request_duration_seconds_count{route="\(route)",method="POST"} \(buckets.last!)
        # HELP fi_events_accepted_total Events accepted (202) per partition.
        # TYPE fi_events_accepted_total counter
        fi_events_accepted_total{partition="site_a"} \(a)
        fi_events_accepted_total{partition="partition_0"} \(p0)
        # HELP fi_queue_backlog Stream length per partition.
        # TYPE fi_queue_backlog gauge
        fi_queue_backlog{partition="site_a"} \(backlogA)
        fi_queue_backlog{partition="partition_0"} \(backlogP0) 1764400000000
        # TYPE fi_queue_errors_total counter
        fi_queue_errors_total{operation="xadd"} 0
        # TYPE process_resident_memory_bytes gauge
        process_resident_memory_bytes 5.1249152e+07
        weird_label{text="a \\"quoted\\" \\\\ back, {brace}=x\\nline"} NaN

        """
        return t
    }

    static let earlier = text(post202: 1000, post429: 0, post503: 0, get200: 10, buckets: [400, 800, 950, 990, 1000, 1000, 1000], sum: 8.5, a: 600, p0: 400, backlogA: 5, backlogP0: 0)
    static let later = text(post202: 7000, post429: 60, post503: 6, get200: 16, buckets: [1400, 4800, 6550, 6920, 7040, 7060, 7066], sum: 80.5, a: 4200, p0: 2800, backlogA: 360, backlogP0: 12)
}

@Suite("Prometheus text exposition")
struct PrometheusTests {
    @Test("parses samples, labels with escapes, types, timestamps and special values")
    func parser() throws {
        let e = try PrometheusExposition(parsing: SampleMetrics.earlier)
        #expect(e.types["fi_http_requests_total"] == "counter")
        #expect(e.types["fi_http_request_duration_seconds"] == "histogram")
        #expect(e.types["fi_queue_backlog"] == "gauge")
        let requests = e.samples(named: "fi_http_requests_total")
        #expect(requests.count == 4)
        #expect(requests[0].labels == ["route": SampleMetrics.route, "method": "POST", "status": "202"])
        #expect(requests[0].value == 1000)
        let inf = try #require(e.samples(named: "fi_http_request_duration_seconds_bucket").last)
        #expect(inf.labels["le"] == "+Inf")
        #expect(e.samples(named: "process_resident_memory_bytes").first?.value == 51_249_152)
        let backlog = e.samples(named: "fi_queue_backlog")
        #expect(backlog[1].timestampMilliseconds == 1_764_400_000_000)
        #expect(backlog[0].timestampMilliseconds == nil)
        let weird = try #require(e.samples(named: "weird_label").first)
        #expect(weird.labels["text"] == "a \"quoted\" \\ back, {brace}=x\nline")
        #expect(weird.value.isNaN)
    }

    @Test("extracts requests, latency histogram, events and backlog per partition")
    func serviceMetrics() throws {
        let m = try ServiceMetrics(parsing: SampleMetrics.later)
        #expect(m.requestsTotal == 7000 + 60 + 6 + 16)
        #expect(m.requests.count == 4)
        #expect(m.latencyBuckets.map(\.upperBoundSeconds) == [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, .infinity])
        #expect(m.latencyCount == 7066)
        #expect(m.latencySumSeconds == 80.5)
        #expect(m.eventsAcceptedByPartition == ["site_a": 4200, "partition_0": 2800])
        #expect(m.backlogByPartition == ["site_a": 360, "partition_0": 12])
        let onlyHealth = try ServiceMetrics(parsing: SampleMetrics.later, route: "/health")
        #expect(onlyHealth.requestsTotal == 16)
        #expect(onlyHealth.latencyBuckets.isEmpty)
    }

    @Test("histogram quantiles interpolate like histogram_quantile")
    func quantiles() throws {
        let b: [ServiceMetrics.Bucket] = [
            .init(upperBoundSeconds: 0.01, cumulativeCount: 50),
            .init(upperBoundSeconds: 0.05, cumulativeCount: 90),
            .init(upperBoundSeconds: 0.1, cumulativeCount: 100),
            .init(upperBoundSeconds: .infinity, cumulativeCount: 100),
        ]
        #expect(try ServiceMetrics.histogramQuantile(0.5, buckets: b) == 0.01)
        // rank 95 is half-way through (0.05, 0.1].
        #expect(abs(try #require(try ServiceMetrics.histogramQuantile(0.95, buckets: b)) - 0.075) < 1e-15)
        // rank 25 is half-way through [0, 0.01].
        #expect(abs(try #require(try ServiceMetrics.histogramQuantile(0.25, buckets: b)) - 0.005) < 1e-15)
        let tail: [ServiceMetrics.Bucket] = [.init(upperBoundSeconds: 0.1, cumulativeCount: 10), .init(upperBoundSeconds: .infinity, cumulativeCount: 20)]
        #expect(try ServiceMetrics.histogramQuantile(0.99, buckets: tail) == 0.1)
        #expect(try ServiceMetrics.histogramQuantile(0.5, buckets: []) == nil)
    }

    @Test("two snapshots give rates, interval percentiles and Little's-law backlog waits")
    func observedLoad() throws {
        let o = try ObservedLoad(from: ServiceMetrics(parsing: SampleMetrics.earlier), to: ServiceMetrics(parsing: SampleMetrics.later), intervalSeconds: 60)
        #expect(o.requestsPerSecond == Double(6000 + 60 + 6 + 6) / 60)
        #expect(o.rejectedPerSecond == 1)
        #expect(o.serverErrorsPerSecond == 0.1)
        #expect(o.eventsAcceptedPerSecond == 100)
        #expect(abs(try #require(o.meanLatencySeconds) - 72.0 / 6066) < 1e-12)
        // Interval buckets: 1000, 4000, 5600, 5930, 6040, 6060, 6066; p50 rank 3033 in (0.005, 0.01].
        let p50 = try #require(o.p50LatencySeconds)
        let p50Expected: Double = 0.005 + 0.005 * 2033.0 / 3000.0
        #expect(abs(p50 - p50Expected) < 1e-12)
        // p95 rank 5762.7 in (0.025, 0.05]: 0.025 + 0.025 × 162.7 / 330.
        let p95 = try #require(o.p95LatencySeconds)
        let p95Expected: Double = 0.025 + 0.025 * 162.7 / 330.0
        #expect(abs(p95 - p95Expected) < 1e-12)
        // p99 rank 6005.34 in (0.05, 0.1]: 0.05 + 0.05 × 75.34 / 110.
        let p99 = try #require(o.p99LatencySeconds)
        let p99Expected: Double = 0.05 + 0.05 * 75.34 / 110.0
        #expect(abs(p99 - p99Expected) < 1e-12)
        #expect(o.totalBacklogEvents == 372)
        #expect(o.partitions.map(\.partition) == ["partition_0", "site_a"])
        let siteA = o.partitions[1]
        #expect(siteA.eventsPerSecond == 60)
        #expect(siteA.backlogEvents == 360)
        #expect(siteA.backlogWaitSeconds == 6)  // 360 events / 60 events/s
        #expect(o.partitions[0].backlogWaitSeconds == 12.0 / 40)
    }

    @Test("a counter that went down (restart) counts its new value")
    func counterReset() throws {
        let o = try ObservedLoad(from: ServiceMetrics(parsing: SampleMetrics.later), to: ServiceMetrics(parsing: SampleMetrics.earlier), intervalSeconds: 10)
        #expect(o.requestsPerSecond == Double(1000 + 10) / 10)
    }

    @Test("measured capacity and headroom from the observed load")
    func measuredCapacity() throws {
        let o = try ObservedLoad(from: ServiceMetrics(parsing: SampleMetrics.earlier), to: ServiceMetrics(parsing: SampleMetrics.later), intervalSeconds: 60)
        let m = try MeasuredCapacity(observed: o, workers: 12, meanServiceTimeSeconds: 0.01)
        let max = try #require(m.maxRequestsPerSecondAtTarget)
        #expect(abs(max - 1119.8824153360626) < 1e-6)
        #expect(abs(try #require(m.headroomFactor) - max / o.requestsPerSecond) < 1e-12)
        #expect(abs(m.observedSessionsPerDay - o.requestsPerSecond * 86_400 / 20) < 1e-9)
        #expect(m.modelResponseTimeSeconds != nil)
        let table = m.table()
        #expect(table.contains("requests/s"))
        #expect(table.contains("site_a"))
        #expect(table.contains("sessions/day"))
        let json = String(decoding: try m.jsonData(), as: UTF8.self)
        #expect(json.contains("\"max_requests_per_second_at_target\""))
        #expect(json.contains("\"backlog_wait_seconds\" : 6"))
    }

    @Test("malformed text is a malformed_metrics error with its line", arguments: [
        "fi_http_requests_total{route=\"/x} 1",
        "fi_http_requests_total{route=\"/x\"} abc",
        "fi_http_requests_total{route=\"/x\" method=\"GET\"} 1",
        "fi_http_requests_total 1 2 3",
        "9bad 1",
        "fi_http_requests_total{route=\"a\",route=\"b\"} 1",
    ])
    func malformed(line: String) throws {
        let error = #expect(throws: CapacityError.self) {
            try PrometheusExposition(parsing: "# TYPE fi_http_requests_total counter\n" + line + "\n")
        }
        #expect(error?.code == .malformedMetrics)
        #expect(error?.input == "metrics")
        #expect(error?.message.hasPrefix("line 2:") == true)
    }

    @Test("a scrape without fi_http_requests_total is missing_metric")
    func missing() throws {
        let error = #expect(throws: CapacityError.self) {
            try ServiceMetrics(parsing: "# TYPE up gauge\nup 1\n")
        }
        #expect(error?.code == .missingMetric)
        let negative = #expect(throws: CapacityError.self) {
            try ServiceMetrics(parsing: "fi_http_requests_total{status=\"202\"} -1\n")
        }
        #expect(negative?.code == .malformedMetrics)
        let noLe = #expect(throws: CapacityError.self) {
            try ServiceMetrics(parsing: "fi_http_requests_total 1\nfi_http_request_duration_seconds_bucket 1\n")
        }
        #expect(noLe?.code == .malformedMetrics)
    }
}
