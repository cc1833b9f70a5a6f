import ArgumentParser
import Model

/// `ferry run --wake-priority normal|realtime`.
extension WakePriority: ExpressibleByArgument {}
