//! Small training helpers shared by the examples: a seeded generator and the
//! learning-rate schedule.

/// SplitMix64: a small seeded generator for shuffling, sampling and
/// augmentation, so runs repeat exactly from `--seed`.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    #[allow(dead_code)] // Not every example samples.
    pub fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    #[allow(dead_code)] // Not every example shuffles.
    pub fn shuffle(&mut self, v: &mut [usize]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// Learning rate at `step` of `total`: linear warm-up over `warmup` steps,
/// then cosine decay from `peak` down to `floor`.
pub fn warmup_cosine(peak: f64, floor: f64, step: usize, total: usize, warmup: usize) -> f64 {
    let warmup = warmup.max(1);
    if step < warmup {
        peak * (step + 1) as f64 / warmup as f64
    } else {
        let t = ((step - warmup) as f64 / (total - warmup).max(1) as f64).min(1.0);
        floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
    }
}
