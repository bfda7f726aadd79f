//! The CUDA backend where no GPU is needed: every kernel variant compiles with NVRTC 13.0 for
//! sm_80 and sm_90 (NVRTC found by the backend's own library search, which includes
//! scripts/fetch_nvrtc.sh's cache and LAMINA_NVRTC_DIR), kernel files are named after ops,
//! and start-up on a machine without CUDA is an error, not a panic.

use lamina::backend::cuda::{libs, nvrtc, Cuda};
use lamina::backend::Op;
use lamina::error::Error;

fn nvrtc_or_fail() -> (u32, u32) {
    match libs::load_nvrtc() {
        Ok((path, version)) => {
            eprintln!("NVRTC {}.{} from {}", version.0, version.1, path.display());
            version
        }
        Err(e) => panic!(
            "{e}\nThis test needs NVRTC 13.0: run scripts/fetch_nvrtc.sh (or set \
             LAMINA_NVRTC_DIR to where `pip install --target DIR nvidia-cuda-nvrtc==13.0.88 \
             'nvidia-cuda-runtime==13.0.*'` put it)."
        ),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// "N bytes spill stores" from ptxas's report, summed.
fn spill_stores(log: &str) -> u64 {
    log.lines()
        .filter_map(|l| {
            let i = l.find(" bytes spill stores")?;
            let head = &l[..i];
            head.rsplit(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[test]
fn every_kernel_variant_compiles_for_sm80_and_sm90() {
    let version = nvrtc_or_fail();
    assert_eq!(version.0, 13, "NVRTC must be 13.x (the GPU driver's CUDA)");
    let archs = nvrtc::supported_archs().expect("NVRTC lists its architectures");
    assert!(
        archs.contains(&80) && archs.contains(&90),
        "NVRTC archs {archs:?}"
    );
    let variants = nvrtc::all_variants();
    assert!(variants.len() >= 30, "only {} variants", variants.len());
    let mut failures = Vec::new();
    let mut compiled = 0;
    for v in &variants {
        for arch in [80, 90] {
            match nvrtc::compile(v, nvrtc::Target::Sm(arch), true) {
                Ok(c) => {
                    assert!(
                        c.image.starts_with(b"\x7fELF"),
                        "{} sm_{arch}: not a CUBIN",
                        v.describe()
                    );
                    for e in v.entries {
                        assert!(
                            contains(&c.image, e.as_bytes()),
                            "{} sm_{arch}: kernel {e} missing from the CUBIN",
                            v.describe()
                        );
                    }
                    let spills = spill_stores(&c.log);
                    if spills > 0 {
                        failures.push(format!(
                            "{} sm_{arch}: {spills} bytes of register spills\n{}",
                            v.describe(),
                            c.log
                        ));
                    }
                    compiled += 1;
                }
                Err(e) => failures.push(format!("{} sm_{arch}: {e}", v.describe())),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} compilations failed:\n{}",
        failures.len(),
        2 * variants.len(),
        failures.join("\n\n")
    );
    eprintln!("{compiled} kernel compilations (sm_80, sm_90) succeeded without spills");
}

#[test]
fn ptx_for_a_newer_device_than_nvrtc_knows() {
    nvrtc_or_fail();
    let archs = nvrtc::supported_archs().unwrap();
    let newest = *archs.iter().max().unwrap();
    let target = nvrtc::target_for(newest + 1).unwrap();
    assert_eq!(target, nvrtc::Target::Compute(newest));
    let c = nvrtc::compile(&nvrtc::Variant::attention(), target, false).unwrap();
    let text = String::from_utf8_lossy(&c.image);
    assert!(
        text.contains(".entry attention") && text.contains(".entry attention_combine"),
        "PTX lacks the kernels"
    );
    assert_eq!(nvrtc::target_for(90).unwrap(), nvrtc::Target::Sm(90));
}

#[test]
fn kernel_files_are_named_after_ops() {
    let ops = [
        Op::Embedding,
        Op::RmsNorm,
        Op::Matmul,
        Op::AddBias,
        Op::Rope,
        Op::KvWrite,
        Op::Attention,
        Op::Swiglu,
        Op::Add,
        Op::Copy,
        Op::Argmax,
    ];
    for (file, _) in nvrtc::SOURCES {
        // <op>.cu, or <op>_<dtype>.cu for a dtype with kernels of its own (matmul_i8.cu).
        let stem = file.strip_suffix(".cu").expect(".cu file");
        let named = ops.iter().any(|o| {
            stem == o.name()
                || stem
                    .strip_prefix(&format!("{}_", o.name()))
                    .is_some_and(|d| {
                        lamina::dtype::DType::all().any(|t| t.to_string().to_lowercase() == d)
                    })
        });
        assert!(named, "kernels/{file} is not named after an op");
        assert!(
            nvrtc::all_variants().iter().any(|v| v.file == *file),
            "kernels/{file} is never compiled"
        );
    }
    // Every file in kernels/ is embedded.
    // The source tree where the test was built, else the current folder (a test binary
    // carried to another machine runs from the repo root there).
    let built = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    let dir = if built.is_dir() {
        built
    } else {
        "kernels".into()
    };
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let known = nvrtc::SOURCES.iter().any(|s| s.0 == name)
            || nvrtc::HEADERS.iter().any(|h| h.0 == name);
        assert!(known, "kernels/{name} is not embedded in the backend");
    }
}

#[test]
fn start_up_without_cuda_is_an_error_not_a_panic() {
    let driver_here = libs::search_dirs()
        .iter()
        .any(|d| d.join("libcuda.so.1").is_file());
    match Cuda::new(0) {
        Ok(c) => {
            assert!(driver_here, "a device opened without libcuda.so.1 found");
            assert!(!c.describe().is_empty());
        }
        Err(Error::BackendUnavailable { backend, reason }) => {
            assert_eq!(backend, "cuda");
            eprintln!("cuda unavailable: {reason}");
            if !driver_here {
                assert!(
                    reason.contains("libcuda.so.1"),
                    "reason does not name the library: {reason}"
                );
                assert!(
                    reason.contains("looked in"),
                    "reason does not say where it looked: {reason}"
                );
            }
        }
        Err(other) => panic!("expected BackendUnavailable, got: {other}"),
    }
    // A second attempt answers the same way (library loading is done once).
    assert_eq!(Cuda::new(0).is_ok(), Cuda::new(0).is_ok());
}

#[test]
fn support_table_lists_gguf_types_and_refuses_iq() {
    use lamina::dtype::DType;
    use lamina::weights::TensorInfo;
    let table = lamina::backend::cuda::support_table();
    for d in [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q4_K,
        DType::Q6_K,
    ] {
        assert!(table.supports(Op::Matmul, d), "matmul {d}");
        assert!(table.supports(Op::Embedding, d), "embedding {d}");
    }
    let t = TensorInfo {
        name: "blk.0.ffn_down.weight".into(),
        file_name: "blk.0.ffn_down.weight".into(),
        dtype: DType::IQ2_XXS,
        shape: vec![64, 256],
        file: 0,
        offset: 0,
        len: 64 * 66,
    };
    let e = table
        .check("cuda", "test device", &t, Op::Matmul)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("IQ2_XXS") && e.contains("blk.0.ffn_down.weight") && e.contains("Q4_K"),
        "{e}"
    );
}
