import FIPartitioning
import FIQueue
import FIStorage
import Foundation
import Instrumentation
import Logging
import Metrics
import Synchronization
import Tracing

/// Consumes one partition while its lease is held: read a batch → append it
/// to the corpus → flush (inside `append`) → acknowledge → delete from the
/// stream. Nothing is acknowledged before the batch is durable in the file.
///
/// Ordering is what makes the file's watermark a sound duplicate filter: rows
/// are appended in stream order, so an entry at or below the last stored
/// stream id is already in the file. To keep that true, pending entries (from
/// this consumer's earlier life, or from a previous owner of the partition)
/// are all claimed and persisted, in id order, before any new entry is read.
final class PartitionRunner: Sendable {
    let key: PartitionKey
    private let queue: any EventQueue
    private let configuration: WorkerConfiguration
    private let logger: Logger
    private let lease: LeaseClock
    /// The lease's fencing epoch: the writer refuses to write once a higher one has taken the partition.
    private let epoch: UInt64
    private let stopRequested = Atomic<Bool>(false)
    private let progress: PartitionProgress

    private let drainOnStop: Bool

    init(
        key: PartitionKey,
        queue: any EventQueue,
        configuration: WorkerConfiguration,
        lease: LeaseClock,
        epoch: UInt64,
        drainOnStop: Bool,
        logger: Logger
    ) {
        self.epoch = epoch
        self.key = key
        self.drainOnStop = drainOnStop
        self.queue = queue
        self.configuration = configuration
        self.lease = lease
        var logger = logger
        logger[metadataKey: "fi.partition"] = "\(key)"
        logger[metadataKey: "fi.lease_epoch"] = "\(epoch)"
        self.logger = logger
        self.progress = PartitionProgress(key: key)
    }

    /// Asks the runner to stop after the batch in hand.
    func stop() { stopRequested.store(true, ordering: .relaxed) }

    var statistics: PartitionStatistics { progress.statistics }

    private var isStopping: Bool { stopRequested.load(ordering: .relaxed) }

    /// May this runner still act on the partition at all?
    private var mayWrite: Bool { lease.isValid && !Task.isCancelled }

    /// Runs until asked to stop or the lease is lost. Never throws: failures
    /// are logged and retried with backoff while the lease lasts.
    func run() async {
        var writer: CorpusWriter?
        var backoff = Backoff(maximum: configuration.maxBackoff)
        var needsRecovery = true
        // Delivery counts say how often worker *processes* received an entry;
        // only the first recovery sees counts not inflated by this runner's
        // own retries (say, while the disk was full).
        var firstRecovery = true
        let heldSince = ContinuousClock.now
        var lastSweep = ContinuousClock.now
        var lastProgress = ContinuousClock.now
        var drained = false
        var pipeline = BatchPipeline(
            read: { self.readBatch() },
            store: { batch, writer in try await self.store(batch, into: writer) },
            settle: { ids in try await self.settle(ids) }
        )

        defer { progress.reset() }
        while mayWrite {
            // Stop after the batch in hand, or (embedded mode) once the stream is empty.
            if isStopping && (!drainOnStop || drained) { break }
            // Reported whether batches succeed or not: the gauges must not freeze while the disk is full.
            if ContinuousClock.now - lastProgress >= configuration.progressInterval {
                await reportProgress()
                lastProgress = .now
            }
            do {
                if writer == nil {
                    writer = try await openWriter()
                    needsRecovery = true
                }
                let writer = writer!

                if ContinuousClock.now - lastSweep >= configuration.claimInterval {
                    needsRecovery = true
                    lastSweep = .now
                }

                if needsRecovery {
                    try await pipeline.finish(into: mayWrite ? writer : nil)
                    switch try await recover(into: writer, through: &pipeline, heldSince: heldSince, applyDeliveryLimit: firstRecovery) {
                    case .done:
                        needsRecovery = false
                        firstRecovery = false
                    case .waitingForOthers:
                        try await Task.sleep(for: min(.seconds(1), configuration.claimIdle))
                        continue
                    case .interrupted:
                        // Back to the top: it stops there, or, if the lease
                        // came back, recovers again before reading anything new.
                        continue
                    }
                }

                let entries = try await pipeline.next()
                drained = entries.isEmpty
                if entries.isEmpty {
                    // Idle: close an aged segment, honour an erasure's roll request, apply retention.
                    try await writer.maintain()
                } else {
                    if !isStopping || drainOnStop { pipeline.startReadAhead() }
                    try await pipeline.storeThenSettle(entries.map { ($0, nil) }, into: writer, wait: false)
                }
                backoff.reset()
            } catch {
                await pipeline.abandon()
                // Lease lost or task cancelled: stop (nothing is left to finish).
                if error is CancellationError { break }
                if (error as? StorageError)?.code == .fenced {
                    // A newer lease has taken the partition (the fence or the corpus carries a higher
                    // epoch): this runner must not write it again. What it read stays pending.
                    logger.error("a newer lease holds the partition; stopped writing it (fenced)", metadata: ["fi.error": "\(error)"])
                    progress.errors.increment()
                    Counter(label: "fi_worker_fenced_total", dimensions: [("partition", key.rawValue)]).increment()
                    try? await writer?.close()
                    writer = nil
                    break
                }
                // Entries read but not persisted stay pending for this
                // consumer; recovery re-reads them in order before anything new.
                needsRecovery = true
                let locked = (error as? StorageError)?.code == .locked
                if error is StorageError, !locked {
                    // The writer refuses appends after an HDF5/I/O failure; reopen it.
                    try? await writer?.close()
                    writer = nil
                }
                if locked {
                    logger.warning("corpus file is locked by another writer; retrying", metadata: ["fi.error": "\(error)"])
                } else {
                    logger.warning("partition batch failed; backing off", metadata: ["fi.error": "\(error)", "fi.backoff": "\(backoff.current)"])
                }
                progress.errors.increment()
                do { try await backoff.wait() } catch { break }
            }
        }
        // Finish the batch in hand: the one read ahead is written, flushed and
        // acknowledged too, and the last acknowledgement awaited.
        do {
            try await pipeline.finish(into: mayWrite ? writer : nil)
        } catch {
            logger.warning("finishing the last batch failed; it stays pending", metadata: ["fi.error": "\(error)"])
        }
        if let writer {
            do {
                try await writer.close()
            } catch {
                logger.error("closing the corpus failed", metadata: ["fi.error": "\(error)"])
            }
        }
        logger.info("partition released", metadata: ["fi.lease_valid": "\(lease.isValid)"])
    }

    /// Opens the partition's corpus and makes sure its consumer group exists.
    private func openWriter() async throws -> CorpusWriter {
        // EntryDecoder has checked every payload is UTF-8; the writer need not again.
        var options = configuration.store
        options.validateUTF8 = false
        // The lease's fencing token: recorded in every row; a newer lease's fence stops this writer.
        options.fencingEpoch = epoch
        let (progress, logger) = (self.progress, self.logger)
        options.events = { progress.record($0, logger: logger) }
        let writer = try await CorpusWriter.open(
            directory: key.directory(storageRoot: configuration.storageRoot),
            options: options,
            logger: logger
        )
        try await queue.createGroup(configuration.group, on: key.streamName)
        logger.info("partition opened", metadata: ["fi.rows": "\(writer.rowCount)", "fi.watermark": "\(writer.lastStreamID.map(\.description) ?? "-")"])
        return writer
    }

    /// Starts reading the next batch. While the stream has a backlog (the first
    /// read of `batchSize` comes back full) a second read, without blocking,
    /// takes up to `commitBatches - 1` batches more, so one flush + sync commits
    /// them all (group commit).
    private func readBatch() -> Task<[StreamEntry], any Error> {
        let block = isStopping ? nil : configuration.readBlock
        return Task {
            let size = configuration.batchSize
            var entries = try await queue.readGroup(
                configuration.group, consumer: configuration.consumer, from: key.streamName,
                count: size, block: block, ownPending: false
            )
            if configuration.commitBatches > 1, entries.count == size, mayWrite {
                entries += try await queue.readGroup(
                    configuration.group, consumer: configuration.consumer, from: key.streamName,
                    count: size * (configuration.commitBatches - 1), block: nil, ownPending: false
                )
            }
            return entries
        }
    }

    enum RecoveryState {
        case done
        case waitingForOthers
        /// Stopped (stop requested, or the lease lapsed) before every pending
        /// entry was stored: nothing new may be read — a new row above the
        /// unclaimed ones would move the watermark past them.
        case interrupted
    }

    /// Claims every pending entry of the group on this stream, in id order,
    /// and persists them. Entries pending at other consumers (a previous owner)
    /// are claimed only once this worker has held the partition for
    /// `claimIdle`; until then nothing new is read, so rows stay in order.
    private func recover(
        into writer: CorpusWriter,
        through pipeline: inout BatchPipeline,
        heldSince: ContinuousClock.Instant,
        applyDeliveryLimit: Bool
    ) async throws -> RecoveryState {
        let stream = key.streamName
        let summary = try await queue.pending(configuration.group, on: stream)
        if summary.count == 0 { return .done }
        let others = summary.consumers.filter { $0.key != configuration.consumer && $0.value > 0 }
        if !others.isEmpty, ContinuousClock.now - heldSince < configuration.claimIdle {
            return .waitingForOthers
        }
        if !others.isEmpty {
            logger.info("claiming entries of previous owners", metadata: ["fi.consumers": "\(others)"])
        }
        var start = StreamEntryID(ms: 0, seq: 0)
        for _ in 0..<1_000_000 {
            guard mayWrite, !isStopping || drainOnStop else { return .interrupted }
            let result = try await queue.autoClaim(
                configuration.group,
                consumer: configuration.consumer,
                on: stream,
                minIdle: .zero,
                start: start,
                count: configuration.batchSize
            )
            if !result.deletedIDs.isEmpty {
                // Gone from the stream: nothing to store, only the pending record to clear.
                _ = try await queue.ack(configuration.group, on: stream, ids: result.deletedIDs)
            }
            if !result.entries.isEmpty {
                progress.claimed.increment(by: result.entries.count)
                try await pipeline.storeThenSettle(
                    result.entries.map { ($0.entry, applyDeliveryLimit ? $0.deliveryCount : nil) }, into: writer, wait: true)
            }
            guard let next = result.nextStart else { break }
            start = next
        }
        return .done
    }

    /// Makes a batch durable: each entry is in the corpus (appended, flushed,
    /// synced), already was, or is in `fi:dead:<partition>`.
    /// - Returns: the ids that may now be acknowledged.
    private func store(_ batch: BatchPipeline.Batch, into writer: CorpusWriter) async throws -> [StreamEntryID] {
        let watermark = writer.lastStreamID
        var records: [CorpusRecord] = []
        records.reserveCapacity(batch.count)
        var dead: [(entry: StreamEntry, reason: String, deliveries: Int?)] = []
        var traced: [(context: ServiceContext, id: StreamEntryID)] = []
        var alreadyStored = 0
        for (entry, deliveries) in batch {
            if let watermark, entry.id <= watermark {
                alreadyStored += 1
                continue
            }
            switch EntryDecoder.decode(entry) {
            case .failure(let problem):
                dead.append((entry, problem.reason, deliveries))
            case .success(let record):
                if let deliveries, deliveries > configuration.maxDeliveries {
                    dead.append((entry, "delivered \(deliveries) times (more than \(configuration.maxDeliveries))", deliveries))
                } else {
                    records.append(record)
                    if let context = Traces.context(of: entry) { traced.append((context, entry.id)) }
                }
            }
        }

        // Dead letters first: an entry is acknowledged only once it is either
        // in the corpus or in fi:dead:<partition>.
        for (entry, reason, deliveries) in dead {
            _ = try await queue.append(
                to: key.deadLetterStreamName, fields: DeadLetter.fields(for: entry, reason: reason, deliveries: deliveries, partition: key))
            logger.warning("entry moved to dead letters", metadata: ["fi.stream_id": "\(entry.id)", "fi.reason": "\(reason)"])
        }
        progress.deadLettered.increment(by: dead.count)

        if !records.isEmpty {
            guard mayWrite else { throw CancellationError() }
            let started = ContinuousClock.now
            let spanStart = DefaultTracerClock.now
            let outcome = try await writer.append(records)
            // Each traced event's span ends here: its rows are flushed and fsynced.
            for (context, id) in traced {
                let span = InstrumentationSystem.tracer.startSpan("fi.worker.persist", context: context, ofKind: .consumer, at: spanStart)
                span.attributes["fi.partition"] = key.rawValue
                span.attributes["fi.stream_id"] = id.description
                span.attributes["fi.batch.rows"] = records.count
                span.attributes["fi.corpus.fsync"] = configuration.store.fsync
                span.end()
            }
            progress.batchDuration.recordNanoseconds((ContinuousClock.now - started).nanoseconds)
            progress.persisted.increment(by: outcome.appended)
            progress.recordCommit(rows: outcome.appended)
            alreadyStored += outcome.skipped
        }
        if alreadyStored > 0 {
            progress.duplicatesSkipped.increment(by: alreadyStored)
        }
        return batch.map(\.entry.id)
    }

    /// Deletes stored entries from the stream, then acknowledges them.
    ///
    /// Deleting keeps the stream length equal to the backlog. It trims the
    /// stream through the batch's last id (XTRIM MINID, a third of XDEL's cost
    /// in Redis): the runner stores a partition's entries in id order, so
    /// every entry up to that id is in the corpus or in the dead letters — the
    /// same fact the file's watermark rests on. The order matters only for a
    /// worker killed in between: delete-then-ack leaves entries that are
    /// pending but gone from the stream, which the next recovery acknowledges
    /// (XAUTOCLAIM reports them as deleted); ack-then-delete could leave
    /// acknowledged entries in the stream for good. A failed delete or ack
    /// throws, and recovery settles the batch again.
    private func settle(_ ids: [StreamEntryID]) async throws {
        guard let last = ids.max() else { return }
        let stream = key.streamName
        _ = try await queue.trim(stream, through: last)
        _ = try await queue.ack(configuration.group, on: stream, ids: ids)
    }

    private func reportProgress() async {
        let stream = key.streamName
        let backlog = try? await queue.length(of: stream)
        let lag = try? await queue.oldestPendingIdle(configuration.group, on: stream)
        let pending = try? await queue.pending(configuration.group, on: stream).count
        let deadLetters = try? await queue.length(of: key.deadLetterStreamName)
        let rate = progress.takeRate()
        if let backlog { progress.backlog.record(backlog) }
        if let pending { progress.pending.record(pending) }
        if let deadLetters { progress.deadLetters.record(deadLetters) }
        progress.oldestPendingSeconds.record(lag.map { Double($0.nanoseconds) / 1e9 } ?? 0)
        logger.info(
            "partition progress",
            metadata: [
                "fi.events_per_s": "\(Int(rate))",
                "fi.backlog": "\(backlog.map(String.init) ?? "?")",
                "fi.oldest_pending_ms": "\(lag.map { String($0.nanoseconds / 1_000_000) } ?? "0")",
            ]
        )
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let c = components
        return c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000
    }
}

/// Exponential backoff from 50 ms up to a maximum.
struct Backoff {
    let maximum: Duration
    private(set) var current: Duration = .milliseconds(50)

    init(maximum: Duration) { self.maximum = maximum }

    mutating func reset() { current = .milliseconds(50) }

    mutating func wait() async throws {
        try await Task.sleep(for: current)
        current = min(maximum, current * 2)
    }
}
