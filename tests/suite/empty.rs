//! Inputs without values: an empty batch (`N = 0`: a detector's batch with
//! no proposals, a data-parallel replica's share of a short last batch) or
//! a zero-size spatial axis. PyTorch 2.x gives an empty output and zero
//! parameter gradients; its BatchNorm counts the step and leaves the
//! running statistics as they are. Every layer does that here, on every
//! backend, and no layer folds the NaN of `0 / 0` into its running
//! statistics (PyTorch's InstanceNorm does).

use crate::common::{assert_close, values};
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use burn_norm::sync::ThreadCombiner;
use burn_norm::{
    BatchNorm, BatchNormConfig, BatchRenormConfig, GroupNormConfig, InstanceNormConfig,
    LayerNormConfig, RmsNormConfig,
};

const C: usize = 3;

/// A layer whose running statistics have moved off their initial values, so
/// that "left as they are" is not also "reset".
fn trained_batch_norm(config: BatchNormConfig, device: &Device) -> BatchNorm {
    let bn = config.init(device);
    let x: Vec<f32> = (0..2 * C * 4)
        .map(|i| (i as f32 * 0.7).sin() * 3.0 + 1.0)
        .collect();
    bn.forward(Tensor::<4>::from_data(
        TensorData::new(x, [2, C, 2, 2]),
        device,
    ));
    bn
}

/// `y`'s shape, and the gradients of `x` and of `params` after a backward
/// of `sum(y)`.
fn backward<const D: usize>(
    x: Tensor<D>,
    y: Tensor<D>,
    params: &[&Option<Param<Tensor<1>>>],
) -> Vec<Vec<f32>> {
    let shape = y.dims();
    let grads = y.sum().backward();
    assert_eq!(
        x.grad(&grads).map(|g| g.dims()),
        Some(shape),
        "input gradient"
    );
    params
        .iter()
        .map(|p| values(p.as_ref().unwrap().val().grad(&grads).unwrap()))
        .collect()
}

fn batch_norm_counts_an_empty_batch_and_keeps_its_statistics(device: &Device) {
    let ad = device.clone().autodiff();
    for shape in [[0, C, 2, 2], [2, C, 0, 2]] {
        let bn = trained_batch_norm(BatchNormConfig::new(C), &ad);
        let (mean, var) = (
            values(bn.running_mean().unwrap()),
            values(bn.running_var().unwrap()),
        );
        let x = Tensor::<4>::zeros(shape, &ad).require_grad();
        let y = bn
            .try_forward(x.clone())
            .expect("an empty batch is PyTorch's no-op step");
        let grads = backward(x, y, &[&bn.gamma, &bn.beta]);
        assert_eq!(
            grads,
            vec![vec![0.0; C]; 2],
            "{shape:?}: gamma and beta gradients"
        );
        assert_eq!(
            bn.num_batches_tracked(),
            Some(2),
            "{shape:?}: the step is counted"
        );
        assert_eq!(
            values(bn.running_mean().unwrap()),
            mean,
            "{shape:?}: running mean"
        );
        assert_eq!(
            values(bn.running_var().unwrap()),
            var,
            "{shape:?}: running var"
        );
        // Evaluation and batch statistics without running ones: empty too.
        let y = bn
            .valid()
            .try_forward(Tensor::<4>::zeros(shape, device))
            .unwrap();
        assert_eq!(y.dims(), shape);
        let plain = BatchNormConfig::new(C)
            .with_track_running_stats(false)
            .init(device);
        assert_eq!(
            plain
                .try_forward(Tensor::<4>::zeros(shape, device))
                .unwrap()
                .dims(),
            shape
        );
    }
}

/// With the cumulative average (`momentum = None`), the counted empty step
/// weighs the next batch `1 / 2`, as in PyTorch: running mean `m / 2` and
/// running variance `(1 + v) / 2` after a batch of unbiased variance `v`.
fn an_empty_step_counts_in_the_cumulative_average(device: &Device) {
    let ad = device.clone().autodiff();
    let bn = BatchNormConfig::new(1).with_momentum(None).init(&ad);
    bn.forward(Tensor::<2>::zeros([0, 1], &ad));
    // Values 1, 2, 6: mean 3, unbiased variance 7.
    bn.forward(Tensor::<2>::from_floats([[1.0], [2.0], [6.0]], &ad));
    assert_eq!(bn.num_batches_tracked(), Some(2));
    assert_close(
        "running mean",
        &values(bn.running_mean().unwrap()),
        &[1.5],
        1e-6,
    );
    assert_close(
        "running var",
        &values(bn.running_var().unwrap()),
        &[4.0],
        1e-6,
    );
}

/// Ghost batches of an empty batch: the same no-op step.
fn ghost_batches_of_nothing(device: &Device) {
    let ad = device.clone().autodiff();
    let config = BatchNormConfig::new(C).with_virtual_batch_size(Some(1));
    let bn = trained_batch_norm(config, &ad);
    let mean = values(bn.running_mean().unwrap());
    let y = bn
        .try_forward(Tensor::<4>::zeros([2, C, 0, 2], &ad))
        .unwrap();
    assert_eq!(y.dims(), [2, C, 0, 2]);
    assert_eq!(bn.num_batches_tracked(), Some(2));
    assert_eq!(values(bn.running_mean().unwrap()), mean);
}

fn batch_renorm_counts_an_empty_batch_and_keeps_its_statistics(device: &Device) {
    let ad = device.clone().autodiff();
    let renorm = BatchRenormConfig::new(C).init(&ad);
    let x: Vec<f32> = (0..2 * C).map(|i| i as f32 * 1.3 - 2.0).collect();
    renorm.forward(Tensor::<2>::from_data(TensorData::new(x, [2, C]), &ad));
    let (mean, var) = (values(renorm.running_mean()), values(renorm.running_var()));
    let x = Tensor::<2>::zeros([0, C], &ad).require_grad();
    let y = renorm.try_forward(x.clone()).unwrap();
    let grads = backward(x, y, &[&renorm.gamma, &renorm.beta]);
    assert_eq!(grads, vec![vec![0.0; C]; 2], "gamma and beta gradients");
    assert_eq!(renorm.num_batches_tracked(), 2);
    assert_eq!(values(renorm.running_mean()), mean);
    assert_eq!(values(renorm.running_var()), var);
}

/// PyTorch's InstanceNorm writes NaN into its running statistics here; a
/// batch without instances has no statistics to give.
fn instance_norm_keeps_its_statistics_through_an_empty_batch(device: &Device) {
    let ad = device.clone().autodiff();
    for shape in [[0, C, 2, 2], [2, C, 0, 2]] {
        let norm = InstanceNormConfig::new(C)
            .with_affine(true)
            .with_track_running_stats(true)
            .init(&ad);
        let x: Vec<f32> = (0..2 * C * 4)
            .map(|i| (i as f32 * 0.3).cos() * 2.0)
            .collect();
        norm.forward(Tensor::<4>::from_data(
            TensorData::new(x, [2, C, 2, 2]),
            &ad,
        ));
        let (mean, var) = (
            values(norm.running_mean().unwrap()),
            values(norm.running_var().unwrap()),
        );
        let x = Tensor::<4>::zeros(shape, &ad).require_grad();
        let y = norm.try_forward(x.clone()).unwrap();
        let grads = backward(x, y, &[&norm.gamma, &norm.beta]);
        assert_eq!(
            grads,
            vec![vec![0.0; C]; 2],
            "{shape:?}: gamma and beta gradients"
        );
        assert_eq!(
            values(norm.running_mean().unwrap()),
            mean,
            "{shape:?}: running mean"
        );
        assert_eq!(
            values(norm.running_var().unwrap()),
            var,
            "{shape:?}: running var"
        );
    }
}

fn row_and_group_layers_give_empty_outputs(device: &Device) {
    let ad = device.clone().autodiff();
    let ln = LayerNormConfig::new(4).init(&ad);
    for shape in [[0, 5, 4], [2, 0, 4]] {
        let x = Tensor::<3>::zeros(shape, &ad).require_grad();
        let grads = backward(x.clone(), ln.forward(x), &[&ln.gamma, &ln.beta]);
        assert_eq!(grads, vec![vec![0.0; 4]; 2], "LayerNorm {shape:?}");
    }
    let rms = RmsNormConfig::new(4).init(&ad);
    let x = Tensor::<2>::zeros([0, 4], &ad).require_grad();
    assert_eq!(
        backward(x.clone(), rms.forward(x), &[&rms.gamma]),
        vec![vec![0.0; 4]],
        "RMSNorm"
    );
    let gn = GroupNormConfig::new(2, 4).init(&ad);
    for shape in [[0, 4, 3, 3], [2, 4, 0, 3]] {
        let x = Tensor::<4>::zeros(shape, &ad).require_grad();
        let grads = backward(x.clone(), gn.forward(x), &[&gn.gamma, &gn.beta]);
        assert_eq!(grads, vec![vec![0.0; 4]; 2], "GroupNorm {shape:?}");
    }
}

/// A replica whose share of the batch is empty takes part in every round
/// with nothing: the others normalize with the statistics of theirs alone.
fn synchronized_replicas_with_an_empty_share(device: &Device) {
    let ad = device.clone().autodiff();
    let slices = [2, 0, 1];
    let per_sample = C * 4;
    let x: Vec<f32> = (0..3 * per_sample)
        .map(|i| (i as f32 * 0.9).sin() * 2.0 + 0.5)
        .collect();
    let whole = BatchNormConfig::new(C).init(&ad);
    let expected = values(whole.forward(Tensor::<4>::from_data(
        TensorData::new(x.clone(), [3, C, 2, 2]),
        &ad,
    )));
    let replicas = ThreadCombiner::group(slices.len());
    let outputs: Vec<(Vec<f32>, Vec<f32>, Option<u64>)> = std::thread::scope(|s| {
        let runs: Vec<_> = replicas
            .into_iter()
            .zip(slices.iter().scan(0, |at, &n| {
                *at += n;
                Some((*at - n, n))
            }))
            .map(|(replica, (start, n))| {
                let (ad, part) = (
                    ad.clone(),
                    x[start * per_sample..(start + n) * per_sample].to_vec(),
                );
                s.spawn(move || {
                    let bn = BatchNormConfig::new(C).init(&ad).synchronized(replica);
                    let x = Tensor::<4>::from_data(TensorData::new(part, [n, C, 2, 2]), &ad)
                        .require_grad();
                    let y = bn.forward(x.clone());
                    let out = values(y.clone());
                    // Every replica's backward joins the combine's rounds.
                    let grads = y.sum().backward();
                    assert_eq!(x.grad(&grads).unwrap().dims(), [n, C, 2, 2]);
                    (
                        out,
                        values(bn.running_mean().unwrap()),
                        bn.num_batches_tracked(),
                    )
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let joined: Vec<f32> = outputs.iter().flat_map(|o| o.0.clone()).collect();
    assert_close("output", &joined, &expected, 1e-5);
    let running = values(whole.running_mean().unwrap());
    for (_, mean, batches) in &outputs {
        assert_close("running mean", mean, &running, 1e-5);
        assert_eq!(*batches, Some(1));
    }
}

/// Every share empty: empty outputs everywhere, the step counted, the
/// running statistics as they were.
fn synchronized_replicas_all_empty(device: &Device) {
    let ad = device.clone().autodiff();
    let replicas = ThreadCombiner::group(2);
    std::thread::scope(|s| {
        for replica in replicas {
            let ad = ad.clone();
            s.spawn(move || {
                let bn = BatchNormConfig::new(C).init(&ad).synchronized(replica);
                let x = Tensor::<4>::zeros([0, C, 2, 2], &ad).require_grad();
                let y = bn.forward(x.clone());
                let grads = backward(x, y, &[&bn.gamma, &bn.beta]);
                assert_eq!(grads, vec![vec![0.0; C]; 2]);
                assert_eq!(bn.num_batches_tracked(), Some(1));
                assert_eq!(values(bn.running_mean().unwrap()), vec![0.0; C]);
                assert_eq!(values(bn.running_var().unwrap()), vec![1.0; C]);
            });
        }
    });
}

on_every_backend!(
    batch_norm_counts_an_empty_batch_and_keeps_its_statistics,
    an_empty_step_counts_in_the_cumulative_average,
    ghost_batches_of_nothing,
    batch_renorm_counts_an_empty_batch_and_keeps_its_statistics,
    instance_norm_keeps_its_statistics_through_an_empty_batch,
    row_and_group_layers_give_empty_outputs,
    synchronized_replicas_with_an_empty_share,
    synchronized_replicas_all_empty,
);
