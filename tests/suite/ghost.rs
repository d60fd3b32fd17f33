//! Ghost batch normalization (`BatchNormConfig::virtual_batch_size`): each
//! chunk of the batch is normalized as a BatchNorm on that chunk alone
//! would; the running statistics take the chunks' averaged statistics once
//! per step (Keras' rule), checked against an f64 computation.

use crate::common::{assert_close, assert_close_above, values};
use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use burn_norm::{BatchNormConfig, NormError};

const SHAPE: [usize; 3] = [12, 3, 5];
const CHUNK: usize = 4;

fn data(seed: f64) -> Vec<f32> {
    (0..SHAPE.iter().product::<usize>())
        .map(|i| (((i as f64 + 1.0) * seed).sin() * 2.0 + (i % 7) as f64 * 0.3) as f32)
        .collect()
}

fn params(device: &Device) -> (Param<Tensor<1>>, Param<Tensor<1>>) {
    (
        Param::from_tensor(Tensor::from_floats([0.5, 1.5, -0.7], device)),
        Param::from_tensor(Tensor::from_floats([0.1, -0.2, 0.3], device)),
    )
}

fn ghost_batches_normalize_like_separate_batch_norms(device: &Device) {
    let ad = device.clone().autodiff();
    let x_values = data(0.37);
    let g = Tensor::<3>::from_data(TensorData::new(data(1.91), SHAPE), &ad);

    // Ghost BatchNorm over the whole batch.
    let mut ghost = BatchNormConfig::new(3)
        .with_virtual_batch_size(Some(CHUNK))
        .init(&ad);
    let (gamma, beta) = params(&ad);
    ghost.gamma = Some(gamma);
    ghost.beta = Some(beta);
    let x = Tensor::<3>::from_data(TensorData::new(x_values.clone(), SHAPE), &ad).require_grad();
    let y = ghost.forward(x.clone());
    let grads = (y.clone() * g.clone()).sum().backward();
    let ghost_out = [
        values(y),
        values(x.grad(&grads).unwrap()),
        values(ghost.gamma.as_ref().unwrap().val().grad(&grads).unwrap()),
        values(ghost.beta.as_ref().unwrap().val().grad(&grads).unwrap()),
    ];

    // Three BatchNorms without running statistics, one per chunk.
    let mut plain = BatchNormConfig::new(3)
        .with_track_running_stats(false)
        .init(&ad);
    let (gamma, beta) = params(&ad);
    plain.gamma = Some(gamma);
    plain.beta = Some(beta);
    let x = Tensor::<3>::from_data(TensorData::new(x_values.clone(), SHAPE), &ad).require_grad();
    let chunks: Vec<Tensor<3>> = (0..SHAPE[0] / CHUNK)
        .map(|i| plain.forward(x.clone().narrow(0, i * CHUNK, CHUNK)))
        .collect();
    let y = Tensor::cat(chunks, 0);
    let grads = (y.clone() * g).sum().backward();
    let separate = [
        values(y),
        values(x.grad(&grads).unwrap()),
        values(plain.gamma.as_ref().unwrap().val().grad(&grads).unwrap()),
        values(plain.beta.as_ref().unwrap().val().grad(&grads).unwrap()),
    ];
    for (what, (a, e)) in ["output", "input grad", "gamma grad", "beta grad"]
        .iter()
        .zip(ghost_out.iter().zip(&separate))
    {
        assert_close_above(&format!("ghost vs separate: {what}"), a, e, 1e-5, 1e-3);
    }

    // Running statistics, momentum 0.1 from (0, 1): the chunks' mean and
    // biased variance averaged, Bessel's correction over one chunk's 20
    // values per channel.
    let (n, c, s) = (SHAPE[0], SHAPE[1], SHAPE[2]);
    let mut mean = vec![0.0f64; c];
    let mut var = vec![0.0f64; c];
    for chunk in 0..n / CHUNK {
        for ch in 0..c {
            let v: Vec<f64> = (chunk * CHUNK..(chunk + 1) * CHUNK)
                .flat_map(|b| (0..s).map(move |k| (b * c + ch) * s + k))
                .map(|i| x_values[i] as f64)
                .collect();
            let m = v.iter().sum::<f64>() / v.len() as f64;
            mean[ch] += m / (n / CHUNK) as f64;
            var[ch] += v.iter().map(|x| (x - m).powi(2)).sum::<f64>()
                / v.len() as f64
                / (n / CHUNK) as f64;
        }
    }
    let m = (CHUNK * s) as f64;
    let expected_mean: Vec<f32> = mean.iter().map(|v| (0.1 * v) as f32).collect();
    let expected_var: Vec<f32> = var
        .iter()
        .map(|v| (0.9 + 0.1 * v * m / (m - 1.0)) as f32)
        .collect();
    assert_close(
        "running mean",
        &values(ghost.running_mean().unwrap()),
        &expected_mean,
        1e-5,
    );
    assert_close(
        "running var",
        &values(ghost.running_var().unwrap()),
        &expected_var,
        1e-5,
    );
    assert_eq!(ghost.num_batches_tracked(), Some(1), "one update per step");
}

fn ghost_batches_need_a_whole_number_of_chunks(device: &Device) {
    let ad = device.clone().autodiff();
    let bn = BatchNormConfig::new(3)
        .with_virtual_batch_size(Some(4))
        .init(&ad);
    let err = bn
        .try_forward(Tensor::<3>::ones([10, 3, 5], &ad))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "BatchNorm: expected input [N, 3, ...] with N a multiple of virtual_batch_size = 4 (and more than 1 value per channel in each chunk), got shape [10, 3, 5]"
    );
    // A batch no larger than one chunk is an ordinary batch.
    let y = bn.forward(Tensor::<3>::from_data(
        TensorData::new(data(0.5)[..45].to_vec(), [3, 3, 5]),
        &ad,
    ));
    assert_eq!(y.dims(), [3, 3, 5]);
    // Evaluation uses the running statistics, whatever the batch.
    let eval = burn::module::Module::valid(&bn);
    assert_eq!(
        eval.forward(Tensor::<3>::ones([10, 3, 5], device)).dims(),
        [10, 3, 5]
    );
    assert!(matches!(
        BatchNormConfig::new(3)
            .with_virtual_batch_size(Some(0))
            .try_init(device),
        Err(NormError::InvalidConfig {
            field: "virtual_batch_size",
            ..
        })
    ));
}

on_every_backend!(
    ghost_batches_normalize_like_separate_batch_norms,
    ghost_batches_need_a_whole_number_of_chunks,
);
