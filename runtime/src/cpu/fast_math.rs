//! Branch-free f32 `exp` and `erf` that the compiler vectorises (libm's are calls, one value
//! at a time, and were a third of a GELU): Cephes' `expf`, as PyTorch's vectorised kernels
//! use (range reduction by ln 2, a degree-6 polynomial, 2^n built in the exponent bits; about
//! 1 ulp), and a rational `erf` without `exp` (see [`erf_f32`]). The f64 reference keeps libm's.

/// e^x for f32, saturating to 0 below -87.3 and to f32::MAX's neighbourhood above 88.7.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.336_55, 88.376_26);
    // Rounded to the nearest integer by the 1.5 * 2^23 trick (floor is a libm call on the
    // baseline x86-64 target, which stops the loop vectorising).
    const ROUND: f32 = 12_582_912.0;
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // n itself sits in the low mantissa bits of `shifted` (|n| < 2^22): read there, it needs
    // no float-to-int conversion, which Rust saturates lane by lane in scalar code.
    let n_int = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let bits = (n_int.wrapping_add(127) as u32) << 23;
    e * f32::from_bits(bits)
}

/// erf(x) for f32 as x P(x^2) / Q(x^2), P and Q of degree 5, on x clamped to [-4, 4] (beyond,
/// erf is 1 to within f32's rounding): eleven multiply-adds and one division, no `exp` and no
/// second formula near 0 (the form is relatively accurate there): about half the operations
/// of A&S 7.1.26 with `exp_f32`, which was most of a fused GELU's loop. The coefficients are a
/// rational least-squares fit of erf(x)/x in float64 (relative error 4e-8, reweighted towards
/// minimax: `benches/erf_fit.py`); in f32 the result is within 4.1e-7 of libm (8 million points),
/// 7 ulp of values near 1, where the old form was within 5.3e-7.
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    const P: [f32; 6] = [
        std::f32::consts::FRAC_2_SQRT_PI, // the fit gives 1.12837916, the same f32
        0.193_249_2,
        5.306_43e-2,
        3.870_547_3e-3,
        2.842_316_7e-4,
        1.988_681_4e-6,
    ];
    const Q: [f32; 6] = [
        1.0,
        0.504_595_4,
        0.115_228_89,
        1.518_25e-2,
        1.182_338_5e-3,
        3.742_192_3e-5,
    ];
    let x = x.clamp(-4.0, 4.0);
    let s = x * x;
    let p = ((((P[5] * s + P[4]) * s + P[3]) * s + P[2]) * s + P[1]) * s + P[0];
    let q = ((((Q[5] * s + Q[4]) * s + Q[3]) * s + Q[2]) * s + Q[1]) * s + Q[0];
    (x * p / q).clamp(-1.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_libm_over_its_range() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp_f32(x), (x as f64).exp());
            let rel = ((got as f64 - want) / want).abs();
            assert!(rel < 2.5e-7, "exp({x}) = {got}, libm {want}: {rel:e}");
            x += 0.013;
        }
        assert_eq!(exp_f32(-200.0), exp_f32(-87.336_55));
        assert!(exp_f32(-200.0) < 1e-37);
    }

    #[test]
    fn erf_is_within_4_5e7_of_libm() {
        // The fit's own error (4e-8 relative) plus the f32 rounding of its terms: 4.1e-7 at
        // worst (near x = 3.4, where erf is within 7 ulp of 1).
        let (mut x, mut worst) = (-6.0f32, 0.0f64);
        while x < 6.0 {
            let (got, want) = (erf_f32(x), libm::erf(x as f64));
            worst = worst.max((got as f64 - want).abs());
            x += 0.001;
        }
        assert!(worst < 4.5e-7, "worst {worst:e}");
        assert_eq!(erf_f32(0.0), 0.0);
        assert_eq!(erf_f32(f32::INFINITY), 1.0);
        assert!(erf_f32(f32::NAN).is_nan());
    }

    #[test]
    fn erf_is_relatively_accurate_near_zero() {
        // A GELU's gradient near 0 reads erf of tiny values: relative, not absolute, error.
        let mut x = 1e-30f32;
        while x < 0.5 {
            let (got, want) = (erf_f32(-x), libm::erf(-x as f64));
            let rel = ((got as f64 - want) / want).abs();
            assert!(rel < 3e-7, "erf({x}) = {got}, libm {want}: {rel:e}");
            x *= 1.01;
        }
    }
}
