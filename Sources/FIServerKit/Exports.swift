import FIWorkerKit

/// Where the queue lives (re-exported so `fi-server` needs only this library).
public typealias QueueTarget = FIWorkerKit.QueueTarget
/// Prometheus bootstrap and endpoint (re-exported for `fi-server`).
public typealias Observability = FIWorkerKit.Observability
