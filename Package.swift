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

        .target(
            name: "FIPartitioning",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")]
        ),
        .target(
            name: "FIQueue",
            dependencies: [
                "CHiredis",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "FIStorage",
            dependencies: [
                "CHDF5",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "FICapacity",
            dependencies: ["FIPartitioning"]
        ),

        .executableTarget(name: "fi-server"),
        .executableTarget(name: "fi-worker"),

        .testTarget(name: "FIPartitioningTests", dependencies: ["FIPartitioning"]),
        .testTarget(name: "FIQueueTests", dependencies: ["FIQueue"]),
        .testTarget(name: "FIStorageTests", dependencies: ["FIStorage"]),
        // Test-only child process for FIStorageTests' kill -9 recovery test.
        .executableTarget(name: "FIStorageCrashWriter", dependencies: ["FIStorage"], path: "Tests/FIStorageCrashWriter"),
        .testTarget(name: "FICapacityTests", dependencies: ["FICapacity"]),
    ]
)
