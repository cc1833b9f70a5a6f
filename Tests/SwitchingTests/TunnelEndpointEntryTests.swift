import Packets
@testable import Switching
import XCTest

private func key(_ n: UInt64, vlan: UInt16 = 1) -> FDBKey { FDBKey(vlan: vlan, mac: 0x0200_0000_0000 | n) }

/// Entries on a tunnel port carry the remote VTEP the address lives behind.
final class TunnelEndpointEntryTests: XCTestCase {
    func testAnEntryKeepsItsEndpointAndAnotherEndpointIsAMove() {
        let fdb = ForwardingDatabase(capacity: 16)
        XCTAssertEqual(fdb.learn(key(1), port: 2, endpoint: 5, now: 10), .learned)
        XCTAssertEqual(fdb.lookupWithEndpoint(key(1))?.port, 2)
        XCTAssertEqual(fdb.lookupWithEndpoint(key(1))?.endpoint, 5)
        XCTAssertEqual(fdb.lookup(key(1)), 2)
        XCTAssertTrue(fdb.refresh(key(1), port: 2, endpoint: 5, now: 11))
        XCTAssertFalse(fdb.refresh(key(1), port: 2, endpoint: 6, now: 11), "another VTEP must reach the writer")
        XCTAssertFalse(fdb.refresh(key(1), port: 2, now: 11), "the port without a VTEP is another place too")
        XCTAssertEqual(fdb.learn(key(1), port: 2, endpoint: 5, now: 12), .refreshed)
        XCTAssertEqual(fdb.learn(key(1), port: 2, endpoint: 6, now: 12), .moved(from: 2))
        XCTAssertEqual(fdb.lookupWithEndpoint(key(1))?.endpoint, 6)
        XCTAssertEqual(fdb.learn(key(1), port: 3, now: 13), .moved(from: 2))
        XCTAssertEqual(fdb.lookupWithEndpoint(key(1))?.endpoint, 0)
        XCTAssertEqual(fdb.counters, FDBCounters(entries: 1, learned: 1, moves: 2))
        XCTAssertEqual(fdb.entries(now: 13).map(\.endpoint), [0])
    }

    func testEntriesWithEndpointsAgeAndStaticOnesNeither() {
        let fdb = ForwardingDatabase(capacity: 16, agingTime: 300)
        fdb.learn(key(1), port: 1, endpoint: 3, now: 0)
        XCTAssertTrue(fdb.addStatic(key(2), port: 1, endpoint: 4))
        XCTAssertEqual(fdb.learn(key(2), port: 1, endpoint: 9, now: 0), .heldByStatic)
        XCTAssertTrue(fdb.refresh(key(2), port: 1, endpoint: 9, now: 0), "its own port's frames never move it")
        XCTAssertEqual(fdb.age(now: 300, budget: fdb.slotCount), 1)
        XCTAssertNil(fdb.lookup(key(1)))
        XCTAssertEqual(fdb.age(now: 1_000_000, budget: fdb.slotCount), 0)
        let entry = fdb.entries(now: 1_000_000).first
        XCTAssertEqual(entry?.endpoint, 4)
        XCTAssertEqual(entry?.isStatic, true)
        // The last possible number survives the flags' other bits.
        let last = UInt16(ForwardingDatabase.endpointLimit - 1)
        fdb.learn(key(3), port: 65_535, endpoint: last, now: 0)
        XCTAssertEqual(fdb.lookupWithEndpoint(key(3))?.endpoint, last)
        XCTAssertEqual(fdb.lookupWithEndpoint(key(3))?.port, 65_535)
        XCTAssertEqual(fdb.entries(now: 0).first { $0.key == key(3) }?.isStatic, false)
    }

    func testEndpointsSurviveDeletionsShiftingTheirEntries() {
        let fdb = ForwardingDatabase(capacity: 64)
        for n in 1...60 { fdb.learn(key(UInt64(n)), port: 1, endpoint: UInt16(n), now: 0) }
        for n in stride(from: 1, through: 60, by: 3) { fdb.remove(key(UInt64(n))) }
        for n in 1...60 where n % 3 != 1 {
            XCTAssertEqual(fdb.lookupWithEndpoint(key(UInt64(n)))?.endpoint, UInt16(n))
        }
    }

    func testTheLearningQueueCarriesTheEndpoint() {
        let fdb = ForwardingDatabase(capacity: 16)
        let queue = LearningQueue(capacity: 8)
        XCTAssertTrue(queue.offer(key(1), port: 2, endpoint: 7))
        XCTAssertFalse(queue.offer(key(1), port: 2, endpoint: 7), "a repeat waiting in the ring")
        XCTAssertTrue(queue.offer(key(1), port: 2, endpoint: 8), "another VTEP is another request")
        XCTAssertEqual(queue.drain(into: fdb, now: 1), 2)
        XCTAssertEqual(fdb.lookupWithEndpoint(key(1))?.endpoint, 8)
    }

    func testAUnicastDecisionNamesTheEndpointAndAFloodNone() {
        let fdb = ForwardingDatabase(capacity: 16)
        let forwarder = Forwarder(database: fdb)
        let counters = DecisionCounters()
        forwarder.setMembers(PortSet([0, 1]), vlan: 1)
        fdb.learn(key(1), port: 1, endpoint: 12, now: 0)
        var endpoint: UInt16 = 99
        XCTAssertEqual(forwarder.decide(ingress: 0, vlan: 1, destination: key(1).mac, counters: counters,
                                        endpoint: &endpoint), .unicast(1))
        XCTAssertEqual(endpoint, 12)
        XCTAssertEqual(forwarder.decide(ingress: 0, vlan: 1, destination: key(2).mac, counters: counters,
                                        endpoint: &endpoint), .flood)
        XCTAssertEqual(endpoint, 0)
    }

    // A static entry behind a VTEP is a control plane's remote address (EVPN): it never ages and
    // its own port's frames never move it, but the address showing up on a local port is a move
    // (RFC 7432 §15), which the control plane then advertises.
    func testAPinnedRemoteEntryYieldsOnlyToAnotherPort() {
        let fdb = ForwardingDatabase(capacity: 16, agingTime: 300)
        fdb.recordChanges()
        XCTAssertTrue(fdb.addStatic(key(1), port: 4, endpoint: 2))
        XCTAssertEqual(fdb.entries(now: 0).first?.isPinnedRemote, true)
        XCTAssertTrue(fdb.refresh(key(1), port: 4, endpoint: 3, now: 1))
        XCTAssertEqual(fdb.learn(key(1), port: 4, endpoint: 3, now: 1), .heldByStatic)
        XCTAssertFalse(fdb.refresh(key(1), port: 1, now: 1), "a local port's frame must reach the writer")
        XCTAssertEqual(fdb.learn(key(1), port: 1, now: 1), .moved(from: 4))
        XCTAssertEqual(fdb.entries(now: 1).first?.isStatic, false)
        XCTAssertEqual(fdb.lookupWithEndpoint(key(1))?.endpoint, 0)
        // A plain static entry (no VTEP) still holds against every port.
        XCTAssertTrue(fdb.addStatic(key(2), port: 4))
        XCTAssertTrue(fdb.refresh(key(2), port: 1, now: 1))
        XCTAssertEqual(fdb.learn(key(2), port: 1, now: 1), .heldByStatic)
        XCTAssertEqual(fdb.entries(now: 1).first { $0.key == key(2) }?.isPinnedRemote, false)
        XCTAssertEqual(fdb.takeChanges(), [FDBChange(key: key(1), port: 4), FDBChange(key: key(1), port: 1),
                                           FDBChange(key: key(2), port: 4)])
    }

    func testRemovingAPinnedRemoteLeavesAnythingElse() {
        let fdb = ForwardingDatabase(capacity: 16)
        XCTAssertTrue(fdb.addStatic(key(1), port: 4, endpoint: 2))
        XCTAssertFalse(fdb.removePinnedRemote(key(1), port: 5), "another port's")
        XCTAssertTrue(fdb.removePinnedRemote(key(1), port: 4))
        XCTAssertNil(fdb.lookup(key(1)))
        fdb.learn(key(2), port: 4, endpoint: 2, now: 0)
        XCTAssertFalse(fdb.removePinnedRemote(key(2), port: 4), "a learned entry (the address moved since)")
        XCTAssertTrue(fdb.addStatic(key(3), port: 4))
        XCTAssertFalse(fdb.removePinnedRemote(key(3), port: 4), "a static entry without a VTEP")
        XCTAssertEqual(fdb.counters.entries, 2)
    }

    func testEveryChangeLogSeesEveryChange() {
        let fdb = ForwardingDatabase(capacity: 16)
        fdb.recordChanges()
        let log = fdb.subscribeToChanges()
        fdb.learn(key(1), port: 1, now: 0)
        fdb.remove(key(1))
        let expected = [FDBChange(key: key(1), port: 1), FDBChange(key: key(1), port: nil)]
        XCTAssertEqual(log.take(), expected)
        XCTAssertTrue(log.isEmpty)
        XCTAssertEqual(fdb.takeChanges(), expected, "the steering's list is its own")
        fdb.unsubscribe(log)
        fdb.learn(key(2), port: 1, now: 0)
        XCTAssertTrue(log.isEmpty)
    }
}
