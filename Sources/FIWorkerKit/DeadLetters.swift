import FIPartitioning
import FIQueue
import Foundation
import Logging

/// One entry of `fi:dead:<partition>`, as an operator sees it.
public struct DeadLetterEntry: Sendable, Codable, Equatable {
    public var partition: String
    /// The dead letter's own id in `fi:dead:<partition>`.
    public var id: String
    /// The id the entry had in `fi:events:<partition>`.
    public var originalID: String?
    public var reason: String?
    /// How often worker processes had received it (only for entries dead-lettered over the limit, or counted).
    public var deliveries: Int?
    public var consultationID: String?
    /// When it was redriven: the id of the entry it became in `fi:events:<partition>`.
    public var redrivenAs: String?
    /// Every field, values as UTF-8 text (invalid bytes replaced) — filled by `show` only.
    public var fields: [String: String]?

    enum CodingKeys: String, CodingKey {
        case partition, id, reason, deliveries, fields
        case originalID = "original_id"
        case consultationID = "consultation_id"
        case redrivenAs = "redriven_as"
    }
}

/// Inspecting and repairing dead letters: `fi-worker dead-letters list|show|redrive|purge`.
///
/// Redrive appends the entry's original fields (and `redriven_from`, the dead
/// letter's id) back to `fi:events:<partition>` with ``EventQueue/appendOnce(to:fields:token:ledger:)``,
/// keyed by the entry's original stream id in the ledger `{fi:events:<partition>}:redriven`
/// (the stream's own Cluster slot, so one script does both atomically), then
/// deletes the dead letter. Redriving an entry twice — a retried command, or a
/// dead letter written twice — appends it once: it is stored once, and the
/// ledger maps its original id to the stream id its row carries in the corpus.
public struct DeadLetters: Sendable {
    let queue: any EventQueue

    public init(queue: any EventQueue) {
        self.queue = queue
    }

    /// Connects to `target`, runs `body` with its dead letters, and closes the connection.
    public static func with<T: Sendable>(target: QueueTarget, _ body: @Sendable (DeadLetters) async throws -> T) async throws -> T {
        let queue = try await target.connect(logger: Logger(label: "fi-worker.dead-letters", factory: { _ in SwiftLogNoOpLogHandler() }))
        do {
            let result = try await body(DeadLetters(queue: queue))
            await queue.close()
            return result
        } catch {
            await queue.close()
            throw error
        }
    }

    /// The ledger of redriven entries of a partition: original stream id → new stream id.
    public static func ledgerName(_ partition: PartitionKey) -> String { "{\(partition.streamName)}:redriven" }

    /// The partitions that have dead letters, or `only` those.
    public func partitions(_ only: [PartitionKey] = []) async throws -> [PartitionKey] {
        if !only.isEmpty { return only }
        return try await queue.streams(withPrefix: PartitionKey.deadLetterPrefix).compactMap {
            try? PartitionKey(validating: String($0.dropFirst(PartitionKey.deadLetterPrefix.count)))
        }
    }

    /// Every dead letter of the partitions (all that have some when `partitions` is empty), oldest first.
    public func list(_ partitions: [PartitionKey] = []) async throws -> [DeadLetterEntry] {
        var out: [DeadLetterEntry] = []
        for partition in try await self.partitions(partitions) {
            let redriven = try await queue.ledger(Self.ledgerName(partition))
            for entry in try await all(partition) {
                out.append(Self.summary(entry, partition: partition, redriven: redriven, withFields: false))
            }
        }
        return out
    }

    /// One dead letter whole; `nil` if there is none with that id.
    public func show(_ partition: PartitionKey, id: StreamEntryID) async throws -> DeadLetterEntry? {
        let before = id.seq > 0 ? StreamEntryID(ms: id.ms, seq: id.seq - 1) : (id.ms > 0 ? StreamEntryID(ms: id.ms - 1, seq: .max) : nil)
        guard let entry = try await queue.range(partition.deadLetterStreamName, after: before, count: 1).first, entry.id == id else { return nil }
        return Self.summary(entry, partition: partition, redriven: try await queue.ledger(Self.ledgerName(partition)), withFields: true)
    }

    /// What a redrive did to one dead letter.
    public struct Redriven: Sendable, Codable, Equatable {
        public var deadLetterID: String
        /// The entry's id in `fi:events:<partition>`.
        public var streamID: String
        /// `false` when an earlier redrive had already appended it (nothing appended now).
        public var appended: Bool

        enum CodingKeys: String, CodingKey {
            case appended
            case deadLetterID = "dead_letter_id"
            case streamID = "stream_id"
        }
    }

    /// Sends dead letters back to their partition's stream: those in `ids`, or all when `ids` is empty.
    /// - Throws: ``DeadLetterError`` for an id that is not a dead letter of the partition.
    public func redrive(_ partition: PartitionKey, ids: [StreamEntryID]) async throws -> [Redriven] {
        let entries = try await select(partition, ids: ids)
        var done: [Redriven] = []
        for entry in entries {
            let original = entry[field: DeadLetter.originalIDField].map { String(decoding: $0, as: UTF8.self) } ?? entry.id.description
            var fields = entry.fields.filter { !Self.deadFields.contains($0.name) }
            fields.append(StreamField(DeadLetter.redrivenFromField, entry.id.description))
            let (id, appended) = try await queue.appendOnce(
                to: partition.streamName, fields: fields, token: original, ledger: Self.ledgerName(partition))
            _ = try await queue.delete(from: partition.deadLetterStreamName, ids: [entry.id])
            done.append(Redriven(deadLetterID: entry.id.description, streamID: id.description, appended: appended))
        }
        return done
    }

    /// Deletes dead letters for good: those in `ids`, or all when `ids` is empty. Returns how many.
    public func purge(_ partition: PartitionKey, ids: [StreamEntryID]) async throws -> Int {
        let entries = try await select(partition, ids: ids)
        guard let last = entries.last?.id else { return 0 }
        if ids.isEmpty { return try await queue.trim(partition.deadLetterStreamName, through: last) }
        return try await queue.delete(from: partition.deadLetterStreamName, ids: entries.map(\.id))
    }

    // MARK: -

    static let deadFields: Set<String> = [
        DeadLetter.reasonField, DeadLetter.originalIDField, DeadLetter.partitionField, DeadLetter.deliveriesField, DeadLetter.redrivenFromField,
    ]

    private func all(_ partition: PartitionKey) async throws -> [StreamEntry] {
        var out: [StreamEntry] = []
        var after: StreamEntryID?
        for _ in 0..<100_000 {  // 1,000 at a time: at most 100 M dead letters
            let page = try await queue.range(partition.deadLetterStreamName, after: after, count: 1_000)
            out += page
            guard page.count == 1_000, let last = page.last?.id else { break }
            after = last
        }
        return out
    }

    private func select(_ partition: PartitionKey, ids: [StreamEntryID]) async throws -> [StreamEntry] {
        let entries = try await all(partition)
        guard !ids.isEmpty else { return entries }
        let byID = Dictionary(uniqueKeysWithValues: entries.map { ($0.id, $0) })
        return try ids.map { id in
            guard let entry = byID[id] else { throw DeadLetterError("\(partition.deadLetterStreamName) has no entry \(id)") }
            return entry
        }
    }

    static func summary(_ entry: StreamEntry, partition: PartitionKey, redriven: [String: StreamEntryID], withFields: Bool) -> DeadLetterEntry {
        func text(_ name: String) -> String? { entry[field: name].map { String(decoding: $0, as: UTF8.self) } }
        let original = text(DeadLetter.originalIDField)
        var fields: [String: String]?
        if withFields {
            fields = Dictionary(entry.fields.map { ($0.name, String(decoding: $0.value, as: UTF8.self)) }, uniquingKeysWith: { a, _ in a })
        }
        return DeadLetterEntry(
            partition: partition.rawValue, id: entry.id.description, originalID: original, reason: text(DeadLetter.reasonField),
            deliveries: text(DeadLetter.deliveriesField).flatMap { Int($0) }, consultationID: text("consultation_id"),
            redrivenAs: original.flatMap { redriven[$0]?.description }, fields: fields)
    }

    /// A table of dead letters, one per line.
    public static func table(_ entries: [DeadLetterEntry]) -> String {
        let header = ["partition", "id", "original id", "deliveries", "consultation", "reason"]
        let rows = entries.map { e in
            [e.partition, e.id, e.originalID ?? "-", e.deliveries.map(String.init) ?? "-", e.consultationID ?? "-",
             OneLineLogHandler<StreamLogHandler>.escape(e.reason ?? "-")]
        }
        return OperatorOutput.table(header: header, rows: rows)
    }

    /// JSON for scripts.
    public static func json(_ value: some Encodable) throws -> String {
        try OperatorOutput.json(value)
    }
}

/// A dead-letter command that cannot be carried out: a malformed argument (`isUsage`), or an unknown id.
public struct DeadLetterError: Error, CustomStringConvertible {
    public let description: String
    public let isUsage: Bool
    init(_ description: String, usage: Bool = false) {
        self.description = description
        self.isUsage = usage
    }
}

extension DeadLetters {
    /// Partition keys from the command line.
    public static func partitions(_ texts: [String]) throws -> [PartitionKey] {
        try texts.map { text in
            do { return try PartitionKey(validating: text) } catch { throw DeadLetterError("partition \(text.debugDescription): \(error)", usage: true) }
        }
    }

    /// Dead-letter ids from the command line.
    public static func ids(_ texts: [String]) throws -> [StreamEntryID] {
        try texts.map { text in
            guard let id = StreamEntryID(text) else { throw DeadLetterError("\(text.debugDescription) is not a stream id <ms>-<seq>", usage: true) }
            return id
        }
    }
}
