import ArgumentParser
import Model

/// `ferry run --idle poll|adaptive|sleep`.
extension IdlePolicy: ExpressibleByArgument {}
