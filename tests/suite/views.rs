//! Inputs that are views: a transposed, permuted or narrowed tensor (a
//! conv's `[N, C, H, W]` as tokens `[N, H * W, C]`, channels-last data, a
//! slice of a wider activation), and an upstream gradient that arrives
//! through a view after the layer. The kernels read memory, so each layer
//! is checked against the same values laid out afresh: the same output,
//! input gradient and parameter gradients, on every backend.

use crate::common::{assert_close, values};
use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use burn_norm::{
    BatchNormConfig, GroupNormConfig, InstanceNormConfig, LayerNormConfig, RmsNormConfig,
};

fn data(n: usize, seed: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f32 + 1.0) * seed).sin() * 2.0 + (i % 5) as f32 * 0.25)
        .collect()
}

/// Output, input gradient and parameter gradients of `layer` on `x`, with
/// the upstream gradient `g` applied through `after` (a view of the output).
fn run<const D: usize>(
    layer: &dyn Fn(Tensor<D>) -> Tensor<D>,
    params: &[Param<Tensor<1>>],
    x: Tensor<D>,
    after: fn(Tensor<D>) -> Tensor<D>,
    g: &Tensor<D>,
) -> Vec<Vec<f32>> {
    let x = x.require_grad();
    let y = layer(x.clone());
    let grads = (after(y.clone()) * g.clone()).sum().backward();
    let mut out = vec![values(y), values(x.grad(&grads).unwrap())];
    out.extend(params.iter().map(|p| values(p.val().grad(&grads).unwrap())));
    out
}

/// `view` (a function of a stored tensor) against the same values stored
/// afresh, for one layer.
fn check<const D: usize, const S: usize>(
    what: &str,
    device: &Device,
    stored: [usize; S],
    view: fn(Tensor<S>) -> Tensor<D>,
    after: fn(Tensor<D>) -> Tensor<D>,
    layer: &dyn Fn(Tensor<D>) -> Tensor<D>,
    params: &[Param<Tensor<1>>],
) {
    let n = stored.iter().product();
    let x = view(Tensor::<S>::from_data(
        TensorData::new(data(n, 0.37), stored),
        device,
    ));
    let fresh = Tensor::<D>::from_data(x.to_data(), device);
    let g_shape = after(fresh.clone()).dims();
    let g = Tensor::<D>::from_data(
        TensorData::new(data(g_shape.iter().product(), 1.3), g_shape),
        device,
    );
    let expected = run(layer, params, fresh, after, &g);
    let actual = run(layer, params, x, after, &g);
    let names = ["output", "input grad", "gamma grad", "beta grad"];
    for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
        assert_close(&format!("{what}: {}", names[i]), a, e, 1e-6);
    }
}

fn same<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    t
}

fn layers_read_views_as_their_values(device: &Device) {
    let ad = device.clone().autodiff();
    // A conv's feature map as tokens: [2, 4, 3, 5] -> [2, 15, 4], through a
    // transposed view, with the gradient coming back through one as well.
    let ln = LayerNormConfig::new(4).init(&ad);
    let ln_params = [ln.gamma.clone().unwrap(), ln.beta.clone().unwrap()];
    check(
        "LayerNorm, tokens of a feature map",
        &ad,
        [2, 4, 15],
        |t: Tensor<3>| t.swap_dims(1, 2),
        |y: Tensor<3>| y.swap_dims(1, 2),
        &|x| ln.forward(x),
        &ln_params,
    );
    // A slice of a wider activation: columns 2..6 of [3, 5, 8].
    let rms = RmsNormConfig::new(4).init(&ad);
    check(
        "RmsNorm, a narrowed slice",
        &ad,
        [3, 5, 8],
        |t: Tensor<3>| t.narrow(2, 2, 4),
        same,
        &|x| rms.forward(x),
        &[rms.gamma.clone().unwrap()],
    );
    // Channels-last data seen as [N, C, H, W].
    let nhwc = |t: Tensor<4>| t.permute([0, 3, 1, 2]);
    let bn = BatchNormConfig::new(4).init(&ad);
    let bn_params = [bn.gamma.clone().unwrap(), bn.beta.clone().unwrap()];
    check(
        "BatchNorm, channels last",
        &ad,
        [3, 2, 5, 4],
        nhwc,
        |y: Tensor<4>| y.permute([0, 2, 3, 1]),
        &|x| bn.forward(x),
        &bn_params,
    );
    let gn = GroupNormConfig::new(2, 4).init(&ad);
    let gn_params = [gn.gamma.clone().unwrap(), gn.beta.clone().unwrap()];
    check(
        "GroupNorm, channels last",
        &ad,
        [3, 2, 5, 4],
        nhwc,
        same,
        &|x| gn.forward(x),
        &gn_params,
    );
    let inorm = InstanceNormConfig::new(4).with_affine(true).init(&ad);
    let in_params = [inorm.gamma.clone().unwrap(), inorm.beta.clone().unwrap()];
    check(
        "InstanceNorm, two samples of four",
        &ad,
        [4, 4, 3, 5],
        |t: Tensor<4>| t.narrow(0, 1, 2),
        |y: Tensor<4>| y.swap_dims(2, 3),
        &|x| inorm.forward(x),
        &in_params,
    );
}

on_every_backend!(layers_read_views_as_their_values);
