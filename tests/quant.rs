//! src/quant against implementations that are not ours (gguf-py and GGML's C reference,
//! through tests/data/gguf_dequant_fixture.bin written by scripts/gguf_dequant_fixture.py),
//! plus error bounds and exact round trips of our quantizers.

use lamina::backend::cases::Rng;
use lamina::dtype::DType;
use lamina::quant::{dequantize_row, quantize_row, DEQUANTIZE_DTYPES, QUANTIZE_DTYPES};

const FIXTURE: &[u8] = include_bytes!("data/gguf_dequant_fixture.bin");

/// Who made an entry's bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// gguf-py quantized `src`.
    GgufPy,
    /// GGML's C reference quantizer quantized `src`.
    Ggml,
    /// Random block bytes.
    Random,
}

struct Entry {
    dtype: DType,
    kind: Kind,
    src: Vec<f32>,
    bytes: Vec<u8>,
    /// gguf-py's dequantization of `bytes`.
    deq: Vec<f32>,
}

fn fixture() -> Vec<Entry> {
    let mut at = 0usize;
    let mut take = |n: usize| {
        let s = &FIXTURE[at..at + n];
        at += n;
        s
    };
    let u32_le = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap()) as usize;
    let floats = |b: &[u8]| -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    assert_eq!(take(4), b"LQFX");
    assert_eq!(u32_le(take(4)), 1, "fixture version");
    let count = u32_le(take(4));
    (0..count)
        .map(|_| {
            let name_len = take(1)[0] as usize;
            let name = std::str::from_utf8(take(name_len)).unwrap().to_string();
            let dtype = DType::all()
                .find(|d| d.to_string() == name)
                .unwrap_or_else(|| panic!("fixture names unknown dtype {name}"));
            let kind = match take(1)[0] {
                0 => Kind::GgufPy,
                1 => Kind::Ggml,
                2 => Kind::Random,
                k => panic!("fixture entry kind {k}"),
            };
            let elems = u32_le(take(4));
            let nbytes = u32_le(take(4));
            let src = if kind == Kind::Random {
                Vec::new()
            } else {
                floats(take(4 * elems))
            };
            let bytes = take(nbytes).to_vec();
            let deq = floats(take(4 * elems));
            Entry {
                dtype,
                kind,
                src,
                bytes,
                deq,
            }
        })
        .collect()
}

fn dequant(dtype: DType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    dequantize_row(dtype, bytes, &mut out).unwrap();
    out
}

fn nmse(got: &[f32], want: &[f32]) -> f64 {
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum();
    let den: f64 = want.iter().map(|&b| (b as f64).powi(2)).sum();
    num / den
}

#[test]
fn dequantize_matches_gguf_py_bit_for_bit() {
    let entries = fixture();
    for e in &entries {
        let ours = dequant(e.dtype, &e.bytes, e.deq.len());
        for (i, (a, b)) in ours.iter().zip(&e.deq).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{} ({:?}) element {i}: ours {a:e}, gguf-py {b:e}",
                e.dtype,
                e.kind
            );
        }
    }
    // Every dtype we read except F32 (plain bytes) is covered, by random bytes and by blocks
    // an independent quantizer made.
    for &d in DEQUANTIZE_DTYPES.iter().filter(|&&d| d != DType::F32) {
        for kinds in [&[Kind::Random][..], &[Kind::GgufPy, Kind::Ggml]] {
            assert!(
                entries
                    .iter()
                    .any(|e| e.dtype == d && kinds.contains(&e.kind)),
                "the fixture has no {kinds:?} entry for {d}"
            );
        }
    }
}

/// F16, BF16 and the legacy block types are round to nearest by definition: our bytes must
/// be gguf-py's (a port of GGML's reference quantizer), byte for byte.
#[test]
fn quantize_matches_gguf_py_bytes() {
    let entries: Vec<Entry> = fixture()
        .into_iter()
        .filter(|e| e.kind == Kind::GgufPy)
        .collect();
    assert_eq!(entries.len(), 7, "F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0");
    for e in &entries {
        let ours = quantize_row(e.dtype, &e.src).unwrap();
        assert_eq!(
            ours, e.bytes,
            "{}: our bytes differ from gguf-py's",
            e.dtype
        );
    }
}

/// The K-quants have no single right answer: our quantizer must do about as well as GGML's
/// reference quantizer on the same data (four blocks: gaussian, all positive, an outlier,
/// uniform).
#[test]
fn kquant_error_comparable_to_ggml_reference() {
    let entries: Vec<Entry> = fixture()
        .into_iter()
        .filter(|e| e.kind == Kind::Ggml)
        .collect();
    assert_eq!(entries.len(), 5, "Q2_K..Q6_K");
    for e in &entries {
        let theirs = nmse(&e.deq, &e.src);
        let ours_bytes = quantize_row(e.dtype, &e.src).unwrap();
        let ours = nmse(&dequant(e.dtype, &ours_bytes, e.src.len()), &e.src);
        println!(
            "{}: nmse ours {ours:.3e}, GGML reference {theirs:.3e}",
            e.dtype
        );
        assert!(
            ours <= theirs * 1.10,
            "{}: our NMSE {ours:.3e} vs GGML's {theirs:.3e}",
            e.dtype
        );
    }
}

/// NMSE of quantize -> dequantize on gaussian rows: what each format can do, with margin.
#[test]
fn quantize_error_bounds() {
    let limits = [
        (DType::F32, 0.0),
        (DType::F16, 6e-8),
        (DType::BF16, 4e-6),
        (DType::Q8_0, 4e-5),
        (DType::Q5_0, 2.4e-3),
        (DType::Q5_1, 2e-3),
        (DType::Q4_0, 1e-2),
        (DType::Q4_1, 8e-3),
        (DType::Q6_K, 4e-4),
        (DType::Q5_K, 1.7e-3),
        (DType::Q4_K, 6.5e-3),
        (DType::Q3_K, 2.7e-2),
        (DType::Q2_K, 9e-2),
    ];
    assert_eq!(limits.len(), QUANTIZE_DTYPES.len());
    let mut rng = Rng::new(7);
    let x = rng.normals(64 * 256, 1.0);
    for (dtype, limit) in limits {
        let bytes = quantize_row(dtype, &x).unwrap();
        assert_eq!(bytes.len(), dtype.row_bytes(x.len()).unwrap());
        let e = nmse(&dequant(dtype, &bytes, x.len()), &x);
        println!("{dtype}: nmse {e:.3e} (limit {limit:.1e})");
        assert!(e <= limit, "{dtype}: nmse {e:.3e} over {limit:.0e}");
        // A scale over the whole row does not change the relative error much.
        let scaled: Vec<f32> = x.iter().map(|v| v * 1e-3).collect();
        let bytes = quantize_row(dtype, &scaled).unwrap();
        let e = nmse(&dequant(dtype, &bytes, x.len()), &scaled);
        assert!(e <= limit * 1.5, "{dtype} at scale 1e-3: nmse {e:.3e}");
    }
}

/// Values a format represents exactly (power-of-two block scales, integer sub-scales and
/// levels, the extreme levels present) come back bit for bit.
#[test]
fn exact_round_trips() {
    let mut rng = Rng::new(11);
    for &dtype in QUANTIZE_DTYPES {
        for _ in 0..4 {
            let x = representable(&mut rng, dtype);
            let bytes = quantize_row(dtype, &x).unwrap();
            let y = dequant(dtype, &bytes, x.len());
            for (i, (a, b)) in y.iter().zip(&x).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "{dtype} element {i}: {a:e} != {b:e}"
                );
            }
        }
    }
}

/// A row of 512 values that `dtype` stores exactly.
fn representable(rng: &mut Rng, dtype: DType) -> Vec<f32> {
    let n = 512;
    let mut int = |lo: i32, hi: i32| lo + rng.below((hi - lo + 1) as usize) as i32;
    // Levels of a group of `size`, 0..=top, with both extremes present.
    let levels = |size: usize, top: i32, int: &mut dyn FnMut(i32, i32) -> i32| {
        let mut l: Vec<i32> = (0..size).map(|_| int(0, top)).collect();
        l[int(0, size as i32 / 2 - 1) as usize] = 0;
        l[int(size as i32 / 2, size as i32 - 1) as usize] = top;
        l
    };
    let d = 1.0f32 / 64.0;
    match dtype {
        DType::F32 | DType::F16 | DType::BF16 => {
            let x = Rng::new(int(0, 1000) as u64).normals(n, 1.0);
            let bytes = quantize_row(dtype, &x).unwrap();
            dequant(dtype, &bytes, n)
        }
        DType::Q8_0 => (0..n / 32)
            .flat_map(|_| {
                let mut q: Vec<i32> = (0..32).map(|_| int(-127, 127)).collect();
                q[3] = 127;
                q[20] = -127;
                q.into_iter().map(move |q| q as f32 * d)
            })
            .collect(),
        DType::Q4_0 | DType::Q5_0 => {
            let half = if dtype == DType::Q4_0 { 8 } else { 16 };
            let mut x = Vec::new();
            for _ in 0..n / 32 {
                // Level 0 (-half) is the element of largest magnitude and sets the scale.
                let l = levels(32, 2 * half - 1, &mut int);
                x.extend(l.iter().map(|&l| d * (l - half) as f32));
            }
            x
        }
        DType::Q4_1 | DType::Q5_1 => {
            let top = if dtype == DType::Q4_1 { 15 } else { 31 };
            let mut x = Vec::new();
            for _ in 0..n / 32 {
                let m = int(-64, 64) as f32 / 128.0;
                let l = levels(32, top, &mut int);
                x.extend(l.iter().map(|&l| d * l as f32 + m));
            }
            x
        }
        DType::Q2_K | DType::Q4_K | DType::Q5_K => {
            let (sub, top, smax) = match dtype {
                DType::Q2_K => (16, 3, 15),
                DType::Q4_K => (32, 15, 63),
                _ => (32, 31, 63),
            };
            let dmin = 1.0f32 / 32.0;
            let mut x = Vec::new();
            for _ in 0..n / 256 {
                let groups = 256 / sub;
                let mut sc: Vec<i32> = (0..groups).map(|_| int(1, smax)).collect();
                let mut mn: Vec<i32> = (0..groups).map(|_| int(0, smax)).collect();
                sc[int(0, groups as i32 - 1) as usize] = smax;
                mn[int(0, groups as i32 - 1) as usize] = smax;
                for j in 0..groups {
                    let l = levels(sub, top, &mut int);
                    let (ds, dm) = (d * sc[j] as f32, dmin * mn[j] as f32);
                    x.extend(l.iter().map(|&l| ds * l as f32 - dm));
                }
            }
            x
        }
        DType::Q3_K | DType::Q6_K => {
            let (half, smin) = if dtype == DType::Q3_K {
                (4, 32)
            } else {
                (32, 128)
            };
            let mut x = Vec::new();
            for _ in 0..n / 256 {
                let mut sc: Vec<i32> = (0..16)
                    .map(|_| {
                        let v = int(1, smin - 1);
                        if int(0, 1) == 0 {
                            v
                        } else {
                            -v
                        }
                    })
                    .collect();
                sc[int(0, 15) as usize] = -smin;
                for s in sc {
                    let l = levels(16, 2 * half - 1, &mut int);
                    let ds = d * s as f32;
                    x.extend(l.iter().map(|&l| ds * (l - half) as f32));
                }
            }
            x
        }
        other => panic!("no representable data for {other}"),
    }
}

#[test]
fn unsupported_dtypes_and_bad_lengths_are_errors() {
    let mut out = vec![0f32; 256];
    for dtype in [
        DType::IQ2_XXS,
        DType::Q8_K,
        DType::TQ1_0,
        DType::I8,
        DType::MXFP4,
    ] {
        let bytes = vec![0u8; dtype.row_bytes(256).unwrap()];
        let e = dequantize_row(dtype, &bytes, &mut out)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&dtype.to_string()), "{e}");
        let e = quantize_row(dtype, &out).unwrap_err().to_string();
        assert!(e.contains(&dtype.to_string()), "{e}");
    }
    // A row that is not whole blocks, and bytes of the wrong length.
    assert!(quantize_row(DType::Q4_K, &[1.0; 100]).is_err());
    assert!(dequantize_row(DType::Q4_0, &[0u8; 17], &mut out[..32]).is_err());
    assert!(dequantize_row(DType::Q6_K, &[0u8; 210], &mut out[..200]).is_err());
}
