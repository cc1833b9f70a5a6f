/// A value refused before any system call was made: a name longer than the
/// kernel's field for it, a count or size outside what the kernel takes, a
/// device used after it was closed. No call failed, so unlike `SystemError` it
/// carries no errno; its text says what was refused and what is allowed.
public struct InvalidArgument: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}
