@testable import Engine
import Foundation
import XCTest

/// The spin lock workers take around a shared transmit queue: while one holds
/// it, no other gets in, so a count changed only under it loses nothing.
final class TransmitLockTests: XCTestCase {
    func testTwoThreadsUnderTheLockLoseNoIncrement() {
        let word = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        word.initialize(to: 0)
        defer { word.deallocate() }
        let lock = TransmitLock(word: word)
        final class Count: @unchecked Sendable { var value = 0 }
        let count = Count()
        let rounds = 200_000
        let done = DispatchGroup()
        for _ in 0..<2 {
            done.enter()
            Thread.detachNewThread {
                for _ in 0..<rounds {
                    lock.acquire()
                    // Read and written apart, so an overlap would lose increments.
                    let seen = count.value
                    count.value = seen &+ 1
                    lock.release()
                }
                done.leave()
            }
        }
        done.wait()
        XCTAssertEqual(count.value, 2 * rounds)
        XCTAssertEqual(word.pointee, 0, "released")
    }
}
