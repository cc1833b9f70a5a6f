import CFerry
import Model
import Packets
import Platform
import Ports
import Switching

// The data path of one burst: port → batch → switch → port.
//
// A burst pulled from one receive queue is classified frame by frame (VLAN,
// source learning, forwarding decision) into a `FrameDestination` each: one
// port, or its VLAN's flood. When every frame goes to the same single port
// with the same tagging (a steady flow between two stations), the burst is
// handed to that port as it is, whatever the number of ports. Otherwise the
// ports the burst reaches are gathered into a bitmap (as many words as the
// switch's port numbers need), and for each of them the frames bound to it are
// gathered by reference into `view` (segments and header, never the bytes),
// with an 802.1Q tag pushed or popped by choosing segments, and handed over.
// Either way each frame's bytes are copied once, by the destination port, and
// the source's buffers are released only after every destination is done.
extension Worker {
    /// One pass over every receive queue this worker polls.
    @inline(__always)
    func forwardOnce(_ batch: PacketBatch) -> Int { forwardOnce(batch, sources: sources, ports: ports) }

    /// One pass, with the worker's tables as `run` holds them between parks.
    @inline(__always)
    func forwardOnce(_ batch: PacketBatch, sources: ContiguousArray<WorkerSource>,
                     ports: ContiguousArray<WorkerPort>) -> Int {
        polledARunningGenerator = false
        loadCaptureSelection()
        let moved = forward(batch, sources: sources, ports: ports)
        if learningPending {
            learningPending = false
            bridge.doorbell.ring()
        }
        movedLastLoop = moved
        return moved
    }

    /// The pass itself. The worker's tables come in as arguments, which the
    /// callee borrows: a source or port read from them and handed on as an
    /// argument is not reference-counted, where one copied out of the
    /// worker's properties was retained and released field by field on every
    /// pass (18-35 % of a worker's samples; docs/PERFORMANCE.md, "The
    /// worker's reference counting").
    @inline(never)
    func forward(_ batch: PacketBatch, sources: ContiguousArray<WorkerSource>, ports: ContiguousArray<WorkerPort>) -> Int {
        var moved = 0
        var now: UInt64 = 0
        let count = sources.count
        let skipped = Self.loopsSkipped(afterMoving: movedLastLoop)
        var slot = 0
        while slot < count {
            // Before the source is loaded: a skipped one then costs one load.
            // SAFETY: slot < sources.count <= maxSources (prepare's precondition), the length of
            // skipLoops and skipLength.
            if skipLoops[slot] > 0 {
                skipLoops[slot] = skipLoops[slot] > skipped ? skipLoops[slot] &- skipped : 0
            } else {
                moved &+= poll(sources[slot], slot: slot, batch, ports: ports, now: &now)
            }
            slot &+= 1
        }
        return moved
    }

    /// Pulls a burst from `source` (`slot` in the worker's table) and switches
    /// it; returns the buffers consumed. `source` and `ports` are borrowed
    /// (see `forward`): nothing here binds one of their references to a local.
    @inline(__always)
    func poll(_ source: WorkerSource, slot: Int, _ batch: PacketBatch, ports: ContiguousArray<WorkerPort>,
              now: inout UInt64) -> Int {
        batch.reset()
        recent.valid = false
        var directReads = 0
        if let peer = source.directPeer, !isCaptured(port: source.index, peer: peer) {
            let (reads, done) = receiveDirect(source, peer: peer, now: &now)
            directReads = reads
            if done {
                looked(at: slot, found: reads > 0)
                return reads
            }
            // The rest of the burst the usual way: the guest posted no buffer, or one too small.
            if reads >= batch.limit { return reads }
            batch.limit = batch.limit &- reads
        }
        if source.generator != nil {
            if source.generator?.isFinished == false { polledARunningGenerator = true }
            if source.generator?.asksForRoom == true {
                let allowed = source.generator?.allowance(destinationRoom: generatorRoom(source, ports: ports)) ?? 0
                if allowed == 0 { return directReads }
                if allowed < batch.limit { batch.limit = allowed }
            }
        }
        // A vhost pair through the object the source holds (never bound: `VhostQueuePair`).
        let consumed = source.vhost != nil ? source.vhost?.pull(into: batch) ?? 0
            : source.port.pull(queue: source.queue, into: batch)
        if source.costsASyscall { looked(at: slot, found: consumed &+ directReads > 0) }
        if consumed == 0 {
            // A guest whose ring has not started (no front-end yet) cannot have a frame
            // until the control plane starts it, which wakes the worker (and so resets
            // every skip) if it sleeps; busy, the worker looks again within `maxSkip` passes.
            let runs = source.vhost != nil ? source.vhost?.transmitRingRuns() == true
                : source.port.receiveQueueRuns(source.queue)
            if !source.costsASyscall && !runs { looked(at: slot, found: false) }
            return directReads
        }
        if capturesReceive(Int(source.index)) && batch.count > 0 {
            capture(batch, port: source.index, direction: .receive)
        }
        if batch.count > 0 {
            if now == 0 { now = MonotonicClock.seconds() }
            switchBurst(batch, from: source, port: ports[Int(source.index)], ports: ports, now: now)
        }
        if let tunnelFrames = source.port.underlayFrames(queue: source.queue) {
            receiveTunnelFrames(tunnelFrames, uplink: source, now: &now)
        }
        if source.vhost != nil { source.vhost?.release() } else { source.port.release(queue: source.queue) }
        if source.isGuestRing { heardFromGuest = true }
        return directReads &+ consumed
    }

    /// How much of a skip one loop uses up: one, and one more for every
    /// `framesPerSkippedLoop` frames the worker moved in the loop before, so that
    /// a skipped TAP is read again after at most `maxSkip` loops or a batch of
    /// frames (256), whichever comes first. Frames the worker sends into the
    /// kernel come back on a TAP (a namespace forwarding them, replies), and a
    /// busy loop is long: 64 loops that each wrote a generator's 256-frame
    /// catch-up overflowed tun's 1000-frame queue, 5-33 % of a TAP loop's
    /// frames lost at half its NDR (docs/PERFORMANCE.md, "The lab").
    @inline(__always)
    static func loopsSkipped(afterMoving frames: Int) -> UInt16 {
        UInt16(truncatingIfNeeded: 1 &+ min(frames, Int(maxSkip) &* framesPerSkippedLoop) / framesPerSkippedLoop)
    }

    /// After a look at a source whose look costs a syscall, or at a guest whose
    /// ring is not running: an empty one skips it for 1, 2, 4 ... up to
    /// `maxSkip` loops; a frame makes it read every loop.
    @inline(__always)
    func looked(at slot: Int, found: Bool) {
        // SAFETY: slot < sources.count <= maxSources, the length of skipLength and skipLoops
        // (forwardOnce's loop).
        if found {
            skipLength[slot] = 0
            return
        }
        let next = min(max(1, skipLength[slot] &<< 1), Self.maxSkip)
        skipLength[slot] = next
        skipLoops[slot] = next
    }

    /// Sends every frame of `batch` where the switch says, then the caller releases it.
    @inlinable
    func switchBurst(_ batch: PacketBatch, from source: WorkerSource, now: UInt64) {
        switchBurst(batch, from: source, port: ports[Int(source.index)], ports: ports, now: now)
    }

    /// As above, with the ingress port `me` and the worker's table borrowed as arguments (see `forward`).
    @inlinable
    func switchBurst(_ batch: PacketBatch, from source: WorkerSource, port me: WorkerPort,
                     ports: ContiguousArray<WorkerPort>, now: UInt64) {
        // SAFETY: f < count <= batchSize (the worker's batch has that capacity, run() made it), the
        // length of destinations and vlans; w < words = forwarder.wordsInUse <= PortSet.wordCount,
        // burstPorts' length.
        let ingress = source.index
        let counters = source.counters
        let count = batch.count
        var reached: UInt32 = 0
        var first = FrameDestination.nowhere
        var uniform = true
        var f = 0
        while f < count {
            let destination = isRefusedGSO(batch, f, counters: counters) ? .nowhere
                : classify(batch, f, ingress: ingress, port: me, counters: counters, now: now)
            destinations[f] = destination
            reached |= destination.rawValue
            if f == 0 { first = destination } else if destination != first { uniform = false }
            f &+= 1
        }
        if reached == 0 { return }
        if uniform, let p = first.port {
            // Without a native VLAN on either side, every frame is tagged on both or on neither.
            if ports[p].isTrunk == me.isTrunk && ports[p].nativeVLAN | me.nativeVLAN == 0 {
                transmitAdapting(batch, to: p, port: ports[p])
                return
            }
        }
        let words = gatherBurstPorts(count: count, ingress: ingress)
        var w = 0
        while w < words {
            var rest = burstPorts[w]
            w &+= 1
            while rest != 0 {
                let p = (w &- 1) &* 64 &+ rest.trailingZeroBitCount
                rest &= rest &- 1
                let sole = FrameDestination.port(PortIndex(truncating: p))
                let destinationIsTrunk = ports[p].isTrunk
                let destinationNative = ports[p].nativeVLAN
                view.reset()
                f = 0
                while f < count {
                    let destination = destinations[f]
                    if destination == sole || (destination.isFlood && forwarder.contains(PortIndex(truncating: p), vlan: destination.vlan)) {
                        if view.room == 0 || view.freeSegments < batch.segmentCount(of: f) &+ PacketBatch.segmentsAddedByTagEdit {
                            transmitAdapting(view, to: p, port: ports[p])
                            view.reset()
                        }
                        let vlan = vlans[f] & Self.vlanBits
                        let tagged = vlans[f] & Self.arrivedTagged != 0
                        let wantsTag = destinationIsTrunk && vlan != destinationNative
                        let edit: TagEdit = wantsTag == tagged ? .keep : (wantsTag ? .insert(bridge.tags.tag(vlan)) : .remove)
                        view.appendReference(to: f, of: batch, edit: edit)
                    }
                    f &+= 1
                }
                if view.count > 0 { transmitAdapting(view, to: p, port: ports[p]) }
            }
        }
    }

    /// Fills `burstPorts` with every port the first `count` frames go to (a
    /// flood's VLAN members but the ingress port); returns how many of its words
    /// are meaningful.
    @inlinable
    func gatherBurstPorts(count: Int, ingress: PortIndex) -> Int {
        // SAFETY: words = wordsInUse <= PortSet.wordCount, burstPorts' length; f < count <= batchSize
        // (destinations); a destination port and the ingress are port indexes below PortSet.maxPorts,
        // so p >> 6 < wordCount.
        let words = forwarder.wordsInUse
        burstPorts.update(repeating: 0, count: words)
        var lastFlood = FrameDestination.nowhere
        var f = 0
        while f < count {
            let destination = destinations[f]
            if let p = destination.port {
                burstPorts[p &>> 6] |= 1 &<< UInt64(p & 63)
            } else if destination.isFlood && destination != lastFlood {
                // Most floods of a burst share a VLAN: its members are added once per run of them.
                forwarder.addMembers(vlan: destination.vlan, into: burstPorts)
                lastFlood = destination
            }
            f &+= 1
        }
        burstPorts[Int(ingress.rawValue &>> 6)] &= ~(1 &<< UInt64(ingress.rawValue & 63))
        return words
    }

    /// Where frame `f` goes; `.nowhere` when it is dropped (and counted).
    @inlinable
    func classify(_ batch: PacketBatch, _ f: Int, ingress: PortIndex, port me: WorkerPort, counters: QueueCounters,
                  now: UInt64) -> FrameDestination {
        let length = batch.length(of: f)
        if length < Ethernet.headerSize {
            counters.dropped(.runt)
            return .nowhere
        }
        let s = batch.segments(of: f).lowerBound
        var p = UnsafeRawPointer(batch.segmentBase(s))
        if batch.segmentLength(s) < min(length, Ethernet.taggedHeaderSize) { p = gatherHeader(batch, f) }
        // A tunnel port's pull marked each frame with the VTEP it came from; the
        // decision replaces it with the VTEP it goes to, for a tunnel port's push.
        let from = me.isTunnel ? batch.tunnelEndpoint(of: f) : 0
        var to: UInt16 = 0
        // SAFETY: f < batch.count <= batchSize, the length of vlans.
        let goesTo = classify(header: p, length: length, ingress: ingress, port: me, counters: counters, now: now,
                              vlan: &vlans[f], from: from, to: &to)
        batch.setTunnelEndpoint(f, to)
        return goesTo
    }

    /// Where a frame of `length` bytes (at least `Ethernet.headerSize`) whose first bytes are
    /// at `p` goes; its VLAN in `vlan` (`vlanBits`, with `arrivedTagged` set
    /// when it came with an 802.1Q tag). `p` holds `Ethernet.taggedHeaderSize` bytes, or the whole frame
    /// if shorter: only a trunk reads past the Ethernet header (`PortIngress.admit`).
    /// `from`: the tunnel endpoint the frame came from (0: not from a tunnel);
    /// `to`: set to the tunnel endpoint a unicast destination was learned behind.
    @inlinable
    func classify(header p: UnsafeRawPointer, length: Int, ingress: PortIndex, port me: WorkerPort,
                  counters: QueueCounters, now: UInt64, vlan frameVLAN: inout UInt16,
                  from sourceEndpoint: UInt16 = 0, to destinationEndpoint: inout UInt16) -> FrameDestination {
        let header = EthernetHeader(at: p)
        let vlan: UInt16
        switch me.ingress.admit(header, at: p, length: length, port: ingress, members: forwarder) {
        case .admitted(let admitted):
            vlan = admitted
        case .dropped(let reason):
            counters.dropped(reason)
            return .nowhere
        }
        let destination = header.destination
        let sourceMAC = header.source
        frameVLAN = header.isTagged ? vlan | Self.arrivedTagged : vlan
        // The next frame of the flow just decided: its source was refreshed or
        // queued a moment ago, and its destination looked up.
        if recent.valid && recent.destination == destination && recent.source == sourceMAC && recent.vlan == vlan {
            decisions.countRepeated(unicast: recent.unicast)
            destinationEndpoint = recent.endpoint
            return recent.goesTo
        }
        let key = FDBKey(vlan: vlan, mac: sourceMAC)
        if me.learnsSources, !database.refresh(key, port: ingress, endpoint: sourceEndpoint, now: now),
           learning.offer(key, port: ingress, endpoint: sourceEndpoint) {
            learningPending = true
        }
        // An IEEE 802.1D link-local group address (GroupForwardMask): learned from, as the
        // Linux bridge learns from the frames it keeps, and forwarded only as the port says.
        if me.ingress.holdsBack(linkLocal: destination) {
            counters.dropped(.linkLocal)
            return .nowhere
        }
        let goesTo: FrameDestination
        let unicast: Bool
        switch forwarder.decide(ingress: ingress, vlan: vlan, destination: destination, counters: decisions,
                                endpoint: &destinationEndpoint) {
        case .unicast(let port):
            goesTo = .port(port)
            unicast = true
        case .flood:
            // A flood that reaches one port is a frame for that port: a burst of them takes the one-port path.
            if forwarder.floodCount(ingress: ingress, vlan: vlan) == 1,
               let only = forwarder.firstMember(vlan: vlan, besides: ingress) {
                goesTo = .port(only)
            } else {
                goesTo = .flood(vlan: vlan)
            }
            unicast = false
        case .noDestination:
            counters.dropped(.noDestination)
            return .nowhere
        case .drop:
            counters.dropped(.hairpin)
            return .nowhere
        }
        recent = RecentDecision(destination: destination, source: sourceMAC, vlan: vlan, goesTo: goesTo, unicast: unicast,
                                endpoint: destinationEndpoint)
        return goesTo
    }

    /// A frame's VLAN id in `vlans`, and the flag beside it that says it came tagged
    /// (a trunk with a native VLAN takes that VLAN both ways, so the port alone cannot tell).
    @usableFromInline static var vlanBits: UInt16 { Ethernet.vlanIDMask }
    @usableFromInline static let arrivedTagged: UInt16 = 0x8000

    /// The first `Ethernet.taggedHeaderSize` bytes of a frame whose first segment is shorter (a guest may
    /// split its buffers anywhere), copied together.
    @usableFromInline
    func gatherHeader(_ batch: PacketBatch, _ f: Int) -> UnsafeRawPointer {
        // SAFETY: gathered holds 32 bytes (init) and filled + take never passes taggedHeaderSize (18);
        // take is at most the segment's length, so each copy reads inside the segment (the batch
        // invariant).
        let segments = batch.segments(of: f)
        var s = segments.lowerBound
        let end = segments.upperBound
        var filled = 0
        while filled < Ethernet.taggedHeaderSize && s < end {
            let take = min(Ethernet.taggedHeaderSize - filled, batch.segmentLength(s))
            (gathered + filled).copyMemory(from: batch.segmentBase(s), byteCount: take)
            filled += take
            s += 1
        }
        return UnsafeRawPointer(gathered)
    }

    /// Hands `batch` to port `p` on this worker's transmit queue for it; with
    /// `segmenting`, the port cuts the GSO frames it does not take into its own
    /// buffers with this worker's segmenter (Worker+Offloads.swift).
    @inlinable
    func transmit(_ batch: PacketBatch, to p: Int, segmenting: Bool = false) {
        transmit(batch, to: p, port: ports[p], segmenting: segmenting)
    }

    /// As above, with port `p`'s entry borrowed as an argument: its lock is
    /// reached by optional chaining, never bound (a bound reference is retained).
    @inlinable
    func transmit(_ batch: PacketBatch, to p: Int, port destination: WorkerPort, segmenting: Bool) {
        if capturesTransmit(p) { capture(batch, port: PortIndex(truncating: p), direction: .transmit) }
        if destination.transmitLock != nil {
            destination.transmitLock?.acquire()
            push(batch, to: destination, segmenting: segmenting)
            destination.transmitLock?.release()
        } else {
            push(batch, to: destination, segmenting: segmenting)
        }
    }

    @inlinable
    func push(_ batch: PacketBatch, to destination: WorkerPort, segmenting: Bool) {
        if destination.underlay >= 0, let tunnel = destination.port.tunnel {
            // A vxlan port with `via=`: it encapsulates, its uplink sends (Worker's
            // transmit, with the uplink's own queue and lock).
            let uplink = destination.underlay
            tunnel.pushThroughUnderlay(from: batch, segmenter: segmenting ? segmenter : nil) { transmit($0, to: uplink) }
            return
        }
        if destination.vhost != nil {
            destination.vhost?.push(from: batch, segmenter: segmenting ? segmenter : nil)
        } else if segmenting {
            destination.port.push(queue: destination.transmitQueue, from: batch, segmenter: segmenter)
        } else {
            destination.port.push(queue: destination.transmitQueue, from: batch)
        }
    }

    /// What the fullest port of a generator's VLAN can take now (up to a burst): a
    /// generator without a rate emits no more, so `count=N` means N frames delivered,
    /// not N frames dropped; one with a rate starts once every destination has room.
    @inlinable
    func generatorRoom(_ source: WorkerSource, ports: ContiguousArray<WorkerPort>) -> Int {
        let vlan = ports[Int(source.index)].accessVLAN
        var room = Int.max
        var w = 0
        let words = forwarder.wordsInUse
        while w < words {
            var rest = forwarder.memberWord(w, vlan: vlan).pointee
            w &+= 1
            while rest != 0 {
                let p = (w &- 1) &* 64 &+ rest.trailingZeroBitCount
                rest &= rest &- 1
                if p == Int(source.index) || p >= ports.count { continue }
                room = min(room, self.room(of: ports[p]))
            }
        }
        return room
    }

    /// What `destination` can take now, counted no further than the burst (a packed ring's
    /// posted buffers are a walk); borrowed, as an argument (see `forward`).
    @inlinable
    func room(of destination: WorkerPort) -> Int {
        if destination.vhost != nil { return destination.vhost?.room(atMost: batchSize) ?? 0 }
        return destination.port.room(queue: destination.transmitQueue, atMost: batchSize)
    }
}
