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
    ]
)
