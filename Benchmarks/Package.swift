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
    ]
)
