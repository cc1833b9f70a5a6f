import Model
import Packets
import Platform
import Ports
import XCTest
import XDP

final class PortSpecTests: XCTestCase {
    func testVhostSpecs() throws {
        XCTAssertEqual(try PortSpec(parsing: "vhost:/tmp/a.sock").kind, .vhost(path: "/tmp/a.sock", client: false, queuePairs: 1))
        let spec = try PortSpec(parsing: "vhost:/tmp/a.sock,client,queues=4,name=vm0")
        XCTAssertEqual(spec.kind, .vhost(path: "/tmp/a.sock", client: true, queuePairs: 4))
        XCTAssertEqual(spec.name, "vm0")
    }

    func testVhostSocketPermissions() throws {
        let spec = try PortSpec(parsing: "vhost:/run/ferry/vm0.sock,owner=qemu,group=kvm,mode=0660,name=vm0")
        XCTAssertEqual(spec.kind, .vhost(path: "/run/ferry/vm0.sock", client: false, queuePairs: 1,
                                         permissions: SocketPermissions(owner: "qemu", group: "kvm", mode: 0o660)))
        XCTAssertEqual(spec.name, "vm0")
        XCTAssertEqual(try PortSpec(parsing: "vhost:/tmp/a.sock,group=107").kind,
                       .vhost(path: "/tmp/a.sock", client: false, queuePairs: 1, permissions: SocketPermissions(group: "107")))
        XCTAssertEqual(try PortSpec(parsing: "vhost:/tmp/a.sock,mode=600,server").kind,
                       .vhost(path: "/tmp/a.sock", client: false, queuePairs: 1, permissions: SocketPermissions(mode: 0o600)))
    }

    func testBadSocketPermissionsSayWhatIsWrong() {
        let cases: [(String, String)] = [
            ("vhost:/tmp/a.sock,client,group=kvm", "with client, the front-end owns the socket"),
            ("vhost:/tmp/a.sock,client,mode=0660", "with client, the front-end owns the socket"),
            ("vhost:/tmp/a.sock,mode=0669", "mode '0669' must be octal permission bits"),
            ("vhost:/tmp/a.sock,mode=1777", "mode '1777' must be octal permission bits"),
            ("vhost:/tmp/a.sock,mode=rw", "mode 'rw' must be octal"),
            ("vhost:/tmp/a.sock,mode=", "mode '' must be octal"),
            ("vhost:/tmp/a.sock,owner=", "owner '' must be a user name or number"),
            ("vhost:/tmp/a.sock,group=kvm,group=qemu", "option 'group' given twice"),
            ("tap:t0,group=kvm", "unknown option 'group'"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try PortSpec(parsing: text), text) { error in
                let message = (error as? PortSpec.ParseError)?.description ?? "\(error)"
                XCTAssertTrue(message.contains(expected), "\(text): \(message)")
            }
        }
    }

    func testTapSpecs() throws {
        XCTAssertEqual(try PortSpec(parsing: "tap:ferry0").kind, .tap(name: "ferry0", queues: 1, mtu: nil))
        let spec = try PortSpec(parsing: "tap:up-link_0.10,queues=4,mtu=9000,name=uplink,vlan=10")
        XCTAssertEqual(spec.kind, .tap(name: "up-link_0.10", queues: 4, mtu: 9000))
        XCTAssertEqual(spec.name, "uplink")
        XCTAssertEqual(spec.vlan, .access(10))
        let trunk = try PortSpec(parsing: "tap:t0,trunk=10,20-21,queues=2")
        XCTAssertEqual(trunk.kind, .tap(name: "t0", queues: 2, mtu: nil))
        XCTAssertEqual(trunk.vlan, .trunk([10, 20, 21]))
        // The limits themselves: 15 bytes (IFNAMSIZ), 256 queues (MAX_TAP_QUEUES), MTU 68 and 9000.
        XCTAssertEqual(try PortSpec(parsing: "tap:abcdefghijklmno,queues=256,mtu=68").kind,
                       .tap(name: "abcdefghijklmno", queues: 256, mtu: 68))
        XCTAssertEqual(try PortSpec(parsing: "tap:0").kind, .tap(name: "0", queues: 1, mtu: nil))
    }

    func testBadTapSpecsSayWhatIsWrong() {
        let cases: [(String, String)] = [
            ("tap", "tap needs an interface name"),
            ("tap:", "tap needs an interface name"),
            ("tap:queues=2", "tap needs an interface name"),
            ("tap:abcdefghijklmnop", "interface name 'abcdefghijklmnop' must be 1-15 letters"),
            ("tap:a b", "interface name 'a b' must be"),
            ("tap:a/b", "interface name 'a/b' must be"),
            ("tap:a:b", "interface name 'a:b' must be"),
            ("tap:tap%d", "interface name 'tap%d' must be"),
            ("tap:é0", "interface name 'é0' must be"),
            ("tap:..", "not '.' or '..'"),
            ("tap:t0,queues=0", "queues must be 1...256"),
            ("tap:t0,queues=257", "queues must be 1...256"),
            ("tap:t0,queues=two", "queues must be 1...256"),
            ("tap:t0,mtu=67", "mtu must be 68...9000"),
            ("tap:t0,mtu=9001", "mtu must be 68...9000"),
            ("tap:t0,mtu=1500,mtu=9000", "option 'mtu' given twice"),
            ("tap:t0,client", "unknown option 'client'"),
            ("tap:t0,size=64", "unknown option 'size'"),
            ("tap:t0,vlan=4095", "VLAN id '4095' must be 1...4094"),
        ]
        for (text, message) in cases {
            XCTAssertThrowsError(try PortSpec(parsing: text), text) { error in
                XCTAssertTrue("\(error)".contains(message), "\(text): \(error)")
            }
        }
    }

    func testXdpSpecs() throws {
        XCTAssertEqual(try PortSpec(parsing: "xdp:eth0").kind, .xdp(interface: "eth0", queues: nil, mode: .auto, zeroCopy: .auto))
        let spec = try PortSpec(parsing: "xdp:enp1s0f0,queues=4,mode=native,zerocopy=on,name=uplink,trunk=10-12")
        XCTAssertEqual(spec.kind, .xdp(interface: "enp1s0f0", queues: 4, mode: .native, zeroCopy: .on))
        XCTAssertEqual(spec.name, "uplink")
        XCTAssertEqual(spec.vlan, .trunk([10, 11, 12]))
        XCTAssertEqual(try PortSpec(parsing: "xdp:veth1,mode=generic,zerocopy=off").kind,
                       .xdp(interface: "veth1", queues: nil, mode: .generic, zeroCopy: .off))
        let cases: [(String, String)] = [
            ("xdp", "xdp needs an interface name"),
            ("xdp:queues=2", "xdp needs an interface name"),
            ("xdp:a/b", "interface name 'a/b' must be"),
            ("xdp:eth0,queues=0", "queues must be 1...64"),
            ("xdp:eth0,queues=65", "queues must be 1...64"),
            ("xdp:eth0,mode=driver", "mode must be auto, native or generic"),
            ("xdp:eth0,zerocopy=yes", "zerocopy must be auto, on or off"),
            ("xdp:eth0,mtu=1500", "unknown option 'mtu'"),
        ]
        for (text, message) in cases {
            XCTAssertThrowsError(try PortSpec(parsing: text), text) { error in
                XCTAssertTrue("\(error)".contains(message), "\(text): \(error)")
            }
        }
    }

    func testPacketSpecs() throws {
        XCTAssertEqual(try PortSpec(parsing: "packet:eth0").kind, .packet(interface: "eth0", queues: 1))
        let spec = try PortSpec(parsing: "packet:enp1s0f0.100,queues=4,name=uplink,trunk=10,20-21")
        XCTAssertEqual(spec.kind, .packet(interface: "enp1s0f0.100", queues: 4))
        XCTAssertEqual(spec.name, "uplink")
        XCTAssertEqual(spec.vlan, .trunk([10, 20, 21]))
        let access = try PortSpec(parsing: "packet:veth1,vlan=5,queues=64")
        XCTAssertEqual(access.kind, .packet(interface: "veth1", queues: 64))
        XCTAssertEqual(access.vlan, .access(5))
    }

    func testBadPacketSpecsSayWhatIsWrong() {
        let cases: [(String, String)] = [
            ("packet", "packet needs an interface name"),
            ("packet:", "packet needs an interface name"),
            ("packet:queues=2", "packet needs an interface name"),
            ("packet:abcdefghijklmnop", "interface name 'abcdefghijklmnop' must be 1-15 letters"),
            ("packet:a/b", "interface name 'a/b' must be"),
            ("packet:eth0,queues=0", "queues must be 1...64"),
            ("packet:eth0,queues=65", "queues must be 1...64"),
            ("packet:eth0,mtu=1500", "unknown option 'mtu'"),
            ("packet:eth0,promisc", "unknown option 'promisc'"),
        ]
        for (text, message) in cases {
            XCTAssertThrowsError(try PortSpec(parsing: text), text) { error in
                XCTAssertTrue("\(error)".contains(message), "\(text): \(error)")
            }
        }
    }

    func testGenAndSinkSpecs() throws {
        let gen = try PortSpec(parsing: "gen:dst=02:00:00:00:00:09,size=1518,count=10,delay=5")
        guard case .gen(let g) = gen.kind else { return XCTFail() }
        XCTAssertEqual(g.destination, MACAddress("02:00:00:00:00:09"))
        XCTAssertEqual(g.sizes, .fixed(1518))
        XCTAssertEqual(g.count, 10)
        XCTAssertEqual(g.delayMilliseconds, 5)
        XCTAssertEqual(g.rate, .unlimited)
        XCTAssertEqual(try PortSpec(parsing: "sink").kind, .sink)
        XCTAssertEqual(try PortSpec(parsing: "sink:name=drop").name, "drop")
    }

    func testVLANModes() throws {
        XCTAssertEqual(try PortSpec(parsing: "sink").vlan, .access(1))
        XCTAssertEqual(try PortSpec(parsing: "vhost:/a.sock,vlan=10,name=a").vlan, .access(10))
        let trunk = try PortSpec(parsing: "vhost:/a.sock,trunk=30,10,20-22,name=t")
        XCTAssertEqual(trunk.vlan, .trunk([10, 20, 21, 22, 30]))
        XCTAssertEqual(trunk.name, "t")
        XCTAssertEqual(try PortSpec(parsing: "gen:trunk=5,size=60").vlan, .trunk([5]))
    }

    func testBadVLANsSayWhatIsWrong() {
        let cases: [(String, String)] = [
            ("sink:vlan=0", "VLAN id '0' must be 1...4094"),
            ("sink:vlan=4095", "VLAN id '4095' must be 1...4094"),
            ("sink:trunk=10,x", "unknown option 'x'"),
            ("sink:trunk=20-10", "VLAN range '20-10' runs backwards"),
            ("sink:vlan=3,trunk=4", "either access (vlan=) or trunk (trunk=)"),
            ("sink:trunk=", "VLAN id '' must be"),
        ]
        for (text, message) in cases {
            XCTAssertThrowsError(try PortSpec(parsing: text), text) { error in
                XCTAssertTrue("\(error)".contains(message), "\(text): \(error)")
            }
        }
    }

    func testBadSpecsSayWhatIsWrong() {
        let cases: [(String, String)] = [
            ("bogus:x", "unknown port type 'bogus' (vhost, tap, packet, xdp, gen, sink, vxlan, virtio-user)"),
            ("vhost:", "vhost needs a socket path"),
            ("vhost:/a,queues=0", "queues must be 1...128"),
            ("vhost:/a,bogus", "unknown option 'bogus'"),
            ("vhost:/a,client,server", "both client and server"),
            ("gen:size=20", "size must be 60...9000"),
            ("gen:dst=zz", "dst 'zz' is not a MAC address"),
            ("gen:count=x", "count must be a whole number"),
            ("gen:size=64,size=65", "option 'size' given twice"),
            ("sink:name=a b", "must be 1-32 letters"),
        ]
        for (text, message) in cases {
            XCTAssertThrowsError(try PortSpec(parsing: text), text) { error in
                XCTAssertTrue("\(error)".contains(message), "\(text): \(error)")
            }
        }
    }
}

final class GenAndSinkTests: XCTestCase {
    func testGenEmitsItsCountOfValidFramesThenStops() throws {
        let gen = GenPort(destination: .broadcast, source: MACAddress(2, 0, 0, 0, 0, 1), frameSize: 64, count: 300)
        let batch = PacketBatch(capacity: 256)
        XCTAssertEqual(gen.pull(queue: 0, into: batch), 256)
        let frame = [UInt8](UnsafeRawBufferPointer(start: batch.segmentBase(0), count: batch.length(of: 0)))
        XCTAssertEqual(frame.count, 64)
        XCTAssertEqual(Array(frame[0..<6]), MACAddress.broadcast.array)
        XCTAssertEqual(Array(frame[12..<14]), [0x08, 0x00])
        // The IPv4 header checksums to zero when it is right (RFC 1071).
        var sum: UInt32 = 0
        for i in stride(from: 14, to: 34, by: 2) { sum += UInt32(frame[i]) << 8 | UInt32(frame[i + 1]) }
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        XCTAssertEqual(sum, 0xffff)
        batch.reset()
        XCTAssertEqual(gen.pull(queue: 0, into: batch), 44)
        batch.reset()
        XCTAssertEqual(gen.pull(queue: 0, into: batch), 0)
        XCTAssertTrue(gen.isFinished)
        XCTAssertEqual(gen.counters.snapshot.rxPackets, 300)
    }

    func testSinkCountsWhatItSwallows() {
        let gen = GenPort(destination: .broadcast, source: .broadcast, frameSize: 100, count: nil)
        let sink = SinkPort()
        let batch = PacketBatch(capacity: 32)
        _ = gen.pull(queue: 0, into: batch)
        sink.push(queue: 0, from: batch)
        XCTAssertEqual(sink.counters.snapshot.txPackets, 32)
        XCTAssertEqual(sink.counters.snapshot.txBytes, 3200)
        XCTAssertEqual(sink.pull(queue: 0, into: batch), 0)
    }
}
