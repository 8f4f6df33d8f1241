// Input checks shared by every planner. Each throws a CapacityError naming the input.

enum Check {
    static func finite(_ value: Double, _ name: String, file: String = #fileID, line: Int = #line) throws(CapacityError) {
        guard value.isFinite else {
            throw CapacityError(code: .notFinite, input: name, message: "\(name) must be a finite number, got \(value)", file: file, line: line)
        }
    }

    /// `value ≥ 0` and finite.
    static func nonNegative(_ value: Double, _ name: String, file: String = #fileID, line: Int = #line) throws(CapacityError) {
        try finite(value, name, file: file, line: line)
        guard value >= 0 else {
            throw CapacityError(code: .negative, input: name, message: "\(name) must not be negative, got \(value)", file: file, line: line)
        }
    }

    /// `value > 0` and finite.
    static func positive(_ value: Double, _ name: String, file: String = #fileID, line: Int = #line) throws(CapacityError) {
        try nonNegative(value, name, file: file, line: line)
        guard value > 0 else {
            throw CapacityError(code: .notPositive, input: name, message: "\(name) must be greater than zero, got \(value)", file: file, line: line)
        }
    }

    static func nonNegative(_ value: Int, _ name: String, file: String = #fileID, line: Int = #line) throws(CapacityError) {
        guard value >= 0 else {
            throw CapacityError(code: .negative, input: name, message: "\(name) must not be negative, got \(value)", file: file, line: line)
        }
    }

    static func positive(_ value: Int, _ name: String, file: String = #fileID, line: Int = #line) throws(CapacityError) {
        try nonNegative(value, name, file: file, line: line)
        guard value > 0 else {
            throw CapacityError(code: .notPositive, input: name, message: "\(name) must be greater than zero, got \(value)", file: file, line: line)
        }
    }

    /// A probability strictly inside `(0, 1)`, e.g. a percentile.
    static func openUnit(_ value: Double, _ name: String, file: String = #fileID, line: Int = #line) throws(CapacityError) {
        try positive(value, name, file: file, line: line)
        guard value < 1 else {
            throw CapacityError(code: .outOfRange, input: name, message: "\(name) must be strictly between 0 and 1, got \(value)", file: file, line: line)
        }
    }

    /// A fraction in `(0, 1]`, e.g. a target utilisation.
    static func unitInterval(_ value: Double, _ name: String, file: String = #fileID, line: Int = #line) throws(CapacityError) {
        try positive(value, name, file: file, line: line)
        guard value <= 1 else {
            throw CapacityError(code: .outOfRange, input: name, message: "\(name) must be greater than 0 and at most 1, got \(value)", file: file, line: line)
        }
    }

    /// A multiplier `≥ 1`, e.g. a headroom or overhead factor.
    static func atLeastOne(_ value: Double, _ name: String, file: String = #fileID, line: Int = #line) throws(CapacityError) {
        try positive(value, name, file: file, line: line)
        guard value >= 1 else {
            throw CapacityError(code: .outOfRange, input: name, message: "\(name) must be at least 1, got \(value)", file: file, line: line)
        }
    }
}

/// Rounds up, forgiving the last few ulps of floating-point noise (12.000000000000002 → 12).
func ceilTolerant(_ x: Double) -> Double {
    let r = x.rounded()
    if abs(x - r) <= 1e-9 * max(1, abs(x)) { return r }
    return x.rounded(.up)
}
