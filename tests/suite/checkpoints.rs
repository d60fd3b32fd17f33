//! PyTorch checkpoints in and out (`burn_norm::pytorch`), against models
//! trained in PyTorch by `tests/fixtures/checkpoints.py`: a CNN with every
//! layer of the family between convolutions and linear layers, and a pre-LN
//! transformer block (LayerNorm, attention, LayerNorm, MLP).
//!
//! Loaded from `.pt` and from `.safetensors`, the model evaluates as PyTorch
//! did (1e-5); one more training-mode forward moves the running statistics
//! and the counters as PyTorch's did; exported back to safetensors it
//! reloads to the same outputs. `tests/fixtures/checkpoints.py --check`
//! loads the export in PyTorch with `strict=True` (its output is committed
//! in `tests/fixtures/checkpoint_check.txt`).

use crate::common::{assert_close, tensor, values};
use burn::module::Module;
use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{DType, Device, Tensor};
use burn_norm::pytorch::{load_pytorch, save_pytorch};
use burn_norm::{
    BatchNorm, BatchNormConfig, GroupNorm, GroupNormConfig, InstanceNorm, InstanceNormConfig,
    LayerNorm, LayerNormConfig, NormError, RmsNorm, RmsNormConfig,
};
use serde::Deserialize;

/// The fixture script's `Net`, field for field.
#[derive(Module, Debug)]
pub struct Net {
    conv: Conv2d,
    bn: BatchNorm,
    gn: GroupNorm,
    inorm: InstanceNorm,
    fc: Linear,
    ln: LayerNorm,
    rms: RmsNorm,
    head: Linear,
}

impl Net {
    fn new(device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([1, 4], [3, 3]).init(device),
            bn: BatchNormConfig::new(4).init(device),
            gn: GroupNormConfig::new(2, 4).init(device),
            inorm: InstanceNormConfig::new(4)
                .with_affine(true)
                .with_track_running_stats(true)
                .init(device),
            fc: LinearConfig::new(4 * 6 * 6, 8).init(device),
            ln: LayerNormConfig::new(8).init(device),
            rms: RmsNormConfig::new(8).with_epsilon(1e-6).init(device),
            head: LinearConfig::new(8, 3).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = relu(self.bn.forward(self.conv.forward(x)));
        let x = self.inorm.forward(self.gn.forward(x));
        let x = self.fc.forward(x.flatten(1, 3));
        let x = self.rms.forward(self.ln.forward(x));
        self.head.forward(relu(x))
    }
}

#[derive(Deserialize)]
struct Fixture {
    keys: Vec<String>,
    eval: Io,
    train_step: Step,
}

#[derive(Deserialize)]
struct Io {
    input: Vec<f32>,
    output: Vec<f32>,
}

#[derive(Deserialize)]
struct Step {
    input: Vec<f32>,
    output: Vec<f32>,
    bn_running_mean: Vec<f32>,
    bn_running_var: Vec<f32>,
    bn_num_batches_tracked: u64,
    inorm_running_mean: Vec<f32>,
    inorm_running_var: Vec<f32>,
    inorm_num_batches_tracked: u64,
}

fn fixture() -> Fixture {
    let text = std::fs::read_to_string(path("checkpoint.json")).expect("read");
    serde_json::from_str(&text).expect("parse")
}

fn path(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn loaded(file: &str, device: &Device) -> Net {
    let mut net = Net::new(device);
    load_pytorch(&mut net, path(file)).unwrap_or_else(|e| panic!("{e}"));
    net
}

fn evaluates_as_pytorch(net: &Net, what: &str, device: &Device) {
    let f = fixture();
    let y = net
        .valid()
        .forward(tensor(&f.eval.input, &[3, 1, 8, 8], device));
    assert_close(what, &values(y), &f.eval.output, 1e-5);
}

fn pytorch_checkpoints_load_and_evaluate_alike(device: &Device) {
    for file in ["checkpoint.pt", "checkpoint.safetensors"] {
        let net = loaded(file, device);
        assert_eq!(net.bn.num_batches_tracked(), Some(3), "{file}: counter");
        assert_eq!(net.inorm.num_batches_tracked(), Some(0), "{file}: counter");
        evaluates_as_pytorch(&net, &format!("{file}: evaluation"), device);
    }
}

fn one_more_training_step_updates_statistics_as_pytorch(device: &Device) {
    let f = fixture().train_step;
    let ad = device.clone().autodiff();
    let net = loaded("checkpoint.pt", &ad).train();
    let y = net.forward(tensor(&f.input, &[5, 1, 8, 8], &ad));
    assert_close("training-mode output", &values(y), &f.output, 1e-5);
    let check = |what: &str, t: Option<Tensor<1>>, expected: &[f32]| {
        assert_close(what, &values(t.expect(what)), expected, 1e-5)
    };
    check("bn running_mean", net.bn.running_mean(), &f.bn_running_mean);
    check("bn running_var", net.bn.running_var(), &f.bn_running_var);
    check(
        "inorm running_mean",
        net.inorm.running_mean(),
        &f.inorm_running_mean,
    );
    check(
        "inorm running_var",
        net.inorm.running_var(),
        &f.inorm_running_var,
    );
    assert_eq!(net.bn.num_batches_tracked(), Some(f.bn_num_batches_tracked));
    assert_eq!(
        net.inorm.num_batches_tracked(),
        Some(f.inorm_num_batches_tracked)
    );
}

/// Exported, then loaded again through the PyTorch path: the same model.
/// flex's export is left in the target folder for the fixture script's
/// `--check`.
fn exports_that_reload(device: &Device) {
    let net = loaded("checkpoint.safetensors", device);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    // Cargo makes the folder; a suite binary run elsewhere (a GPU machine
    // without the build) finds none.
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join(format!(
        "burn-norm-exported-{}.safetensors",
        crate::common::name(device)
    ));
    save_pytorch(&net, &file).unwrap_or_else(|e| panic!("{e}"));
    // PyTorch's keys, layouts and counter form, not burn's.
    let mut store = burn_store::SafetensorsStore::from_file(&file);
    let written = burn_store::ModuleStore::get_all_tensors(&mut store).expect("read the export");
    let keys: Vec<&String> = written.keys().collect();
    assert_eq!(keys, fixture().keys.iter().collect::<Vec<_>>());
    let shape = |key: &str| written[key].shape.to_vec();
    assert_eq!(
        shape("fc.weight"),
        [8, 4 * 6 * 6],
        "Linear weights are [out, in]"
    );
    assert_eq!(shape("bn.num_batches_tracked"), Vec::<usize>::new());
    assert_eq!(
        written["bn.num_batches_tracked"].dtype,
        burn::tensor::DType::I64
    );
    let mut again = Net::new(device);
    load_pytorch(&mut again, &file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.bn.num_batches_tracked(), Some(3));
    evaluates_as_pytorch(&again, "exported and reloaded", device);
}

/// The fixture script's pre-LN transformer block; Burn's attention has the
/// script's `Attention` fields (query, key, value, output).
#[derive(Module, Debug)]
pub struct Block {
    ln1: LayerNorm,
    attn: MultiHeadAttention,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl Block {
    fn new(device: &Device) -> Self {
        Self {
            ln1: LayerNormConfig::new(8).init(device),
            attn: MultiHeadAttentionConfig::new(8, 2)
                .with_dropout(0.0)
                .init(device),
            ln2: LayerNormConfig::new(8).init(device),
            fc1: LinearConfig::new(8, 16).init(device),
            fc2: LinearConfig::new(16, 8).init(device),
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone()
            + self
                .attn
                .forward(MhaInput::self_attn(self.ln1.forward(x)))
                .context;
        x.clone()
            + self
                .fc2
                .forward(relu(self.fc1.forward(self.ln2.forward(x))))
    }
}

fn transformer_block_loads_and_evaluates_alike(device: &Device) {
    #[derive(Deserialize)]
    struct BlockFixture {
        eval: Io,
    }
    let text = std::fs::read_to_string(path("block.json")).expect("read");
    let f: BlockFixture = serde_json::from_str(&text).expect("parse");
    let mut block = Block::new(device);
    load_pytorch(&mut block, path("block.pt")).unwrap_or_else(|e| panic!("{e}"));
    let y = block.forward(tensor(&f.eval.input, &[2, 5, 8], device));
    assert_close("transformer block", &values(y), &f.eval.output, 1e-5);
}

/// A model with other shapes or other fields: one error listing every key.
#[test]
fn checkpoints_that_do_not_fit_are_errors_that_list_the_keys() {
    let device = Device::flex();

    #[derive(Module, Debug)]
    struct Wider {
        conv: Conv2d,
        bn: BatchNorm,
        extra: LayerNorm,
    }
    let mut wider = Wider {
        conv: Conv2dConfig::new([1, 5], [3, 3]).init(&device),
        bn: BatchNormConfig::new(5).init(&device),
        extra: LayerNormConfig::new(2).init(&device),
    };
    let err = load_pytorch(&mut wider, path("checkpoint.pt")).unwrap_err();
    let NormError::Checkpoint { problem, .. } = &err else {
        panic!("{err}");
    };
    for part in [
        "missing keys: extra.beta, extra.gamma",
        "unexpected keys:",
        "fc.weight",
        "inorm.running_mean",
        "conv.weight",
        "[5, 1, 3, 3]",
        "[4, 1, 3, 3]",
    ] {
        assert!(problem.contains(part), "`{part}` missing from: {err}");
    }
    let mut net = Net::new(&device);
    let err = load_pytorch(&mut net, path("no-such-file.pt")).unwrap_err();
    assert!(err.to_string().contains("no-such-file.pt"), "{err}");
}

/// Rounds every float tensor of a module through f16, as saving it after
/// PyTorch's `model.half()` does.
struct ThroughHalf;

impl burn::module::ModuleMapper for ThroughHalf {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        // On the host: ndarray stores no f16.
        param.map(|t| {
            let device = t.device();
            let data = t.into_data().convert_dtype(DType::F16);
            Tensor::from_data(data.convert_dtype(DType::F32), &device)
        })
    }
}

/// A checkpoint saved in half precision (`tests/fixtures/checkpoints.py`
/// writes `checkpoint_f16.pt` from `checkpoint.pt`) loads into an f32
/// model as PyTorch's `load_state_dict` does: the values rounded, the
/// model's dtypes kept (burn-store alone would make every tensor f16, and
/// the f32 input then stopped in Burn's convolution). It evaluates as the
/// f32 checkpoint rounded through f16.
fn half_precision_checkpoints_load_into_the_models_dtype(device: &Device) {
    let net = loaded("checkpoint_f16.pt", device);
    let dtypes = [
        net.conv.weight.val().dtype(),
        net.bn.gamma.as_ref().unwrap().val().dtype(),
        net.bn.running_var().unwrap().dtype(),
        net.inorm.running_mean().unwrap().dtype(),
        net.rms.gamma.as_ref().unwrap().val().dtype(),
    ];
    assert_eq!(dtypes, [DType::F32; 5]);
    assert_eq!(net.bn.num_batches_tracked(), Some(3));
    let rounded = loaded("checkpoint.pt", device).map(&mut ThroughHalf);
    let x = tensor(&fixture().eval.input, &[3, 1, 8, 8], device);
    let y = values(net.valid().forward(x.clone()));
    assert_close(
        "f16 checkpoint",
        &y,
        &values(rounded.valid().forward(x)),
        1e-6,
    );
    // The rounding is visible: not the f32 checkpoint's output.
    assert!(
        y.iter()
            .zip(&fixture().eval.output)
            .any(|(a, b)| (a - b).abs() > 1e-4)
    );
}

on_every_backend!(
    transformer_block_loads_and_evaluates_alike,
    pytorch_checkpoints_load_and_evaluate_alike,
    one_more_training_step_updates_statistics_as_pytorch,
    exports_that_reload,
    half_precision_checkpoints_load_into_the_models_dtype,
);

/// A model that holds its floats in several dtypes keeps each of them: its
/// BatchNorm in f64, the rest in f32, loaded from the f16 checkpoint.
#[test]
fn models_of_several_dtypes_keep_each() {
    struct ToF64;
    impl burn::module::ModuleMapper for ToF64 {
        fn map_float<const D: usize>(
            &mut self,
            param: burn::module::Param<Tensor<D>>,
        ) -> burn::module::Param<Tensor<D>> {
            param.map(|t| t.cast(DType::F64))
        }
    }
    let device = Device::flex();
    let mut net = Net::new(&device);
    net.bn = net.bn.map(&mut ToF64);
    load_pytorch(&mut net, path("checkpoint_f16.pt")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(net.bn.gamma.as_ref().unwrap().val().dtype(), DType::F64);
    assert_eq!(net.bn.running_mean().unwrap().dtype(), DType::F64);
    assert_eq!(net.conv.weight.val().dtype(), DType::F32);
    assert_eq!(net.ln.gamma.as_ref().unwrap().val().dtype(), DType::F32);
}
