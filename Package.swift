// swift-tools-version:6.0
import PackageDescription

// Dependencies flow one way:
//   FIPartitioning, FIQueue, FIStorage  — independent of each other and of HTTP
//   FICapacity                          — planning maths; uses FIPartitioning
//   (later) FIWorkerKit = FIQueue + FIStorage; FIServerKit = everything for HTTP
//   fi-server / fi-worker               — thin executables, one library each
let package = Package(
    name: "fi-scale",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "FIPartitioning", targets: ["FIPartitioning"]),
        .library(name: "FIQueue", targets: ["FIQueue"]),
        .library(name: "FIStorage", targets: ["FIStorage"]),
        .library(name: "FICapacity", targets: ["FICapacity"]),
        .executable(name: "fi-server", targets: ["fi-server"]),
        .executable(name: "fi-worker", targets: ["fi-worker"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        // C libraries from Debian, wrapped at the edge.
        .systemLibrary(
            name: "CHiredis",
            pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        .systemLibrary(
            name: "CHDF5",
            pkgConfig: "hdf5",
            providers: [.apt(["libhdf5-dev"])]
        ),

        // The lock the other modules guard shared state with (a TSan-visible one
        // under `-Xswiftc -DFI_TSAN`; see Sources/FILocking/Locked.swift).
        .target(name: "FILocking"),

        .target(
            name: "FIPartitioning",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")]
        ),
        .target(
            name: "FIQueue",
            dependencies: [
                "CHiredis", "FILocking",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "FIStorage",
            dependencies: [
                "CHDF5", "FILocking",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "FICapacity",
            dependencies: ["FIPartitioning"]
        ),

        // The worker: queue + store. Also the metrics endpoint and queue
        // connection shared by both executables.
        .target(
            name: "FIWorkerKit",
            dependencies: [
                "FILocking", "FIPartitioning", "FIQueue", "FIStorage",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ]
        ),
        // The HTTP API: everything composed for HTTP.
        .target(
            name: "FIServerKit",
            dependencies: [
                "FILocking", "FIPartitioning", "FIQueue", "FIStorage", "FICapacity", "FIWorkerKit",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                // A small HTTP client for `fi-server capacity --from-metrics`.
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),

        .executableTarget(
            name: "fi-server",
            dependencies: [
                "FIServerKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "fi-worker",
            dependencies: [
                "FIWorkerKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        .testTarget(name: "FIPartitioningTests", dependencies: ["FIPartitioning"]),
        .testTarget(name: "FIQueueTests", dependencies: ["FIQueue", "FILocking"]),
        .testTarget(name: "FIStorageTests", dependencies: ["FIStorage", "FILocking"]),
        // Test-only child process for FIStorageTests' kill -9 recovery test.
        .executableTarget(name: "FIStorageCrashWriter", dependencies: ["FIStorage"], path: "Tests/FIStorageCrashWriter"),
        .testTarget(name: "FICapacityTests", dependencies: ["FICapacity"]),
        .testTarget(name: "FIWorkerKitTests", dependencies: ["FIWorkerKit", "FIQueue", "FIStorage", "FIPartitioning", "FILocking"]),
        // Starts the built fi-server / fi-worker binaries against real Redis.
        .testTarget(name: "EndToEndTests", dependencies: ["FIQueue", "FIStorage", "FIPartitioning"]),
        .testTarget(
            name: "FIServerKitTests",
            dependencies: [
                "FIServerKit", "FIWorkerKit", "FIQueue", "FIStorage", "FIPartitioning", "FICapacity", "FILocking",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ]
        ),
    ]
)
