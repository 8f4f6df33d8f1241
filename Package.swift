// swift-tools-version:6.1
import PackageDescription

// The module graph (Docs/architecture.md draws it; Docs/architecture.dot is its source):
//
//   FIStreamID, FILocking                — vocabulary: the stream-id type, the lock
//   FIPartitioning                       — partition keys (swift-crypto's MD5)
//   FIQueue   = CHiredis + FIStreamID + SwiftNIO(SSL) — Redis Streams queue: in-memory, and Redis
//               over NIO channels with hiredis' reply parser (TLS by swift-nio-ssl)
//   FIStorage = CHDF5 + FIStreamID       — HDF5 append store (segments; swift-crypto's SHA-256)
//     (FIPartitioning, FIQueue and FIStorage know nothing of each other or of HTTP)
//   FICapacity = FIPartitioning          — capacity planning
//   FIBuildInfo                          — version and git commit (BuildInfoPlugin)
//   FIWorkerKit = FIQueue + FIStorage + FIPartitioning + FIBuildInfo
//                 — the worker; also the Prometheus endpoint (Hummingbird) and
//                   queue connection both executables use
//   FIServerKit = everything above + Hummingbird — the HTTP API
//   fi-server → FIServerKit, fi-worker → FIWorkerKit — thin executables
/// Upcoming language features every target builds with: `any` spelled out for
/// existentials, and members visible only through a module's own import.
let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny"), .enableUpcomingFeature("MemberImportVisibility")]

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
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0", traits: [.defaults, "YAML"]),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        // OTLP export of traces, over HTTP only (the gRPC transport is not built).
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
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
        .target(name: "FILocking", swiftSettings: strict),
        // The stream entry id: read by FIQueue, stored by FIStorage.
        .target(name: "FIStreamID", swiftSettings: strict),
        // The version, and the git commit recorded at build time.
        .target(name: "FIBuildInfo", swiftSettings: strict, plugins: ["BuildInfoPlugin"]),
        .plugin(name: "BuildInfoPlugin", capability: .buildTool()),

        .target(
            name: "FIPartitioning",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),
        .target(
            name: "FIQueue",
            dependencies: [
                "CHiredis", "FILocking", "FIStreamID",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "FIStorage",
            dependencies: [
                "CHDF5", "FILocking", "FIStreamID",
                // SHA-256 of closed segments (manifest.json, verification).
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "FICapacity",
            dependencies: ["FIPartitioning"],
            swiftSettings: strict
        ),

        // The worker: queue + store. Also the metrics endpoint (Hummingbird) and
        // queue connection shared by both executables.
        .target(
            name: "FIWorkerKit",
            dependencies: [
                "FIBuildInfo", "FILocking", "FIPartitioning", "FIQueue", "FIStorage",
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
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
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
                // A small HTTP client for `fi-server capacity --from-metrics`.
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),

        .executableTarget(
            name: "fi-server",
            dependencies: [
                "FIServerKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "fi-worker",
            dependencies: [
                "FIWorkerKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),

        // Test helpers every suite shares: free ports, a raw TCP client, `eventually`.
        .target(name: "FITestSupport", path: "Tests/FITestSupport", swiftSettings: strict),
        .testTarget(
            name: "FIPartitioningTests",
            dependencies: ["FIPartitioning"],
            resources: [.copy("Resources/partition_vectors.json")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "FIQueueTests",
            dependencies: [
                "FIQueue", "FILocking", "FITestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "FIStorageTests",
            dependencies: [
                "FIStorage", "FILocking",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Test-only child process for FIStorageTests' kill -9 recovery test.
        .executableTarget(
            name: "FIStorageCrashWriter",
            dependencies: ["FIStorage"],
            path: "Tests/FIStorageCrashWriter",
            swiftSettings: strict
        ),
        .testTarget(name: "FICapacityTests", dependencies: ["FICapacity", "FIPartitioning"], swiftSettings: strict),
        .testTarget(
            name: "FIWorkerKitTests",
            dependencies: [
                "FIWorkerKit", "FIQueue", "FIStorage", "FIPartitioning", "FILocking", "FITestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Starts the built fi-server / fi-worker binaries against real Redis;
        // also checks the repository itself (self-contained, versions agree).
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "FIQueue", "FIStorage", "FIPartitioning", "FIBuildInfo", "FITestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "FIServerKitTests",
            dependencies: [
                "FIServerKit", "FIWorkerKit", "FIQueue", "FIStorage", "FIPartitioning", "FICapacity", "FILocking",
                "FITestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
    ]
)
