//! Aligned text columns, the layout of every table the CLI prints for people (`ls`, the scan
//! report's `table`, `rules list`).

use std::io::Write;

/// Write `rows` as columns padded to their widest cell (two spaces between columns); the last
/// column is not padded.
pub(crate) fn write_columns(out: &mut impl Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |cell| cell.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[c].saturating_sub(cell.chars().count()) + 2;
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["A".to_string(), "BB".into(), "x".into()],
            vec!["CCC".to_string(), "D".into(), "y z".into()],
            vec!["é".to_string(), "".into(), "".into()],
        ];
        write_columns(&mut out, &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "A    BB  x\nCCC  D   y z\né\n"
        );
    }
}
