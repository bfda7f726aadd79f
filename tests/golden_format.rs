//! The committed golden files (tests/golden/*.json) are whole and consistent, and the comparison
//! helpers of tests/common/golden.rs judge synthetic runs the way their docs say.

#[path = "common/golden.rs"]
mod golden;

use golden::{Golden, Limits, Record, Run, Top1};

/// Every file the whole-model tests rely on is committed.
const EXPECTED: &[&str] = &[
    "llama3-tiny",
    "phi3-tiny",
    "qwen25-coder-05b-q4_k_m",
    "qwen25-tiny",
    "smollm2-135m-q4_1",
    "tinyllama-tiny",
    "w8a8-tiny",
    "w8a8-tiny-act8",
];

fn check_record(g: &Golden, where_: &str, r: &Record) {
    assert_eq!(r.ids.len(), g.top_k, "{where_}: top-k ids");
    assert_eq!(r.logits.len(), g.top_k, "{where_}: top-k logits");
    assert_eq!(r.ids[0], r.argmax, "{where_}: argmax is not the top-1 id");
    assert!(
        r.ids.iter().all(|&i| (i as usize) < g.vocab_size),
        "{where_}: id past vocab"
    );
    let mut sorted = r.ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), r.ids.len(), "{where_}: repeated top-k id");
    assert!(
        r.logits.windows(2).all(|w| w[0] >= w[1]),
        "{where_}: top-k not descending"
    );
    for (name, x) in [
        ("sum", r.sum),
        ("sumsq", r.sumsq),
        ("lse", r.lse),
        ("max", r.max),
    ] {
        assert!(x.is_finite(), "{where_}: {name} is {x}");
    }
    assert!(r.margin >= 0.0, "{where_}: negative margin");
    // 6 significant digits are stored: compare with that tolerance
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * a.abs().max(b.abs()).max(1e-3);
    assert!(
        close(r.max, r.logits[0] as f64),
        "{where_}: max {} vs top-1 {}",
        r.max,
        r.logits[0]
    );
    let margin = r.logits[0] as f64 - r.logits[1] as f64;
    assert!(
        (r.margin - margin).abs() <= 1e-4 * r.max.abs().max(1.0),
        "{where_}: margin"
    );
    // lse >= max, and lse <= max + ln(vocab)
    assert!(
        r.lse >= r.max - 1e-4 * r.max.abs().max(1.0),
        "{where_}: lse < max"
    );
    assert!(
        r.lse <= r.max + (g.vocab_size as f64).ln() + 1e-3,
        "{where_}: lse too large"
    );
    // mean^2 <= mean of squares; the top-k logits fit within the sum of squares
    let v = g.vocab_size as f64;
    assert!(
        (r.sum / v).powi(2) <= r.sumsq / v * (1.0 + 1e-5),
        "{where_}: sum vs sumsq"
    );
    let topsq: f64 = r.logits.iter().map(|&x| (x as f64).powi(2)).sum();
    assert!(
        topsq <= r.sumsq * (1.0 + 1e-5),
        "{where_}: top-k exceed sumsq"
    );
}

fn check_golden(name: &str, g: &Golden) {
    assert_eq!(g.model, name, "file name and model name differ");
    assert_eq!(g.reference.dtype, "float32");
    assert!(!g.reference.transformers.is_empty() && !g.reference.torch.is_empty());
    assert!(!g.reference.date.is_empty());
    assert!(g.vocab_size > 0 && g.top_k >= 2 && g.greedy_steps > 0);
    assert!(!g.cases.is_empty(), "{name}: no cases");
    let sha = &g.source["sha256"];
    assert!(
        sha.is_string() || sha.is_object(),
        "{name}: no source sha256"
    );
    for c in &g.cases {
        let at = format!("{name}/{}", c.name);
        assert!(!c.prompt_ids.is_empty(), "{at}: empty prompt");
        assert!(
            c.prompt_ids.iter().all(|&i| (i as usize) < g.vocab_size),
            "{at}: prompt id"
        );
        assert!(!c.positions.is_empty(), "{at}: no positions");
        let pos: Vec<usize> = c.positions.iter().map(|p| p.pos).collect();
        assert!(
            pos.windows(2).all(|w| w[0] < w[1]),
            "{at}: positions not increasing"
        );
        assert_eq!(
            *pos.last().unwrap(),
            c.prompt_ids.len() - 1,
            "{at}: last position missing"
        );
        for p in &c.positions {
            check_record(g, &format!("{at} pos {}", p.pos), &p.rec);
        }
        assert_eq!(c.greedy.ids.len(), g.greedy_steps, "{at}: greedy length");
        assert_eq!(c.greedy.steps.len(), g.greedy_steps, "{at}: greedy steps");
        for (i, (id, step)) in c.greedy.ids.iter().zip(&c.greedy.steps).enumerate() {
            check_record(g, &format!("{at} step {i}"), step);
            assert_eq!(
                *id, step.argmax,
                "{at}: greedy token {i} is not that step's top-1"
            );
        }
        // the first greedy step is the last prompt position's logits
        assert_eq!(
            c.greedy.steps[0],
            c.positions.last().unwrap().rec,
            "{at}: step 0"
        );
    }
}

#[test]
fn every_golden_file_is_consistent() {
    let all = golden::all();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    for want in EXPECTED {
        assert!(
            names.contains(want),
            "tests/golden/{want}.json is missing (have {names:?})"
        );
    }
    for (name, g) in &all {
        check_golden(name, g);
    }
}

#[test]
fn real_models_say_what_they_should() {
    let smol = golden::load("smollm2-135m-q4_1");
    let capital = smol.case("capital");
    assert_eq!(capital.text.as_deref(), Some("The capital of France is"));
    let text = capital.greedy.text.as_deref().unwrap();
    assert!(text.contains("Paris"), "SmolLM2 continuation: {text:?}");
    assert_eq!(
        smol.gguf_sha256(),
        Some("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
    );
    let qwen = golden::load("qwen25-coder-05b-q4_k_m");
    let code = qwen.case("code").greedy.text.as_deref().unwrap();
    assert!(code.contains("return"), "Qwen coder continuation: {code:?}");
    assert_eq!(
        qwen.gguf_sha256(),
        Some("1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")
    );
}

// ---- the comparison helpers on synthetic data ----

const VOCAB: usize = 50;

/// Deterministic, varied logits (no RNG crate needed): a hash of (seed, i) scaled to about +-4.
fn row(seed: u64, vocab: usize) -> Vec<f32> {
    (0..vocab as u64)
        .map(|i| {
            let mut x =
                seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x ^= x >> 31;
            x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^= x >> 29;
            ((x % 10_000) as f32 / 10_000.0 - 0.5) * 8.0
        })
        .collect()
}

/// A golden of one case: 4 prompt positions, 5 greedy steps (each step's top-1 is its token).
fn synthetic() -> (Golden, Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let prompt: Vec<Vec<f32>> = (0..4).map(|s| row(s, VOCAB)).collect();
    let mut steps: Vec<Vec<f32>> = vec![prompt[3].clone()];
    steps.extend((10..14).map(|s| row(s, VOCAB)));
    let rec = |r: &Vec<f32>| golden::record(r, 10);
    let positions: Vec<serde_json::Value> = prompt
        .iter()
        .enumerate()
        .map(|(pos, r)| {
            let mut v = serde_json::to_value(RecordJson(rec(r))).unwrap();
            v["pos"] = pos.into();
            v
        })
        .collect();
    let greedy_ids: Vec<u32> = steps.iter().map(|r| rec(r).argmax).collect();
    let doc = serde_json::json!({
        "format": golden::FORMAT, "model": "synthetic", "source": {"kind": "test", "sha256": "-"},
        "reference": {"transformers": "-", "torch": "-", "dtype": "float32", "date": "-"},
        "note": "", "vocab_size": VOCAB, "eos_token_ids": [], "top_k": 10, "greedy_steps": 5,
        "cases": [{
            "name": "c", "prompt_ids": [1, 2, 3, 4], "positions": positions,
            "greedy": {"ids": greedy_ids,
                       "steps": steps.iter().map(|r| serde_json::to_value(RecordJson(rec(r))).unwrap())
                                     .collect::<Vec<_>>()}
        }]
    });
    (serde_json::from_value(doc).unwrap(), prompt, steps)
}

/// Record is Deserialize only (tests never write goldens); this writes the same fields.
struct RecordJson(Record);

impl serde::Serialize for RecordJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = &self.0;
        serde_json::json!({"ids": r.ids, "logits": r.logits, "sum": r.sum, "sumsq": r.sumsq,
                           "lse": r.lse, "max": r.max, "argmax": r.argmax, "margin": r.margin})
        .serialize(s)
    }
}

fn run_of(prompt: &[Vec<f32>], steps: &[Vec<f32>], g: &Golden) -> Run {
    Run {
        prompt_logits: prompt.to_vec(),
        greedy_ids: g.cases[0].greedy.ids.clone(),
        greedy_logits: steps.to_vec(),
    }
}

fn limits() -> Limits {
    Limits::float32().with_greedy_steps(5)
}

#[test]
fn identical_logits_pass_with_zero_error() {
    let (g, prompt, steps) = synthetic();
    let r = g.assert_close("c", &run_of(&prompt, &steps, &g), &limits());
    assert_eq!(r.top1_agree(), 4);
    assert_eq!(r.greedy_matched, 5);
    assert_eq!(r.max_rel_err(), 0.0);
    assert!(r.report().contains("top-1 4/4"), "{}", r.report());
}

#[test]
fn small_noise_passes_and_is_measured() {
    let (g, mut prompt, steps) = synthetic();
    for (i, x) in prompt[2].iter_mut().enumerate() {
        *x += if i % 2 == 0 { 1e-5 } else { -1e-5 };
    }
    let r = g.assert_close("c", &run_of(&prompt, &steps, &g), &limits());
    assert!(
        r.max_rel_err() > 0.0 && r.max_rel_err() < 1e-4,
        "{}",
        r.report()
    );
}

#[test]
fn a_wrong_logit_fails_and_names_its_place() {
    let (g, mut prompt, steps) = synthetic();
    let top = g.cases[0].positions[1].rec.ids[3] as usize;
    prompt[1][top] += 0.5; // far above 1e-3 of a logit of a few units
    let r = g.compare("c", &run_of(&prompt, &steps, &g), &limits());
    assert!(!r.passed());
    let w = r.worst_logit.as_ref().unwrap();
    assert_eq!(
        (w.at.as_str(), w.what.clone()),
        ("pos 1", format!("id {top}"))
    );
}

#[test]
fn a_shifted_vocabulary_fails_the_checksums() {
    let (g, mut prompt, steps) = synthetic();
    // outside the top-k only: the top-k check alone would not see it
    let top: Vec<u32> = g.cases[0].positions[0].rec.ids.clone();
    for (i, x) in prompt[0].iter_mut().enumerate() {
        if !top.contains(&(i as u32)) {
            *x -= 0.3;
        }
    }
    let r = g.compare("c", &run_of(&prompt, &steps, &g), &limits());
    assert!(r.worst_logit.as_ref().unwrap().rel_err == 0.0);
    assert!(!r.passed(), "{}", r.report());
    assert_eq!(r.worst_checksum.as_ref().unwrap().at, "pos 0");
}

#[test]
fn a_flipped_top1_fails_unless_it_is_a_near_tie() {
    let (g, prompt, steps) = synthetic();
    // raise the golden top-2 above top-1 at position 2: a real disagreement
    let rec = &g.cases[0].positions[2].rec;
    let mut bad = prompt.clone();
    bad[2][rec.ids[1] as usize] = rec.logits[0] + 0.5;
    let r = g.compare("c", &run_of(&bad, &steps, &g), &limits());
    assert!(r.top1.contains(&(
        2,
        Top1::Disagree {
            ours: rec.ids[1],
            golden: rec.ids[0]
        }
    )));
    assert!(!r.passed());

    // a golden near tie (margin below twice the allowed error): either order is accepted
    let mut tied = prompt.clone();
    tied[2][rec.ids[1] as usize] = rec.logits[0] - 1e-4;
    let g2 = regolden(&tied, &steps);
    let rec2 = &g2.cases[0].positions[2].rec;
    assert!(rec2.margin < 2.0 * 1e-3 * rec2.logits[0].abs() as f64);
    let mut swapped = tied.clone();
    swapped[2][rec.ids[1] as usize] = rec.logits[0] + 1e-4 * 0.5;
    swapped[2][rec.ids[0] as usize] = rec.logits[0] - 1e-4 * 0.5;
    let r = g2.compare("c", &run_of(&swapped, &steps, &g2), &limits());
    assert!(
        r.top1
            .iter()
            .any(|(p, t)| *p == 2 && matches!(t, Top1::NearTie { .. })),
        "{}",
        r.report()
    );
    assert!(r.passed(), "{}", r.report());
}

/// The synthetic golden made from other prompt rows.
fn regolden(prompt: &[Vec<f32>], steps: &[Vec<f32>]) -> Golden {
    let (mut g, ..) = synthetic();
    for (p, r) in g.cases[0].positions.iter_mut().zip(prompt) {
        p.rec = golden::record(r, 10);
    }
    g.cases[0].greedy.steps[0] = golden::record(&steps[0], 10);
    g
}

#[test]
fn greedy_divergence_fails_but_not_at_a_near_tie() {
    let (g, prompt, steps) = synthetic();
    let mut run = run_of(&prompt, &steps, &g);
    run.greedy_ids[3] = (run.greedy_ids[3] + 1) % VOCAB as u32;
    let r = g.compare("c", &run, &limits());
    assert_eq!(r.greedy_matched, 3);
    assert!(!r.passed(), "{}", r.report());
    // only 3 steps required: the divergence at step 3 is past them
    let r = g.compare("c", &run, &Limits::float32().with_greedy_steps(3));
    assert!(r.passed(), "{}", r.report());

    // make step 3 a golden near tie between its top-1 and top-2, and diverge onto top-2
    let mut g2 = g.clone();
    let s = &mut g2.cases[0].greedy.steps[3];
    s.logits[1] = s.logits[0] - 1e-5;
    let second = s.ids[1];
    let mut run2 = run_of(&prompt, &[], &g2);
    run2.greedy_ids[3] = second;
    let r = g2.compare("c", &run2, &limits());
    assert_eq!(
        r.greedy_diverged,
        Some((3, run2.greedy_ids[3], g2.cases[0].greedy.ids[3], true))
    );
    assert!(r.passed(), "{}", r.report());
    assert!(r.report().contains("near tie at step 3"), "{}", r.report());
}

#[test]
fn shape_problems_and_nan_fail_clearly() {
    let (g, prompt, steps) = synthetic();
    let mut short = run_of(&prompt, &steps, &g);
    short.prompt_logits[0].pop();
    let r = g.compare("c", &short, &limits());
    assert!(
        r.failures().iter().any(|f| f.contains("49 logits")),
        "{}",
        r.report()
    );

    let mut nan = run_of(&prompt, &steps, &g);
    nan.prompt_logits[1][7] = f32::NAN;
    assert!(g
        .compare("c", &nan, &limits())
        .failures()
        .iter()
        .any(|f| f.contains("NaN")));

    let mut few = run_of(&prompt, &steps, &g);
    few.greedy_ids.truncate(2);
    assert!(!g.compare("c", &few, &limits()).passed());

    let mut rows = run_of(&prompt, &steps, &g);
    rows.prompt_logits.pop();
    assert!(!g.compare("c", &rows, &limits()).passed());
}

#[test]
fn record_matches_the_golden_script_definitions() {
    let mut r = row(5, VOCAB);
    let m = golden::stats(&r).argmax as usize;
    let twin = if m == 7 { 8 } else { 7 };
    r[twin] = r[m]; // a tie for the maximum
    let rec = golden::record(&r, 10);
    let first_max = r.iter().position(|&x| x == rec.max as f32).unwrap() as u32;
    assert_eq!(rec.argmax, first_max);
    assert_eq!(rec.ids[0], first_max, "ties keep the lower id first");
    assert_eq!(rec.margin, 0.0);
    let sum: f64 = r.iter().map(|&x| x as f64).sum();
    assert!((rec.sum - sum).abs() < 1e-9);
    let lse = r.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
    assert!((rec.lse - lse).abs() < 1e-9);
}

#[test]
fn a_loose_limit_tolerates_some_top1_flips_but_not_many() {
    let (g, prompt, steps) = synthetic();
    let mut run = run_of(&prompt, &steps, &g);
    // our top-1 becomes an id outside the golden top-k: never a near tie
    let flip = |run: &mut Run, p: usize| {
        let rec = &g.cases[0].positions[p].rec;
        let outside = (0..VOCAB as u32).find(|i| !rec.ids.contains(i)).unwrap();
        run.prompt_logits[p][outside as usize] = rec.logits[0] + 0.05;
    };
    flip(&mut run, 0);
    let loose = Limits::int8_activations_vs_float();
    let r = g.compare("c", &run, &loose);
    assert_eq!(r.top1_disagree(), 1);
    assert!(r.passed(), "3 of 4 agree, 0.75 required: {}", r.report());
    assert!(!g.compare("c", &run, &Limits::float32()).passed());
    flip(&mut run, 1);
    assert!(!g.compare("c", &run, &loose).passed(), "2 of 4 agree");
}
