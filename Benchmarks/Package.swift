// swift-tools-version:6.0
// Benchmarks live in their own package so their dependencies never enter the
// library's graph. Run them through ./run.sh, which also times the reference
// implementations (Python, redis-benchmark, h5py) in the same run.
import PackageDescription

let package = Package(
    name: "fi-scale-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "fi-scale", path: ".."),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(
            name: "fi-bench",
            dependencies: [
                .product(name: "FIPartitioning", package: "fi-scale"),
                .product(name: "FIQueue", package: "fi-scale"),
                .product(name: "FIStorage", package: "fi-scale"),
            ]
        ),
        // A bare Hummingbird route that answers 202 without queueing: the
        // framework's own ceiling, measured beside fi-server.
        .executableTarget(
            name: "bare-http",
            dependencies: [.product(name: "Hummingbird", package: "hummingbird")]
        ),
        // Consultation sessions against any fi-server: Poisson arrivals at a target
        // sessions/day, time-compressed; latency percentiles and a corpus check.
        .executableTarget(
            name: "fi-load",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
    ]
)
