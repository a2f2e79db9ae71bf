/*
 * em.c: the log-likelihood pass and the EM algorithm for the softmax-gated
 * linear-Gaussian mixture of experts.
 *
 * Data (moe_data): y (n), X (n x p), Z (n x q), wt (n), column-major.
 * Parameters (moe_par): alpha (p x K), sigma2 (K), W (q x K, last column 0).
 *
 * moe_loglik() is one fused pass over observations and experts: gating
 * logits, log-softmax, Gaussian log densities and log-sum-exp. It is the
 * cost floor that every EM iteration and Gibbs sweep is measured against.
 *
 * moe_em_run() starts from responsibilities R0 (n x K, rows summing to one),
 * performs an M-step and then iterates E-step / M-step until the relative
 * change of the log-likelihood is below ctl->tol or ctl->maxit E-steps were
 * done. The M-step is weighted least squares per expert (experts.c) and
 * ctl->gate_steps damped Newton steps on the gating (gating.c), each of which
 * cannot decrease the expected complete-data log-likelihood, so the observed
 * log-likelihood never decreases (a generalised EM). On return par holds the
 * final parameters, R the responsibilities at those parameters, trace[0 ..
 * iter - 1] the log-likelihood after each E-step, *loglik the last one.
 * Preconditions: n >= 1, K >= 1, wt >= 0, sigma2 > 0 on entry is not needed
 * (the first M-step sets it), column K - 1 of W is zero.
 */
#include "moe.h"

R_xlen_t moe_em_work_size(const moe_data *d)
{
  R_xlen_t n = d->n, p = d->p, K = d->K, m = (K - 1) * d->q;
  R_xlen_t wls = 2 * p * p + p + 2 * n;
  R_xlen_t gate = 2 * m * m + 3 * m + 2 * n + n * K;
  return 3 * n * K + (wls > gate ? wls : gate) + 3 * K;
}

/*
 * E-step: R_ik = g_k(z_i) N(y_i; mu_ik, sigma2_k) / sum_j (...), in log space.
 * ll_i (length n, may be NULL) receives the per-observation log-likelihood.
 * kwork: 2 K doubles. Returns sum_i wt_i ll_i.
 */
double moe_estep(const moe_data *d, const double *logg, const double *mu,
                 const double *sigma2, double *R, double *ll_i, double *kwork)
{
  int n = d->n, K = d->K;
  double total = 0.0, *cst = kwork, *half_prec = kwork + K;
  for (int k = 0; k < K; k++) {
    cst[k] = -0.5 * (LOG_2PI + log(sigma2[k]));
    half_prec[k] = 0.5 / sigma2[k];
  }
  for (int i = 0; i < n; i++) {
    double mx = R_NegInf;
    for (int k = 0; k < K; k++) {
      R_xlen_t ik = i + (R_xlen_t) k * n;
      double r = d->y[i] - mu[ik];
      double l = logg[ik] + cst[k] - r * r * half_prec[k];
      R[ik] = l;
      if (l > mx) mx = l;
    }
    double s = 0.0;
    for (int k = 0; k < K; k++) {
      R_xlen_t ik = i + (R_xlen_t) k * n;
      R[ik] = R_FINITE(mx) ? exp(R[ik] - mx) : 1.0 / K;
      s += R[ik];
    }
    for (int k = 0; k < K; k++) R[i + (R_xlen_t) k * n] /= s;
    double lli = mx + log(s);
    if (ll_i) ll_i[i] = lli;
    if (d->wt[i] > 0.0) total += d->wt[i] * lli;
  }
  return total;
}

/*
 * The log-likelihood sum_i wt_i log sum_k g_k(z_i) N(y_i; x_i'alpha_k,
 * sigma2_k), fused over observations. work: 3 K doubles.
 */
double moe_loglik(const moe_data *d, const moe_par *par, double *work)
{
  int n = d->n, p = d->p, q = d->q, K = d->K;
  const double *X = d->X, *Z = d->Z;
  double *eta = work, *lk = work + K, *cst = work + 2 * K;
  for (int k = 0; k < K; k++) cst[k] = -0.5 * (LOG_2PI + log(par->sigma2[k]));
  double total = 0.0;
  for (int i = 0; i < n; i++) {
    double emax = R_NegInf;
    for (int k = 0; k < K; k++) {
      double e = 0.0, m = 0.0;
      for (int a = 0; a < q; a++) e += Z[i + (R_xlen_t) a * n] * par->W[a + k * q];
      for (int a = 0; a < p; a++) m += X[i + (R_xlen_t) a * n] * par->alpha[a + k * p];
      eta[k] = e;
      if (e > emax) emax = e;
      double r = d->y[i] - m;
      lk[k] = cst[k] - 0.5 * r * r / par->sigma2[k];
    }
    double se = 0.0, lmax = R_NegInf;
    for (int k = 0; k < K; k++) {
      se += exp(eta[k] - emax);
      lk[k] += eta[k];
      if (lk[k] > lmax) lmax = lk[k];
    }
    double sl = 0.0;
    for (int k = 0; k < K; k++) sl += exp(lk[k] - lmax);
    if (d->wt[i] > 0.0)
      total += d->wt[i] * (lmax + log(sl) - emax - log(se));
  }
  return total;
}

static int mstep(const moe_data *d, moe_par *par, const double *R, double *mu,
                 double *eta, double *logg, const moe_em_control *ctl,
                 double *work)
{
  int status = MOE_OK, n = d->n;
  for (int k = 0; k < d->K; k++)
    status |= expert_wls(d, R, k, par->alpha + (R_xlen_t) k * d->p,
                         par->sigma2 + k, mu + (R_xlen_t) k * n, ctl, work);
  for (int s = 0; s < ctl->gate_steps; s++)
    status |= gate_newton_step(d, R, par->W, eta, logg, ctl->ridge, work);
  return status;
}

int moe_em_run(const moe_data *d, moe_par *par, const double *R0,
               const moe_em_control *ctl, double *R, double *trace,
               int *iter, double *loglik, double *work)
{
  int n = d->n, K = d->K;
  R_xlen_t nK = (R_xlen_t) n * K;
  double *eta = work, *logg = eta + nK, *mu = logg + nK, *w2 = mu + nK;

  for (R_xlen_t t = 0; t < nK; t++) R[t] = R0[t];
  for (int k = 0; k < K; k++) {
    par->sigma2[k] = 1.0;
    for (int a = 0; a < d->q; a++) par->W[a + k * d->q] = 0.0;
  }
  expert_means(d, par->alpha, mu);
  gate_logits(d, par->W, eta);
  gate_logprob_softmax(n, K, eta, logg);
  int mstatus = mstep(d, par, R, mu, eta, logg, ctl, w2);
  int status = MOE_OK;
  double ll = R_NegInf, ll_old = R_NegInf;
  int it;
  for (it = 1; ; it++) {
    R_CheckUserInterrupt();
    ll = moe_estep(d, logg, mu, par->sigma2, R, NULL, w2);
    trace[it - 1] = ll;
    if (!R_FINITE(ll)) { status |= MOE_NONFINITE; break; }
    if (it > 1) {
      if (ll < ll_old - 1e-10 * (1.0 + fabs(ll_old))) status |= MOE_DECREASE;
      if (fabs(ll - ll_old) <= ctl->tol * (fabs(ll) + ctl->tol)) break;
    }
    if (it >= ctl->maxit) { status |= MOE_MAXIT; break; }
    ll_old = ll;
    mstatus = mstep(d, par, R, mu, eta, logg, ctl, w2);
  }
  *iter = it;
  *loglik = ll;
  return status | mstatus;
}
