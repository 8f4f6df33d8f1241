import Logging

extension Logger {
    /// A logger that drops everything: the default for callers who pass none.
    @usableFromInline
    static var disabled: Logger { Logger(label: "fi.disabled", factory: { _ in SwiftLogNoOpLogHandler() }) }
}
