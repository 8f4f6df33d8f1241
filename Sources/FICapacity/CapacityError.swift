/// An input that FICapacity cannot plan with, or a plan that cannot be met.
///
/// The ``code`` says what kind of problem it is, ``input`` names the offending
/// input in snake_case (as a command-line flag or JSON field would spell it),
/// and ``message`` says why in words fit for a user.
///
/// ```swift
/// do { _ = try MMcQueue(servers: 0, arrivalRatePerSecond: 1, meanServiceTimeSeconds: 0.01) }
/// catch { print(error) }   // not_positive(servers): servers must be greater than zero, got 0
/// ```
public struct CapacityError: Error, CustomStringConvertible {
    /// What kind of problem was found. New codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case notFinite
            case negative
            case notPositive
            case outOfRange
            case invalidValue
            case unstable
            case infeasible
            case malformedMetrics
            case missingMetric
        }

        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The input is NaN or infinite.
        public static let notFinite = Code(.notFinite)
        /// The input is below zero.
        public static let negative = Code(.negative)
        /// The input is zero (or below) where only a positive value has a meaning.
        public static let notPositive = Code(.notPositive)
        /// The input is outside its documented range (a probability outside `(0, 1)`, a headroom factor below 1, …).
        public static let outOfRange = Code(.outOfRange)
        /// The input is malformed: an invalid site id, a duplicate, an empty list.
        public static let invalidValue = Code(.invalidValue)
        /// The arrival rate reaches or exceeds the service capacity, so the queue has no steady state.
        public static let unstable = Code(.unstable)
        /// The target cannot be met by any arrival rate or partition layout.
        public static let infeasible = Code(.infeasible)
        /// Prometheus text exposition that does not parse.
        public static let malformedMetrics = Code(.malformedMetrics)
        /// A metric the estimate needs is absent from the scrape.
        public static let missingMetric = Code(.missingMetric)

        /// The snake_case name of the code, e.g. `not_finite`.
        public var description: String {
            switch value {
            case .notFinite: "not_finite"
            case .negative: "negative"
            case .notPositive: "not_positive"
            case .outOfRange: "out_of_range"
            case .invalidValue: "invalid_value"
            case .unstable: "unstable"
            case .infeasible: "infeasible"
            case .malformedMetrics: "malformed_metrics"
            case .missingMetric: "missing_metric"
            }
        }
    }

    /// What kind of problem was found.
    public let code: Code
    /// The snake_case name of the input at fault, e.g. `arrival_rate_per_second`.
    public let input: String
    /// Why, in human words.
    public let message: String
    /// The error that caused this one, if any (for example a `PartitionError`).
    public let underlying: (any Error)?
    /// The source file that raised the error.
    public let file: String
    /// The source line that raised the error.
    public let line: Int

    /// Creates an error.
    /// - Parameters:
    ///   - code: What kind of problem was found.
    ///   - input: The snake_case name of the input at fault.
    ///   - message: Why, in human words.
    ///   - underlying: The error that caused this one, if any.
    public init(
        code: Code,
        input: String,
        message: String,
        underlying: (any Error)? = nil,
        file: String = #fileID,
        line: Int = #line
    ) {
        self.code = code
        self.input = input
        self.message = message
        self.underlying = underlying
        self.file = file
        self.line = line
    }

    /// `code(input): message`.
    public var description: String { "\(code)(\(input)): \(message)" }
}
