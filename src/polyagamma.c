/*
 * polyagamma.c: draws from the Polya-Gamma distribution PG(b, z), exact for
 * b <= PG_EXACT_MAX and accurate, at a cost that does not grow with b, above.
 *
 * Computes
 *   rpg1(z)    one draw of PG(1, z), by Devroye's accept-reject method for
 *              J*(1, Z) with Z = |z| / 2, since PG(1, z) = J*(1, Z) / 4
 *              (Polson, Scott & Windle 2013, JASA, section 4);
 *   rpg(b, z)  one draw of PG(b, z) for an integer b >= 1 (a hybrid sampler
 *              in the spirit of Windle, Polson & Scott 2014, arXiv:1405.0506):
 *     b <= 20 (PG_EXACT_MAX): the sum of b independent PG(1, z) draws; exact,
 *              cost linear in b, draws identical to earlier versions;
 *     20 < b < 2^28 (PG_NORMAL_MIN) and |z| < 2 pi 1e8: the series
 *              representation truncated after M = 16 terms with its tail
 *              replaced by a shifted gamma matching the tail's first three
 *              cumulants; cost M + 1 gamma draws, whatever b;
 *     b >= 2^28 or |z| >= 2 pi 1e8: the normal law with the exact mean and
 *              variance of PG(b, z); one normal draw.
 * Inputs: z, a double (the distribution depends on |z| only); b, an int.
 * Writes: nothing; both return the draw.
 *   rpg1_rng(z, g)  rpg1() with the uniform, exponential and normal
 *              variates taken from the generator g (a pg_rng, moe.h)
 *              instead of R's, e.g. a thread's own stream (moe_rng.h); the
 *              same algorithm, so the same law.
 * Preconditions: the caller holds R's RNG (GetRNGstate() once before a loop
 * of draws, PutRNGstate() once after). Randomness of rpg1() and rpg() comes
 * from unif_rand(), exp_rand(), norm_rand() and Rmath's rgamma() only, so
 * set.seed() reproduces the draws. z must be finite (rpolyagamma() checks this in R);
 * so that a kernel caller with a diverged linear predictor cannot hang, NaN z
 * returns NaN and z = +-Inf returns 0, the limit in distribution. b < 1
 * returns 0. No call takes longer than about 20 PG(1, z) draws.
 *
 * Large b. With c = |z| / (2 pi) and d_k = (k - 1/2)^2 + c^2,
 *   PG(b, z) = (1 / (2 pi^2)) sum_{k >= 1} G_k / d_k,  G_k ~ Gamma(b, 1) iid,
 * whose cumulants are kappa_n = b (n - 1)! (2 pi^2)^{-n} sum_k d_k^{-n}.
 * The series sampler draws G_1..G_M exactly and replaces the tail
 * T = sum_{k > M} G_k / d_k by delta + theta Gamma(alpha, 1), with
 * theta = S3 / S2, alpha = b S2^3 / S3^2, delta = b (S1 - S2^2 / S3) >= 0
 * (Cauchy-Schwarz), S_n = sum_{k > M} d_k^{-n}: the same mean, variance and
 * third cumulant as T. S_n is the integral of (y^2 + c^2)^{-n} over
 * (M, Inf) (closed form, below) plus the first Euler-Maclaurin correction of
 * the midpoint rule, -n M / (12 (M^2 + c^2)^{n + 1}); the neglected terms
 * are below 4e-5 of S_n. Accuracy: the first three cumulants of the draw are
 * those of PG(b, z) to rounding; the fourth differs by
 * 6 b (S4 - S3^2 / S2), which moves the excess kurtosis by at most 2.3e-4
 * at b = 21 (the worst z, |z| near 400; less for every larger b, in
 * proportion to 1/b), so the Edgeworth error in the distribution function is
 * below 1e-5, far below what a test of 1e8 draws can see.
 * The normal regime: the skewness of PG(b, z) is at most 1.96 / sqrt(b) (its
 * value at z = 0) and about 1.69 / sqrt(b c) for large c, so the Edgeworth
 * error of the normal law in the distribution function, about 0.066 times
 * the skewness, is below 8e-6 for b >= 2^28 and below 3e-6 for
 * c >= 1e8 (with b > 20).
 * The exact moments: mean b tanh(Z) / (4 Z), variance
 * b (tanh Z - Z sech^2 Z) / (16 Z^3) (= b (sinh z - z) / (4 z^3 cosh^2(z/2))),
 * limits b/4 and b/24 at z = 0, evaluated by their Taylor series for
 * Z < 1e-2 and without overflow for any finite Z.
 *
 * The method. The density of J*(1, Z) is
 *   cosh(Z) exp(-Z^2 x / 2) sum_{n >= 0} (-1)^n a_n(x),
 *   a_n(x) = pi (n + 1/2) (2 / (pi x))^{3/2} exp(-2 (n + 1/2)^2 / x)  x <= t,
 *   a_n(x) = pi (n + 1/2) exp(-(n + 1/2)^2 pi^2 x / 2)                x >  t,
 * with t = 0.64, where the terms decrease in n for every x. The proposal is
 * proportional to exp(-Z^2 x / 2) a_0(x): on (0, t] the inverse Gaussian
 * IG(1/Z, 1) truncated to (0, t], on (t, Inf) the exponential t + Exp(K_Z),
 * K_Z = pi^2 / 8 + Z^2 / 2. The right piece is chosen with probability
 * 1 / (1 + q/p), where q/p = (4/pi)(e^{x_b} + e^{x_a}), x_0 = log K_Z + K_Z t,
 * x_b = x_0 - Z + log Phi((t Z - 1)/sqrt(t)),
 * x_a = x_0 + Z + log Phi(-(t Z + 1)/sqrt(t)).
 * A proposal x is accepted when U <= sum_n (-1)^n a_n(x) / a_0(x), decided
 * by the alternating series test (partial sums bracket the limit).
 *
 * Numerics, for z from 0 up to |z| = 1e300:
 *  - q/p is computed on the natural scale with erfc() from C99's math
 *    library, accurate far into the tail: about 55 ns, against 140 ns for the
 *    same in log space with two pnorm(log.p = TRUE) calls (the set-up is paid
 *    once per draw when every draw has its own z, as in the Gibbs sampler).
 *    Nothing can become NaN: Phi(b) >= Phi(-1.25) > 0; e^{2Z} Phi(a) is
 *    skipped once Phi(a) underflows to 0 (|z| > 93; it is below rounding next
 *    to Phi(b) from |z| = 25 on), before e^{2Z} can overflow (|z| > 709); when
 *    e^{K_Z t - Z} overflows (|z| > 97, or Z^2 overflows) q/p is +Inf and the
 *    right piece probability is exactly 0, its true value being below 1e-308.
 *    Against the log-space formula the probability agrees to 1e-13 relative.
 *    cosh(Z) cancels and is never formed.
 *  - The series test uses the ratios a_n / a_0 = (2n + 1) exp(-2 n (n+1) / x)
 *    (x <= t) or (2n + 1) exp(-n (n+1) pi^2 x / 2) (x > t), so nothing
 *    underflows when x is tiny (x is about 1/|z| for large |z|).
 *  - The inverse Gaussian draw (Michael, Schucany & Haas 1976) is written
 *    without cancellation: with m = mu chi^2_1, the two roots are mu / r and
 *    mu r, r = (sqrt(m) + sqrt(m + 4))^2 / 4 >= 1, and the smaller root is
 *    taken with probability r / (1 + r).
 *
 * The PG_COUNT(what) hook expands to nothing here; bench/polyagamma.R
 * compiles an instrumented copy of this file that defines it to count
 * proposals, left-piece proposals, series terms and the inner loops.
 */
#include "moe.h"

#ifndef PG_COUNT
#define PG_COUNT(what)
#endif

#define PG_T 0.64                                     /* split point t */
#define PG_PI2_8 1.2337005501361697490                /* pi^2 / 8 */
#define PG_PI2_2 4.9348022005446789962                /* pi^2 / 2 */
#define PG_4_PI 1.2732395447351626862                 /* 4 / pi */
#define PG_SQRT_2T 1.1313708498984760390              /* sqrt(2 t) */

/* Everything about J*(1, Z) that does not change between draws. */
typedef struct {
  double Z;        /* |z| / 2 */
  double half_Z2;  /* Z^2 / 2 */
  double rate;     /* K_Z = pi^2/8 + Z^2/2, rate of the right piece */
  double p_right;  /* probability of proposing from the right piece */
  double mu;       /* 1 / Z, mean of the inverse Gaussian (when Z t >= 1) */
} pg_setup;

static pg_setup pg_prepare(double z)
{
  pg_setup s;
  s.Z = 0.5 * fabs(z);
  s.half_Z2 = 0.5 * s.Z * s.Z;
  s.rate = PG_PI2_8 + s.half_Z2;
  s.mu = s.Z > 0.0 ? 1.0 / s.Z : R_PosInf;
  /* q/p = (4/pi) K_Z e^{K_Z t - Z} [Phi(b) + e^{2Z} Phi(a)], with
   * Phi(b) = erfc((1 - tZ)/sqrt(2t))/2 and Phi(a) = erfc((1 + tZ)/sqrt(2t))/2. */
  double phi_b = 0.5 * erfc((1.0 - PG_T * s.Z) / PG_SQRT_2T);
  double phi_a = 0.5 * erfc((1.0 + PG_T * s.Z) / PG_SQRT_2T);
  double m = phi_b;
  if (phi_a > 0.0) m += phi_a * exp(2.0 * s.Z);
  double q_over_p = PG_4_PI * s.rate * exp(s.rate * PG_T - s.Z) * m;
  s.p_right = 1.0 / (1.0 + q_over_p);
  return s;
}

/* R's generator as a pg_rng (rpg1(), rpg()). */
static double pg_r_unif(void *state) { (void) state; return unif_rand(); }
static double pg_r_exp(void *state) { (void) state; return exp_rand(); }
static double pg_r_norm(void *state) { (void) state; return norm_rand(); }
static const pg_rng pg_rng_R = {pg_r_unif, pg_r_exp, pg_r_norm, NULL};

/* A draw from IG(1/Z, 1) truncated to (0, t]. */
static double pg_left(const pg_setup *s, const pg_rng *g)
{
  if (s->Z * PG_T < 1.0) {
    /* Mean 1/Z > t. Propose from the Levy law 1/N^2 restricted to (0, t],
     * i.e. |N| >= 1/sqrt(t), drawing the normal tail by Devroye's
     * exponential rejection; then tilt by exp(-Z^2 x / 2) <= 1. */
    for (;;) {
      double e1, e2;
      do {
        PG_COUNT(levy);
        e1 = g->expo(g->state);
        e2 = g->expo(g->state);
      } while (e1 * e1 > 2.0 * e2 / PG_T);
      double d = 1.0 + PG_T * e1;
      double x = PG_T / (d * d);
      if (s->half_Z2 * x <= g->expo(g->state)) return x;
      PG_COUNT(tilt);
    }
  }
  /* Mean 1/Z <= t: untruncated IG draws until one falls in (0, t]; at least
   * about half of them do. */
  for (;;) {
    double y = g->norm(g->state);
    double m = s->mu * y * y;
    double sq = sqrt(m) + sqrt(m + 4.0);
    double r = 0.25 * sq * sq;
    double x = (g->unif(g->state) * (1.0 + r) <= r) ? s->mu / r : s->mu * r;
    if (x <= PG_T) return x;
    PG_COUNT(ig_trunc);
  }
}

/* One draw of J*(1, Z). */
static double pg_jstar(const pg_setup *s, const pg_rng *g)
{
  for (;;) {
    PG_COUNT(proposal);
    double x;
    if (g->unif(g->state) < s->p_right)
      x = PG_T + g->expo(g->state) / s->rate;
    else {
      PG_COUNT(left);
      x = pg_left(s, g);
    }
    /* log(a_n / a_0) = -c n (n + 1), the form of a_n switching at t. */
    double c = x <= PG_T ? 2.0 / x : PG_PI2_2 * x;
    double u = g->unif(g->state), S = 1.0;
    for (int n = 1;; n++) {
      PG_COUNT(term);
      double an = (2.0 * n + 1.0) * exp(-c * n * (n + 1.0));
      if (n & 1) {
        S -= an;
        if (u <= S) return x;
      } else {
        S += an;
        if (u > S) break;
      }
    }
  }
}

double rpg1_rng(double z, const pg_rng *g)
{
  if (!R_FINITE(z)) return ISNAN(z) ? z : 0.0;
  pg_setup s = pg_prepare(z);
  return 0.25 * pg_jstar(&s, g);
}

double rpg1(double z)
{
  return rpg1_rng(z, &pg_rng_R);
}

/* Exact moments of PG(1, z) as functions of Z = |z| / 2 >= 0. */
static double pg_mean1(double Z)
{
  return Z < 1e-8 ? 0.25 : 0.25 * tanh(Z) / Z;
}

static double pg_var1(double Z)
{
  if (Z < 1e-2) {
    double Z2 = Z * Z;
    return 1.0 / 24 + Z2 * (-1.0 / 30 + Z2 * (17.0 / 840 - Z2 * 31.0 / 2835));
  }
  /* sech^2 Z = 4 e^{-2Z} / (1 + e^{-2Z})^2, finite for every Z */
  double e = exp(-2.0 * Z), sech2 = 4.0 * e / ((1.0 + e) * (1.0 + e));
  return (tanh(Z) - Z * sech2) / (16.0 * Z * Z * Z);
}

/* int_0^phi sin^{2n-2}(psi) dpsi / phi^{2n-1} for n = 2, 3 and 0 <= phi <
 * pi/2: by its Taylor series below phi = 0.25, where the closed form loses
 * digits to cancellation. */
static double pg_jtilde(int n, double phi)
{
  double p2 = phi * phi;
  if (phi >= 0.25) {
    double p3 = p2 * phi;
    if (n == 2) return (2.0 * phi - sin(2.0 * phi)) / (4.0 * p3);
    return (12.0 * phi - 8.0 * sin(2.0 * phi) + sin(4.0 * phi)) / (32.0 * p3 * p2);
  }
  /* sin^2 x = sum_{j >= 1} (-1)^{j+1} 2^{2j-1} x^{2j} / (2j)!,
   * sin^4 x = sum_{j >= 2} (-1)^j (16^j - 4^{j+1}) x^{2j} / (8 (2j)!) */
  double s = 0.0, pw = 1.0, fact = 2.0, four = 4.0, sixteen = 16.0;
  for (int j = 1; j <= 12; j++) {
    if (j > 1) fact *= (2.0 * j - 1.0) * (2.0 * j);
    double sg = (j & 1) ? 1.0 : -1.0, coef;
    if (n == 2) {
      coef = sg * 0.5 * four / fact;
    } else {
      coef = j < 2 ? 0.0 : -sg * (sixteen - 4.0 * four) / (8.0 * fact);
    }
    /* the term x^{2j} integrates to phi^{2j+1} / (2j+1); divided by
     * phi^{2n-1} it is phi^{2j+2-2n} */
    if (coef != 0.0) {
      s += coef * pw / (2.0 * j + 1.0);
      pw *= p2;
    }
    four *= 4.0;
    sixteen *= 16.0;
  }
  return s;
}

#define PG_M 16                 /* terms of the series drawn exactly */
#define PG_C_NORMAL 1e8         /* c from which the normal law is used */

/* The series sampler for PG(b, z), b > PG_EXACT_MAX, c = |z| / (2 pi) <
 * PG_C_NORMAL. */
static double rpg_series(int b, double c)
{
  const double M = PG_M, c2 = c * c, m2c2 = M * M + c2;
  /* I_n = int_M^Inf (y^2 + c^2)^{-n} dy = r^{2n-1} Jtilde_n(phi) with
   * phi = atan(c / M) and r = phi / c (1 / M at c = 0) */
  double u = c / M, phi = atan(u);
  double r = (u < 1e-4 ? 1.0 - u * u / 3.0 : phi / u) / M;
  double r3 = r * r * r, r5 = r3 * r * r;
  double S1 = r - M / (12.0 * m2c2 * m2c2);
  double S2 = r3 * pg_jtilde(2, phi) - 2.0 * M / (12.0 * m2c2 * m2c2 * m2c2);
  double S3 = r5 * pg_jtilde(3, phi) - 3.0 * M / (12.0 * m2c2 * m2c2 * m2c2 * m2c2);
  double bd = (double) b, sum = 0.0;
  for (int k = 1; k <= PG_M; k++) {
    double y = k - 0.5;
    sum += rgamma(bd, 1.0) / (y * y + c2);
  }
  double theta = S3 / S2, alpha = bd * (S2 / S3) * (S2 / S3) * S2;
  double delta = bd * (S1 - S2 * (S2 / S3));
  if (delta < 0.0) delta = 0.0;
  sum += delta + theta * rgamma(alpha, 1.0);
  return sum / (2.0 * M_PI * M_PI);
}

double rpg(int b, double z)
{
  if (b < 1) return 0.0;
  if (!R_FINITE(z)) return ISNAN(z) ? z : 0.0;
  double Z = 0.5 * fabs(z), c = Z / M_PI;
  if (b >= PG_NORMAL_MIN || (b > PG_EXACT_MAX && c >= PG_C_NORMAL)) {
    double m = b * pg_mean1(Z), sd = sqrt(b * pg_var1(Z));
    double x = m + sd * norm_rand();
    /* the mean is at least 1e4 sd above 0 in this regime */
    return x > 0.0 ? x : 0.0;
  }
  if (b > PG_EXACT_MAX) return rpg_series(b, c);
  pg_setup s = pg_prepare(z);
  double sum = 0.0;
  for (int i = 0; i < b; i++) sum += pg_jstar(&s, &pg_rng_R);
  return 0.25 * sum;
}
