//! Text from a trained model, one character at a time.

use crate::data::Vocab;
use crate::model::CharTransformer;
use crate::train_helpers::Rng;
use burn::tensor::{Device, Int, Tensor, TensorData};

/// Samples `n` characters after `prompt`, one at a time, from the last
/// `context` characters: softmax(logits / temperature), optionally over the
/// `top_k` likeliest characters only.
#[allow(clippy::too_many_arguments)]
pub fn generate(
    model: &CharTransformer,
    vocab: &Vocab,
    prompt: &str,
    n: usize,
    temperature: f64,
    top_k: usize,
    seed: u64,
    device: &Device,
) -> Result<String, String> {
    let mut ids = vocab.encode(prompt).map_err(|e| format!("--prompt: {e}"))?;
    if ids.is_empty() {
        return Err("--prompt must not be empty".into());
    }
    let mut rng = Rng(seed);
    let start = ids.len();
    for _ in 0..n {
        let window = &ids[ids.len().saturating_sub(model.context())..];
        let input = Tensor::<2, Int>::from_data(
            TensorData::new(
                window.iter().map(|&i| i as i64).collect(),
                [1, window.len()],
            ),
            device,
        );
        let logits: Vec<f32> = model
            .forward(input)
            .slice([0..1, window.len() - 1..window.len()])
            .into_data()
            .try_to_vec()
            .map_err(|e| format!("reading logits: {e:?}"))?;
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        if top_k > 0 {
            order.truncate(top_k);
        }
        let max = logits[order[0]] as f64;
        let weights: Vec<f64> = order
            .iter()
            .map(|&i| ((logits[i] as f64 - max) / temperature).exp())
            .collect();
        let mut pick = rng.uniform() * weights.iter().sum::<f64>();
        let mut chosen = order[order.len() - 1];
        for (&i, w) in order.iter().zip(&weights) {
            if pick < *w {
                chosen = i;
                break;
            }
            pick -= w;
        }
        ids.push(chosen);
    }
    Ok(vocab.decode(&ids[start..]))
}
