//! Branch-free f32 `exp` and `erf` that the compiler vectorises (libm's are calls, one value
//! at a time, and were a third of a GELU). The same approximations PyTorch's vectorised CPU
//! kernels use: Cephes' `expf` (range reduction by ln 2, a degree-6 polynomial, 2^n built in
//! the exponent bits; about 1 ulp) and Abramowitz and Stegun 7.1.26 for `erf` (absolute error
//! under 1.5e-7, and with the f32 rounding of its terms 5.3e-7 at worst, as in PyTorch's kernel). The f64 reference keeps libm's.

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

/// erf(x) for f32 (A&S 7.1.26 with the vectorisable `exp_f32`).
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_8) * t - 0.284_496_74) * t
        + 0.254_829_6)
        * t;
    let far = 1.0 - poly * exp_f32(-a * a);
    // Near 0 the subtraction above leaves a 6e-8 offset: the Taylor series instead (its
    // first omitted term is under 1e-9 below 0.25), chosen without a branch.
    let s = a * a;
    let near = a
        * std::f32::consts::FRAC_2_SQRT_PI
        * (1.0 + s * (-1.0 / 3.0 + s * (0.1 + s * (-1.0 / 42.0 + s / 216.0))));
    let y = if a < 0.25 { near } else { far };
    y.copysign(x)
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
    fn erf_is_within_6e7_of_libm() {
        // A&S 7.1.26's own error (1.5e-7) plus the f32 rounding of its terms: 5.3e-7 at worst
        // on this grid, a few f32 roundings of values near 0.5.
        let (mut x, mut worst) = (-6.0f32, 0.0f64);
        while x < 6.0 {
            let (got, want) = (erf_f32(x), libm::erf(x as f64));
            worst = worst.max((got as f64 - want).abs());
            x += 0.001;
        }
        assert!(worst < 6e-7, "worst {worst:e}");
        assert_eq!(erf_f32(0.0), 0.0);
    }
}
