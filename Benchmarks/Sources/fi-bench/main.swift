// fi-bench <name> [args…]: one benchmark per file in this folder, each
// printing `RESULT key=value …` lines that run.sh collects.
import Foundation

let arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first {
case "partition":
    try PartitionBench.run(Array(arguments.dropFirst()))
case "storage": try await StorageBench.main(Array(arguments.dropFirst()))
case "queue": try await QueueBench.main(Array(arguments.dropFirst()))
default:
    FileHandle.standardError.write(Data("usage: fi-bench partition|queue|storage [args…]\n".utf8))
    exit(2)
}
