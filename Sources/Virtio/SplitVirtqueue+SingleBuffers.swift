import CFerry
import Packets

/// A TX chain of one buffer, found in a run's first pass: its head, and its
/// buffer (virtio-net header and frame) translated, `length` bytes.
@usableFromInline
struct SingleBufferChain {
    @usableFromInline var head: DescriptorIndex
    @usableFromInline var buffer: UnsafeMutableRawPointer
    @usableFromInline var length: UInt32

    @inlinable
    init(head: DescriptorIndex, buffer: UnsafeMutableRawPointer, length: UInt32) {
        self.head = head
        self.buffer = buffer
        self.length = length
    }
}

// The usual frame from a guest is one buffer: the 12-byte header in front of
// the frame in one descriptor, neither chained nor indirect (DPDK's virtio-user
// and Linux's virtio-net push the header into the packet's headroom). Such
// chains are pulled in runs of up to 64, in three passes instead of one walk
// each (the loop over runs, shared with the packed ring: SingleBufferRuns.swift):
// 1. find: the avail entries, and each chain's one descriptor, checked (head
//    in range, no NEXT, no INDIRECT, not device-writable, long enough for a
//    header and an Ethernet header, no longer than `maxFrameLength`, inside one
//    region of guest memory), the buffer translated, and its first lines (the
//    header, the Ethernet header) prefetched. Only loads, so the misses on the
//    lines the driver's CPU just wrote overlap instead of waiting one frame at
//    a time.
// 2. take: each header copied into the batch, the frame behind it made a
//    segment.
// 3. use: the run's used entries one after another; `release` publishes them.
// The first chain that is anything else ends the run, untouched: `pull` walks
// it with `TransmitChain.gather`, which takes every case and reports every
// broken rule, so this pass never stops a queue itself.
// Measured against the chain-by-chain walk in docs/PERFORMANCE.md ("Split pull
// in three passes"): a quarter less time per burst on one CPU; W1 and W3 between
// two CPUs did not move (the front-end sets their rate). The prefetch, dropped
// then on one noisy pair, was measured again once the use pass had lost its
// reloads ("W1: a cheaper worker per frame"): the worker's frames per CPU second
// at W1 with the ring backed up.
extension SplitVirtqueue: SingleBufferRuns {
    /// Pass 1 (`SingleBufferRuns`): the next chains from `lastAvail`, up to
    /// `count`, while each is a single buffer, into `singleBufferChains`.
    @inlinable
    func findSingleBuffers(_ count: Int, memory mem: GuestMemory) -> Int {
        let table = descriptorTable
        // SAFETY: pull checked isRunning, so avail is the ring start() translated; its entries
        // start at offset 4.
        let ring = avail.unsafelyUnwrapped + 4
        let shortest = UInt32(PacketBatch.headerSize &+ Ethernet.headerSize)
        let longest = maxFrameLength
        let refused = SplitRingLayout.descFlagNext | SplitRingLayout.descFlagIndirect | SplitRingLayout.descFlagWrite
        var n = 0
        while n < count {
            // SAFETY: running (pull checked isRunning), and slot <= mask < size: the 2-byte entry is
            // inside the availBytes(size) start() translated.
            let h = ferry_load_relaxed_u16(ring + 2 &* (lastAvail &+ UInt16(truncatingIfNeeded: n)).slot(mask))
            if h > mask { break }
            // SAFETY: h <= mask < size (tested just above), and `table` is the size 16-byte
            // descriptors start() translated. Each field is loaded once; the checks below and the
            // translation use the loaded values only.
            let d = table + Int(h) &* SplitRingLayout.descriptorSize
            let address = d.loadUnaligned(as: UInt64.self)
            let length = d.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
            let flags = d.loadUnaligned(fromByteOffset: 12, as: UInt16.self)
            if flags & refused != 0 || length < shortest || length > longest { break }
            guard let buffer = mem.translate(GuestAddress(address), length: length) else { break }
            // The lines take and classify read first (the virtio-net header, the Ethernet header
            // behind it: one line or two), asked for now so that a run's transfers from the
            // driver's CPU overlap instead of waiting one frame at a time in take and classify.
            // SAFETY: translate mapped `length` >= headerSize + Ethernet.headerSize bytes at buffer, so
            // both addresses lie inside the buffer.
            ferry_prefetch_read(buffer)
            ferry_prefetch_read(buffer + PacketBatch.headerSize)
            // SAFETY: n < count <= singleBufferRun, the array's capacity (pullSingleBuffers' `want`).
            singleBufferChains[n] = SingleBufferChain(head: DescriptorIndex(checked: h), buffer: buffer, length: length)
            n &+= 1
        }
        return n
    }

    /// Pass 2: the first `count` chains found, appended to `batch` as frames of
    /// one segment each. Returns their frames' bytes.
    @inlinable
    func takeSingleBuffers(_ count: Int, into batch: PacketBatch) -> UInt64 {
        var bytes: UInt64 = 0
        var segment = batch.segmentCount
        var i = 0
        while i < count {
            // SAFETY: i < count, the chains findSingleBuffers filled (each buffer translated for its
            // length); pullSingleBuffers takes at most `room` chains (its caller's count) and at most
            // freeSegments, so `segment` stays below segmentCapacity.
            let chain = singleBufferChains[i]
            bytes &+= UInt64(TransmitChain.appendSingleBuffer(chain.buffer, length: chain.length, segment: segment,
                                                              to: batch))
            segment &+= 1
            i &+= 1
        }
        return bytes
    }

    /// Pass 3: the used entries of the first `count` chains found, in order
    /// (length 0: nothing was written into a TX buffer), and the chains consumed;
    /// `release` publishes them.
    @inlinable
    func useSingleBuffers(_ count: Int) {
        // SAFETY: each i < count, the chains findSingleBuffers filled.
        writeUsedRun(count) { UInt64(singleBufferChains[$0].head.rawValue) }
        lastAvail &+= UInt16(truncatingIfNeeded: count)
    }
}
