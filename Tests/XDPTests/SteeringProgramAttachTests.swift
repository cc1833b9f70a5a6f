import CBPF
import Foundation
import Glibc
import Logging
import TestSupport
@testable import XDP
import XCTest

/// Attaching Ferry's steering program to real veths and dummies: what lands on
/// the hook, what a stale, busy or foreign program on it leads to, and that
/// everything goes again. These tests need root and fail with the reason
/// without it.
final class SteeringProgramAttachTests: XCTestCase {
    override func setUpWithError() throws {
        try XDPSandbox.requireSupport()
    }

    func testNativeAttachShowsInIPLinkAndDetachLeavesNothing() throws {
        let veth = try VethPair("a")
        let program = try SteeringProgram.attach(interface: veth.outer, mode: .auto, guestCapacity: 16,
                                                 logger: XDPSandbox.logger)
        XCTAssertEqual(program.attachedMode, .native, "veth has native XDP")
        XCTAssertEqual(program.interfaceIndex, veth.outerIndex)
        XCTAssertEqual(try XDPSandbox.attachedIDs(veth.outer).native, program.programID)
        let shown = try NetworkSandbox.ip("link", "show", "dev", veth.outer)
        XCTAssertTrue(shown.contains(" xdp "), shown)
        XCTAssertTrue(shown.contains("prog/xdp id \(program.programID) name ferry_steer"), shown)

        program.detach()
        XCTAssertEqual(try XDPSandbox.attachedIDs(veth.outer).native, 0)
        XCTAssertFalse(try NetworkSandbox.ip("link", "show", "dev", veth.outer).contains("prog/xdp"))
        program.detach() // idempotent
    }

    func testGenericAttachWhenAsked() throws {
        let veth = try VethPair("g")
        let program = try SteeringProgram.attach(interface: veth.outer, mode: .generic, guestCapacity: 16,
                                                 logger: XDPSandbox.logger)
        XCTAssertEqual(program.attachedMode, .generic)
        XCTAssertEqual(try XDPSandbox.attachedIDs(veth.outer).generic, program.programID)
        XCTAssertTrue(try NetworkSandbox.ip("link", "show", "dev", veth.outer).contains("xdpgeneric"))
        program.detach()
        XCTAssertEqual(try XDPSandbox.attachedIDs(veth.outer).generic, 0)
    }

    /// A bridge has no driver XDP: auto falls back to generic and says why once.
    func testAutoFallsBackToGenericWithOneLogLine() throws {
        let name = NetworkSandbox.interfaceName("fxdp", "br")
        NetworkSandbox.removeInterface(name)
        try NetworkSandbox.ip("link", "add", name, "type", "bridge")
        defer { NetworkSandbox.removeInterface(name) }

        XCTAssertThrowsError(try SteeringProgram.attach(interface: name, mode: .native, guestCapacity: 4,
                                                        logger: XDPSandbox.logger)) { error in
            guard case .attachFailed(name, .native, _)? = error as? XDPError else {
                return XCTFail("expected a native attach failure, got \(error)")
            }
        }
        let log = CapturedLog()
        let program = try SteeringProgram.attach(interface: name, mode: .auto, guestCapacity: 4, logger: log.logger)
        XCTAssertEqual(program.attachedMode, .generic)
        XCTAssertEqual(log.lines.filter { $0.contains("native XDP refused") }.count, 1, "\(log.lines)")
        XCTAssertEqual(try XDPSandbox.attachedIDs(name).generic, program.programID)
        program.detach()
    }

    func testUnknownInterfaceIsNamed() throws {
        XCTAssertThrowsError(try SteeringProgram.attach(interface: "fxdpnothere0", mode: .auto, guestCapacity: 4,
                                                        logger: XDPSandbox.logger)) { error in
            XCTAssertEqual(error as? XDPError, .unknownInterface("fxdpnothere0"))
            XCTAssertTrue("\(error)".contains("fxdpnothere0"))
        }
    }

    /// As after `kill -9`: the program stays, its owner is gone. The next
    /// attach swaps it in one step, in the same mode.
    func testStaleProgramOfADeadOwnerIsReplaced() throws {
        let veth = try VethPair("s")
        let first = try SteeringProgram.attach(interface: veth.outer, mode: .auto, guestCapacity: 16,
                                               logger: XDPSandbox.logger)
        let staleID = first.programID
        try first.writeOwner(try XDPSandbox.deadPID())
        first.abandon()

        let log = CapturedLog()
        let second = try SteeringProgram.attach(interface: veth.outer, mode: .auto, guestCapacity: 16, logger: log.logger)
        XCTAssertNotEqual(second.programID, staleID)
        XCTAssertEqual(second.attachedMode, .native)
        XCTAssertEqual(second.interfaceIndex, veth.outerIndex)
        XCTAssertEqual(try XDPSandbox.attachedIDs(veth.outer).native, second.programID)
        XCTAssertTrue(log.lines.contains { $0.contains("replaced the XDP program") }, "\(log.lines)")
        second.detach()
        XCTAssertEqual(try XDPSandbox.attachedIDs(veth.outer).native, 0)
        _ = first
    }

    /// A restarted container's Ferry may get its predecessor's pid (1): a
    /// program naming our pid that this process did not attach is stale too.
    func testStaleProgramNamingOurOwnPIDIsReplaced() throws {
        let veth = try VethPair("p")
        let first = try SteeringProgram.attach(interface: veth.outer, mode: .generic, guestCapacity: 16,
                                               logger: XDPSandbox.logger)
        first.abandon()
        let second = try SteeringProgram.attach(interface: veth.outer, mode: .auto, guestCapacity: 16,
                                                logger: XDPSandbox.logger)
        XCTAssertEqual(second.attachedMode, .generic, "replaced in the mode it was found in")
        XCTAssertEqual(try XDPSandbox.attachedIDs(veth.outer).generic, second.programID)
        XCTAssertNotEqual(second.programID, first.programID)
        second.detach()
    }

    func testALiveOwnerMakesTheInterfaceBusy() throws {
        let veth = try VethPair("b")
        let first = try SteeringProgram.attach(interface: veth.outer, mode: .auto, guestCapacity: 16,
                                               logger: XDPSandbox.logger)
        XCTAssertThrowsError(try SteeringProgram.attach(interface: veth.outer, mode: .auto, guestCapacity: 16,
                                                        logger: XDPSandbox.logger)) { error in
            XCTAssertEqual(error as? XDPError, .busy(interface: veth.outer, ownerPID: getpid()))
            XCTAssertEqual("\(error)", "interface \(veth.outer) is already used by Ferry (pid \(getpid()))")
        }
        XCTAssertEqual(try XDPSandbox.attachedIDs(veth.outer).native, first.programID, "the first keeps the hook")
        first.detach()
    }

    func testAForeignProgramIsRefusedAndStays() throws {
        let veth = try VethPair("f")
        let foreign = try loadForeignProgram()
        defer { close(foreign) }
        let attached = bpf_xdp_attach(Int32(bitPattern: veth.outerIndex), foreign, UInt32(XDP_FLAGS_DRV_MODE), nil)
        XCTAssertEqual(attached, 0, "attaching the foreign program: \(attached)")
        let foreignID = try XDPSandbox.attachedIDs(veth.outer).native

        XCTAssertThrowsError(try SteeringProgram.attach(interface: veth.outer, mode: .auto, guestCapacity: 16,
                                                        logger: XDPSandbox.logger)) { error in
            XCTAssertEqual(error as? XDPError, .foreignProgram(interface: veth.outer, name: "foreign", id: foreignID))
            XCTAssertTrue("\(error)".contains("never removes a program that is not its own"), "\(error)")
        }
        XCTAssertEqual(try XDPSandbox.attachedIDs(veth.outer).native, foreignID, "the foreign program is untouched")
        XCTAssertEqual(bpf_xdp_detach(Int32(bitPattern: veth.outerIndex), UInt32(XDP_FLAGS_DRV_MODE), nil), 0)
    }

    /// `r0 = XDP_PASS; exit`: the smallest XDP program, named "foreign".
    private func loadForeignProgram() throws -> Int32 {
        var returnPass = bpf_insn()
        returnPass.code = UInt8(BPF_ALU64 | BPF_MOV | BPF_K)
        returnPass.imm = Int32(XDP_PASS.rawValue)
        var exit = bpf_insn()
        exit.code = UInt8(BPF_JMP | BPF_EXIT)
        let instructions = [returnPass, exit]
        let fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "foreign", "GPL", instructions, instructions.count, nil)
        guard fd >= 0 else { throw NetworkSandbox.Unavailable("bpf_prog_load(foreign): \(fd)") }
        return fd
    }
}
