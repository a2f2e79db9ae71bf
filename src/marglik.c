/*
 * marglik.c: log density of the importance density used by bridge sampling
 * of the marginal likelihood (R/marglik.R, proposal = "mixture").
 *
 * The importance density is a mixture over M components, each a product
 * over K expert "slots" of factors f_mi(psi) on the per-expert parameters
 * psi_j = (a_j, sigma2_j, d_j) of a draw: expert coefficients a_j (p),
 * variance sigma2_j and centred gating vector d_j = w_j - mean_k w_k (q;
 * q = 0 when K = 1). It is symmetrised over the K! relabellings of the
 * experts, which permute the psi_j:
 *   g(theta) = (1/M) sum_m exp(cst_m) (1/K!) sum_pi prod_i f_mi(psi_pi(i)).
 * The sum over permutations is a permanent, computed in log space by dynamic
 * programming over subsets of experts (2^K K terms instead of K! K; all terms
 * are positive, so log-sum-exp loses nothing).
 *
 * Factor of slot i of component m at psi = (a, s2, d):
 *   log f = ecst - (p/2 + c + 1) log s2 + log s2 - (|E (a - em)|^2 / 2 + C) / s2
 *           + gcst - |G (d - gm)|^2 / 2
 * i.e. a normal / inverse-gamma density of (a, s2) times the Jacobian s2 of
 * sigma2 -> log sigma2, times a normal density of d. E (p x p) and G (q x q)
 * are any square roots of the precision matrices; ecst and gcst hold the
 * normalising constants.
 *
 * Inputs (all column-major doubles):
 *   a    p x K x N,  s2  K x N,  d  q x K x N   (N points);
 *   em   p x K x M,  E   p x p x K x M,  ec, eC, ecst  K x M;
 *   gm   q x K x M,  G   q x q x K x M,  gcst  K x M;
 *   cst  M (component constants).
 * Writes out[n] = log g at point n, for n < N.
 * Scratch: L (K x K), f (2^K), lm (M), u (max(p, q)).
 * Preconditions: 1 <= K <= 20, s2 > 0.
 */
#include "moe.h"

static int bit_count(unsigned int x)
{
  int c = 0;
  while (x) {
    x &= x - 1;
    c++;
  }
  return c;
}

/* log sum_pi exp(sum_i L[i + pi(i) K]) over the permutations pi of 0..K-1. */
double log_permanent(int K, const double *L, double *f)
{
  unsigned int full = (1u << K) - 1u;
  f[0] = 0.0;
  for (unsigned int mask = 1; mask <= full; mask++) {
    int i = bit_count(mask) - 1;  /* the row assigned when mask is filled */
    double mx = R_NegInf;
    for (int j = 0; j < K; j++) {
      if (!(mask & (1u << j))) continue;
      double v = f[mask ^ (1u << j)] + L[i + j * K];
      if (v > mx) mx = v;
    }
    if (mx == R_NegInf) {
      f[mask] = R_NegInf;
      continue;
    }
    double s = 0.0;
    for (int j = 0; j < K; j++) {
      if (!(mask & (1u << j))) continue;
      s += exp(f[mask ^ (1u << j)] + L[i + j * K] - mx);
    }
    f[mask] = mx + log(s);
  }
  return f[full];
}

/* |A (x - mu)|^2 for an m x m matrix A. */
static double quad_form(int m, const double *A, const double *x,
                        const double *mu, double *u)
{
  for (int r = 0; r < m; r++) u[r] = x[r] - mu[r];
  double s = 0.0;
  for (int r = 0; r < m; r++) {
    double v = 0.0;
    for (int c = 0; c < m; c++) v += A[r + c * m] * u[c];
    s += v * v;
  }
  return s;
}

void mix_logdens(int N, int K, int p, int q, int M, const double *a,
                 const double *s2, const double *d, const double *em,
                 const double *E, const double *ec, const double *eC,
                 const double *ecst, const double *gm, const double *G,
                 const double *gcst, const double *cst, double *out,
                 double *L, double *f, double *lm, double *u)
{
  double lKfact = lgammafn(K + 1.0), lM = log((double) M);
  for (int n = 0; n < N; n++) {
    const double *an = a + (R_xlen_t) n * p * K;
    const double *sn = s2 + (R_xlen_t) n * K;
    const double *dn = d + (R_xlen_t) n * q * K;
    double mx = R_NegInf;
    for (int m = 0; m < M; m++) {
      for (int i = 0; i < K; i++) {
        R_xlen_t mi = (R_xlen_t) m * K + i;
        const double *Emi = E + mi * p * p, *emi = em + mi * p;
        const double *Gmi = G + mi * q * q, *gmi = gm + mi * q;
        for (int j = 0; j < K; j++) {
          double sj = sn[j], ls = log(sj);
          double qa = quad_form(p, Emi, an + (R_xlen_t) j * p, emi, u);
          double v = ecst[mi] - (0.5 * p + ec[mi]) * ls - (0.5 * qa + eC[mi]) / sj;
          if (q > 0) {
            v += gcst[mi] - 0.5 * quad_form(q, Gmi, dn + (R_xlen_t) j * q, gmi, u);
          }
          L[i + j * K] = v;
        }
      }
      lm[m] = log_permanent(K, L, f) + cst[m];
      if (lm[m] > mx) mx = lm[m];
    }
    double s = 0.0;
    if (mx > R_NegInf) for (int m = 0; m < M; m++) s += exp(lm[m] - mx);
    out[n] = (mx > R_NegInf ? mx + log(s) : R_NegInf) - lM - lKfact;
    if (n % 256 == 255) R_CheckUserInterrupt();
  }
}
