//! The network's inputs: the standardization fitted on the training
//! images, and batches of images and labels.

use crate::data::{PIXELS, SIDE, Split};
use crate::train_helpers::Rng;
use burn::tensor::{Device, Int, Tensor, TensorData};
use burn_norm::scaler::StandardScaler;

/// The input standardization, fitted on the training images (pixels / 255)
/// in batches: `burn_norm::scaler::StandardScaler` over the one channel, so
/// `x = (p / 255 - mean) / std` with the training set's mean and
/// (population) standard deviation. Saved with the model as `scaler.json`.
pub fn fit_scaler(train: &Split) -> Result<StandardScaler, String> {
    let mut scaler = StandardScaler::new(1);
    let device = Device::flex();
    let all: Vec<usize> = (0..train.len()).collect();
    for idx in all.chunks(10_000) {
        let pixels: Vec<f32> = idx
            .iter()
            .flat_map(|&i| &train.images[i * PIXELS..(i + 1) * PIXELS])
            .map(|&p| p as f32 / 255.0)
            .collect();
        let batch =
            Tensor::<4>::from_data(TensorData::new(pixels, [idx.len(), 1, SIDE, SIDE]), &device);
        scaler.partial_fit(&batch).map_err(|e| e.to_string())?;
    }
    Ok(scaler)
}

/// A batch of images `[B, 1, 28, 28]` (scaled, optionally shifted by up to 2
/// pixels) and labels `[B]`.
pub fn batch(
    split: &Split,
    idx: &[usize],
    scaling: &StandardScaler,
    rng: Option<&mut Rng>,
    device: &Device,
) -> (Tensor<4>, Tensor<1, Int>) {
    let mut pixels = Vec::with_capacity(idx.len() * PIXELS);
    let mut shifts = rng;
    for &i in idx {
        let image = &split.images[i * PIXELS..(i + 1) * PIXELS];
        let (dy, dx) = match shifts.as_deref_mut() {
            Some(rng) => (rng.below(5) as isize - 2, rng.below(5) as isize - 2),
            None => (0, 0),
        };
        for y in 0..SIDE as isize {
            for x in 0..SIDE as isize {
                let (sy, sx) = (y - dy, x - dx);
                let inside = (0..SIDE as isize).contains(&sy) && (0..SIDE as isize).contains(&sx);
                let p = if inside {
                    image[sy as usize * SIDE + sx as usize]
                } else {
                    0
                };
                pixels.push(p as f32 / 255.0);
            }
        }
    }
    let labels: Vec<i64> = idx.iter().map(|&i| split.labels[i] as i64).collect();
    let images = Tensor::from_data(TensorData::new(pixels, [idx.len(), 1, SIDE, SIDE]), device);
    (
        scaling
            .transform(images)
            .expect("the scaler was fitted on images of this shape"),
        Tensor::from_data(TensorData::new(labels, [idx.len()]), device),
    )
}
