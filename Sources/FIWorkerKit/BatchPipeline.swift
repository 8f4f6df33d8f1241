import FIQueue
import FIStorage

/// The runner's two-stage pipeline: the next batch is read while this one is
/// stored, and a batch's settle (trim + ack) travels while the next one is
/// stored. Store-then-settle is written here once, for the steady state and
/// for recovery alike: a batch is settled only after its own store (append,
/// flush, sync) has returned, and settles run one at a time, in batch order.
struct BatchPipeline {
    /// Entries to store, each with its delivery count when the caller applies the limit.
    typealias Batch = [(entry: StreamEntry, deliveries: Int?)]

    private let read: @Sendable () -> Task<[StreamEntry], any Error>
    private let store: @Sendable (Batch, CorpusWriter) async throws -> [StreamEntryID]
    private let settle: @Sendable ([StreamEntryID]) async throws -> Void
    private var readAhead: Task<[StreamEntry], any Error>?
    private var settling: Task<Void, any Error>?

    /// - Parameters:
    ///   - read: Starts reading the next batch.
    ///   - store: Makes a batch durable; returns the ids that may be settled.
    ///   - settle: Deletes and acknowledges stored ids.
    init(
        read: @escaping @Sendable () -> Task<[StreamEntry], any Error>,
        store: @escaping @Sendable (Batch, CorpusWriter) async throws -> [StreamEntryID],
        settle: @escaping @Sendable ([StreamEntryID]) async throws -> Void
    ) {
        self.read = read
        self.store = store
        self.settle = settle
    }

    /// The next batch: the one read ahead, or a fresh read.
    mutating func next() async throws -> [StreamEntry] {
        let pending = readAhead ?? read()
        readAhead = nil
        return try await pending.value
    }

    /// Starts reading the batch after the one in hand.
    mutating func startReadAhead() {
        readAhead = read()
    }

    /// Stores `batch`, then settles it once the previous batch's settle is done:
    /// in the background, or before returning with `wait`.
    mutating func storeThenSettle(_ batch: Batch, into writer: CorpusWriter, wait: Bool) async throws {
        let ids = try await store(batch, writer)
        try await settled()
        if wait {
            try await settle(ids)
        } else {
            let settle = self.settle
            settling = Task { try await settle(ids) }
        }
    }

    /// Ends the pipeline: a batch read ahead is stored and settled (when
    /// `writer` is given), and the last settle is awaited.
    mutating func finish(into writer: CorpusWriter?) async throws {
        if let pending = readAhead {
            readAhead = nil
            let entries = try await pending.value
            if !entries.isEmpty, let writer {
                try await storeThenSettle(entries.map { ($0, nil) }, into: writer, wait: true)
            }
        }
        try await settled()
    }

    /// After a failure: waits for what is in flight and drops it.
    ///
    /// The batch in hand was not stored, so the batch read ahead must not be
    /// either: a later row in the file would put the batch in hand below the
    /// watermark, and recovery would take it for stored. A read in flight is
    /// never abandoned: had it reached Redis after the recovery that follows,
    /// its entries would be pending yet unseen. What it delivered stays
    /// pending and is recovered in order later.
    mutating func abandon() async {
        if let pending = readAhead {
            readAhead = nil
            _ = try? await pending.value
        }
        if let last = settling {
            settling = nil
            _ = try? await last.value
        }
    }

    private mutating func settled() async throws {
        if let last = settling {
            settling = nil
            try await last.value
        }
    }
}
