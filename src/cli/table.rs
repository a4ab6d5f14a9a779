//! Text tables as docker prints them: each column as wide as its longest
//! cell (at least its minimum), the last one unpadded.

/// Print `rows` (the header first); `min[i]` is column i's least width.
pub fn print(min: &[usize], rows: &[Vec<String>]) {
    for line in render(min, rows) {
        println!("{line}");
    }
}

fn render(min: &[usize], rows: &[Vec<String>]) -> Vec<String> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width = |i: usize| {
        let longest = rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count() + 1).max().unwrap_or(0);
        longest.max(min.get(i).copied().unwrap_or(0))
    };
    let widths: Vec<usize> = (0..cols).map(width).collect();
    rows.iter()
        .map(|r| {
            let mut line = String::new();
            for (i, cell) in r.iter().enumerate() {
                if i + 1 == r.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}", w = widths[i]));
                }
            }
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_grow_to_their_longest_cell() {
        let rows = vec![
            vec!["ID".to_string(), "STATUS".into(), "COMMAND".into()],
            vec!["abc".to_string(), "exited (137) OOMKilled".into(), "sh".into()],
        ];
        let out = render(&[5, 10], &rows);
        assert_eq!(out[0], "ID   STATUS                 COMMAND");
        assert_eq!(out[1], "abc  exited (137) OOMKilled sh");
        // A short table keeps the minimum widths.
        let out = render(&[5, 10], &rows[..1]);
        assert_eq!(out[0], "ID   STATUS    COMMAND");
    }
}
