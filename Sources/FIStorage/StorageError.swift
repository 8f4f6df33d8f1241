/// An error from the corpus store.
///
/// `code` says what kind of failure it was (it can grow without breaking
/// callers); `message` is for people and, for HDF5 failures, carries HDF5's own
/// error stack.
public struct StorageError: Error, CustomStringConvertible, Sendable {
    /// The kind of a ``StorageError``.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case hdf5, locked, invalidRecord, invalidArgument, io, corrupt, closed, failed, fenced
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// An HDF5 library call failed; the message holds HDF5's error stack.
        public static let hdf5 = Code(.hdf5)
        /// Another writer holds the file (our lock file is taken).
        public static let locked = Code(.locked)
        /// A record was rejected before anything was written (bad stream id,
        /// over-long consultation id, payload that is not UTF-8…).
        public static let invalidRecord = Code(.invalidRecord)
        /// An option or argument the call cannot honour (e.g. a fencing epoch
        /// for a single-file writer, which has no partition to fence).
        public static let invalidArgument = Code(.invalidArgument)
        /// A POSIX call (open, flock, fsync, mkdir…) failed.
        public static let io = Code(.io)
        /// The file does not have the corpus layout (Docs/contract.md §5).
        public static let corrupt = Code(.corrupt)
        /// The writer or reader was already closed.
        public static let closed = Code(.closed)
        /// An earlier append failed part-way; the writer refuses further work.
        /// Reopen the file: recovery cuts it back to the last whole row.
        public static let failed = Code(.failed)
        /// A newer lease has taken the partition: the partition's fence (or its
        /// newest row) carries a higher epoch than this writer's
        /// ``CorpusWriter/Options/fencingEpoch``. Nothing was written; the
        /// writer refuses every later append. Close it and stop writing.
        public static let fenced = Code(.fenced)

        public var description: String {
            switch base {
            case .hdf5: "hdf5"
            case .locked: "locked"
            case .invalidRecord: "invalidRecord"
            case .invalidArgument: "invalidArgument"
            case .io: "io"
            case .corrupt: "corrupt"
            case .closed: "closed"
            case .failed: "failed"
            case .fenced: "fenced"
            }
        }
    }

    /// What kind of failure this is.
    public var code: Code
    /// A human-readable explanation.
    public var message: String
    /// The error this one wraps, if any.
    public var underlying: (any Error & Sendable)?
    /// Where the error was raised.
    public var file: String
    /// Where the error was raised.
    public var line: Int

    public init(
        code: Code,
        message: String,
        underlying: (any Error & Sendable)? = nil,
        file: String = #fileID,
        line: Int = #line
    ) {
        self.code = code
        self.message = message
        self.underlying = underlying
        self.file = file
        self.line = line
    }

    public var description: String {
        var text = "StorageError.\(code): \(message)"
        if let underlying { text += " (underlying: \(underlying))" }
        return text + " [\(file):\(line)]"
    }
}
