import Logging
import Model
import Ports

@testable import Engine

/// A generator sending `generating` frames to an access sink `s` and a trunk
/// sink `t` (VLAN 1): no root, no threads; tests run the worker's passes.
func threePortSwitch(generating count: Int) throws -> Switch {
    try Switch(specs: [
        PortSpec(parsing: "gen:dst=02:00:00:00:00:02,src=02:00:00:00:00:01,size=64,count=\(count),name=g"),
        PortSpec(parsing: "sink:name=s"),
        PortSpec(parsing: "sink:name=t,trunk=1"),
    ], logger: Logger(label: "test"))
}
