/// A plain-text table for `ferry ctl`, in the style of `bridge fdb` and
/// `ovs-appctl fdb/show`: a header line, columns two spaces apart, numbers
/// right-aligned so their digits line up, text left-aligned, and no trailing
/// blanks (the last column is never padded), so `awk` and `column` read it.
struct TextTable {
    enum Alignment { case left, right }

    struct Column {
        let title: String
        let alignment: Alignment

        init(_ title: String, _ alignment: Alignment = .left) {
            self.title = title
            self.alignment = alignment
        }
    }

    let columns: [Column]
    private(set) var rows: [[String]] = []

    init(_ columns: [Column]) {
        precondition(!columns.isEmpty, "a table needs a column")
        self.columns = columns
    }

    /// One row; an empty cell prints as "-" so every line has every column.
    mutating func append(_ cells: [String]) {
        precondition(cells.count == columns.count, "a row has \(cells.count) cells for \(columns.count) columns")
        rows.append(cells.map { $0.isEmpty ? "-" : $0 })
    }

    var lines: [String] {
        let all = [columns.map(\.title)] + rows
        let widths = columns.indices.map { c in all.map { $0[c].count }.max() ?? 0 }
        let last = columns.count - 1
        return all.map { row in
            row.indices.map { c -> String in
                let gap = String(repeating: " ", count: widths[c] - row[c].count)
                switch columns[c].alignment {
                case .right: return gap + row[c]
                case .left: return c == last ? row[c] : row[c] + gap
                }
            }.joined(separator: "  ")
        }
    }

    func print() {
        for line in lines { Swift.print(line) }
    }
}
