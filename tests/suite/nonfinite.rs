//! A NaN or an infinity poisons its own group and nothing else, as in
//! PyTorch: its row (LayerNorm, RMSNorm), its channel (BatchNorm, output
//! and running statistics), its sample's group (GroupNorm) come out NaN;
//! every other group gives what it gives without it, forward and (for the
//! input gradient) backward. The kernels take several rows per block or
//! per cube, so a leak between neighbours would show here.

use crate::common::{assert_close, values};
use burn::tensor::{Device, Tensor, TensorData};
use burn_norm::{BatchNormConfig, GroupNormConfig, LayerNormConfig, RmsNormConfig};

fn data(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f32 + 1.0) * 0.61).sin() * 3.0 + 0.5)
        .collect()
}

/// Output and input gradient (of `sum(y * g)`) of `layer` on `x`.
fn run<const D: usize>(
    layer: &dyn Fn(Tensor<D>) -> Tensor<D>,
    x: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> [Vec<f32>; 2] {
    let n = x.len();
    let x = Tensor::<D>::from_data(TensorData::new(x, shape), device).require_grad();
    let g = Tensor::<D>::from_data(TensorData::new(data(n + 7)[7..].to_vec(), shape), device);
    let y = layer(x.clone());
    let grads = (y.clone() * g).sum().backward();
    [values(y), values(x.grad(&grads).unwrap())]
}

/// What a poisoned group gives, per value, as PyTorch: NaN everywhere
/// where the layer centers (`x - mean` with an infinite or NaN mean);
/// without centering (RMSNorm) an infinite mean square scales the finite
/// values to 0 and the infinities to NaN (`inf * 0`), and a NaN poisons all.
#[derive(Clone, Copy)]
enum Poisoned {
    AllNan,
    ScaledToZero,
}

impl Poisoned {
    fn expected(self, value: f32, group_has_nan: bool) -> f32 {
        match self {
            Poisoned::ScaledToZero if !group_has_nan && value.is_finite() => 0.0,
            _ => f32::NAN,
        }
    }
}

/// Runs `layer` on clean data and on the same data with `poison` written
/// in; the groups (`group_of(i)` for flat index `i`) that hold a poisoned
/// value must come out as `rule` says, the others as on clean data.
fn check<const D: usize>(
    what: &str,
    device: &Device,
    shape: [usize; D],
    group_of: &dyn Fn(usize) -> usize,
    poison: &[(usize, f32)],
    rule: Poisoned,
    layer: &dyn Fn(Tensor<D>) -> Tensor<D>,
) {
    let n = shape.iter().product();
    let clean = data(n);
    let mut dirty = clean.clone();
    for &(i, v) in poison {
        dirty[i] = v;
    }
    let bad: Vec<usize> = poison.iter().map(|&(i, _)| group_of(i)).collect();
    let [y_clean, dx_clean] = run(layer, clean, shape, device);
    let [y, dx] = run(layer, dirty.clone(), shape, device);
    for i in (0..n).filter(|&i| bad.contains(&group_of(i))) {
        let group_has_nan = (0..n).any(|j| group_of(j) == group_of(i) && dirty[j].is_nan());
        let expected = rule.expected(dirty[i], group_has_nan);
        assert!(
            y[i] == expected || (y[i].is_nan() && expected.is_nan()),
            "{what}: poisoned group, value {i} ({}): got {}, expected {expected}",
            dirty[i],
            y[i]
        );
    }
    let clean_groups = |v: &[f32]| -> Vec<f32> {
        (0..n)
            .filter(|&i| !bad.contains(&group_of(i)))
            .map(|i| v[i])
            .collect()
    };
    assert_close(
        &format!("{what}: output"),
        &clean_groups(&y),
        &clean_groups(&y_clean),
        1e-6,
    );
    assert_close(
        &format!("{what}: input gradient"),
        &clean_groups(&dx),
        &clean_groups(&dx_clean),
        1e-5,
    );
}

fn a_non_finite_value_stays_in_its_group(device: &Device) {
    let ad = device.clone().autodiff();
    // Rows of 128 (eight per GPU cube) and of 768 (two per CPU block).
    for d in [128, 768] {
        let rows = 12;
        let poison = [
            (3 * d + 5, f32::NAN),
            (6 * d, f32::INFINITY),
            (7 * d + d - 1, f32::NEG_INFINITY),
        ];
        let ln = LayerNormConfig::new(d).init(&ad);
        check(
            &format!("LayerNorm {d}"),
            &ad,
            [rows, d],
            &|i| i / d,
            &poison,
            Poisoned::AllNan,
            &|x| ln.forward(x),
        );
        let rms = RmsNormConfig::new(d).init(&ad);
        check(
            &format!("RmsNorm {d}"),
            &ad,
            [rows, d],
            &|i| i / d,
            &poison,
            Poisoned::ScaledToZero,
            &|x| rms.forward(x),
        );
    }
    // BatchNorm: the channel of the poisoned value (the input gradient of
    // the other channels is checked as well; the parameter gradients and
    // running statistics of the poisoned channel are NaN, as PyTorch's).
    let (n, c, s) = (4, 5, 6);
    let bn = BatchNormConfig::new(c).init(&ad);
    let channel = move |i: usize| i / s % c;
    let poison = [(2 * c * s + 3 * s + 1, f32::NAN)];
    check(
        "BatchNorm",
        &ad,
        [n, c, s],
        &channel,
        &poison,
        Poisoned::AllNan,
        &|x| bn.forward(x),
    );
    let mean = values(bn.running_mean().unwrap());
    assert!(
        mean[3].is_nan()
            && mean
                .iter()
                .enumerate()
                .all(|(k, m)| k == 3 || m.is_finite())
    );
    // GroupNorm: the poisoned sample's group.
    let gn = GroupNormConfig::new(2, 4).init(&ad);
    let group = |i: usize| i / (2 * 9);
    let poison = [(4 * 9 + 2 * 9 + 4, f32::INFINITY)];
    check(
        "GroupNorm",
        &ad,
        [3, 4, 9],
        &group,
        &poison,
        Poisoned::AllNan,
        &|x| gn.forward(x),
    );
}

on_every_backend!(a_non_finite_value_stays_in_its_group);
