//! The `lamina` command line: run, chat, inspect, tokenize, bench, quantize, perplexity.

use clap::{Args, Parser, Subcommand};
use lamina::chat::Message;
use lamina::error::{Error, Result};
use lamina::generate::{generate, EngineOptions, GenerateParams, Generation, InferenceAdapter};
use lamina::sample::SamplingParams;
use lamina::select::{self, BackendChoice};
use std::io::{BufRead, Write};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "lamina",
    version,
    about = "Llama-family inference on wgpu and CUDA"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate text after a prompt.
    Run(RunArgs),
    /// An interactive conversation (Ctrl-D ends it).
    Chat(ChatArgs),
    /// What a model is, what it needs, and which backends here can run it.
    Inspect {
        /// A .gguf file, a model folder, or an org/name in the Hugging Face cache.
        model: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print the token ids of a text.
    Tokenize {
        #[arg(short, long)]
        model: String,
        text: String,
        /// Do not add BOS/EOS even where the model does.
        #[arg(long)]
        no_special: bool,
        /// Read special-token text such as <|im_start|> as that token.
        #[arg(long)]
        parse_special: bool,
        /// Only the list of ids.
        #[arg(long)]
        ids_only: bool,
    },
    /// The same model on several backends side by side: prefill (pp) and decode (tg)
    /// tokens/s, load time, peak memory, share of the bandwidth floor.
    Bench {
        #[arg(short, long)]
        model: String,
        /// Comma-separated: cuda, wgpu, reference.
        #[arg(long, value_delimiter = ',', default_value = "cuda,wgpu")]
        backends: Vec<BackendChoice>,
        /// Prompt tokens (pp).
        #[arg(short = 'p', long, default_value_t = 512)]
        prompt: usize,
        /// Generated tokens (tg).
        #[arg(short = 'n', long, default_value_t = 128)]
        gen: usize,
        /// Tokens in the KV cache before each measurement.
        #[arg(short = 'd', long, default_value_t = 0)]
        depth: usize,
        /// Repetitions (after one warm-up).
        #[arg(short = 'r', long, default_value_t = 5)]
        reps: usize,
        /// Tokens per prefill pass.
        #[arg(short = 'b', long, default_value_t = 512)]
        batch: usize,
        #[arg(long)]
        json: bool,
    },
    /// Perplexity of a model on a text, and with --kl-base its KL divergence from a base
    /// model (llama.cpp's method and report).
    #[command(after_help = lamina::perplexity::METHOD)]
    Perplexity(lamina::perplexity::PerplexityArgs),
    /// Write a GGUF file of a model with its weights in another type: a safetensors model
    /// folder or a GGUF file in (metadata, tokenizer and chat template carried over).
    Quantize {
        /// A .gguf file or a folder with config.json, *.safetensors and tokenizer.json.
        input: std::path::PathBuf,
        /// The .gguf file to write (written as OUT.tmp, renamed when complete).
        output: std::path::PathBuf,
        /// f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, or a
        /// llama.cpp mixture: q3_k_m, q4_k_s, q4_k_m, q5_k_s, q5_k_m.
        #[arg(short = 't', long = "type")]
        qtype: String,
        /// Worker threads (default: every core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Write the logits of a prompt (every position) as little-endian f32 rows: for
    /// comparisons with other engines.
    #[command(hide = true)]
    Logits {
        #[command(flatten)]
        model: ModelArgs,
        /// Token ids, comma-separated, or @FILE with ids separated by commas or spaces.
        #[arg(long)]
        ids: String,
        /// Only the last N positions.
        #[arg(long)]
        last: Option<usize>,
        /// Run the last D positions one token at a time (the decode path, teacher-forced)
        /// instead of in the prefill pass.
        #[arg(long, default_value_t = 0)]
        decode_last: usize,
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// A .gguf file, a model folder, or an org/name in the Hugging Face cache.
    #[arg(short, long)]
    model: String,
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendChoice,
    /// KV cache length in tokens (at most the model's maximum).
    #[arg(short = 'c', long, default_value_t = 4096)]
    ctx_size: usize,
    /// Tokens per prefill pass.
    #[arg(short = 'b', long, default_value_t = 512)]
    batch: usize,
}

#[derive(Args, Clone)]
struct SamplingArgs {
    /// Temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    temp: f32,
    /// Keep the k most likely tokens (0: all).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Keep the most likely tokens up to this probability mass.
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Drop tokens less likely than this fraction of the best.
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    #[arg(long, default_value_t = 64)]
    repeat_last_n: usize,
    /// Random seed (default: from the clock; printed at the end).
    #[arg(long)]
    seed: Option<u64>,
    /// Most tokens to generate.
    #[arg(short = 'n', long, default_value_t = 256)]
    n_predict: usize,
    /// Stop when this text appears (repeatable).
    #[arg(long)]
    stop: Vec<String>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(short, long)]
    prompt: String,
    /// Wrap the prompt in the model's chat template.
    #[arg(long)]
    chat: bool,
    /// A system message (with --chat).
    #[arg(long)]
    system: Option<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
}

#[derive(Args)]
struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long)]
    system: Option<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run(a) => run(a),
        Cmd::Chat(a) => chat(a),
        Cmd::Inspect { model, json } => inspect(&model, json),
        Cmd::Tokenize {
            model,
            text,
            no_special,
            parse_special,
            ids_only,
        } => tokenize(&model, &text, !no_special, parse_special, ids_only),
        Cmd::Bench {
            model,
            backends,
            prompt,
            gen,
            depth,
            reps,
            batch,
            json,
        } => {
            let args = lamina::bench::BenchArgs {
                model,
                backends,
                prompt,
                gen,
                depth,
                reps,
                batch,
            };
            lamina::bench::run(&args).and_then(|rows| {
                if json {
                    let j = serde_json::to_string_pretty(&rows)
                        .map_err(|e| Error::Input(e.to_string()))?;
                    println!("{j}");
                } else {
                    print!("{}", lamina::bench::markdown(&rows));
                }
                Ok(())
            })
        }
        Cmd::Perplexity(a) => lamina::perplexity::run(&a).and_then(|r| {
            if a.json {
                let j =
                    serde_json::to_string_pretty(&r).map_err(|e| Error::Input(e.to_string()))?;
                println!("{j}");
            } else {
                print!("{}", lamina::perplexity::summary(&r));
            }
            Ok(())
        }),
        Cmd::Quantize {
            input,
            output,
            qtype,
            threads,
        } => lamina::convert::quantize(&lamina::convert::Options {
            input,
            output,
            qtype,
            threads,
        })
        .map(|_| ()),
        Cmd::Logits {
            model,
            ids,
            last,
            decode_last,
            out,
        } => logits(model, &ids, last, decode_last, &out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn open(m: &ModelArgs) -> Result<Box<dyn InferenceAdapter>> {
    let opts = EngineOptions {
        ctx_size: m.ctx_size,
        batch: m.batch,
    };
    let mut a = select::open(&m.model, m.backend, opts)?;
    a.load()?;
    Ok(a)
}

fn params(s: &SamplingArgs) -> GenerateParams {
    let seed = s.seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        t.map(|d| d.as_nanos() as u64).unwrap_or(0)
    });
    GenerateParams {
        max_tokens: s.n_predict,
        sampling: SamplingParams {
            temperature: s.temp,
            top_k: s.top_k,
            top_p: s.top_p,
            min_p: s.min_p,
            repeat_penalty: s.repeat_penalty,
            repeat_last_n: s.repeat_last_n,
            seed,
        },
        stop: s.stop.clone(),
    }
}

fn print_timings(g: &Generation, seed: u64) {
    eprintln!(
        "\n\nprompt: {} tokens in {:.3} s ({:.2} tok/s); generated: {} tokens in {:.3} s \
         ({:.2} tok/s); stop: {:?}; seed: {seed}",
        g.prompt_tokens,
        g.prompt_secs,
        g.prompt_tok_s(),
        g.tokens.len(),
        g.gen_secs,
        g.gen_tok_s(),
        g.stop
    );
}

fn stream_to_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (`| head`) is not worth an error in the middle of a generation.
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

/// The prompt's ids: plain text with the model's BOS settings, or a rendered chat template
/// (which carries its own special tokens, as transformers tokenizes it).
fn chat_ids(
    a: &dyn InferenceAdapter,
    template: &lamina::chat::ChatTemplate,
    msgs: &[Message],
) -> Result<Vec<u32>> {
    let text = template.render(msgs, true)?;
    a.encode(&text, false, true)
}

fn template(m: &ModelArgs, a: &dyn InferenceAdapter) -> Result<lamina::chat::ChatTemplate> {
    let lm = lamina::model::resolve::open(&m.model)?;
    select::chat_template_for(&lm, &a.tokenizer())?.ok_or_else(|| {
        Error::Input(format!(
            "{} has no chat template; run it without --chat, or use a model that ships one",
            m.model
        ))
    })
}

fn run(r: RunArgs) -> Result<()> {
    let p = params(&r.sampling);
    p.sampling.validate()?;
    let mut a = open(&r.model)?;
    let ids = if r.chat {
        let t = template(&r.model, a.as_ref())?;
        let mut msgs = vec![];
        if let Some(s) = &r.system {
            msgs.push(Message::new("system", s));
        }
        msgs.push(Message::new("user", &r.prompt));
        chat_ids(a.as_ref(), &t, &msgs)?
    } else {
        if r.system.is_some() {
            return Err(Error::Input("--system needs --chat".into()));
        }
        a.encode(&r.prompt, true, false)?
    };
    tracing::info!(
        "{} on {}: prompt of {} tokens",
        a.model_type(),
        a.device(),
        ids.len()
    );
    if !r.chat {
        stream_to_stdout(&r.prompt);
    }
    let g = generate(a.as_mut(), &ids, &p, &mut stream_to_stdout)?;
    print_timings(&g, p.sampling.seed);
    Ok(())
}

fn chat(c: ChatArgs) -> Result<()> {
    let p = params(&c.sampling);
    p.sampling.validate()?;
    let mut a = open(&c.model)?;
    let t = template(&c.model, a.as_ref())?;
    let mut msgs = vec![];
    if let Some(s) = &c.system {
        msgs.push(Message::new("system", s));
    }
    eprintln!(
        "{} on {}. Type a message; Ctrl-D ends.",
        a.model_type(),
        a.device()
    );
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        eprint!("> ");
        line.clear();
        if stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| Error::io("stdin", e))?
            == 0
        {
            eprintln!();
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        msgs.push(Message::new("user", line.trim_end_matches(['\n', '\r'])));
        let ids = chat_ids(a.as_ref(), &t, &msgs)?;
        let g = generate(a.as_mut(), &ids, &p, &mut stream_to_stdout)?;
        println!();
        tracing::debug!("{:.2} tok/s", g.gen_tok_s());
        msgs.push(Message::new("assistant", &g.text));
    }
}

fn tokenize(
    model: &str,
    text: &str,
    add_special: bool,
    parse_special: bool,
    ids_only: bool,
) -> Result<()> {
    let m = lamina::model::resolve::open(model)?;
    let tok = select::tokenizer_for(&m)?;
    let ids = tok.encode(text, add_special, parse_special)?;
    if ids_only {
        println!("{}", lamina::tokenizer::format_id_list(&ids));
    } else {
        print!("{}", tok.format_ids(&ids)?);
    }
    Ok(())
}

fn parse_ids(s: &str) -> Result<Vec<u32>> {
    let text = match s.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?,
        None => s.to_string(),
    };
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<u32>()
                .map_err(|_| Error::Input(format!("not a token id: {t:?}")))
        })
        .collect()
}

fn logits(
    m: ModelArgs,
    ids: &str,
    last: Option<usize>,
    decode_last: usize,
    out: &std::path::Path,
) -> Result<()> {
    let ids = parse_ids(ids)?;
    let mut a = open(&m)?;
    if let Some(&bad) = ids.iter().find(|&&i| i as usize >= a.vocab_size()) {
        return Err(Error::Input(format!(
            "token id {bad} is outside the vocabulary of {}",
            a.vocab_size()
        )));
    }
    let n = ids.len();
    let last = last.unwrap_or(n).clamp(1, n);
    // Positions [0, pre) in prefill passes, [pre, n) one decode step each.
    let pre = n - decode_last.min(n - 1);
    let from_prefill = (pre + last).saturating_sub(n).max(1);
    let mut rows = a.prefill_rows(&ids[..pre], from_prefill)?;
    if pre + last <= n {
        rows.clear();
    }
    for (i, &id) in ids.iter().enumerate().skip(pre) {
        let row = a.decode_token(id)?;
        if i + last >= n {
            rows.extend(row);
        }
    }
    let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(out, bytes).map_err(|e| Error::io(out, e))?;
    tracing::info!(
        "wrote {last} rows of {} logits to {}",
        a.vocab_size(),
        out.display()
    );
    Ok(())
}

fn inspect(model: &str, json: bool) -> Result<()> {
    let m = lamina::model::resolve::open(model)?;
    let mut d = lamina::model::diagnose::Diagnosis::new(&m);
    match select::tokenizer_for(&m) {
        Ok(tok) => {
            d.tokenizer = Some(tok.kind());
            d.chat_template = Some(select::chat_template_for(&m, &tok)?.is_some());
        }
        Err(e) => d.tokenizer = Some(format!("unusable: {e}")),
    }
    d.backends = select::backend_reports(&m);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&d).map_err(|e| Error::Input(e.to_string()))?
        );
    } else {
        print!("{}", d.to_text());
    }
    Ok(())
}
