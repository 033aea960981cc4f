//! A rectangular block of a tensor (its `[dim 0, the rest]` matrix view):
//! what `--rows A:B --cols C:D` and tensor-parallel parts generate, as
//! generation requests over contiguous element ranges.

use crate::error::{Error, Result};
use crate::rng::dist::Dist;
use crate::rng::request::{GenRequest, Kernel};
use std::ops::Range;

/// A rectangular block of a tensor seen as a matrix `[dim 0, the rest]`;
/// built by [`Block::new`], which checks it lies inside its tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Columns of the whole tensor's matrix view.
    pub(crate) width: u64,
    /// Rows held.
    pub(crate) rows: Range<u64>,
    /// Columns held.
    pub(crate) cols: Range<u64>,
}

impl Block {
    /// Rows `rows` x columns `cols` of a tensor of shape `dims` (seen as a
    /// matrix `[dim 0, the rest]`); refused unless it is non-empty and
    /// inside.
    pub fn new(dims: &[u64], rows: Range<u64>, cols: Range<u64>) -> Result<Block> {
        let whole = Block::whole(dims);
        let b = Block {
            width: whole.width,
            rows,
            cols,
        };
        b.check_inside(&whole)?;
        Ok(b)
    }

    /// Rows held.
    pub fn rows(&self) -> Range<u64> {
        self.rows.clone()
    }

    /// Columns held.
    pub fn cols(&self) -> Range<u64> {
        self.cols.clone()
    }

    /// The whole tensor of shape `dims`.
    pub(crate) fn whole(dims: &[u64]) -> Block {
        let rows = dims.first().copied().unwrap_or(1);
        let width = dims.iter().skip(1).product();
        Block {
            width,
            rows: 0..rows,
            cols: 0..width,
        }
    }

    /// Parses `--rows A:B` and `--cols C:D` (either may be absent: all)
    /// against a tensor of shape `dims`.
    pub(crate) fn parse(dims: &[u64], rows: Option<&str>, cols: Option<&str>) -> Result<Block> {
        let mut b = Block::whole(dims);
        if let Some(r) = rows {
            b.rows = parse_range("rows", r, b.rows.end)?;
        }
        if let Some(c) = cols {
            if dims.len() < 2 {
                return Err(Error::invalid("cols", "a 1-D tensor has no columns"));
            }
            b.cols = parse_range("cols", c, b.width)?;
        }
        Ok(b)
    }

    /// Errors unless the block lies inside `whole` (same width) and is not
    /// empty (a reversed range counts as empty).
    pub(crate) fn check_inside(&self, whole: &Block) -> Result<()> {
        if self.width != whole.width
            || self.rows.end > whole.rows.end
            || self.cols.end > whole.cols.end
            || self.rows.start >= self.rows.end
            || self.cols.start >= self.cols.end
        {
            return Err(Error::invalid(
                "block",
                format!(
                    "rows {:?} x cols {:?} is empty or outside the {} x {} tensor",
                    self.rows, self.cols, whole.rows.end, whole.width
                ),
            ));
        }
        Ok(())
    }

    /// The shape of the block of a tensor of shape `dims`: dimension 0 cut
    /// to the rows; for 2-D tensors dimension 1 cut to the columns (more
    /// dimensions keep their shape when all columns are held, and are
    /// flattened to the columns otherwise).
    pub(crate) fn shape(&self, dims: &[u64]) -> Vec<u64> {
        let rows = self.rows.end - self.rows.start;
        let cols = self.cols.end - self.cols.start;
        if dims.len() <= 1 {
            vec![rows]
        } else if cols == self.width {
            std::iter::once(rows)
                .chain(dims[1..].iter().copied())
                .collect()
        } else {
            vec![rows, cols]
        }
    }

    /// `[[row0, row1], [col0, col1]]` (half-open ranges).
    pub(crate) fn corners(&self) -> [[u64; 2]; 2] {
        [
            [self.rows.start, self.rows.end],
            [self.cols.start, self.cols.end],
        ]
    }

    /// Elements held (none for a reversed range).
    pub(crate) fn len(&self) -> u64 {
        let n = |r: &Range<u64>| r.end.saturating_sub(r.start);
        n(&self.rows).saturating_mul(n(&self.cols))
    }

    /// Whether the block holds nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element ranges of the whole tensor that make up the block, in
    /// row-major order (one range when whole rows are held).
    pub(crate) fn ranges(&self) -> Vec<Range<u64>> {
        if self.is_empty() {
            return Vec::new();
        }
        if self.cols == (0..self.width) {
            let all = self.rows.start * self.width..self.rows.end * self.width;
            return std::iter::once(all).collect();
        }
        self.rows
            .clone()
            .map(|r| r * self.width + self.cols.start..r * self.width + self.cols.end)
            .collect()
    }
}

/// `A:B` (either end may be omitted) inside `0..limit`.
fn parse_range(what: &'static str, s: &str, limit: u64) -> Result<Range<u64>> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| Error::bad(what, s, "expected START:END, e.g. 0:512"))?;
    let num = |t: &str, default: u64| -> Result<u64> {
        let t = t.trim();
        if t.is_empty() {
            return Ok(default);
        }
        t.parse()
            .map_err(|_| Error::bad(what, s, format!("'{t}' is not a non-negative integer")))
    };
    let (a, b) = (num(a, 0)?, num(b, limit)?);
    if a >= b || b > limit {
        return Err(Error::bad(
            what,
            s,
            format!("must satisfy START < END <= {limit}"),
        ));
    }
    Ok(a..b)
}

impl Block {
    /// One generation request of `dist` values per contiguous range of the
    /// block, in row-major order.
    pub fn requests(&self, dist: Dist, seed: u64, tensor_id: u32, scale: f32) -> Vec<GenRequest> {
        requests(&self.ranges(), dist, seed, tensor_id, scale)
    }
}

/// One generation request of `dist` values per element range, in order.
pub fn requests(
    ranges: &[Range<u64>],
    dist: Dist,
    seed: u64,
    tensor_id: u32,
    scale: f32,
) -> Vec<GenRequest> {
    ranges
        .iter()
        .map(|r| GenRequest {
            kernel: Kernel::Dist(dist),
            seed,
            tensor_id,
            start: r.start,
            count: r.end - r.start,
            scale,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_refuses_empty_reversed_and_outside_blocks() {
        let dims = [6, 4, 2];
        let b = Block::new(&dims, 1..3, 2..8).unwrap();
        assert_eq!((b.len(), b.shape(&dims)), (12, vec![2, 6]));
        assert_eq!(b.ranges(), [10..16, 18..24]);
        #[allow(clippy::reversed_empty_ranges)]
        for (rows, cols) in [(5..2, 0..8), (0..6, 3..3), (0..7, 0..8), (0..6, 0..9)] {
            assert!(
                Block::new(&dims, rows.clone(), cols.clone()).is_err(),
                "{rows:?} {cols:?}"
            );
        }
        // A reversed block built inside the crate still counts as empty.
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = Block {
            width: 8,
            rows: 5..2,
            cols: 0..8,
        };
        assert_eq!(reversed.len(), 0);
        assert!(reversed.ranges().is_empty());
    }
}
