import Logging

/// A log handler that keeps every log record on one line: control characters
/// in the message, the metadata values and error descriptions are escaped
/// (`\n`, `\r`, `\t`, `\u{1B}`…) before the wrapped handler formats them.
///
/// Log lines can carry text that came from outside — an error from Redis or
/// HDF5, a field of a stream entry written by another producer. Escaped, such
/// text cannot end a line early and forge a record of its own.
public struct OneLineLogHandler<Wrapped: LogHandler>: LogHandler {
    private var wrapped: Wrapped

    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?

    public var logLevel: Logger.Level {
        get { wrapped.logLevel }
        set { wrapped.logLevel = newValue }
    }

    /// Wraps a handler; its own metadata and metadata provider are taken over
    /// so that they are escaped too.
    public init(_ wrapped: Wrapped) {
        var inner = wrapped
        self.metadata = inner.metadata
        self.metadataProvider = inner.metadataProvider
        inner.metadata = [:]
        inner.metadataProvider = nil
        self.wrapped = inner
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get(), !provided.isEmpty {
            merged.merge(provided, uniquingKeysWith: { _, new in new })
        }
        if let explicit = event.metadata, !explicit.isEmpty {
            merged.merge(explicit, uniquingKeysWith: { _, new in new })
        }
        if let error = event.error {
            merged["error.message"] = .string("\(error)")
            merged["error.type"] = .string(String(reflecting: type(of: error)))
        }
        var escaped: Logger.Metadata = [:]
        for (key, value) in merged {
            escaped[Self.escape(key)] = Self.escape(value)
        }
        var event = event
        event.message = Logger.Message(stringLiteral: Self.escape(event.message.description))
        event.metadata = escaped
        event.error = nil
        wrapped.log(event: event)
    }

    /// `text` with every control character (C0, DEL, C1, and the Unicode line
    /// and paragraph separators) written as an escape sequence.
    public static func escape(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            guard needsEscape(scalar) else {
                out.append(scalar)
                continue
            }
            switch scalar {
            case "\n": out.append(contentsOf: #"\n"#.unicodeScalars)
            case "\r": out.append(contentsOf: #"\r"#.unicodeScalars)
            case "\t": out.append(contentsOf: #"\t"#.unicodeScalars)
            default:
                out.append(contentsOf: "\\u{\(String(scalar.value, radix: 16, uppercase: true))}".unicodeScalars)
            }
        }
        return String(out)
    }

    private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00..<0x20, 0x7F..<0xA0, 0x2028, 0x2029: return true
        default: return false
        }
    }

    private static func escape(_ value: Logger.Metadata.Value) -> Logger.Metadata.Value {
        switch value {
        case .string(let text):
            return .string(escape(text))
        case .stringConvertible(let convertible):
            return .string(escape(convertible.description))
        case .array(let values):
            return .array(values.map(escape))
        case .dictionary(let dictionary):
            var out: Logger.Metadata = [:]
            for (key, value) in dictionary { out[escape(key)] = escape(value) }
            return .dictionary(out)
        }
    }
}
