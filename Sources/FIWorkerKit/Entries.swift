import FIPartitioning
import FIQueue
import FIStorage

/// Why a stream entry cannot become a corpus row.
struct EntryProblem: Error {
    let reason: String
}

/// Turns a stream entry (Docs/contract.md §2) into a corpus record, or says why not.
enum EntryDecoder {
    static func decode(_ entry: StreamEntry) -> Result<CorpusRecord, EntryProblem> {
        guard let idBytes = entry[field: "consultation_id"] else {
            return .failure(EntryProblem(reason: "missing field consultation_id"))
        }
        guard let consultationID = String(validating: idBytes, as: UTF8.self) else {
            return .failure(EntryProblem(reason: "consultation_id is not valid UTF-8"))
        }
        guard !idBytes.isEmpty, idBytes.count <= ConsultationID.maximumLength, !idBytes.contains(0) else {
            return .failure(EntryProblem(reason: "consultation_id must be 1 to \(ConsultationID.maximumLength) bytes without NUL"))
        }
        guard let payload = entry[field: "event_json"] else {
            return .failure(EntryProblem(reason: "missing field event_json"))
        }
        guard CorpusRecord.isValidUTF8(payload) else {
            return .failure(EntryProblem(reason: "event_json is not valid UTF-8"))
        }
        var receivedAt: Int64 = 0
        if let raw = entry[field: "received_at_ms"] {
            guard let text = String(validating: raw, as: UTF8.self), let value = Int64(text) else {
                return .failure(EntryProblem(reason: "received_at_ms is not an integer"))
            }
            receivedAt = value
        }
        return .success(
            CorpusRecord(consultationID: consultationID, streamID: entry.id, receivedAtMs: receivedAt, payload: payload)
        )
    }
}

/// The entry written to `fi:dead:<partition>` for an entry that could not be stored.
///
/// It carries the original fields unchanged, plus `dead_reason`,
/// `dead_stream_id` (the original entry id), `dead_partition` and, when the
/// worker counted them, `dead_deliveries`. Dead letters are at-least-once: a
/// worker killed between writing one and acknowledging the original may write
/// it again, with the same `dead_stream_id`.
enum DeadLetter {
    static let reasonField = "dead_reason"
    static let originalIDField = "dead_stream_id"
    static let partitionField = "dead_partition"
    static let deliveriesField = "dead_deliveries"
    /// On an entry redriven back to its partition: the dead letter's id.
    static let redrivenFromField = "redriven_from"

    static func fields(for entry: StreamEntry, reason: String, deliveries: Int?, partition: PartitionKey) -> [StreamField] {
        var fields = entry.fields
        fields.append(StreamField(name: reasonField, value: Array(reason.utf8)))
        fields.append(StreamField(name: originalIDField, value: Array(entry.id.description.utf8)))
        fields.append(StreamField(name: partitionField, value: Array(partition.rawValue.utf8)))
        if let deliveries { fields.append(StreamField(deliveriesField, String(deliveries))) }
        return fields
    }
}
