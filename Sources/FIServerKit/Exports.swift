// fi-server imports this library only: the worker kit's queue target,
// observability bootstrap and build info come with it.
@_exported import FIWorkerKit
