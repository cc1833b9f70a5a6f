import Foundation
import Model
import Packets
@testable import Switching
import Synchronization
import XCTest

private func mac(_ n: UInt64) -> UInt64 { 0x0200_0000_0000 | (n & 0xFF_FFFF_FFFF) }
private func key(_ n: UInt64, vlan: UInt16 = 1) -> FDBKey { FDBKey(vlan: vlan, mac: mac(n)) }
/// The concurrent test's ports: the high byte is always the key's number.
private func port(_ k: FDBKey, _ round: Int) -> PortIndex { PortIndex(UInt16(k.mac & 0xFF) << 8 | UInt16(round & 0xFF)) }

final class ForwardingDatabaseTests: XCTestCase {
    func testKeysPackVLANAndMAC() {
        let m = MACAddress(0x52, 0x54, 0x00, 0x12, 0x34, 0x56)
        let k = FDBKey(vlan: 4095, mac: m)
        XCTAssertEqual(k.rawValue, 0x0FFF_5254_0012_3456)
        XCTAssertEqual(k.vlan, 4095)
        XCTAssertEqual(k.macAddress, m)
    }

    func testLearnsAndLooksUp() {
        let fdb = ForwardingDatabase(capacity: 16)
        XCTAssertNil(fdb.lookup(key(1)))
        XCTAssertEqual(fdb.learn(key(1), port: 3, now: 10), .learned)
        XCTAssertEqual(fdb.learn(key(2), port: 4, now: 10), .learned)
        XCTAssertEqual(fdb.learn(key(1), port: 3, now: 11), .refreshed)
        XCTAssertEqual(fdb.lookup(key(1)), 3)
        XCTAssertEqual(fdb.lookup(vlan: 1, mac: mac(2)), 4)
        XCTAssertNil(fdb.lookup(key(3)))
        XCTAssertEqual(fdb.counters, FDBCounters(entries: 2, learned: 2))
    }

    func testChangesAreKeptOnlyWhenAskedAndTellEveryWayAnEntryComesAndGoes() {
        let fdb = ForwardingDatabase(capacity: 16, agingTime: 300)
        fdb.learn(key(9), port: 1, now: 0)
        XCTAssertFalse(fdb.hasChanges, "nothing is kept before a mirror asks")
        XCTAssertEqual(fdb.takeChanges(), [])
        fdb.recordChanges()
        fdb.learn(key(1), port: 1, now: 0)
        fdb.learn(key(1), port: 1, now: 5)      // refreshed: no change
        fdb.learn(key(1), port: 2, now: 6)      // moved
        fdb.addStatic(key(2), port: 3)
        fdb.learn(key(2), port: 4, now: 6)      // held by the static entry: no change
        fdb.addStatic(key(1), port: 5)          // a learned entry made static
        fdb.learn(key(3), port: 1, now: 0)
        fdb.remove(key(2))
        XCTAssertTrue(fdb.hasChanges)
        XCTAssertEqual(fdb.takeChanges(), [
            FDBChange(key: key(1), port: 1), FDBChange(key: key(1), port: 2), FDBChange(key: key(2), port: 3),
            FDBChange(key: key(1), port: 5), FDBChange(key: key(3), port: 1), FDBChange(key: key(2), port: nil),
        ])
        XCTAssertFalse(fdb.hasChanges)
        fdb.learn(key(4), port: 1, now: 0)
        XCTAssertEqual(fdb.age(now: 300, budget: fdb.slotCount), 3, "keys 9, 3 and 4 expire")
        XCTAssertEqual(Set(fdb.takeChanges()), [FDBChange(key: key(4), port: 1), FDBChange(key: key(9), port: nil),
                                                FDBChange(key: key(3), port: nil), FDBChange(key: key(4), port: nil)])
        fdb.learn(key(6), port: 7, now: 300)
        fdb.learn(key(7), port: 7, now: 300)
        _ = fdb.takeChanges()
        XCTAssertEqual(fdb.flush(port: 7), 2)
        XCTAssertEqual(Set(fdb.takeChanges()), [FDBChange(key: key(6), port: nil), FDBChange(key: key(7), port: nil)])
    }

    func testSameMACOnTwoVLANsIsTwoEntries() {
        let fdb = ForwardingDatabase(capacity: 16)
        fdb.learn(key(7, vlan: 10), port: 1, now: 0)
        fdb.learn(key(7, vlan: 20), port: 2, now: 0)
        XCTAssertEqual(fdb.lookup(key(7, vlan: 10)), 1)
        XCTAssertEqual(fdb.lookup(key(7, vlan: 20)), 2)
        XCTAssertNil(fdb.lookup(key(7, vlan: 30)))
        XCTAssertEqual(fdb.counters.moves, 0)
        XCTAssertEqual(fdb.counters.entries, 2)
    }

    func testAgingRemovesExpiredKeepsStaticAndRefreshed() {
        let fdb = ForwardingDatabase(capacity: 16, agingTime: 300)
        fdb.learn(key(1), port: 1, now: 0)
        fdb.learn(key(2), port: 2, now: 0)
        fdb.addStatic(key(3), port: 3)
        fdb.learn(key(1), port: 1, now: 200)  // a new frame refreshes it
        XCTAssertEqual(fdb.age(now: 299, budget: fdb.slotCount), 0)
        XCTAssertEqual(fdb.age(now: 300, budget: fdb.slotCount), 1)
        XCTAssertEqual(fdb.lookup(key(1)), 1)
        XCTAssertNil(fdb.lookup(key(2)))
        XCTAssertEqual(fdb.lookup(key(3)), 3)
        XCTAssertEqual(fdb.age(now: 500, budget: fdb.slotCount), 1)
        XCTAssertNil(fdb.lookup(key(1)))
        XCTAssertEqual(fdb.age(now: 1_000_000, budget: fdb.slotCount), 0)
        XCTAssertEqual(fdb.lookup(key(3)), 3)
        XCTAssertEqual(fdb.counters, FDBCounters(entries: 1, learned: 2, aged: 2))
    }

    /// `age` passes a block with no entry at one look, trusting the counts `write`
    /// keeps: they must follow every entry through deletions' backward shifts (some
    /// across a block boundary), or a sweep would miss one.
    func testASweepFindsEveryEntryAfterShiftsAcrossBlocks() {
        let fdb = ForwardingDatabase(capacity: 1024, agingTime: 5)
        for n in 0 ..< 1000 { fdb.learn(key(UInt64(n)), port: PortIndex(UInt16(n % 7)), now: 0) }
        XCTAssertGreaterThan(fdb.flush(port: 3), 0)
        let left = Int(fdb.counters.entries)
        // One sweep: every slot once, plus one look again after each removal.
        XCTAssertEqual(fdb.age(now: 10, budget: fdb.slotCount + left), left)
        XCTAssertEqual(fdb.counters.entries, 0)
        // Emptied, every block counts none: a sweep of the whole table is a look per block.
        XCTAssertEqual(fdb.age(now: 20, budget: fdb.slotCount), 0)
        for n in 0 ..< 3 { fdb.learn(key(UInt64(n)), port: 1, now: 20) }
        XCTAssertEqual(fdb.age(now: 30, budget: fdb.slotCount), 3)
    }

    func testAgingIsBoundedPerCallAndResumes() {
        let fdb = ForwardingDatabase(capacity: 64, agingTime: 5)
        for n in 0 ..< 64 { fdb.learn(key(UInt64(n)), port: 1, now: 0) }
        var calls = 0
        var removed = 0
        while fdb.counters.entries > 0 {
            let r = fdb.age(now: 10, budget: 8)
            XCTAssertLessThanOrEqual(r, 8)
            removed += r
            calls += 1
            // Each slot is examined once per sweep, plus once more after each removal.
            XCTAssertLessThanOrEqual(calls, (fdb.slotCount + 64) / 8 + 1)
        }
        XCTAssertEqual(removed, 64)
        XCTAssertEqual(fdb.counters.aged, 64)
    }

    func testStationMoveIsCountedAndLookupFollows() {
        let fdb = ForwardingDatabase(capacity: 16)
        fdb.learn(key(1), port: 1, now: 0)
        XCTAssertEqual(fdb.learn(key(1), port: 2, now: 1), .moved(from: 1))
        XCTAssertEqual(fdb.lookup(key(1)), 2)
        XCTAssertEqual(fdb.learn(key(1), port: 1, now: 2), .moved(from: 2))
        XCTAssertEqual(fdb.counters, FDBCounters(entries: 1, learned: 1, moves: 2))
    }

    func testStaticEntriesNeverMoveOrAge() {
        let fdb = ForwardingDatabase(capacity: 16, agingTime: 10)
        fdb.learn(key(1), port: 1, now: 0)
        XCTAssertTrue(fdb.addStatic(key(1), port: 5))  // replaces the learned entry
        XCTAssertEqual(fdb.learn(key(1), port: 6, now: 1), .heldByStatic)
        XCTAssertEqual(fdb.lookup(key(1)), 5)
        fdb.age(now: 1 << 40, budget: fdb.slotCount)
        XCTAssertEqual(fdb.lookup(key(1)), 5)
        XCTAssertEqual(fdb.counters.moves, 0)
        XCTAssertEqual(fdb.entries(now: 100), [FDBEntry(key: key(1), port: 5, isStatic: true, age: 0)])
        XCTAssertTrue(fdb.remove(key(1)))
        XCTAssertNil(fdb.lookup(key(1)))
        XCTAssertEqual(fdb.counters.entries, 0)
    }

    func testOverflowIsCountedAndTheMACFloods() {
        let fdb = ForwardingDatabase(capacity: 4, agingTime: 10)
        for n in 0 ..< 4 { XCTAssertEqual(fdb.learn(key(UInt64(n)), port: 1, now: 0), .learned) }
        XCTAssertEqual(fdb.learn(key(99), port: 2, now: 5), .overflow)
        XCTAssertEqual(fdb.learn(key(99), port: 2, now: 5), .overflow)
        XCTAssertFalse(fdb.addStatic(key(98), port: 2))
        XCTAssertEqual(fdb.counters.overflows, 3)
        XCTAssertEqual(fdb.counters.entries, 4)
        XCTAssertNil(fdb.lookup(key(99)))
        // Known MACs still learn and move while full.
        XCTAssertEqual(fdb.learn(key(0), port: 3, now: 5), .moved(from: 1))

        let forwarder = Forwarder(database: fdb)
        forwarder.setMembers(PortSet([1, 2, 3]), vlan: 1)
        XCTAssertEqual(forwarder.decide(ingress: 1, vlan: 1, destination: mac(99), counters: DecisionCounters()), .flood)
        XCTAssertEqual(forwarder.floodSet(ingress: 1, vlan: 1), PortSet([2, 3]))

        fdb.age(now: 10, budget: fdb.slotCount)  // keys 1-3 expire, key 0 (seen at 5) stays
        XCTAssertEqual(fdb.learn(key(99), port: 2, now: 11), .learned)
        XCTAssertEqual(forwarder.decide(ingress: 1, vlan: 1, destination: mac(99), counters: DecisionCounters()), .unicast(2))
    }

    func testFlushRemovesAPortsLearnedEntries() {
        let fdb = ForwardingDatabase(capacity: 64)
        for n in 0 ..< 40 { fdb.learn(key(UInt64(n)), port: PortIndex(truncating: n % 2), now: 0) }
        fdb.addStatic(key(100), port: 0)
        XCTAssertEqual(fdb.flush(port: 0), 20)
        for n in 0 ..< 40 { XCTAssertEqual(fdb.lookup(key(UInt64(n))), n % 2 == 0 ? nil : 1) }
        XCTAssertEqual(fdb.lookup(key(100)), 0)
        XCTAssertEqual(fdb.flush(port: 0, includingStatic: true), 1)
        XCTAssertEqual(fdb.counters.entries, 20)
    }

    /// `ferry ctl fdb flush`: learned entries of a VLAN, of a port in a VLAN, or all; static
    /// entries stay unless asked for, and every removal is a change the uplink mirrors follow.
    func testFlushByVLANPortOrAllLeavesStaticEntriesUnlessAsked() {
        let fdb = ForwardingDatabase(capacity: 128)
        for n in 0 ..< 60 { fdb.learn(key(UInt64(n), vlan: n % 3 == 0 ? 10 : 20), port: PortIndex(truncating: n % 2), now: 0) }
        fdb.addStatic(key(100, vlan: 10), port: 0)
        fdb.addStatic(key(101, vlan: 20), port: 1)
        fdb.recordChanges()
        XCTAssertEqual(fdb.flush(port: 1, vlan: 10), 10, "odd n with n % 3 == 0")
        XCTAssertEqual(fdb.takeChanges().count, 10)
        XCTAssertEqual(fdb.flush(vlan: 10), 10)
        for n in 0 ..< 60 where n % 3 == 0 { XCTAssertNil(fdb.lookup(key(UInt64(n), vlan: 10))) }
        for n in 0 ..< 60 where n % 3 != 0 { XCTAssertEqual(fdb.lookup(key(UInt64(n), vlan: 20)), PortIndex(truncating: n % 2)) }
        XCTAssertEqual(fdb.flush(vlan: 30), 0)
        XCTAssertEqual(fdb.flush(), 40)
        XCTAssertEqual(fdb.counters.entries, 2, "static entries stay")
        XCTAssertEqual(fdb.flush(vlan: 20, includingStatic: true), 1)
        XCTAssertEqual(fdb.lookup(key(100, vlan: 10)), 0)
        XCTAssertEqual(fdb.flush(includingStatic: true), 1)
        XCTAssertEqual(fdb.counters.entries, 0)
    }

    /// Keys whose home is the table's last slot form a cluster that wraps to slot 0.
    func testWrappingClusterSurvivesDeletions() {
        let fdb = ForwardingDatabase(capacity: 8)
        var wrapping: [FDBKey] = []
        var n: UInt64 = 0
        while wrapping.count < 5 {
            let k = key(n)
            if fdb.home(k.rawValue) == fdb.mask { wrapping.append(k) }
            n += 1
        }
        for (i, k) in wrapping.enumerated() { fdb.learn(k, port: PortIndex(truncating: i), now: 0) }
        for (i, k) in wrapping.enumerated() { XCTAssertEqual(fdb.lookup(k), PortIndex(truncating: i)) }
        XCTAssertTrue(fdb.remove(wrapping[0]))
        XCTAssertTrue(fdb.remove(wrapping[2]))
        XCTAssertNil(fdb.lookup(wrapping[0]))
        XCTAssertNil(fdb.lookup(wrapping[2]))
        for i in [1, 3, 4] { XCTAssertEqual(fdb.lookup(wrapping[i]), PortIndex(truncating: i)) }
        // Backward shift closed the holes: the cluster is three slots again, from the last slot.
        XCTAssertEqual(fdb.entries(now: 0).count, 3)
        XCTAssertNotEqual(fdb.read(fdb.mask)?.flags, 0)
        XCTAssertNotEqual(fdb.read(1)?.flags, 0)
        XCTAssertEqual(fdb.read(2)?.flags, 0)
    }

    /// Long churn at full load against a dictionary: deletions never strand an entry
    /// and probes of missing keys still end.
    func testChurnAtFullLoadMatchesADictionary() {
        let fdb = ForwardingDatabase(capacity: 32, agingTime: 1_000_000)
        var model: [FDBKey: PortIndex] = [:]
        var rng = SystemRandomNumberGenerator()
        for step in 0 ..< 20_000 {
            let k = key(UInt64.random(in: 0 ..< 64, using: &rng), vlan: UInt16.random(in: 0 ..< 2, using: &rng))
            if Bool.random(using: &rng) {
                let port = PortIndex(UInt16.random(in: 0 ..< 8, using: &rng))
                let r = fdb.learn(k, port: port, now: UInt64(step))
                if r == .overflow {
                    XCTAssertEqual(model.count, 32)
                    XCTAssertNil(model[k])
                } else {
                    model[k] = port
                }
            } else {
                XCTAssertEqual(fdb.remove(k), model.removeValue(forKey: k) != nil)
            }
            if step % 97 == 0 {
                for n in 0 ..< 64 {
                    for v: UInt16 in 0 ..< 2 { XCTAssertEqual(fdb.lookup(key(UInt64(n), vlan: v)), model[key(UInt64(n), vlan: v)]) }
                }
            }
        }
        XCTAssertEqual(Int(fdb.counters.entries), model.count)
    }

    /// One writer learns, moves, removes and ages while a reader looks up for
    /// half a second: every port read is one the writer stored for that key, and
    /// keys that are never removed are never missed.
    func testConcurrentReaderNeverSeesATornOrMissingEntry() {
        let fdb = ForwardingDatabase(capacity: 64, agingTime: 3)
        let stable = (0 ..< 24).map { key(UInt64($0)) }
        let churn = (24 ..< 56).map { key(UInt64($0)) }
        for k in stable { fdb.learn(k, port: port(k, 0), now: 0) }

        let stop = Atomic<Bool>(false)
        let rounds = Atomic<Int>(0)
        let done = DispatchSemaphore(value: 0)
        let writer = Thread { [fdb] in
            var round = 1
            while !stop.load(ordering: .relaxed) {
                let now = UInt64(round)
                for k in stable { fdb.learn(k, port: port(k, round), now: now) }
                for (i, k) in churn.enumerated() {
                    if (i + round) % 3 == 0 { fdb.remove(k) } else if round % 2 == 0 {
                        fdb.learn(k, port: port(k, round), now: now)
                    }
                }
                fdb.age(now: now, budget: 64)
                round += 1
            }
            rounds.store(round, ordering: .relaxed)
            done.signal()
        }
        writer.start()

        var lookups = 0
        var misses = 0
        var torn = 0
        var stableMisses = 0
        var contended = 0
        let deadline = Date().addingTimeInterval(0.5)
        while Date() < deadline {
            for _ in 0 ..< 1000 {
                for k in stable {
                    lookups += 1
                    switch fdb.probe(k.rawValue) {
                    case .found(let p, _, _, _): if p.rawValue >> 8 != UInt16(k.mac & 0xFF) { torn += 1 }
                    case .absent: stableMisses += 1
                    case .contended: contended += 1
                    }
                }
                for k in churn {
                    lookups += 1
                    if let p = fdb.lookup(k) {
                        if p.rawValue >> 8 != UInt16(k.mac & 0xFF) { torn += 1 }
                    } else {
                        misses += 1
                    }
                }
            }
        }
        stop.store(true, ordering: .relaxed)
        done.wait()
        print("concurrent: \(lookups) lookups, \(misses) churn misses, \(contended) contended, \(rounds.load(ordering: .relaxed)) writer rounds")
        XCTAssertEqual(torn, 0)
        XCTAssertEqual(stableMisses, 0)
        // Giving up is allowed (the frame floods) but must stay rare.
        XCTAssertLessThan(contended, lookups / 100)
        XCTAssertGreaterThan(rounds.load(ordering: .relaxed), 100, "the writer barely ran")
        XCTAssertGreaterThan(misses, 0, "the churn keys were never removed")
        XCTAssertGreaterThan(lookups, 100_000)
    }
}

final class ForwarderTests: XCTestCase {
    func testFloodingRulesAndNoHairpin() {
        let fdb = ForwardingDatabase(capacity: 16)
        let f = Forwarder(database: fdb)
        let c = DecisionCounters()
        f.setMembers(PortSet([0, 1, 2, 3]), vlan: 10)
        f.setMembers(PortSet([1, 4]), vlan: 20)
        let broadcast = MACAddress.broadcast.bits48
        let multicast = MACAddress(0x01, 0x00, 0x5e, 0x00, 0x00, 0x01).bits48

        XCTAssertEqual(f.decide(ingress: 1, vlan: 10, destination: broadcast, counters: c), .flood)
        XCTAssertEqual(f.floodSet(ingress: 1, vlan: 10), PortSet([0, 2, 3]))
        XCTAssertEqual(f.decide(ingress: 1, vlan: 20, destination: broadcast, counters: c), .flood)
        XCTAssertEqual(f.floodSet(ingress: 1, vlan: 20), PortSet([4]))
        XCTAssertEqual(f.decide(ingress: 0, vlan: 10, destination: multicast, counters: c), .flood)
        XCTAssertEqual(f.floodSet(ingress: 0, vlan: 10), PortSet([1, 2, 3]))
        XCTAssertEqual(f.decide(ingress: 0, vlan: 10, destination: mac(5), counters: c), .flood)
        XCTAssertEqual(f.floodSet(ingress: 0, vlan: 10), PortSet([1, 2, 3]))

        // A group source address is never learned, and even a static entry for a
        // group address does not turn it into unicast (no multicast filtering yet).
        XCTAssertEqual(fdb.learn(FDBKey(vlan: 10, mac: multicast), port: 2, now: 0), .groupAddress)
        XCTAssertEqual(fdb.learn(FDBKey(vlan: 10, mac: broadcast), port: 2, now: 0), .groupAddress)
        fdb.addStatic(FDBKey(vlan: 10, mac: multicast), port: 2)
        XCTAssertEqual(f.decide(ingress: 0, vlan: 10, destination: multicast, counters: c), .flood)
        XCTAssertEqual(f.floodSet(ingress: 0, vlan: 10), PortSet([1, 2, 3]))

        fdb.learn(key(5, vlan: 10), port: 2, now: 0)
        XCTAssertEqual(f.decide(ingress: 0, vlan: 10, destination: mac(5), counters: c), .unicast(2))
        XCTAssertEqual(f.decide(ingress: 2, vlan: 10, destination: mac(5), counters: c), .drop)
        XCTAssertEqual(c.hairpinDrops, 1)
        // Learned in VLAN 10 only.
        XCTAssertEqual(f.decide(ingress: 1, vlan: 20, destination: mac(5), counters: c), .flood)
        XCTAssertEqual(f.floodSet(ingress: 1, vlan: 20), PortSet([4]))
        // The port left the VLAN: the stale entry is ignored.
        f.setMembers(PortSet([0, 1, 3]), vlan: 10)
        XCTAssertEqual(f.decide(ingress: 0, vlan: 10, destination: mac(5), counters: c), .flood)
        XCTAssertEqual(f.floodSet(ingress: 0, vlan: 10), PortSet([1, 3]))
        // The only member of its VLAN floods to nobody.
        f.setMembers(PortSet([7]), vlan: 30)
        XCTAssertEqual(f.decide(ingress: 7, vlan: 30, destination: broadcast, counters: c), .noDestination)
        XCTAssertEqual(c.unicastFrames, 1)
        XCTAssertEqual(c.floodedFrames, 7, "the flood to nobody is not counted as a flood")
    }

    func testPortSetIteratesInOrder() {
        let s = PortSet([63, 0, 5])
        XCTAssertEqual(Array(s), [0, 5, 63])
        XCTAssertEqual(s.count, 3)
        XCTAssertTrue(s.contains(63))
        XCTAssertFalse(s.contains(64))
        XCTAssertEqual(s.removing(5).description, "[0,63]")
        XCTAssertEqual(s.wordsInUse, 1)
    }

    /// Port numbers past one word: every word of the set, its last port, and
    /// numbers no switch gives out.
    func testPortSetSpansEveryWord() {
        let last = PortIndex(truncating: PortSet.maxPorts - 1)
        let s = PortSet([last, 64, 0, 700, 63, 128])
        XCTAssertEqual(Array(s), [0, 63, 64, 128, 700, last])
        XCTAssertEqual(s.count, 6)
        XCTAssertEqual(s.first, 0)
        XCTAssertEqual(s.removing(0).removing(63).first, 64)
        XCTAssertEqual(s.wordsInUse, PortSet.wordCount)
        XCTAssertFalse(s.contains(65))
        XCTAssertFalse(s.contains(PortIndex(truncating: PortSet.maxPorts)), "a number past the last port is in no set")
        XCTAssertNotEqual(s, s.removing(700))
        XCTAssertEqual(s, PortSet(Array(s).reversed()))
        XCTAssertTrue(PortSet([last]).removing(last).isEmpty)
        XCTAssertEqual(PortSet([200]).wordsInUse, 4)
    }

    /// A VLAN whose members are far apart in number: unicast, the flood set,
    /// its count and first member come from the right words, and a switch that
    /// grew past 64 ports reads the words it needs.
    func testForwarderWithPortsPastOneWord() {
        let fdb = ForwardingDatabase(capacity: 16)
        let f = Forwarder(database: fdb)
        let c = DecisionCounters()
        let last = PortIndex(truncating: PortSet.maxPorts - 1)
        f.setMembers(PortSet([3, 64]), vlan: 1)
        XCTAssertEqual(f.wordsInUse, 2)
        f.setMembers(PortSet([5, 300, last]), vlan: 2)
        XCTAssertEqual(f.wordsInUse, PortSet.wordCount)
        XCTAssertEqual(f.members(vlan: 2), PortSet([5, 300, last]))
        XCTAssertTrue(f.contains(last, vlan: 2))
        XCTAssertFalse(f.contains(last, vlan: 1))
        XCTAssertFalse(f.contains(300, vlan: 1))
        XCTAssertEqual(f.memberCount(vlan: 2), 3)
        XCTAssertEqual(f.floodCount(ingress: 300, vlan: 2), 2)
        XCTAssertEqual(f.floodCount(ingress: 7, vlan: 2), 3, "a port outside the VLAN takes nothing from its flood")
        XCTAssertEqual(f.firstMember(vlan: 1, besides: 3), 64)
        XCTAssertEqual(f.firstMember(vlan: 2, besides: 5), 300)
        XCTAssertNil(f.firstMember(vlan: 3, besides: 5))

        let broadcast = MACAddress.broadcast.bits48
        XCTAssertEqual(f.decide(ingress: last, vlan: 2, destination: broadcast, counters: c), .flood)
        XCTAssertEqual(f.floodSet(ingress: last, vlan: 2), PortSet([5, 300]))
        fdb.learn(key(9, vlan: 2), port: last, now: 0)
        XCTAssertEqual(f.decide(ingress: 5, vlan: 2, destination: mac(9), counters: c), .unicast(last))
        XCTAssertEqual(f.decide(ingress: last, vlan: 2, destination: mac(9), counters: c), .drop)
        // Learned on a port outside VLAN 1: flooded there.
        fdb.learn(key(9, vlan: 1), port: 300, now: 0)
        XCTAssertEqual(f.decide(ingress: 3, vlan: 1, destination: mac(9), counters: c), .flood)
        var gathered = [UInt64](repeating: 0, count: PortSet.wordCount)
        gathered.withUnsafeMutableBufferPointer { f.addMembers(vlan: 2, into: $0.baseAddress!) }
        XCTAssertEqual(gathered[0], 1 << 5)
        XCTAssertEqual(gathered[300 / 64], 1 << (300 % 64))
        XCTAssertEqual(gathered[PortSet.wordCount - 1], 1 << 63)
    }
}
