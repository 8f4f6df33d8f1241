import FILocking
import Synchronization

/// Named points inside rolls, seals, retention and erasure where a test can
/// stop the process (`kill -9` of itself) to check what the next open repairs.
///
/// Test-only: reachable as `@_spi(FaultInjection) import FIStorage`, used by
/// the crash child `Tests/FIStorageCrashWriter`. Without a hook, reaching a
/// point costs one uncontended lock.
@_spi(FaultInjection)
public enum FaultInjection {
    private static let hook = Locked<(@Sendable (String) -> Void)?>(nil)

    /// Calls `hook` with the point's name each time one is reached; `nil` removes it.
    public static func setHook(_ hook: (@Sendable (String) -> Void)?) {
        self.hook.withLock { $0 = hook }
    }

    static func reach(_ point: String) {
        if let hook = hook.withLock({ $0 }) { hook(point) }
    }
}
