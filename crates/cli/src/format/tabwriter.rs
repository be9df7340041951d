//! Go's `text/tabwriter` as the docker CLI configures it (minwidth 10, tabwidth 1, padding 3,
//! padchar ' ', no flags), so tables line up exactly like docker's.
//!
//! Semantics kept from Go: a cell is text terminated by '\t'; the last cell of a line is not
//! part of any column; a column block is a run of consecutive lines that have a cell in that
//! column; a line with a single cell flushes everything buffered so far.

/// Buffered tab-aligned writer; call [`TabWriter::flush`] to get the text.
pub struct TabWriter {
    minwidth: usize,
    padding: usize,
    lines: Vec<Vec<Cell>>,
    cell: String,
    out: String,
}

#[derive(Clone)]
struct Cell {
    text: String,
    width: usize,
}

impl Default for TabWriter {
    fn default() -> Self {
        TabWriter::new(10, 3)
    }
}

impl TabWriter {
    pub fn new(minwidth: usize, padding: usize) -> Self {
        TabWriter {
            minwidth,
            padding,
            lines: vec![Vec::new()],
            cell: String::new(),
            out: String::new(),
        }
    }

    pub fn write_str(&mut self, s: &str) {
        for ch in s.chars() {
            match ch {
                '\t' => self.terminate_cell(),
                '\n' => {
                    self.terminate_cell();
                    let ncells = self.lines.last().map_or(0, Vec::len);
                    self.lines.push(Vec::new());
                    if ncells == 1 {
                        // Go flushes on a line without tabs: column blocks end here.
                        self.format_all();
                    }
                }
                c => self.cell.push(c),
            }
        }
    }

    fn terminate_cell(&mut self) {
        let text = std::mem::take(&mut self.cell);
        let width = text.chars().count();
        if let Some(line) = self.lines.last_mut() {
            line.push(Cell { text, width });
        }
    }

    /// Format everything buffered (including a partial last cell) and return the output.
    pub fn flush(mut self) -> String {
        if !self.cell.is_empty() {
            self.terminate_cell();
        }
        self.format_all();
        self.out
    }

    fn format_all(&mut self) {
        let nlines = self.lines.len();
        let mut widths = Vec::new();
        self.format(&mut widths, 0, nlines);
        self.lines = vec![Vec::new()];
    }

    fn format(&mut self, widths: &mut Vec<usize>, line0: usize, line1: usize) {
        let column = widths.len();
        let mut line0 = line0;
        let mut this = line0;
        while this < line1 {
            if column + 1 >= self.lines[this].len() {
                this += 1;
                continue;
            }
            self.write_lines(widths, line0, this);
            line0 = this;
            let mut width = self.minwidth;
            while this < line1 {
                let line = &self.lines[this];
                if column + 1 >= line.len() {
                    break;
                }
                width = width.max(line[column].width + self.padding);
                this += 1;
            }
            widths.push(width);
            self.format(widths, line0, this);
            widths.pop();
            line0 = this;
        }
        self.write_lines(widths, line0, line1);
    }

    fn write_lines(&mut self, widths: &[usize], line0: usize, line1: usize) {
        for i in line0..line1 {
            let line = &self.lines[i];
            for (j, c) in line.iter().enumerate() {
                self.out.push_str(&c.text);
                if j < widths.len() {
                    let pad = widths[j].saturating_sub(c.width);
                    self.out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            // The last buffered line is the unterminated one: no newline for it.
            if i + 1 != self.lines.len() {
                self.out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tab(s: &str) -> String {
        let mut w = TabWriter::default();
        w.write_str(s);
        w.flush()
    }

    #[test]
    fn aligns_columns_with_minwidth_and_padding() {
        let out = tab("REPOSITORY\tTAG\tIMAGE ID\nbusybox\tlatest\t3bdd47c22417\n");
        assert_eq!(
            out,
            "REPOSITORY   TAG       IMAGE ID\nbusybox      latest    3bdd47c22417\n"
        );
    }

    #[test]
    fn last_cell_is_not_padded_and_blocks_split() {
        // The second line has fewer cells: column 1 of line 3 forms a new block.
        let out = tab("a\tbbbbbbbbbbbbbb\tc\nx\ny\tz\tw\n");
        assert_eq!(
            out,
            "a         bbbbbbbbbbbbbb   c\nx\ny         z         w\n"
        );
    }

    #[test]
    fn empty_cells_and_unicode_width() {
        let out = tab("é\t\tx\n");
        assert_eq!(out, "é                   x\n");
    }

    #[test]
    fn unterminated_text_is_flushed() {
        assert_eq!(tab("a\tb"), "a         b");
    }
}
