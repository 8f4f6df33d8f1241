// fi-server is not built yet: the HTTP API lands with issue 6.
import Foundation

FileHandle.standardError.write(Data("fi-server: not implemented yet (the ingestion API lands with issue 6)\n".utf8))
exit(2)
