//! Converting one tensor: rows of the input dequantized to f32 and quantized to the output
//! type on every thread, a slab of rows at a time, each slab written before the next is made
//! (so memory holds one slab, never the output).

use super::{Planned, Source};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::quant::{dequantize_row, quantize_row_into};
use crate::weights::gguf::GgufWriter;
use crate::weights::WeightStore;
use indicatif::ProgressBar;

/// Output bytes per slab: large enough to keep 16+ threads busy, small next to any model.
const SLAB_BYTES: usize = 32 << 20;

/// Bytes of the input a tensor reads (what the progress bar counts).
pub fn source_bytes(store: &WeightStore, t: &Planned) -> u64 {
    match &t.src {
        Source::Stored { key, .. } => store.get(key).map_or(0, |i| i.len as u64),
        Source::Values(v) => 4 * v.len() as u64,
    }
}

/// The row of the Hugging Face tensor that lands at GGUF row `r`: within each head of
/// `rows / heads` rows, GGUF interleaves the two rope halves (row 2i + s is half s, row i).
fn permuted(r: usize, heads: Option<usize>, rows: usize) -> usize {
    let Some(h) = heads else { return r };
    let hd = rows / h;
    let (head, j) = (r / hd, r % hd);
    head * hd + (j % 2) * (hd / 2) + j / 2
}

pub fn write_tensor(
    store: &WeightStore,
    t: &Planned,
    out: DType,
    threads: usize,
    w: &mut GgufWriter,
    bar: &ProgressBar,
) -> Result<()> {
    let (key, heads) = match &t.src {
        Source::Values(v) => {
            let mut bytes = vec![0u8; out.row_bytes(v.len()).expect("F32 rows")];
            quantize_row_into(out, v, &mut bytes)?;
            w.write(&bytes)?;
            bar.inc(4 * v.len() as u64);
            return Ok(());
        }
        Source::Stored { key, permute_heads } => (key, *permute_heads),
    };
    let info = store.require(key)?;
    let bytes = store.bytes(info);
    let src = info.dtype;
    if src == out && heads.is_none() {
        for chunk in bytes.chunks(SLAB_BYTES) {
            w.write(chunk)?;
            bar.inc(chunk.len() as u64);
        }
        return Ok(());
    }
    let cols = info.cols();
    let rows = info.rows();
    // A bias permutes its elements as the weight permutes its rows.
    let permuted_len = if rows == 1 { cols } else { rows };
    let bad_heads = heads.filter(|&h| h == 0 || !permuted_len.is_multiple_of(2 * h));
    if let Some(h) = bad_heads {
        return Err(Error::Model(format!(
            "tensor '{}' {:?} does not split into {h} heads of pairs of rows",
            info.file_name, info.shape
        )));
    }
    if rows == 1 {
        // A vector (a bias): small, permuted element by element.
        let mut f = vec![0f32; cols];
        dequantize_row(src, bytes, &mut f)?;
        let f: Vec<f32> = (0..cols).map(|i| f[permuted(i, heads, cols)]).collect();
        let mut o = vec![0u8; out.row_bytes(cols).ok_or_else(|| blocks(t, out, cols))?];
        quantize_row_into(out, &f, &mut o)?;
        w.write(&o)?;
        bar.inc(bytes.len() as u64);
        return Ok(());
    }
    let src_row = src.row_bytes(cols).ok_or_else(|| blocks(t, src, cols))?;
    let dst_row = out.row_bytes(cols).ok_or_else(|| blocks(t, out, cols))?;
    let slab_rows = (SLAB_BYTES / dst_row.max(src_row)).clamp(1, rows);
    let mut buf = vec![0u8; slab_rows * dst_row];
    let mut first = 0;
    while first < rows {
        let n = slab_rows.min(rows - first);
        let slab = &mut buf[..n * dst_row];
        let per = n.div_ceil(threads);
        std::thread::scope(|s| -> Result<()> {
            let workers: Vec<_> = slab
                .chunks_mut(per * dst_row)
                .enumerate()
                .map(|(k, part)| {
                    s.spawn(move || -> Result<()> {
                        let mut f = vec![0f32; cols];
                        for (q, dst) in part.chunks_exact_mut(dst_row).enumerate() {
                            let r = permuted(first + k * per + q, heads, rows);
                            dequantize_row(src, &bytes[r * src_row..(r + 1) * src_row], &mut f)?;
                            quantize_row_into(out, &f, dst)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in workers {
                h.join().map_err(|_| {
                    Error::Model(format!("a quantizer thread failed on '{}'", t.name))
                })??;
            }
            Ok(())
        })?;
        w.write(slab)?;
        bar.inc((n * src_row) as u64);
        first += n;
    }
    Ok(())
}

fn blocks(t: &Planned, d: DType, cols: usize) -> Error {
    Error::Input(format!(
        "tensor '{}' has rows of {cols} elements, which {d} (blocks of {}) cannot hold",
        t.name,
        d.block_elems()
    ))
}

#[cfg(test)]
mod tests {
    use super::permuted;

    #[test]
    fn rope_permutation_interleaves_halves() {
        // Two heads of 4 rows: HF [a0 a1 b0 b1] per head -> GGUF [a0 b0 a1 b1].
        let order: Vec<usize> = (0..8).map(|r| permuted(r, Some(2), 8)).collect();
        assert_eq!(order, [0, 2, 1, 3, 4, 6, 5, 7]);
        assert_eq!(permuted(5, None, 8), 5);
    }
}
