//! A small, reproducible random number generator (SplitMix64).
//!
//! Why not the `rand` crate: training must be bit-reproducible from a seed and resumable from a
//! checkpoint, so the whole generator state has to be a few plain integers that can be written
//! into checkpoint metadata and read back. SplitMix64 (Steele, Lea, Flood 2014) passes BigCrush,
//! accepts any 64-bit seed (including 0) and its state is one `u64`. The only other state is the
//! spare value of the Box–Muller transform, kept as `f64` bits so it round-trips exactly.

/// Marks "no spare Box–Muller value" in the second state word. It is a NaN bit pattern, and
/// Box–Muller never produces NaN, so it cannot collide with a real spare value.
const NO_SPARE: u64 = u64::MAX;

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a strong 64-bit mixer, also used to derive seeds.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Deterministic generator; see the module documentation.
#[derive(Clone, Debug, PartialEq)]
pub struct Rng {
    state: u64,
    /// Second Box–Muller output, as `f64` bits, or `NO_SPARE`.
    spare: u64,
}

impl Rng {
    /// A generator seeded with `seed`; equal seeds give equal sequences.
    pub fn new(seed: u64) -> Self {
        Rng {
            state: seed,
            spare: NO_SPARE,
        }
    }

    /// The complete state, for saving in a checkpoint.
    pub fn state(&self) -> [u64; 2] {
        [self.state, self.spare]
    }

    /// Rebuilds a generator from [`Rng::state`]; it continues the identical sequence.
    pub fn from_state(state: [u64; 2]) -> Self {
        Rng {
            state: state[0],
            spare: state[1],
        }
    }

    /// The state as text (`"<hex>:<hex>"`), convenient for string-valued checkpoint metadata.
    pub fn state_string(&self) -> String {
        format!("{:016x}:{:016x}", self.state, self.spare)
    }

    /// Parses [`Rng::state_string`]; `None` if malformed.
    pub fn from_state_string(s: &str) -> Option<Self> {
        let (a, b) = s.trim().split_once(':')?;
        let a = u64::from_str_radix(a, 16).ok()?;
        let b = u64::from_str_radix(b, 16).ok()?;
        Some(Rng::from_state([a, b]))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// The high half of `next_u64` (the better-mixed bits).
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in [0, 1), with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [a, b).
    pub fn uniform(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.next_f64()
    }

    /// Uniform integer in [0, n), without modulo bias (Lemire's multiply-and-reject).
    /// Returns 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let threshold = n.wrapping_neg() % n; // 2^64 mod n
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// Standard normal (mean 0, standard deviation 1), by the Box–Muller transform; every second
    /// call returns the cached spare value.
    pub fn normal(&mut self) -> f64 {
        if self.spare != NO_SPARE {
            let z = f64::from_bits(self.spare);
            self.spare = NO_SPARE;
            return z;
        }
        // 1 - u is in (0, 1], so ln never sees 0.
        let u1 = 1.0 - self.next_f64();
        let u2 = self.next_f64();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = std::f64::consts::TAU * u2;
        self.spare = (r * theta.sin()).to_bits();
        r * theta.cos()
    }

    /// Uniformly random permutation in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_seed_dependent() {
        let a: Vec<u64> = {
            let mut r = Rng::new(42);
            (0..100).map(|_| r.next_u64()).collect()
        };
        let mut r = Rng::new(42);
        let b: Vec<u64> = (0..100).map(|_| r.next_u64()).collect();
        assert_eq!(a, b);
        let mut r = Rng::new(43);
        let c: Vec<u64> = (0..100).map(|_| r.next_u64()).collect();
        assert_ne!(a, c);
        // Reference values of SplitMix64 for seed 0 (from the published C implementation).
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn ranges() {
        let mut r = Rng::new(7);
        for _ in 0..100_000 {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
            let u = r.uniform(-3.0, 5.0);
            assert!((-3.0..5.0).contains(&u));
            assert!(r.below(10) < 10);
        }
        assert_eq!(r.below(0), 0);
        assert_eq!(r.below(1), 0);
    }

    #[test]
    fn uniform_mean() {
        let mut r = Rng::new(3);
        let n = 100_000;
        let mean = (0..n).map(|_| r.next_f64()).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
        let mut counts = [0usize; 10];
        for _ in 0..n {
            counts[r.below(10) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn normal_moments() {
        let mut r = Rng::new(12345);
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        assert!(xs.iter().all(|x| x.is_finite()));
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var.sqrt() - 1.0).abs() < 0.02, "std {}", var.sqrt());
        // About 68.3% within one standard deviation.
        let within = xs.iter().filter(|x| x.abs() < 1.0).count() as f64 / n as f64;
        assert!((within - 0.6827).abs() < 0.01, "within 1 sd: {within}");
    }

    #[test]
    fn state_round_trip_continues_sequence() {
        let mut r = Rng::new(99);
        r.next_u64();
        r.normal(); // leaves a spare value cached
        let saved = r.state();
        assert_ne!(saved[1], NO_SPARE);
        let text = r.state_string();
        let expected: Vec<f64> = (0..50).map(|_| r.normal() + r.next_f64()).collect();

        let mut restored = Rng::from_state(saved);
        let got: Vec<f64> = (0..50)
            .map(|_| restored.normal() + restored.next_f64())
            .collect();
        assert_eq!(
            expected.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            got.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        let mut parsed = Rng::from_state_string(&text).expect("valid state string");
        assert_eq!(parsed.state(), saved);
        let again: Vec<f64> = (0..50)
            .map(|_| parsed.normal() + parsed.next_f64())
            .collect();
        assert_eq!(
            expected.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            again.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        assert!(Rng::from_state_string("nonsense").is_none());
    }

    #[test]
    fn shuffle_is_a_permutation_and_reproducible() {
        let mut v: Vec<usize> = (0..1000).collect();
        Rng::new(5).shuffle(&mut v);
        let mut w: Vec<usize> = (0..1000).collect();
        Rng::new(5).shuffle(&mut w);
        assert_eq!(v, w);
        assert_ne!(v, (0..1000).collect::<Vec<_>>());
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        let mut empty: [u8; 0] = [];
        Rng::new(1).shuffle(&mut empty);
    }
}
