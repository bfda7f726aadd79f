//! Every shader variant the wgpu backend can create (each op, each weight dtype it reads,
//! with and without subgroups) is parsed and validated by naga, then translated to SPIR-V
//! (Vulkan), MSL (Metal) and HLSL (DX12): so that Metal and DX12 users are not the first to
//! find a broken shader. Needs no device. Each variant is validated with exactly the
//! capabilities it declares: SUBGROUP for the subgroup variants (the others are the path
//! for adapters without subgroups), SHADER_FLOAT16_IN_FLOAT32 (unpack2x16float, not the
//! SHADER_F16 feature) for shaders that read weights, nothing else.

use lamina::backend::wgpu::{all_variants, ShaderKey};
use lamina::backend::Op;
use lamina::dtype::DType;
use naga::back::{hlsl, msl, spv};
use naga::valid::{Capabilities, ShaderStages, ValidationFlags, Validator};

fn validate(key: &ShaderKey) -> (naga::Module, naga::valid::ModuleInfo) {
    let label = key.label();
    let src = key.source().unwrap();
    let module = naga::front::wgsl::parse_str(&src)
        .unwrap_or_else(|e| panic!("{label}: {}", e.emit_to_string(&src)));
    let mut caps = Capabilities::empty();
    if key.needs_subgroups() {
        caps |= Capabilities::SUBGROUP;
    }
    if key.needs_f16_unpack() {
        caps |= Capabilities::SHADER_FLOAT16_IN_FLOAT32;
    }
    let mut v = Validator::new(ValidationFlags::all(), caps);
    if key.needs_subgroups() {
        v.subgroup_stages(ShaderStages::COMPUTE);
    }
    let info = v
        .validate(&module)
        .unwrap_or_else(|e| panic!("{label}: {}", e.emit_to_string(&src)));
    (module, info)
}

fn translate(key: &ShaderKey, module: &naga::Module, info: &naga::valid::ModuleInfo) {
    let label = key.label();
    let sg = key.needs_subgroups();
    // Subgroup operations need SPIR-V 1.3, shader model 6.0 and MSL 2.1.
    let spv_opts = spv::Options {
        lang_version: if sg { (1, 3) } else { (1, 0) },
        ..Default::default()
    };
    let hlsl_opts = hlsl::Options {
        shader_model: if sg {
            hlsl::ShaderModel::V6_0
        } else {
            hlsl::ShaderModel::V5_1
        },
        ..Default::default()
    };
    let msl_opts = msl::Options {
        lang_version: if sg { (2, 1) } else { (2, 0) },
        ..Default::default()
    };
    for entry in key.entries() {
        let ep = Some((naga::ShaderStage::Compute, entry.to_string()));
        let words = spv::write_vec(
            module,
            info,
            &spv_opts,
            Some(&spv::PipelineOptions {
                shader_stage: naga::ShaderStage::Compute,
                entry_point: entry.to_string(),
            }),
        )
        .unwrap_or_else(|e| panic!("{label}.{entry} to SPIR-V: {e}"));
        assert!(words.len() > 100, "{label}.{entry}: SPIR-V too short");

        let (msl_src, _) = msl::write_string(
            module,
            info,
            &msl_opts,
            &msl::PipelineOptions {
                entry_point: ep.clone(),
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{label}.{entry} to MSL: {e}"));
        assert!(
            msl_src.contains("kernel void"),
            "{label}.{entry}: no MSL kernel"
        );

        let mut hlsl_src = String::new();
        let hlsl_pipe = hlsl::PipelineOptions { entry_point: ep };
        hlsl::Writer::new(&mut hlsl_src, &hlsl_opts, &hlsl_pipe)
            .write(module, info, None)
            .unwrap_or_else(|e| panic!("{label}.{entry} to HLSL: {e}"));
        assert!(
            hlsl_src.contains("[numthreads("),
            "{label}.{entry}: no HLSL kernel"
        );
    }
}

#[test]
fn every_shader_variant_validates_and_translates() {
    let variants = all_variants();
    for key in &variants {
        let (module, info) = validate(key);
        translate(key, &module, &info);
        if key.needs_subgroups() {
            // The subgroup variant really needs the capability: without it naga refuses.
            let src = key.source().unwrap();
            let module = naga::front::wgsl::parse_str(&src).unwrap();
            let refused = Validator::new(
                ValidationFlags::all(),
                Capabilities::SHADER_FLOAT16_IN_FLOAT32,
            )
            .validate(&module)
            .is_err();
            assert!(refused, "{}: validates without SUBGROUP", key.label());
        }
    }
    let with_sg = variants.iter().filter(|k| k.needs_subgroups()).count();
    println!(
        "{} shader variants ({with_sg} with subgroups) validated and translated to SPIR-V, \
         MSL and HLSL",
        variants.len()
    );
    // Every op has a shader, every weight-reading op one per dtype, every reducing op both
    // reduction variants.
    for op in [
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
    ] {
        assert!(variants.iter().any(|k| k.op == op), "no shader for {op}");
    }
    for op in [Op::Matmul, Op::RmsNorm, Op::Attention] {
        assert!(variants.iter().any(|k| k.op == op && k.subgroups));
        assert!(variants.iter().any(|k| k.op == op && !k.subgroups));
    }
    // W8A8: the int8 matmul, with its activation quantizer, in both reduction variants.
    let i8: Vec<_> = variants
        .iter()
        .filter(|k| k.op == Op::Matmul && k.dtype == Some(DType::I8))
        .collect();
    assert_eq!(i8.len(), 2, "matmul_i8 with and without subgroups");
    assert!(i8.iter().all(|k| k.entries().contains(&"quantize")));
}

/// The int8 products (dot4I8Packed) need no adapter feature: naga writes the native
/// instruction where the target has it (SPIR-V OpSDot with the DotProduct capabilities,
/// HLSL shader model 6.4 dot4add_i8packed) and unpacks bytes where it does not (a SPIR-V
/// target without those capabilities, shader model 5.1). Both forms are written here.
#[test]
fn int8_matmul_translates_with_and_without_native_dot_products() {
    for subgroups in [false, true] {
        let key = ShaderKey {
            op: Op::Matmul,
            dtype: Some(DType::I8),
            subgroups,
        };
        let (module, info) = validate(&key);
        let src = key.source().unwrap();
        assert!(src.contains("dot4I8Packed") && src.contains("pack4xI8"));
        let spirv = |caps: Option<Vec<spv::Capability>>, entry: &str| {
            let options = spv::Options {
                lang_version: (1, 3),
                capabilities: caps.map(|c| c.into_iter().collect()),
                ..Default::default()
            };
            let pipe = spv::PipelineOptions {
                shader_stage: naga::ShaderStage::Compute,
                entry_point: entry.to_string(),
            };
            spv::write_vec(&module, &info, &options, Some(&pipe))
                .unwrap_or_else(|e| panic!("{} {entry}: {e}", key.label()))
        };
        // OpSDot is opcode 4450; an instruction's first word is (word count << 16) | opcode.
        let has_sdot = |words: &[u32]| words.iter().any(|w| w & 0xffff == 4450 && w >> 16 == 6);
        let mut basic = vec![
            spv::Capability::Shader,
            spv::Capability::Float16,
            spv::Capability::StorageBuffer16BitAccess,
        ];
        if subgroups {
            basic.extend([
                spv::Capability::GroupNonUniform,
                spv::Capability::GroupNonUniformArithmetic,
            ]);
        }
        let mut native = basic.clone();
        native.extend([
            spv::Capability::DotProduct,
            spv::Capability::DotProductInput4x8BitPacked,
        ]);
        for entry in ["gemv", "tiled", "rows", "rows4"] {
            assert!(
                has_sdot(&spirv(Some(native.clone()), entry)),
                "{entry}: no OpSDot"
            );
            assert!(
                !has_sdot(&spirv(Some(basic.clone()), entry)),
                "{entry}: OpSDot"
            );
        }
        for (model, native) in [
            (hlsl::ShaderModel::V6_4, true),
            (hlsl::ShaderModel::V6_0, false),
        ] {
            if !subgroups && model == hlsl::ShaderModel::V6_0 {
                continue;
            }
            let options = hlsl::Options {
                shader_model: model,
                ..Default::default()
            };
            let pipe = hlsl::PipelineOptions {
                entry_point: Some((naga::ShaderStage::Compute, "gemv".to_string())),
            };
            let mut out = String::new();
            hlsl::Writer::new(&mut out, &options, &pipe)
                .write(&module, &info, None)
                .unwrap();
            assert_eq!(out.contains("dot4add_i8packed"), native, "{model:?}");
        }
    }
}
