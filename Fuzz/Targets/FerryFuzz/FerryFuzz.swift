import FerryFuzzing
import Glibc

// libFuzzer's entry points. One binary serves every target; FERRY_FUZZ_TARGET picks it
// (tools/fuzz.sh sets it), so each target still runs in its own process with its own corpus.

nonisolated(unsafe) private var selected: FuzzTarget?

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(_ argc: UnsafeMutablePointer<Int32>?,
                             _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> Int32 {
    let name = getenv("FERRY_FUZZ_TARGET").map { String(cString: $0) } ?? ""
    guard let target = FuzzTarget.named(name) else {
        let message = "FERRY_FUZZ_TARGET='\(name)' names no target (one of: \(FuzzTarget.all.map(\.name).joined(separator: ", ")))\n"
        _ = message.withCString { write(STDERR_FILENO, $0, strlen($0)) }
        exit(2)
    }
    selected = target
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    _ = selected.unsafelyUnwrapped.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

// libFuzzer's driver, from its runtime (FuzzerInterface.h: int LLVMFuzzerRunDriver(int *argc,
// char ***argv, int (*UserCb)(const uint8_t *, size_t))). Pointer and integer arguments pass
// the same way under Swift's and C's conventions on x86_64 and arm64.
@_silgen_name("LLVMFuzzerRunDriver")
private func runFuzzerDriver(_ argc: UnsafeMutablePointer<Int32>,
                             _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                             _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

// SwiftPM links an executable's entry point under the name <module>_main; with
// -parse-as-library there is none, so this is it: libFuzzer's driver with our callback.
@_cdecl("FerryFuzz_main")
public func ferryFuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments, fuzzerTestOneInput)
}
