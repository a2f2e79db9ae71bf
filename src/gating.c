/*
 * gating.c: the softmax gating network.
 *
 * Inputs: Z (n x q, column-major) gating design, W (q x K) gating matrix whose
 * last column is the zero reference, R (n x K) responsibilities (rows sum to
 * one), wt (n) case weights.
 * Computes: eta = Z W (n x K logits), logg (n x K) log gating probabilities by
 * log-sum-exp (a logit of 1e4 gives 0 and -1e4, never NaN), the expected
 * complete-data gating log-likelihood Q(W) = sum_i wt_i sum_k R_ik logg_ik and
 * a damped Newton step on Q over the K - 1 free columns of W.
 */
#include "moe.h"

void gate_logits(const moe_data *d, const double *W, double *eta)
{
  int n = d->n, q = d->q, K = d->K;
  double one = 1.0, zero = 0.0;
  F77_CALL(dgemm)("N", "N", &n, &K, &q, &one, d->Z, &n, W, &q, &zero, eta,
                  &n FCONE FCONE);
}

void gate_logprob_softmax(int n, int K, const double *eta, double *logg)
{
  for (int i = 0; i < n; i++) {
    double mx = R_NegInf;
    for (int k = 0; k < K; k++) {
      double e = eta[i + (R_xlen_t) k * n];
      if (e > mx) mx = e;
    }
    double s = 0.0;
    for (int k = 0; k < K; k++) s += exp(eta[i + (R_xlen_t) k * n] - mx);
    double lse = mx + log(s);
    for (int k = 0; k < K; k++)
      logg[i + (R_xlen_t) k * n] = eta[i + (R_xlen_t) k * n] - lse;
  }
}

double gate_expected_loglik(const moe_data *d, const double *R,
                            const double *logg)
{
  int n = d->n, K = d->K;
  double Q = 0.0;
  for (int k = 0; k < K; k++) {
    const double *Rk = R + (R_xlen_t) k * n, *lk = logg + (R_xlen_t) k * n;
    for (int i = 0; i < n; i++)
      if (Rk[i] > 0.0 && d->wt[i] > 0.0) Q += d->wt[i] * Rk[i] * lk[i];
  }
  return Q;
}

/*
 * Newton direction of the penalised expected gating log-likelihood from its
 * accumulated sums. grad ((K - 1) q, block k holds sum_i wt_i (R_ik - pi_ik)
 * z_i) and hess (the negative Hessian as K (K - 1) / 2 symmetric q x q blocks
 * (k, l), l <= k < K - 1, block index k (k + 1) / 2 + l, each packed lower by
 * columns: entry (a, b), a >= b, at b q - b (b - 1) / 2 + a - b, holding
 * sum_i wt_i pi_ik (delta_kl - pi_il) z_ia z_ib). Writes g = grad - ridge W
 * (g may alias grad) and delta = (H + ridge I)^{-1} g. work: 2 m^2 doubles,
 * m = (K - 1) q; hess may alias work + m^2 (it is read before that half is
 * written). Returns MOE_OK, MOE_NOT_PD (a ridge was needed) or MOE_GATE_STEP
 * (no factorisation: delta is not set and no step must be taken).
 */
int gate_newton_direction(int q, int K, const double *grad, const double *hess,
                          const double *W, double ridge, double *g,
                          double *delta, double *work)
{
  int m = (K - 1) * q, Tq = q * (q + 1) / 2;
  double *H = work, *Hsave = work + (R_xlen_t) m * m;
  for (int j = 0; j < m; j++) g[j] = grad[j] - ridge * W[j];
  for (int k = 0; k < K - 1; k++) {
    for (int l = 0; l <= k; l++) {
      const double *blk = hess + (R_xlen_t) (k * (k + 1) / 2 + l) * Tq;
      int t = 0;
      for (int b = 0; b < q; b++) {
        for (int a = b; a < q; a++, t++) {
          /* the block is symmetric: (a, b) and (b, a) hold the same sum */
          H[(k * q + a) + (R_xlen_t) (l * q + b) * m] = blk[t];
          if (k > l) H[(k * q + b) + (R_xlen_t) (l * q + a) * m] = blk[t];
        }
      }
    }
  }
  for (int j = 0; j < m; j++) H[j + (R_xlen_t) j * m] += ridge;
  int rc = chol_factor_ridge(m, H, Hsave, 1e-10);
  if (rc < 0) return MOE_GATE_STEP;
  for (int j = 0; j < m; j++) delta[j] = g[j];
  chol_solve_factored(m, H, delta, 1);
  return rc > 0 ? MOE_NOT_PD : MOE_OK;
}

/*
 * One Newton step with step halving on Q(W) - ridge/2 ||W||^2.
 * On entry eta and logg hold the logits and log probabilities at W; on exit
 * they hold them at the (possibly unchanged) updated W. The step is accepted
 * only when the penalised Q does not decrease, so EM stays monotone.
 * work: needs 2 m^2 + 3 m + 2 n + n K doubles, m = (K - 1) q.
 * Returns MOE_OK, or MOE_GATE_STEP / MOE_NOT_PD flags.
 * The EM loop (em.c) does the same step from sums accumulated in its fused
 * pass; both share gate_newton_direction().
 */
int gate_newton_step(const moe_data *d, const double *R, double *W,
                     double *eta, double *logg, double ridge, double *work)
{
  int n = d->n, q = d->q, K = d->K, m = (K - 1) * q, status = MOE_OK;
  if (K < 2) return MOE_OK;
  int Tq = q * (q + 1) / 2, P = K * (K - 1) / 2;
  double *Hwork = work, *hess = work + (R_xlen_t) m * m;
  double *g = hess + (R_xlen_t) m * m, *delta = g + m, *Wold = delta + m;
  /* pik (K - 1 doubles) is only used before eta_new, so it may run into it */
  double *pik = Wold + m, *eta_new = pik + 2 * (R_xlen_t) n;
  const double *Z = d->Z, *wt = d->wt;

  /* sums of the gradient and of the negative Hessian blocks, row by row */
  for (int j = 0; j < m; j++) g[j] = 0.0;
  for (R_xlen_t t = 0; t < (R_xlen_t) P * Tq; t++) hess[t] = 0.0;
  for (int i = 0; i < n; i++) {
    double w = wt[i];
    for (int k = 0; k < K - 1; k++) pik[k] = exp(logg[i + (R_xlen_t) k * n]);
    for (int k = 0; k < K - 1; k++) {
      double v = w * (R[i + (R_xlen_t) k * n] - pik[k]);
      for (int a = 0; a < q; a++) g[k * q + a] += v * Z[i + (R_xlen_t) a * n];
      for (int l = 0; l <= k; l++) {
        double c = w * pik[k] * ((k == l ? 1.0 : 0.0) - pik[l]);
        double *blk = hess + (R_xlen_t) (k * (k + 1) / 2 + l) * Tq;
        int t = 0;
        for (int b = 0; b < q; b++) {
          double cz = c * Z[i + (R_xlen_t) b * n];
          for (int a = b; a < q; a++, t++) blk[t] += cz * Z[i + (R_xlen_t) a * n];
        }
      }
    }
  }
  int rc = gate_newton_direction(q, K, g, hess, W, ridge, g, delta, Hwork);
  if (rc == MOE_GATE_STEP) return MOE_GATE_STEP;
  status |= rc;

  double pen_old = 0.0;
  for (int j = 0; j < m; j++) { Wold[j] = W[j]; pen_old += W[j] * W[j]; }
  double Q_old = gate_expected_loglik(d, R, logg) - 0.5 * ridge * pen_old;
  double gain = 0.0;
  for (int j = 0; j < m; j++) gain += g[j] * delta[j];
  if (!(gain > 1e-13 * (1.0 + fabs(Q_old)))) return status; /* at the optimum */

  double t = 1.0;
  for (int h = 0; h < 20; h++, t *= 0.5) {
    double pen = 0.0;
    for (int j = 0; j < m; j++) {
      W[j] = Wold[j] + t * delta[j];
      pen += W[j] * W[j];
    }
    gate_logits(d, W, eta_new);
    gate_logprob_softmax(n, K, eta_new, logg); /* restored on rejection */
    double Q_new = gate_expected_loglik(d, R, logg) - 0.5 * ridge * pen;
    /* rounding in a sum of n terms must not reject a true ascent step */
    if (R_FINITE(Q_new) && Q_new >= Q_old - 1e-13 * (1.0 + fabs(Q_old))) {
      for (R_xlen_t t2 = 0; t2 < (R_xlen_t) n * K; t2++) eta[t2] = eta_new[t2];
      return status;
    }
  }
  for (int j = 0; j < m; j++) W[j] = Wold[j];
  gate_logprob_softmax(n, K, eta, logg);
  return status | MOE_GATE_STEP;
}
