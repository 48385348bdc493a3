//! Small numerical kit: negative-binomial tails and log-likelihood ratios, a seeded
//! generator with Poisson, gamma and negative-binomial draws, and a tiny dense solver.
//!
//! Negative binomials are parameterised the way the benchmark states them: mean `mu` and
//! variance `phi * mu` (`phi` = 1 is Poisson). The size is then `mu / (phi - 1)` and the
//! success probability of the usual form is fixed at `1 / phi`, which makes sums of
//! independent counts with the same `phi` negative binomial again (mean adds up). The
//! detectors rely on that: a window sum is tested exactly like a single bucket.

/// Below this dispersion a count is treated as Poisson.
const POISSON_PHI: f64 = 1.0 + 1e-6;

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, n = 9; about 15 significant digits).
pub fn ln_gamma(x: f64) -> f64 {
    const COEF: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = COEF[0];
    let t = x + 7.5;
    for (i, c) in COEF.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// `ln P(X = x)` for X with mean `mu` and variance `phi * mu`.
pub fn nb_ln_pmf(x: u64, mu: f64, phi: f64) -> f64 {
    let xf = x as f64;
    if mu <= 0.0 {
        return if x == 0 { 0.0 } else { f64::NEG_INFINITY };
    }
    if phi <= POISSON_PHI {
        return xf * mu.ln() - mu - ln_gamma(xf + 1.0);
    }
    let size = mu / (phi - 1.0);
    let p = 1.0 / phi;
    ln_gamma(xf + size) - ln_gamma(size) - ln_gamma(xf + 1.0) + size * p.ln() + xf * (1.0 - p).ln()
}

/// `P(X >= x)`: the upper-tail p-value of a count.
///
/// Sums the tail directly from `x` upward when `x` is above the mean, so tiny p-values keep
/// their precision; below the mean it is `1 - P(X < x)`.
pub fn nb_upper_tail(x: u64, mu: f64, phi: f64) -> f64 {
    if x == 0 {
        return 1.0;
    }
    if mu <= 0.0 {
        return 0.0;
    }
    let poisson = phi <= POISSON_PHI;
    let size = if poisson {
        f64::INFINITY
    } else {
        mu / (phi - 1.0)
    };
    let q = if poisson { 0.0 } else { 1.0 - 1.0 / phi };
    // pmf(k + 1) / pmf(k)
    let ratio = |k: f64| {
        if poisson {
            mu / (k + 1.0)
        } else {
            (k + size) / (k + 1.0) * q
        }
    };
    let xf = x as f64;
    if xf > mu {
        let mut term = nb_ln_pmf(x, mu, phi).exp();
        let mut sum = 0.0;
        let mut k = xf;
        for _ in 0..100_000 {
            sum += term;
            term *= ratio(k);
            k += 1.0;
            if term < sum * 1e-14 || term == 0.0 {
                break;
            }
        }
        sum.min(1.0)
    } else {
        let mut term = nb_ln_pmf(0, mu, phi).exp();
        let mut below = 0.0;
        for k in 0..x {
            below += term;
            term *= ratio(k as f64);
        }
        (1.0 - below).clamp(0.0, 1.0)
    }
}

/// Log-likelihood ratio of one count for "mean is `kappa * mu`" against "mean is `mu`",
/// the size of the negative binomial held fixed (Höhle & Paul's NB-CUSUM increment).
pub fn nb_llr(x: f64, mu: f64, phi: f64, kappa: f64) -> f64 {
    if mu <= 0.0 {
        return 0.0;
    }
    if phi <= POISSON_PHI {
        return x * kappa.ln() - (kappa - 1.0) * mu;
    }
    let size = mu / (phi - 1.0);
    let m1 = kappa * mu;
    x * ((m1 * (mu + size)) / (mu * (m1 + size))).ln() + size * ((mu + size) / (m1 + size)).ln()
}

/// Expectation-based Poisson scan score of `observed` against `expected`, scaled by the
/// dispersion: `(C ln(C/B) - (C - B)) / phi` when `C > B`, else 0.
pub fn ebp_score(observed: f64, expected: f64, phi: f64) -> f64 {
    if observed <= expected || expected <= 0.0 {
        return 0.0;
    }
    (observed * (observed / expected).ln() - (observed - expected)) / phi
}

/// A seeded generator (xoshiro256**, seeded through splitmix64). Deterministic on every
/// platform, and never seeded from the clock.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
    spare_normal: Option<f64>,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
            spare_normal: None,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        let radius = (-2.0 * u1.ln()).sqrt();
        let (sin, cos) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare_normal = Some(radius * sin);
        radius * cos
    }

    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape <= 0.0 {
            return 0.0;
        }
        if shape < 1.0 {
            let u = 1.0 - self.uniform();
            return self.gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        // Marsaglia & Tsang.
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = self.uniform();
            if u < 1.0 - 0.0331 * x * x * x * x || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
                return d * v;
            }
        }
    }

    pub fn poisson(&mut self, mu: f64) -> u64 {
        if mu <= 0.0 {
            return 0;
        }
        if mu < 12.0 {
            let limit = (-mu).exp();
            let mut k = 0;
            let mut prod = self.uniform();
            while prod > limit {
                k += 1;
                prod *= self.uniform();
            }
            return k;
        }
        // Hörmann's transformed rejection (PTRS), as in numpy.
        let slam = mu.sqrt();
        let loglam = mu.ln();
        let b = 0.931 + 2.53 * slam;
        let a = -0.059 + 0.02483 * b;
        let invalpha = 1.1239 + 1.1328 / (b - 3.4);
        let vr = 0.9277 - 3.6224 / (b - 2.0);
        loop {
            let u = self.uniform() - 0.5;
            let v = self.uniform();
            let us = 0.5 - u.abs();
            let k = ((2.0 * a / us + b) * u + mu + 0.43).floor();
            if us >= 0.07 && v <= vr {
                return k as u64;
            }
            if k < 0.0 || (us < 0.013 && v > us) {
                continue;
            }
            if v.ln() + invalpha.ln() - (a / (us * us) + b).ln()
                <= -mu + k * loglam - ln_gamma(k + 1.0)
            {
                return k as u64;
            }
        }
    }

    /// A count with mean `mu` and variance `phi * mu` (gamma-Poisson mixture).
    pub fn neg_binomial(&mut self, mu: f64, phi: f64) -> u64 {
        if mu <= 0.0 {
            return 0;
        }
        if phi <= POISSON_PHI {
            return self.poisson(mu);
        }
        let size = mu / (phi - 1.0);
        let lambda = self.gamma(size) * (phi - 1.0);
        self.poisson(lambda)
    }
}

/// Solves `a x = b` for a symmetric positive definite `a` (n x n, row-major) by Cholesky,
/// with a small ridge if the matrix is numerically singular. Returns None if it still fails.
pub fn solve_spd(a: &[f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    for ridge in [0.0, 1e-9, 1e-6, 1e-3] {
        let mut l = vec![0.0; n * n];
        let mut ok = true;
        'outer: for i in 0..n {
            for j in 0..=i {
                let mut sum = a[i * n + j]
                    + if i == j {
                        ridge * (1.0 + a[i * n + i].abs())
                    } else {
                        0.0
                    };
                for k in 0..j {
                    sum -= l[i * n + k] * l[j * n + k];
                }
                if i == j {
                    if sum <= 0.0 || !sum.is_finite() {
                        ok = false;
                        break 'outer;
                    }
                    l[i * n + i] = sum.sqrt();
                } else {
                    l[i * n + j] = sum / l[j * n + j];
                }
            }
        }
        if !ok {
            continue;
        }
        let mut y = vec![0.0; n];
        for i in 0..n {
            let mut sum = b[i];
            for k in 0..i {
                sum -= l[i * n + k] * y[k];
            }
            y[i] = sum / l[i * n + i];
        }
        let mut x = vec![0.0; n];
        for i in (0..n).rev() {
            let mut sum = y[i];
            for k in i + 1..n {
                sum -= l[k * n + i] * x[k];
            }
            x[i] = sum / l[i * n + i];
        }
        return Some(x);
    }
    None
}

/// The `q`-quantile (0..1) of a sample, by sorting a copy.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let idx = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_matches_factorials() {
        assert!((ln_gamma(1.0)).abs() < 1e-12);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
    }

    #[test]
    fn tail_of_poisson_and_negative_binomial_agree_with_sums() {
        // Poisson(2): P(X >= 3) = 1 - e^-2 (1 + 2 + 2)
        let expected = 1.0 - (-2f64).exp() * 5.0;
        assert!((nb_upper_tail(3, 2.0, 1.0) - expected).abs() < 1e-12);
        for &(mu, phi) in &[(0.05, 1.5), (1.0, 3.0), (40.0, 1.5)] {
            for x in [1u64, 3, 10, 80] {
                let direct: f64 = (0..x).map(|k| nb_ln_pmf(k, mu, phi).exp()).sum();
                assert!(
                    (nb_upper_tail(x, mu, phi) - (1.0 - direct)).abs() < 1e-9,
                    "{mu} {phi} {x}"
                );
            }
        }
    }

    #[test]
    fn samplers_have_the_stated_mean_and_variance() {
        let mut rng = Rng::new(7);
        for &(mu, phi) in &[(0.3, 1.5), (5.0, 1.0), (40.0, 3.0)] {
            let n = 40_000;
            let draws: Vec<f64> = (0..n).map(|_| rng.neg_binomial(mu, phi) as f64).collect();
            let mean = draws.iter().sum::<f64>() / n as f64;
            let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n as f64;
            assert!((mean - mu).abs() < 0.05 * mu + 0.02, "mean {mean} vs {mu}");
            assert!(
                (var / (phi * mu) - 1.0).abs() < 0.1,
                "var {var} vs {}",
                phi * mu
            );
        }
    }

    #[test]
    fn cholesky_solves_a_small_system() {
        let a = [4.0, 2.0, 2.0, 3.0];
        let x = solve_spd(&a, &[2.0, 1.0], 2).unwrap();
        assert!((4.0 * x[0] + 2.0 * x[1] - 2.0).abs() < 1e-12);
        assert!((2.0 * x[0] + 3.0 * x[1] - 1.0).abs() < 1e-12);
    }
}
