import FIQueue
import Foundation
import Logging

/// `fi-bench queue [--url redis://127.0.0.1:6379 | --memory] [--appends 200000] [--concurrency 64]
/// [--size 1024] [--batch 256] [--consumers 1,4] [--connections 2]`
///
/// Appends `--appends` entries of one `--size`-byte field `f` (as `redis-benchmark … XADD bench * f <1KB>`)
/// from `--concurrency` tasks, then reads them back through a consumer group in batches of
/// `--batch`, acknowledging each batch, with 1 and with 4 consumers. Prints `RESULT` lines.
enum QueueBench {
    static func main(_ arguments: [String]) async throws {
        var url = "redis://127.0.0.1:6379"
        var memory = false
        var appends = 200_000
        var concurrency = 64
        var size = 1024
        var batch = 256
        var consumerCounts = [1, 4]
        var connections = 1
        var i = 0
        func value() -> String {
            i += 1
            guard i < arguments.count else { usage() }
            return arguments[i]
        }
        func int() -> Int {
            guard let n = Int(value()), n > 0 else { usage() }
            return n
        }
        while i < arguments.count {
            switch arguments[i] {
            case "--url": url = value()
            case "--memory": memory = true
            case "--appends": appends = int()
            case "--concurrency": concurrency = int()
            case "--size": size = int()
            case "--batch": batch = int()
            case "--consumers": consumerCounts = value().split(separator: ",").compactMap { Int($0) }.filter { (1...1024).contains($0) }
            case "--connections": connections = int()
            default: usage()
            }
            i += 1
        }

        let batchSize = batch
        var logger = Logger(label: "fi-bench.queue")
        logger.logLevel = .warning
        var options = RedisEventQueue.Options()
        options.pipelineConnections = connections
        let queue: any EventQueue = memory
            ? InMemoryEventQueue()
            : try await RedisEventQueue.connect(url: url, options: options, logger: logger)
        let backend = memory ? "memory" : "redis"
        let stream = "fi-bench:queue:\(UUID().uuidString.prefix(8))"
        let fields = [StreamField(name: "f", value: [UInt8](repeating: UInt8(ascii: "x"), count: size))]

        // Warm-up: connections, allocator, stream creation.
        for _ in 0..<200 { _ = try await queue.append(to: "\(stream):warmup", fields: fields) }

        let perTask = appends / concurrency
        let total = perTask * concurrency
        let start = ContinuousClock.now
        let cpuStart = cpuSeconds()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<concurrency {
                group.addTask {
                    for _ in 0..<perTask { _ = try await queue.append(to: stream, fields: fields) }
                }
            }
            try await group.waitForAll()
        }
        let appendSeconds = (ContinuousClock.now - start) / .seconds(1)
        let appendCPU = cpuSeconds() - cpuStart
        let stored = try await queue.length(of: stream)
        print("RESULT bench=queue op=append backend=\(backend) concurrency=\(concurrency) connections=\(connections) size=\(size) appends=\(total) stored=\(stored) seconds=\(fmt(appendSeconds)) appends_per_s=\(Int(Double(total) / appendSeconds)) client_cpu_us_per_op=\(fmt(appendCPU * 1e6 / Double(total)))")

        // Sequential: read a batch, acknowledge it, read the next. Overlapped: the ack of batch n
        // travels with the read of batch n+1 (one round trip per batch), as a worker may do once
        // batch n is persisted.
        let runs = consumerCounts.map { ($0, false) } + (consumerCounts.isEmpty ? [] : [(1, true)])
        for (consumers, overlapped) in runs {
            let group = "bench-\(consumers)-\(overlapped)"
            try await queue.createGroup(group, on: stream)
            let start = ContinuousClock.now
            let cpuStart = cpuSeconds()
            let n = try await withThrowingTaskGroup(of: Int.self) { tasks in
                for c in 0..<consumers {
                    tasks.addTask {
                        var done = 0
                        var unacked: [StreamEntryID] = []
                        while true {
                            let entries: [StreamEntry]
                            if overlapped {
                                let previous = unacked
                                async let acked = previous.isEmpty ? 0 : queue.ack(group, on: stream, ids: previous)
                                entries = try await queue.readGroup(group, consumer: "c\(c)", from: stream, count: batchSize)
                                let n = try await acked
                                precondition(n == previous.count, "acknowledged \(n) of \(previous.count)")
                                unacked = entries.map(\.id)
                            } else {
                                entries = try await queue.readGroup(group, consumer: "c\(c)", from: stream, count: batchSize)
                                let n = try await queue.ack(group, on: stream, ids: entries.map(\.id))
                                precondition(n == entries.count, "acknowledged \(n) of \(entries.count)")
                            }
                            if entries.isEmpty { return done }
                            done += entries.count
                        }
                    }
                }
                return try await tasks.reduce(0, +)
            }
            let seconds = (ContinuousClock.now - start) / .seconds(1)
            let cpu = cpuSeconds() - cpuStart
            let pending = try await queue.pending(group, on: stream).count
            print("RESULT bench=queue op=read+ack backend=\(backend) mode=\(overlapped ? "overlapped" : "sequential") consumers=\(consumers) batch=\(batchSize) size=\(size) entries=\(n) pending_after=\(pending) seconds=\(fmt(seconds)) entries_per_s=\(Int(Double(n) / seconds)) client_cpu_us_per_entry=\(fmt(cpu * 1e6 / Double(max(n, 1))))")
        }
        await queue.close()
    }

    /// User + system CPU time of this process: what the client costs, whatever else runs on the machine.
    private static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    private static func fmt(_ d: Double) -> String { String(format: "%.3f", d) }

    private static func usage() -> Never {
        FileHandle.standardError.write(Data("usage: fi-bench queue [--url URL | --memory] [--appends N] [--concurrency N] [--size BYTES] [--batch N] [--consumers 1,4] [--connections N]\n".utf8))
        exit(2)
    }
}
