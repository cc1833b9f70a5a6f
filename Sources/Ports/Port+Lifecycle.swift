import Glibc
import Logging
import Model
import Platform
import VhostUser
import Virtio
import XDP

/// What opening a port takes from the switch that will run it.
public struct PortContext {
    /// Pauses every worker that may touch a vhost device's rings while the device changes.
    public let gate: DataPathGate
    /// The most frames a worker pulls or pushes in one burst.
    public let batchSize: Int
    /// Addresses the forwarding database holds: an xdp uplink's steering map is as large.
    public let addressCapacity: Int
    public let logger: Logger
    /// Set as every TAP's filter, so the workers can follow who sends into it
    /// (nil: workers pinned with `cpus`, or the program could not be loaded).
    public let senderCPU: SenderCPUProgram?

    public init(gate: DataPathGate, batchSize: Int, addressCapacity: Int, logger: Logger,
                senderCPU: SenderCPUProgram? = nil) {
        self.gate = gate
        self.batchSize = batchSize
        self.addressCapacity = addressCapacity
        self.logger = logger
        self.senderCPU = senderCPU
    }
}

/// Why a port could not be opened, as one line for the operator.
public struct PortOpenError: Error, CustomStringConvertible {
    public let description: String
}

// A port's life as the switch sees it: opened from its spec, asked for its
// state, shut down. Only here does the kind decide how.
extension Port {
    /// Opens the port `spec` describes, named `name`. An uplink (xdp, packet)
    /// that fails to open becomes a `FailedPort` when `keepingFailedUplink`
    /// (at startup, as a bridge keeps running when one of its ports fails to
    /// open); otherwise, like any other port, it is an error.
    public static func open(_ spec: PortSpec, name: String, context: PortContext,
                            keepingFailedUplink: Bool) throws(PortOpenError) -> Port {
        let logger = context.logger
        func failedUplink(_ error: any Error) throws(PortOpenError) -> Port {
            guard keepingFailedUplink else { throw PortOpenError(description: "\(error)") }
            logger.error("port \(name) (\(spec.text)) failed to open: \(error)")
            return .failed(FailedPort(reason: "\(error)"))
        }
        switch spec.kind {
        case .vhost(let path, let client, let pairs, let permissions):
            let withheld: VirtioNetFeatures = switch spec.offloads {
            case .on: []
            case .csum: .segmentationOffloads
            case .off: VirtioNetFeatures.segmentationOffloads.union(.checksumOffloads)
            }
            let device = VhostDevice(name: name, queuePairs: pairs, gate: context.gate, logger: logger,
                                     withheldFeatures: withheld)
            do {
                let endpoint = try VhostUserEndpoint(path: path, mode: client ? .client : .server, device: device,
                                                     logger: logger, permissions: try permissions.resolved())
                return .vhost(VhostPort(endpoint: endpoint))
            } catch {
                throw PortOpenError(description: "\(error)")
            }
        case .tap(let interface, let queues, let mtu):
            do {
                let tap = try TapPort(name: interface, queues: queues, mtu: mtu, batchCapacity: context.batchSize,
                                      offloads: spec.offloads)
                logger.info("TAP \(interface): \(tap.queueCount) queue(s), frames written with \(tap.writePath.rawValue)")
                if let senderCPU = context.senderCPU {
                    // Without it the TAP forwards as well; only its sender's latency depends on where the worker wakes.
                    do {
                        try tap.device.setFilterProgram(senderCPU.programDescriptor)
                    } catch {
                        logger.notice("TAP \(interface): the worker will not follow its sender's CPU: \(error)")
                    }
                }
                return .tap(tap)
            } catch {
                throw PortOpenError(description: "\(error)")
            }
        case .xdp(let interface, let queues, let mode, let zeroCopy):
            do throws(XdpPortError) {
                let xdp = try XdpPort(interface: interface, queues: queues, attach: mode, zeroCopy: zeroCopy,
                                      guestCapacity: context.addressCapacity, batchCapacity: context.batchSize,
                                      logger: logger)
                logger.info("""
                    xdp \(interface): \(xdp.queueCount) queue(s), program \(xdp.steering.attachedMode) mode \
                    (id \(xdp.steering.programID)), sockets in \(xdp.copyMode.rawValue) mode
                    """)
                return .xdp(xdp)
            } catch {
                return try failedUplink(error)
            }
        case .packet(let interface, let queues):
            do {
                let packet = try PacketPort(interface: interface, queues: queues, offloads: spec.offloads)
                logger.info("\(packet.summary)")
                return .packet(packet)
            } catch {
                return try failedUplink(error)
            }
        case .gen(let generator):
            return .gen(GenPort(generator, batchCapacity: context.batchSize))
        case .sink:
            return .sink(SinkPort())
        case .virtioUser(let path, let server, let queueSize):
            do {
                return .virtioUser(try VirtioUserPort(path: path, server: server, queueSize: UInt16(queueSize),
                                                      name: name, gate: context.gate, logger: logger))
            } catch {
                throw PortOpenError(description: "\(error)")
            }
        case .vxlan(let vni, let local, let remotes, let udpPort):
            do {
                let vxlan = try VxlanPort(vni: vni, local: local, remotes: remotes, udpPort: udpPort, evpn: spec.evpn,
                                          via: spec.underlay, batchCapacity: context.batchSize, logger: logger)
                logger.info("\(vxlan.summary)")
                return .vxlan(vxlan)
            } catch {
                throw PortOpenError(description: "\(error)")
            }
        }
    }

    /// What `ferry ctl show ports` says of it.
    public var state: String {
        switch self {
        case .vhost(let p): p.state
        case .tap, .packet: running()
        case .vxlan(let p):
            running("VNI \(p.vni), \(p.endpoints.count) VTEP\(p.endpoints.count == 1 ? "" : "s")"
                    + (p.underlay.map { u in
                        u.connectedInterface == nil ? ", via \(u.portName): not connected, through the kernel"
                            : ", via \(u.portName): \(u.resolvedCount) resolved"
                    } ?? ""))
        case .xdp(let p): running("xdp \(p.steering.attachedMode), \(p.copyMode.rawValue)")
        case .failed(let p): "failed: \(p.reason)"
        case .gen(let p): p.isFinished ? "finished" : "running"
        case .sink: "running"
        case .virtioUser(let p): p.state
        }
    }

    private func running(_ detail: String? = nil) -> String {
        let error = lastError == 0 ? nil : "last error: \(String(cString: strerror(lastError)))"
        let details = [detail, error].compactMap { $0 }
        return details.isEmpty ? "running" : "running (\(details.joined(separator: ", ")))"
    }

    /// Lets go of what the port holds outside Ferry; the data path must no
    /// longer use it. `why` is told to a vhost port's front-end.
    public func shutDown(why: String) {
        switch self {
        case .vhost(let p): p.endpoint.shutDown(why)
        case .virtioUser(let p): p.frontEnd.shutDown(why)
        // A TAP Ferry created disappears with its last descriptor; one that existed stays.
        case .tap(let p): p.device.close()
        // Detached while its sockets are still open: the hook is never left
        // pointing at sockets that are gone.
        case .xdp(let p): p.close()
        // A packet port's sockets close, and its promiscuous mode goes, when the switch lets go of it.
        // A vxlan port's sockets close with it; an EVPN port's local MACs leave the kernel bridge,
        // so that zebra withdraws them.
        case .vxlan(let p): p.kernelFDB?.removeAllLocal()
        case .packet, .failed, .gen, .sink: break
        }
    }
}
