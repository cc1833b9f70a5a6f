import Configuration
import Model
import Platform
import XCTest

final class ConfigFileTests: XCTestCase {
    /// docs/ferry.example.yaml, which docs/CONFIG.md describes.
    static let examplePath = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("docs/ferry.example.yaml").path

    func testTheDocumentedExampleLoadsWithEveryPortType() throws {
        let config = try FerryConfig.load(path: Self.examplePath)
        XCTAssertEqual(Set(config.ports.map(\.kindName)), Set(PortSpec.types))
        XCTAssertEqual(config.switchSettings.workers, 2)
        XCTAssertEqual(config.switchSettings.cpus, [0, 1])
        XCTAssertEqual(config.switchSettings.idle.rawValue, "adaptive")
        XCTAssertEqual(config.switchSettings.wakePriority.rawValue, "realtime")
        XCTAssertEqual(config.control.path, "/run/ferry/ferry.sock")
        XCTAssertEqual(config.control.access, SocketPermissions(mode: 0o660))
        XCTAssertEqual(config.metrics.listen, "127.0.0.1:9469")
        XCTAssertEqual(config.summary,
                       "9 ports (vm0 vhost, vm1 vhost, host tap, uplink xdp, mirror packet, probe gen, drop sink, dc2 vxlan, "
                       + "dut-a virtio-user), "
                       + "2 static addresses")
        XCTAssertEqual(config.refusals(file: Self.examplePath).filter { $0.message.hasPrefix("fdb") }, [])
    }

    func testPortsAreWhatTheSameOptionsOnTheCommandLineGive() throws {
        let config = try FerryConfig.load(path: Self.examplePath)
        for port in config.ports {
            // The text shown for a config port is a --port spec that means the same port.
            let fromText = try PortSpec(parsing: port.text)
            XCTAssertTrue(fromText.describesSamePort(as: port), port.text)
        }
        let vm1 = try XCTUnwrap(config.ports.first { $0.name == "vm1" })
        XCTAssertEqual(vm1.kind, .vhost(path: "/run/ferry/vm1.sock", client: true, queuePairs: 1))
        XCTAssertEqual(vm1.vlan, .trunk([10, 20, 21]))
        let uplink = try XCTUnwrap(config.ports.first { $0.name == "uplink" })
        XCTAssertEqual(uplink.vlan, .trunk([10, 20, 21], native: 10))
    }

    func testStaticEntries() throws {
        let config = try FerryConfig(yaml: """
            ports:
              - {name: vm0, type: vhost, path: /a.sock, vlan: 10}
              - {name: up, type: packet, interface: eth0, trunk: [10, 20]}
            fdb:
              - {mac: 52:54:00:12:34:56, port: vm0}
              - mac: "52-54-00-12-34-57"
                port: up
                vlan: 20
            """, file: "f.yaml")
        XCTAssertEqual(config.staticEntries.map(\.mac), [MACAddress("52:54:00:12:34:56"), MACAddress("52:54:00:12:34:57")])
        XCTAssertEqual(config.staticEntries.map(\.port), ["vm0", "up"])
        XCTAssertEqual(config.staticEntries.map(\.vlan), [nil, 20])
        XCTAssertEqual(config.staticEntries.map(\.line), [5, 6])
        XCTAssertEqual(config.resolvedStaticEntries.map(\.description),
                       ["52:54:00:12:34:56 vlan 10 on port vm0", "52:54:00:12:34:57 vlan 20 on port up"])
        XCTAssertEqual(config.refusals(file: "f.yaml"), [])
        XCTAssertEqual(config.summary, "2 ports (vm0 vhost, up packet), 2 static addresses")
    }

    func testIdlePolicyAndWakePriorityAreRead() throws {
        let config = try FerryConfig(yaml: """
            switch: {idle: adaptive, wake_priority: normal}
            ports: [{name: a, type: sink}]
            """, file: "f.yaml")
        XCTAssertEqual(config.switchSettings.switchOptions.idle, .adaptive)
        XCTAssertEqual(config.switchSettings.switchOptions.wakePriority, .normal)
    }

    func testATrunksNativeVLAN() throws {
        let config = try FerryConfig(yaml: """
            ports:
              - {name: up, type: packet, interface: eth0, trunk: [10, 20], native: 10}
            """, file: "f.yaml")
        XCTAssertEqual(config.ports[0].vlan, .trunk([10, 20], native: 10))
        XCTAssertEqual(config.ports[0].text, "packet:eth0,trunk=10,20,native=10,name=up")
    }

    func testGroupForwardMaskIsTheTextAsWritten() throws {
        // Unquoted, a YAML 1.1 reader would take 0x4000 for 16384; both mean the same mask.
        let config = try FerryConfig(yaml: """
            ports:
              - {name: up, type: packet, interface: eth0, group_fwd_mask: 0x4000}
              - {name: vm, type: vhost, path: /a.sock, group_fwd_mask: 16392}
            """, file: "f.yaml")
        XCTAssertEqual(config.ports.map(\.groupForwardMask.bits), [0x4000, 0x4008])
        XCTAssertEqual(config.ports[0].text, "packet:eth0,group_fwd_mask=0x4000,name=up")
    }

    func testDefaultsAndSpellings() throws {
        let config = try FerryConfig(yaml: """
            switch:
              cpus: "0,2-3"
            ports:
              - name: g
                type: gen
                dst: 02:00:00:00:00:09
                count: 5
              - {name: vm0, type: vhost, path: /a.sock, client: no, mode: 660}
            """, file: "f.yaml")
        XCTAssertEqual(config.switchSettings.cpus, [0, 2, 3])
        XCTAssertEqual(config.switchSettings.workers, 1)
        XCTAssertEqual(config.switchSettings.batch, 256)
        XCTAssertEqual(config.switchSettings.idle.rawValue, "adaptive")
        XCTAssertEqual(config.switchSettings.wakePriority.rawValue, "realtime")
        XCTAssertNil(config.control.path)
        XCTAssertNil(config.metrics.listen)
        // Unquoted, YAML 1.1 would read the MAC as a base-60 number: the raw text is used.
        guard case .gen(let g) = config.ports[0].kind, g.sizes == .fixed(64), g.count == 5, g.delayMilliseconds == 0
        else { return XCTFail("\(config.ports[0].kind)") }
        let dst = g.destination
        XCTAssertEqual(dst, MACAddress("02:00:00:00:00:09"))
        XCTAssertEqual(config.ports[1].kind, .vhost(path: "/a.sock", client: false, queuePairs: 1,
                                                    permissions: SocketPermissions(mode: 0o660)))
        XCTAssertEqual(config.ports[1].text, "vhost:/a.sock,mode=660,name=vm0")
    }
}
