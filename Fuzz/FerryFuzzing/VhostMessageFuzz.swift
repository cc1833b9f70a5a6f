import Glibc
import Platform
import VhostUser

/// The vhost-user decoder and its request policy, fed as a socket feeds it: chunks of bytes,
/// each with some descriptors (real eventfds) and perhaps MSG_CTRUNC.
///
/// Input: a role byte (bit 0: decode as the front-end, i.e. replies), then chunks of
/// [control byte: bits 0-1 descriptor count, bit 2 truncated, bit 3 keep feeding before draining]
/// [u16 length] [that many bytes].
///
/// Checked: every accepted message carries the descriptors its policy asks for and re-encodes to
/// itself; after a fatal error the decoder stays silent; drained, it holds less than one message;
/// and every descriptor handed to it is closed once the decoder and its messages are gone.
public enum VhostMessageFuzz {
    public static let target = FuzzTarget(name: "vhost-message", run: { run($0) }, seeds: { seeds() })

    /// The most descriptors one input hands over, so a run never exhausts the process's table.
    static let descriptorBudget = 64
    /// A drained decoder keeps less than one header and the largest payload.
    static let largestMessage = VhostUserHeader.size + VhostUserHeader.maxPayloadSize

    public static func run(_ bytes: UnsafeRawBufferPointer) -> FuzzOutcome {
        var input = FuzzInput(bytes)
        let role: MessageDecoder.Role = input.byte() & 1 == 0 ? .backEnd : .frontEnd
        var outcome = FuzzOutcome()
        var handedOver: [Int32] = []
        do {
            var decoder = MessageDecoder(role: role)
            while !input.isExhausted {
                let control = input.byte()
                let chunk = input.take(Int(input.uint16()))
                var fds: [Int32] = []
                for _ in 0..<Int(control & 3) where handedOver.count + fds.count < descriptorBudget {
                    guard let fd = try? EventFD.create() else { break }
                    fds.append(fd.release())
                }
                handedOver += fds
                decoder.feed(chunk, descriptors: ReceivedDescriptors(owning: fds), descriptorsTruncated: control & 4 != 0)
                if control & 8 == 0 { drain(&decoder, role: role, into: &outcome) }
            }
            drain(&decoder, role: role, into: &outcome)
        }
        for fd in handedOver {
            fuzzCheck(fcntl(fd, F_GETFD) == -1, "descriptor \(fd) handed to the decoder is still open")
        }
        return outcome
    }

    private static func drain(_ decoder: inout MessageDecoder, role: MessageDecoder.Role, into outcome: inout FuzzOutcome) {
        while let result = decoder.next() {
            switch result {
            case .success(let message):
                outcome.accepted += 1
                check(message, role: role)
            case .failure:
                outcome.refused += 1
            }
        }
        if decoder.failure != nil {
            fuzzCheck(decoder.next() == nil, "a failed decoder returned another result")
        } else {
            fuzzCheck(decoder.bufferedByteCount < largestMessage,
                      "a drained decoder holds \(decoder.bufferedByteCount) bytes, a whole message")
        }
    }

    private static func check(_ message: VhostUserMessage, role: MessageDecoder.Role) {
        let allowed: ClosedRange<Int>
        switch role {
        case .backEnd:
            guard let policy = RequestPolicy.of(message.request) else {
                fuzzCheck(false, "accepted \(message.request), which has no policy")
                return
            }
            allowed = policy.expectedDescriptorCount(for: message.payload)
        case .frontEnd:
            allowed = 0...0
        }
        fuzzCheck(allowed.contains(message.descriptors.count),
                  "\(message.request) accepted with \(message.descriptors.count) descriptors, policy \(allowed)")
        guard message.descriptors.count == 0 else { return }
        // Descriptor-free messages must survive encode → decode unchanged.
        var again = MessageDecoder(role: role)
        again.feed(MessageEncoder.frame(requestNumber: message.request.rawValue, flags: message.flags,
                                        payload: MessageEncoder.encode(message.payload)))
        guard case .success(let decoded)? = again.next() else {
            fuzzCheck(false, "\(message.request) \(message.payload) does not decode after re-encoding")
            return
        }
        fuzzCheck(decoded.request == message.request && decoded.payload == message.payload,
                  "\(message.request) \(message.payload) re-decodes as \(decoded.request) \(decoded.payload)")
    }

    // MARK: - Seeds

    /// One message of every supported request, well formed, as QEMU would send it.
    static func typicalRequests() -> [(request: VhostUserRequest, payload: VhostUserMessage.Payload, fds: Int)] {
        let low = MemoryRegionInfo(guestPhysAddr: 0, size: 0xa_0000, userAddr: 0x7f12_0000_0000, mmapOffset: 0)
        let high = MemoryRegionInfo(guestPhysAddr: 0x10_0000, size: 0x3ff0_0000, userAddr: 0x7f12_0010_0000,
                                    mmapOffset: 0x10_0000)
        let rings = VringAddress(index: 0, flags: 0, descUserAddr: 0x7f12_0020_0000, usedUserAddr: 0x7f12_0020_2000,
                                 availUserAddr: 0x7f12_0020_1000, logGuestAddr: 0)
        return RequestPolicy.supportedRequests.map { request in
            switch RequestPolicy.of(request)?.payload {
            case .u64?: (request, .u64(request == .netSetMTU ? 1500 : 0x1_4000_8000), 0)
            case .vringState?: (request, .vringState(index: 1, num: 256), 0)
            case .vringAddress?: (request, .vringAddress(rings), 0)
            case .vringFile?: (request, .vringFile(index: 1, hasFD: true), 1)
            case .memoryTable?: (request, .memoryTable([low, high]), 2)
            case .memoryRegion?: (request, .memoryRegion(high), request == .addMemReg ? 1 : 0)
            case .logDescription?: (request, .dirtyLog(size: 0x1000, offset: 0), 1)
            case .empty?, nil: (request, .none, 0)
            }
        }
    }

    static func chunk(_ bytes: [UInt8], fds: Int = 0, truncated: Bool = false, holdBack: Bool = false) -> [UInt8] {
        var builder = FuzzInputBuilder()
        builder.byte(UInt8(fds) | (truncated ? 4 : 0) | (holdBack ? 8 : 0))
        builder.uint16(UInt16(bytes.count))
        builder.raw(bytes)
        return builder.bytes
    }

    static func seeds() -> [(name: String, bytes: [UInt8])] {
        var seeds: [(name: String, bytes: [UInt8])] = []
        var session: [UInt8] = [0]
        for sample in typicalRequests() {
            let message = MessageEncoder.request(sample.request, payload: sample.payload, needReply: true)
            seeds.append(("request-\(sample.request.rawValue)", [0] + chunk(message, fds: sample.fds)))
            session += chunk(message, fds: sample.fds)
        }
        seeds.append(("session", session))
        // SET_VRING_KICK split over three reads, its descriptor riding on the last.
        let kick = MessageEncoder.request(.setVringKick, payload: .vringFile(index: 0, hasFD: true))
        seeds.append(("kick-split", [0] + chunk(Array(kick[..<5]), holdBack: true) + chunk(Array(kick[5..<13]), holdBack: true)
                        + chunk(Array(kick[13...]), fds: 1)))
        seeds.append(("truncated-descriptors", [0] + chunk(kick, fds: 1, truncated: true)))
        seeds.append(("bad-version", [0] + chunk(MessageEncoder.frame(requestNumber: 1, flags: 2, payload: []))))
        let replies = MessageEncoder.reply(to: .getFeatures, payload: .u64(0x1_7000_8000))
            + MessageEncoder.reply(to: .getVringBase, payload: .vringState(index: 0, num: 17))
            + MessageEncoder.ack(to: VhostUserRequest.setMemTable.rawValue, status: 0)
        seeds.append(("replies", [1] + chunk(replies)))
        return seeds
    }
}
