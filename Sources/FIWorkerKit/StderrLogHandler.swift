import Logging

/// swift-log's `StreamLogHandler` to standard error, except that metadata set
/// on a logger (`logger[metadataKey:] = …`) is only stored, and formatted when
/// something is logged.
///
/// `StreamLogHandler` formats its whole metadata every time a key is set.
/// Hummingbird sets the request id on a fresh logger for every request, so on
/// the ingest path that formatting cost more CPU than validating the body —
/// for request logs that are written only at debug level.
struct StderrLogHandler: LogHandler {
    private var output: StreamLogHandler
    var metadata: Logger.Metadata = [:]

    init(label: String, level: Logger.Level) {
        output = StreamLogHandler.standardError(label: label)
        output.logLevel = level
    }

    var logLevel: Logger.Level {
        get { output.logLevel }
        set { output.logLevel = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { output.metadataProvider }
        set { output.metadataProvider = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var event = event
        if !metadata.isEmpty {
            event.metadata = metadata.merging(event.metadata ?? [:]) { _, explicit in explicit }
        }
        output.log(event: event)
    }
}
