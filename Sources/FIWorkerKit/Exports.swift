// The executables print the version and commit (`--version`, `fi_build_info`).
@_exported import FIBuildInfo
