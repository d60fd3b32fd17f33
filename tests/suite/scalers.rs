//! The data scalers against scikit-learn (fixtures written by
//! `tests/fixtures/scalers.py`), the split-invariance of streaming fits,
//! and their errors.

use crate::common::{assert_close, assert_close_above, values};
use burn::tensor::{Device, Tensor, TensorData};
use burn_norm::NormError;
use burn_norm::scaler::{MinMaxScaler, StandardScaler};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixtures {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    shape: Vec<usize>,
    axis: usize,
    data: Vec<f32>,
    standard: Standard,
    standard_no_mean: Expected,
    standard_no_std: Expected,
    min_max: MinMax,
    min_max_range: MinMaxRange,
}

#[derive(Deserialize)]
struct Standard {
    mean: Vec<f64>,
    var: Vec<f64>,
    scale: Vec<f64>,
    n_samples_seen: u64,
    transformed: Vec<f32>,
}

#[derive(Deserialize)]
struct Expected {
    transformed: Vec<f32>,
}

#[derive(Deserialize)]
struct MinMax {
    data_min: Vec<f64>,
    data_max: Vec<f64>,
    scale: Vec<f64>,
    min: Vec<f64>,
    transformed: Vec<f32>,
}

#[derive(Deserialize)]
struct MinMaxRange {
    low: f64,
    high: f64,
    scale: Vec<f64>,
    min: Vec<f64>,
    transformed: Vec<f32>,
}

fn fixtures() -> Fixtures {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sklearn_scalers.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("parse")
}

/// `|a - e| <= rtol * max(|e|, floor)` element by element, in f64.
fn close64(what: &str, actual: &[f64], expected: &[f64], rtol: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= rtol * e.abs().max(1e-300),
            "{what}[{i}]: {a} vs scikit-learn's {e}"
        );
    }
}

/// The case's data as batches of about a third along axis 0.
fn batches<const D: usize>(case: &Case, device: &Device) -> Vec<Tensor<D>> {
    let n = case.shape[0];
    let row: usize = case.shape[1..].iter().product();
    let cuts = [0, n / 3, n / 3 + n / 4, n];
    cuts.windows(2)
        .map(|w| {
            let mut shape = case.shape.clone();
            shape[0] = w[1] - w[0];
            Tensor::from_data(
                TensorData::new(case.data[w[0] * row..w[1] * row].to_vec(), shape),
                device,
            )
        })
        .collect()
}

fn whole<const D: usize>(case: &Case, device: &Device) -> Tensor<D> {
    Tensor::from_data(
        TensorData::new(case.data.clone(), case.shape.clone()),
        device,
    )
}

fn check_case<const D: usize>(case: &Case, device: &Device) {
    let at = |what: &str| format!("{} {what}", case.name);
    // Fitted in three batches; the statistics are f64 sums of the same f32
    // values in another order: 1e-12 relative (the variance 1e-9: its
    // large-mean feature cancels ten digits in any order).
    let mut standard = StandardScaler::new(case.axis);
    standard.fit(batches::<D>(case, device)).unwrap();
    let m = standard.moments().unwrap();
    assert_eq!(m.count, case.standard.n_samples_seen, "{}", at("count"));
    close64(
        &at("mean"),
        &standard.mean().unwrap(),
        &case.standard.mean,
        1e-12,
    );
    close64(
        &at("var"),
        &standard.var().unwrap(),
        &case.standard.var,
        1e-9,
    );
    close64(
        &at("scale"),
        &standard.scale().unwrap(),
        &case.standard.scale,
        1e-9,
    );
    // Transforming runs in f32 on the device.
    let x = whole::<D>(case, device);
    let y = standard.transform(x.clone()).unwrap();
    assert_close(
        &at("transform"),
        &values(y.clone()),
        &case.standard.transformed,
        1e-5,
    );
    let back = standard.inverse_transform(y).unwrap();
    assert_close_above(&at("inverse"), &values(back), &case.data, 1e-6, 1.0);

    let mut no_mean = StandardScaler::new(case.axis).with_mean(false);
    no_mean.fit(batches::<D>(case, device)).unwrap();
    assert_close(
        &at("with_mean = false"),
        &values(no_mean.transform(x.clone()).unwrap()),
        &case.standard_no_mean.transformed,
        1e-5,
    );
    let mut no_std = StandardScaler::new(case.axis).with_std(false);
    no_std.fit(batches::<D>(case, device)).unwrap();
    // x - mean at 1e4 cancels in f32: the error is f32's at the data's scale.
    assert_close_above(
        &at("with_std = false"),
        &values(no_std.transform(x.clone()).unwrap()),
        &case.standard_no_std.transformed,
        1e-6,
        1e4,
    );

    let mut min_max = MinMaxScaler::new(case.axis);
    min_max.fit(batches::<D>(case, device)).unwrap();
    // Exact, but serde_json's default float parser may round the fixture's
    // decimal one f64 step off.
    close64(
        &at("data_min"),
        &min_max.data_min().unwrap(),
        &case.min_max.data_min,
        1e-15,
    );
    close64(
        &at("data_max"),
        &min_max.data_max().unwrap(),
        &case.min_max.data_max,
        1e-15,
    );
    close64(
        &at("min-max scale"),
        &min_max.scale().unwrap(),
        &case.min_max.scale,
        1e-12,
    );
    close64(
        &at("min-max min_"),
        &min_max.offset().unwrap(),
        &case.min_max.min,
        1e-12,
    );
    let y = min_max.transform(x.clone()).unwrap();
    assert_close(
        &at("min-max transform"),
        &values(y.clone()),
        &case.min_max.transformed,
        1e-5,
    );
    let back = min_max.inverse_transform(y).unwrap();
    assert_close_above(&at("min-max inverse"), &values(back), &case.data, 1e-6, 1.0);

    let mut ranged = MinMaxScaler::new(case.axis)
        .with_range(case.min_max_range.low, case.min_max_range.high)
        .unwrap();
    ranged.fit(batches::<D>(case, device)).unwrap();
    close64(
        &at("range scale"),
        &ranged.scale().unwrap(),
        &case.min_max_range.scale,
        1e-12,
    );
    close64(
        &at("range min_"),
        &ranged.offset().unwrap(),
        &case.min_max_range.min,
        1e-12,
    );
    assert_close(
        &at("range transform"),
        &values(ranged.transform(x).unwrap()),
        &case.min_max_range.transformed,
        1e-5,
    );
}

fn scalers_match_scikit_learn(device: &Device) {
    for case in fixtures().cases {
        match case.shape.len() {
            2 => check_case::<2>(&case, device),
            4 => check_case::<4>(&case, device),
            r => panic!("rank {r}"),
        }
    }
}

on_every_backend!(scalers_match_scikit_learn);

/// Fitting over any split into batches gives the statistics of fitting at
/// once: twenty pseudo-random splits of 1,000 rows, 1e-12 relative.
#[test]
fn any_split_fits_the_same() {
    let device = Device::flex();
    let (n, f) = (1000, 4);
    let data: Vec<f32> = (0..n * f)
        .map(|i| (i as f32 * 0.618).sin() * 3.0 + (i % f) as f32 * 1e3)
        .collect();
    let rows = |a: usize, b: usize| {
        Tensor::<2>::from_data(
            TensorData::new(data[a * f..b * f].to_vec(), [b - a, f]),
            &device,
        )
    };
    let mut once = StandardScaler::new(1);
    once.partial_fit(&rows(0, n)).unwrap();
    let reference = once.moments().unwrap().clone();
    let mut state = 12345u64;
    for split in 0..20 {
        let mut scaler = StandardScaler::new(1);
        let mut start = 0;
        while start < n {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = 1 + (state >> 33) as usize % 300;
            let end = (start + len).min(n);
            scaler.partial_fit(&rows(start, end)).unwrap();
            start = end;
        }
        let m = scaler.moments().unwrap();
        assert_eq!(m.count, reference.count);
        close64(
            &format!("split {split} mean"),
            &m.mean,
            &reference.mean,
            1e-12,
        );
        close64(&format!("split {split} m2"), &m.m2, &reference.m2, 1e-12);
        assert_eq!((&m.min, &m.max), (&reference.min, &reference.max));
    }
}

#[test]
fn scalers_fail_clearly() {
    let device = Device::flex();
    let x = Tensor::<2>::from_floats([[1.0, f32::NAN], [2.0, 3.0]], &device);
    let err = StandardScaler::new(1).partial_fit(&x).unwrap_err();
    assert_eq!(
        err.to_string(),
        "StandardScaler: the data holds a non-finite value (NaN) at flat index 1"
    );
    let ok = Tensor::<2>::from_floats([[1.0, 2.0], [3.0, 4.0]], &device);
    assert_eq!(
        StandardScaler::new(1).transform(ok.clone()).unwrap_err(),
        NormError::NotFitted {
            scaler: "StandardScaler"
        }
    );
    let mut scaler = MinMaxScaler::new(1);
    scaler.partial_fit(&ok).unwrap();
    let three = Tensor::<2>::zeros([2, 3], &device);
    assert_eq!(
        scaler.transform(three.clone()).unwrap_err().to_string(),
        "MinMaxScaler: fitted on 2 features, got data with 3"
    );
    assert!(scaler.partial_fit(&three).is_err());
    assert_eq!(
        MinMaxScaler::new(1)
            .with_range(1.0, 1.0)
            .unwrap_err()
            .to_string(),
        "MinMaxScaler: invalid config: `feature_range` must be finite (low, high) with low < high, got (1, 1)"
    );
    assert!(StandardScaler::new(2).partial_fit(&ok).is_err());
    // An empty batch is refused, as scikit-learn does ("0 sample(s)"):
    // its statistics would be 0 / 0.
    let empty = Tensor::<2>::zeros([0, 2], &device);
    let err = StandardScaler::new(1).partial_fit(&empty).unwrap_err();
    assert!(matches!(err, NormError::InvalidInput { .. }), "{err}");
    assert!(MinMaxScaler::new(1).partial_fit(&empty).is_err());
}

/// A fitted scaler survives JSON exactly (f64 values round-trip).
#[test]
fn fitted_scalers_serialize_exactly() {
    let device = Device::flex();
    let mut scaler = StandardScaler::new(1).with_std(true);
    scaler
        .partial_fit(&Tensor::<2>::from_floats(
            [[0.1, 1e4], [0.7, 1e4 + 0.01]],
            &device,
        ))
        .unwrap();
    let json = serde_json::to_string(&scaler).unwrap();
    let back: StandardScaler = serde_json::from_str(&json).unwrap();
    assert_eq!(back, scaler);
    let mut mm = MinMaxScaler::new(0).with_range(-2.0, 2.0).unwrap();
    mm.partial_fit(&Tensor::<1>::from_floats([0.25, 3.0], &device))
        .unwrap();
    let back: MinMaxScaler = serde_json::from_str(&serde_json::to_string(&mm).unwrap()).unwrap();
    assert_eq!(back, mm);
}
