@_exported import FIStreamID

/// One row of a corpus: a queued event as it is stored.
public struct CorpusRecord: Sendable, Equatable {
    /// The consultation the event belongs to (UTF-8, at most 128 bytes, no NUL).
    public var consultationID: String
    /// The stream entry id; stored as `<ms>-<seq>` in the `stream_id` column.
    public var streamID: StreamEntryID
    /// When the server received the event, Unix milliseconds.
    public var receivedAtMs: Int64
    /// The event's JSON, byte for byte as queued (must be UTF-8).
    public var payload: [UInt8]
    /// The lease epoch of the writer that stored the row (the `epoch` column;
    /// 0 for a writer without ``CorpusWriter/Options/fencingEpoch`` and for
    /// files written before the column existed). Set by every reader; a writer
    /// ignores it and stores its own epoch.
    public var epoch: UInt64

    public init(consultationID: String, streamID: StreamEntryID, receivedAtMs: Int64, payload: [UInt8], epoch: UInt64 = 0) {
        self.consultationID = consultationID
        self.streamID = streamID
        self.receivedAtMs = receivedAtMs
        self.payload = payload
        self.epoch = epoch
    }

    /// Whether `bytes` are valid UTF-8, as a payload must be — checked the way
    /// ``CorpusWriter`` checks it (ASCII 32 bytes at a time), without making a `String`.
    public static func isValidUTF8(_ bytes: [UInt8]) -> Bool {
        UTF8Check.isValid(bytes)
    }
}

/// What one ``CorpusWriter/append(_:)`` did.
public struct AppendOutcome: Sendable, Equatable {
    /// Records written (and, with `fsync`, durable) by this call.
    public var appended: Int
    /// Records skipped because their stream id was at or below the watermark
    /// (already stored, i.e. redelivered, or out of order within the batch).
    public var skipped: Int

    public init(appended: Int, skipped: Int) {
        self.appended = appended
        self.skipped = skipped
    }
}

/// Names, types and sizes of Docs/contract.md §5.
enum CorpusLayout {
    static let group = "events"
    static let consultationIDBytes = 128
    static let streamIDBytes = StreamEntryID.maximumLength

    static let consultationID = "consultation_id"
    static let streamID = "stream_id"
    static let receivedAtMs = "received_at_ms"
    static let payloadEnd = "payload_end"
    static let payload = "payload"
    /// Optional: files written before it existed lack it (their rows read as epoch 0).
    static let epoch = "epoch"

    /// Root attribute of a layout 2 segment: when it was created, Unix ms.
    static let createdAtAttribute = "fi_segment_created_at_ms"

    static let consultationIDType = ColumnType.fixedString(size: consultationIDBytes, utf8: true)
    static let streamIDType = ColumnType.fixedString(size: streamIDBytes, utf8: false)
}

/// Payload validation: JSON is UTF-8, and h5py users decode it as such.
enum UTF8Check {
    static func isValid(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return true }
            let raw = UnsafeRawPointer(base)
            let n = buffer.count
            var i = 0
            // ASCII fast path: 32 bytes per step, then 8.
            let high: UInt64 = 0x8080_8080_8080_8080
            while i + 32 <= n {
                let word = raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                    | raw.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self)
                    | raw.loadUnaligned(fromByteOffset: i + 16, as: UInt64.self)
                    | raw.loadUnaligned(fromByteOffset: i + 24, as: UInt64.self)
                if word & high != 0 { break }
                i += 32
            }
            while i + 8 <= n {
                if raw.loadUnaligned(fromByteOffset: i, as: UInt64.self) & high != 0 { break }
                i += 8
            }
            while i < n, buffer[i] < 0x80 { i += 1 }
            if i == n { return true }
            // Everything before i is whole ASCII characters, so i starts a scalar.
            return String(validating: UnsafeBufferPointer(rebasing: buffer[i...]), as: UTF8.self) != nil
        }
    }
}
