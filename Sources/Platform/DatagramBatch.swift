import CFerry
import Glibc

/// A burst of datagrams for one `recvmmsg` or `sendmmsg`: the message
/// headers, one buffer (iovec) and one address slot per message, allocated
/// once. Receiving, each message is pointed at a buffer of the caller's and
/// the kernel writes the sender's address into its slot; sending, each
/// message names a buffer and a destination address the caller keeps alive
/// until `send` returns. Several messages may name the same buffer (one
/// frame to many tunnel endpoints: no copy per endpoint), and one message
/// may gather several buffers that the kernel cuts into datagrams of one
/// size (UDP GSO: a run of datagrams to one endpoint in one system call's
/// single pass through the stack).
public final class DatagramBatch {
    public let capacity: Int
    @usableFromInline let messages: UnsafeMutablePointer<ferry_mmsghdr>
    @usableFromInline let vectors: UnsafeMutablePointer<iovec>
    /// Room for a sockaddr_in6 per message: where the kernel writes a sender.
    @usableFromInline let names: UnsafeMutableRawPointer
    @usableFromInline static var nameSize: Int { MemoryLayout<sockaddr_in6>.size }
    /// Per message, room for one control message: a UDP_SEGMENT size.
    @usableFromInline let controls: UnsafeMutableRawPointer
    /// struct cmsghdr: a size_t length, then level and type (ints); data is aligned to a size_t.
    @usableFromInline static var controlHeaderSize: Int { MemoryLayout<Int>.size &+ 8 }
    /// CMSG_SPACE(2): the header and a u16, rounded up to a size_t.
    @usableFromInline static var controlSize: Int { controlHeaderSize &+ MemoryLayout<Int>.size }
    /// UDP_SEGMENT (linux/udp.h).
    @usableFromInline static var udpSegmentOption: Int32 { 103 }

    public init(capacity: Int) {
        precondition(capacity > 0 && capacity <= 1024, "UIO_MAXIOV messages at most")
        self.capacity = capacity
        // SAFETY: each fill covers exactly what was allocated just before it.
        messages = .allocate(capacity: capacity)
        messages.initialize(repeating: ferry_mmsghdr(), count: capacity)
        vectors = .allocate(capacity: capacity)
        vectors.initialize(repeating: iovec(), count: capacity)
        names = .allocate(byteCount: capacity * Self.nameSize, alignment: 8)
        names.initializeMemory(as: UInt8.self, repeating: 0, count: capacity * Self.nameSize)
        controls = .allocate(byteCount: capacity * Self.controlSize, alignment: 8)
        controls.initializeMemory(as: UInt8.self, repeating: 0, count: capacity * Self.controlSize)
    }

    deinit {
        messages.deallocate()
        vectors.deallocate()
        names.deallocate()
        controls.deallocate()
    }

    /// Points message `i` (below `capacity`) at `length` bytes at `base` to receive into.
    @inlinable
    public func prepareReceive(_ i: Int, into base: UnsafeMutableRawPointer, length: Int) {
        precondition(i >= 0 && i < capacity)
        // SAFETY: i is below capacity; base and length are the caller's buffer, alive while it receives.
        vectors[i] = iovec(iov_base: base, iov_len: length)
        messages[i].msg_hdr.msg_iov = vectors + i
        messages[i].msg_hdr.msg_iovlen = 1
        messages[i].msg_hdr.msg_name = names + i &* Self.nameSize
        messages[i].msg_hdr.msg_namelen = socklen_t(Self.nameSize)
        messages[i].msg_hdr.msg_control = nil
        messages[i].msg_hdr.msg_controllen = 0
        messages[i].msg_hdr.msg_flags = 0
    }

    /// Receives up to `count` datagrams (messages 0..<count prepared) without
    /// waiting: how many arrived, 0 when none waits.
    @inlinable
    public func receive(on fd: Int32, count: Int) throws(SystemError) -> Int {
        precondition(count <= capacity)
        let messages = self.messages
        switch try nonBlockingSyscall("recvmmsg", { ferry_recvmmsg(fd, messages, UInt32(count), Int32(MSG_DONTWAIT)) }) {
        case .done(let n): return Int(n)
        case .wouldBlock: return 0
        }
    }

    /// The length of datagram `i` of the last receive.
    // SAFETY: i is below what the last receive returned, at most count <= capacity (receive's
    // precondition).
    @inlinable
    public func receivedLength(_ i: Int) -> Int { Int(messages[i].msg_len) }

    /// Whether datagram `i` was longer than its buffer (MSG_TRUNC): cut short.
    // SAFETY: as receivedLength: i < the last receive's count <= capacity.
    @inlinable
    public func wasTruncated(_ i: Int) -> Bool { messages[i].msg_hdr.msg_flags & Int32(MSG_TRUNC) != 0 }

    /// The sender of datagram `i` of the last receive, as the kernel wrote its sockaddr.
    // SAFETY: as receivedLength: i < capacity, so the nameSize-byte slot lies in names.
    @inlinable
    public func sender(_ i: Int) -> UnsafeRawPointer { UnsafeRawPointer(names + i &* Self.nameSize) }

    /// Points buffer vector `v` (below `capacity`) at `length` bytes at `base`,
    /// for messages to send; several messages may name the same vector.
    @inlinable
    public func setVector(_ v: Int, base: UnsafeMutableRawPointer, length: Int) {
        precondition(v >= 0 && v < capacity)
        // SAFETY: v is below capacity; the caller keeps base alive until send returns.
        vectors[v] = iovec(iov_base: base, iov_len: length)
    }

    /// Makes message `i` send vectors `firstVector..<firstVector + vectorCount`
    /// (set with `setVector`), one after the other, to the sockaddr of
    /// `nameLength` bytes at `name`, valid until `send` returns; with a
    /// `destinationPort`, to a copy of it with that port (a raw socket's
    /// addresses carry none, a UDP socket's must). With a `segmentSize`, the message is a UDP GSO send (UDP_SEGMENT): the kernel
    /// cuts the bytes into datagrams of that size (the last may be shorter),
    /// each with its own UDP header, on a UDP socket only.
    @inlinable
    public func prepareSend(_ i: Int, vectors firstVector: Int, count vectorCount: Int,
                            to name: UnsafeMutableRawPointer, nameLength: Int, destinationPort: UInt16 = 0,
                            segmentSize: Int = 0) {
        precondition(i >= 0 && i < capacity && firstVector >= 0 && vectorCount > 0
                         && firstVector &+ vectorCount <= capacity && segmentSize >= 0 && segmentSize <= 0xFFFF
                         && nameLength <= Self.nameSize)
        // SAFETY: the precondition above: i < capacity and firstVector + vectorCount <= capacity, the
        // length of messages and vectors; the control slot of message i (controlSize bytes, room for
        // the cmsghdr and the u16 written) lies in controls.
        messages[i].msg_hdr.msg_iov = vectors + firstVector
        messages[i].msg_hdr.msg_iovlen = vectorCount
        if destinationPort != 0 {
            // SAFETY: nameLength fits the slot (checked); sin_port and sin6_port are both at offset 2.
            let copy = names + i &* Self.nameSize
            copy.copyMemory(from: name, byteCount: nameLength)
            copy.storeBytes(of: destinationPort.bigEndian, toByteOffset: 2, as: UInt16.self)
            messages[i].msg_hdr.msg_name = copy
        } else {
            messages[i].msg_hdr.msg_name = name
        }
        messages[i].msg_hdr.msg_namelen = socklen_t(nameLength)
        if segmentSize > 0 {
            // struct cmsghdr (SOL_UDP, UDP_SEGMENT), then the segment size as a u16.
            let control = controls + i &* Self.controlSize
            control.storeBytes(of: Self.controlHeaderSize &+ 2, as: Int.self)
            control.storeBytes(of: Int32(IPPROTO_UDP), toByteOffset: MemoryLayout<Int>.size, as: Int32.self)
            control.storeBytes(of: Self.udpSegmentOption, toByteOffset: MemoryLayout<Int>.size &+ 4, as: Int32.self)
            control.storeBytes(of: UInt16(truncatingIfNeeded: segmentSize), toByteOffset: Self.controlHeaderSize,
                               as: UInt16.self)
            messages[i].msg_hdr.msg_control = control
            messages[i].msg_hdr.msg_controllen = Self.controlSize
        } else {
            messages[i].msg_hdr.msg_control = nil
            messages[i].msg_hdr.msg_controllen = 0
        }
        messages[i].msg_hdr.msg_flags = 0
    }

    /// What one `send` did: messages 0..<`sent` went; the one after them (if
    /// any) failed with `error` (EAGAIN: the socket's buffer is full), and the
    /// rest were not tried.
    public struct SendOutcome {
        public var sent: Int
        public var error: Int32

        @inlinable
        public init(sent: Int, error: Int32) {
            self.sent = sent
            self.error = error
        }
    }

    /// Sends messages `from..<count` without waiting, in as many calls as the
    /// kernel needs, stopping at the first message it refuses.
    @inlinable
    public func send(on fd: Int32, from first: Int = 0, count: Int) -> SendOutcome {
        precondition(count <= capacity)
        var done = first
        while done < count {
            // SAFETY: first <= done < count <= capacity (the precondition): the kernel reads messages
            // done..<count.
            let n = ferry_sendmmsg(fd, messages + done, UInt32(count &- done), Int32(MSG_DONTWAIT))
            if n > 0 {
                done &+= Int(n)
                continue
            }
            let code = n == 0 ? EAGAIN : errno
            if code == EINTR { continue }
            precondition(code != EBADF && code != EFAULT, "sendmmsg returned \(code): a bug in Ferry")
            return SendOutcome(sent: done, error: code)
        }
        return SendOutcome(sent: done, error: 0)
    }
}
