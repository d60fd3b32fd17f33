//! Whether this machine's cores share a cache right now: the time to read
//! 1 MiB that the other thread has just written, against 1 MiB that the
//! reading thread wrote itself.
//!
//! ```sh
//! cargo bench --bench cross_core            # one line for people
//! cargo bench --bench cross_core -- --json  # one JSON object
//! ```
//!
//! On this project's 2-vCPU machine the ratio is about 1.2 most of the
//! time and about 2.7 in stretches of seconds to minutes. In those
//! stretches two independent single-threaded processes keep their speed,
//! but work split over two threads that hand data to each other does not:
//! burn-norm's LayerNorm [4096, 128] forward on two threads runs at its
//! one-thread speed (docs/benchmarks.md, sixth session).
//! `benches/compare.py --phase` runs this before each run and counts the
//! runs that fell in such a stretch.
//!
//! Only the first value of each cache line is read, so that the time is
//! the lines' transfer, not the additions.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Barrier};
use std::time::Instant;

/// Values per buffer: 1 MiB of `u32`.
const VALUES: usize = 1 << 18;
/// Values per 64-byte cache line.
const PER_LINE: usize = 16;
/// Rounds; each thread reads the shared buffer in half of them.
const ROUNDS: usize = 400;

fn write(buffer: &[AtomicU32], round: usize) {
    for (i, v) in buffer.iter().enumerate() {
        v.store((i + round) as u32, Relaxed);
    }
}

/// Microseconds to read the first value of each line of `buffer`.
fn read(buffer: &[AtomicU32]) -> f64 {
    let start = Instant::now();
    let mut sum = 0u32;
    for v in buffer.iter().step_by(PER_LINE) {
        sum = sum.wrapping_add(v.load(Relaxed));
    }
    std::hint::black_box(sum);
    start.elapsed().as_secs_f64() * 1e6
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// What one thread measured: medians of its reads, microseconds.
struct Reads {
    /// Of the buffer the other thread had just written.
    other: f64,
    /// Of its own buffer, just written by itself.
    own: f64,
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let buffer = || (0..VALUES).map(|_| AtomicU32::new(0)).collect::<Vec<_>>();
    let shared = Arc::new(buffer());
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|me| {
            let (shared, barrier) = (shared.clone(), barrier.clone());
            std::thread::spawn(move || {
                let own_buffer = buffer();
                let (mut other, mut own) = (Vec::new(), Vec::new());
                for round in 0..ROUNDS {
                    // The threads take turns: one writes, then the other reads.
                    if round % 2 == me {
                        write(&shared, round);
                    }
                    barrier.wait();
                    if round % 2 != me {
                        other.push(read(&shared));
                    }
                    barrier.wait();
                    write(&own_buffer, round);
                    own.push(read(&own_buffer));
                    barrier.wait();
                }
                Reads {
                    other: median(other),
                    own: median(own),
                }
            })
        })
        .collect();
    let reads: Vec<Reads> = threads
        .into_iter()
        .map(|t| t.join().expect("a reading thread panicked"))
        .collect();
    // The two threads' mean.
    let other = reads.iter().map(|r| r.other).sum::<f64>() / reads.len() as f64;
    let own = reads.iter().map(|r| r.own).sum::<f64>() / reads.len() as f64;
    let ratio = other / own;
    if json {
        println!("{{\"other_us\": {other:.1}, \"own_us\": {own:.1}, \"ratio\": {ratio:.2}}}");
    } else {
        println!(
            "1 MiB written by the other thread: {other:.1} us; by the reader: {own:.1} us; {ratio:.2}x"
        );
    }
}
