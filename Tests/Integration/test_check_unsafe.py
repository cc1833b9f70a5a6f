"""tools/check-unsafe against a small tree of its own: it fails on an unchecked step without a
SAFETY: comment and on a step in a file off the raw-memory list, and passes the same steps
commented on the line, on their function, or earlier in their block. Needs no root (< 1 s).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / "tools" / "check-unsafe"

ARCHITECTURE = """# Architecture

## Raw memory: the files that own it

```text
Sources/Demo/Owner.swift   a buffer it allocates
```

## The next section
"""


def run(tmp_path: Path, files: dict[str, str], listed: str = ARCHITECTURE) -> subprocess.CompletedProcess[str]:
    (tmp_path / "tools").mkdir(exist_ok=True)
    shutil.copy(TOOL, tmp_path / "tools" / "check-unsafe")
    (tmp_path / "docs").mkdir(exist_ok=True)
    (tmp_path / "docs" / "ARCHITECTURE.md").write_text(listed)
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    return subprocess.run([sys.executable, str(tmp_path / "tools" / "check-unsafe")],
                          capture_output=True, text=True, check=False)


OWNER_HEAD = """final class Owner {
    let bytes: UnsafeMutableRawPointer = .allocate(byteCount: 64, alignment: 8)
    let count = 64
"""


def test_a_step_without_a_comment_fails(tmp_path: Path) -> None:
    owner = OWNER_HEAD + """
    func byte(_ i: Int) -> UInt8 {
        precondition(i < count)
        return bytes.load(fromByteOffset: i, as: UInt8.self)
    }
}
"""
    result = run(tmp_path, {"Sources/Demo/Owner.swift": owner})
    assert result.returncode == 1, result
    assert "Sources/Demo/Owner.swift:7: a load at an address without a SAFETY: comment" in result.stderr


def test_pointer_arithmetic_and_a_subscript_are_steps(tmp_path: Path) -> None:
    owner = OWNER_HEAD + """
    func word(_ i: Int) -> UInt64 {
        let p = (bytes + i).assumingMemoryBound(to: UInt64.self)
        return p[0]
    }
}
"""
    result = run(tmp_path, {"Sources/Demo/Owner.swift": owner})
    assert result.returncode == 1, result
    assert ":6: pointer arithmetic without" in result.stderr
    assert ":6: a memory binding without" in result.stderr
    assert ":7: an access through a pointer without" in result.stderr


def test_an_unchecked_unwrap_is_a_step(tmp_path: Path) -> None:
    owner = OWNER_HEAD + """
    var spare: UnsafeMutableRawPointer? = nil
    func first() -> UInt8 {
        let p = spare.unsafelyUnwrapped
        return p.load(as: UInt8.self)  // SAFETY: one byte of a non-nil spare (checked above).
    }
}
"""
    result = run(tmp_path, {"Sources/Demo/Owner.swift": owner})
    assert result.returncode == 1, result
    assert ":7: an unchecked unwrap without a SAFETY: comment" in result.stderr


def test_comments_on_the_line_the_function_and_the_block_pass(tmp_path: Path) -> None:
    owner = OWNER_HEAD + """
    func byte(_ i: Int) -> UInt8 {
        precondition(i < count)
        return bytes.load(fromByteOffset: i, as: UInt8.self)  // SAFETY: i < count (the precondition)
    }

    // SAFETY: i < count - 8 (the guard), so the 8 bytes lie in the 64 allocated.
    func word(_ i: Int) -> UInt64 {
        guard i < count - 8 else { return 0 }
        return bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
    }

    func clear() {
        let n = count
        // SAFETY: n is the allocation's byte count.
        bytes.initializeMemory(as: UInt8.self, repeating: 0, count: n)
    }
}
"""
    result = run(tmp_path, {"Sources/Demo/Owner.swift": owner})
    assert result.returncode == 0, result
    assert "all 3 unchecked steps carry a SAFETY: comment" in result.stdout


def test_a_comment_in_another_function_does_not_cover(tmp_path: Path) -> None:
    owner = OWNER_HEAD + """
    func first() -> UInt8 {
        // SAFETY: 0 < count.
        return bytes.load(as: UInt8.self)
    }

    func second() -> UInt8 {
        bytes.load(fromByteOffset: 1, as: UInt8.self)
    }
}
"""
    result = run(tmp_path, {"Sources/Demo/Owner.swift": owner})
    assert result.returncode == 1, result
    assert ":11: a load at an address without" in result.stderr
    assert ":7:" not in result.stderr


def test_a_step_off_the_list_fails_even_with_a_comment(tmp_path: Path) -> None:
    reader = """func first(_ p: UnsafeRawPointer) -> UInt8 {
    // SAFETY: the caller's buffer.
    p.load(as: UInt8.self)
}
"""
    result = run(tmp_path, {"Sources/Demo/Owner.swift": OWNER_HEAD + "}\n",
                            "Sources/Demo/Reader.swift": reader})
    assert result.returncode == 1, result
    assert "Sources/Demo/Reader.swift: uses Unsafe but is not in docs/ARCHITECTURE.md's raw-memory list" in result.stderr
