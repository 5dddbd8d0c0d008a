/*!
Tables for people: columns aligned with two spaces between them, no trailing white space.
*/

/// `rows` under `header`, each column as wide as its widest cell; with `without_first`, the
/// first column (a HOST column that no row fills, say) is left out.
pub fn aligned<const N: usize>(
    header: &[&str; N],
    rows: &[[String; N]],
    without_first: bool,
) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let skip = usize::from(without_first);
    let line = |cols: Vec<&str>| {
        let mut s = cols
            .iter()
            .zip(widths)
            .skip(skip)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_the_first_may_go() {
        let rows = [["h".to_string(), "long value".to_string(), String::new()]];
        let t = aligned(&["A", "B", "C"], &rows, false);
        assert_eq!(t, "A  B           C\nh  long value\n");
        assert_eq!(
            aligned(&["A", "B", "C"], &rows, true),
            "B           C\nlong value\n"
        );
    }
}
