/*
 * gate_topk.c: the top-k sparse softmax gate. At each z the k largest
 * logits are active (on ties the lower index wins) and
 *     g_k(z) = exp(eta_k - lse_{j active} eta_j) for active k, 0 otherwise;
 * k = K is the softmax.
 *  - EM: a Newton direction for Q over the active sets (the softmax
 *    renormalised over each observation's k active experts), then step
 *    halving on the OBSERVED (penalised) log-likelihood, so a step may change
 *    the active sets and the log-likelihood never decreases; then the same
 *    with the Newton direction of the dense softmax (which sees the experts
 *    an observation would switch to; for k = 1, Q over the active sets is
 *    constant); then a coordinate pattern search on the observed
 *    log-likelihood, which moves active-set boundaries. The first M-step
 *    fits a dense softmax to R0 (from W = 0 every logit ties and the top-k
 *    selection would keep the first k experts everywhere).
 *  - Gibbs: the allocations do not give a tractable conditional (an
 *    allocated expert must stay active), so each free gating vector is
 *    updated by random-walk Metropolis on p(W | alpha, sigma2, y), the
 *    allocations integrated out (the sweep's next allocation draw follows
 *    it, so the chain is a valid blocked Gibbs sampler); the proposal is
 *    N(0, l_k^2 L_k L_k') with l_k adapted towards an acceptance rate of 0.3
 *    and L_k towards the covariance of the block, during warm-up only
 *    (Haario et al., 2001; frozen afterwards and kept in the gate's state,
 *    so a continued chain is identical to one long run).
 */
#include "moe.h"

/* active[l] = 1 when eta_l is among the k largest (ties: lower index). */
void gate_topk_active(int K, int k, const double *eta, R_xlen_t s, int *active)
{
  for (int l = 0; l < K; l++) {
    double el = eta[l * s];
    int above = 0;
    for (int j = 0; j < K && above < k; j++) {
      if (j == l) continue;
      double ej = eta[j * s];
      if (j < l ? ej >= el : ej > el) above++;
    }
    active[l] = above < k;
  }
}


static void topk_logprob(const moe_gate *g, int K, const double *eta,
                         R_xlen_t se, const double *etaV, R_xlen_t sv,
                         double *logg, R_xlen_t sl, int *active)
{
  (void) etaV; (void) sv;
  if (g->topk < K) {
    gate_topk_active(K, g->topk, eta, se, active);
    double lse = lse_strided(K, eta, se, active, 1.0);
    for (int k = 0; k < K; k++)
      logg[k * sl] = active[k] ? eta[k * se] - lse : R_NegInf;
    return;
  }
  double lse = lse_strided(K, eta, se, NULL, 1.0);
  for (int k = 0; k < K; k++) logg[k * sl] = eta[k * se] - lse;
}

/* Per free gating vector, the log scale and the lower Cholesky factor
 * (q x q) of the proposal covariance. */
static int topk_state_size(const moe_gate *g, int q, int K, int learn_tau)
{
  (void) learn_tau;
  return g->topk < K ? (K - 1) * (1 + q * q) : 0;
}

/* ---- EM ---- */

/* Observed log-likelihood sum_i wt_i log sum_k exp(logg_ik + lN_ik). */
static double loglik_from(const moe_data *d, const double *logg,
                          const double *lN)
{
  int n = d->n, K = d->K;
  double total = 0.0;
  for (int i = 0; i < n; i++) {
    if (!(d->wt[i] > 0.0)) continue;
    double mx = R_NegInf;
    for (int k = 0; k < K; k++) {
      double l = logg[i + (R_xlen_t) k * n] + lN[i + (R_xlen_t) k * n];
      if (l > mx) mx = l;
    }
    if (!R_FINITE(mx)) return mx;
    double acc = 0.0;
    for (int k = 0; k < K; k++)
      acc += exp(logg[i + (R_xlen_t) k * n] + lN[i + (R_xlen_t) k * n] - mx);
    total += d->wt[i] * (mx + log(acc));
  }
  return total;
}

/*
 * Newton direction delta (m = (K - 1) q) for sum_i wt_i sum_k R_ik log pi_ik
 * - ridge/2 |W|^2 at W, where pi = exp(lp) (n x K, column-major) is a
 * softmax over each observation's active experts (0 elsewhere, as are the
 * R_ik): the gradient sum_i wt_i (R_ik - pi_ik) z_i and the negative Hessian
 * sum_i wt_i pi_ik (delta_kl - pi_il) z_i z_i' over the free columns (a
 * ridge is added when it is singular: observations whose active set misses
 * the reference leave a flat direction). Returns 1 when delta is an ascent
 * direction, 0 otherwise.
 */
static int topk_direction(const moe_data *d, const double *R, const double *lp,
                          const double *W, double ridge, moe_em_work *s)
{
  int n = d->n, q = d->q, K = d->K, m = (K - 1) * q;
  double *gr = s->g, *H = s->H, *delta = s->delta, *pk = s->kwork;
  for (int j = 0; j < m; j++) gr[j] = -ridge * W[j];
  for (R_xlen_t t = 0; t < (R_xlen_t) m * m; t++) H[t] = 0.0;
  for (int i = 0; i < n; i++) {
    double w = d->wt[i];
    if (!(w > 0.0)) continue;
    for (int k = 0; k < K - 1; k++) pk[k] = exp(lp[i + (R_xlen_t) k * n]);
    for (int k = 0; k < K - 1; k++) {
      double v = w * (R[i + (R_xlen_t) k * n] - pk[k]);
      for (int a = 0; a < q; a++) gr[k * q + a] += v * d->Z[i + (R_xlen_t) a * n];
      if (pk[k] == 0.0) continue;
      for (int l = 0; l <= k; l++) {
        double c = w * pk[k] * ((k == l ? 1.0 : 0.0) - pk[l]);
        if (c == 0.0) continue;
        for (int a = 0; a < q; a++) {
          double cz = c * d->Z[i + (R_xlen_t) a * n];
          for (int b = 0; b < q; b++)
            H[(k * q + a) + (R_xlen_t) (l * q + b) * m] += cz * d->Z[i + (R_xlen_t) b * n];
        }
      }
    }
  }
  /* the lower triangle holds the blocks l <= k, which is all dpotrf reads */
  for (int j = 0; j < m; j++) H[j + (R_xlen_t) j * m] += ridge;
  if (chol_factor_ridge(m, H, s->Hsave, 1e-8) < 0) return 0;
  for (int j = 0; j < m; j++) delta[j] = gr[j];
  chol_solve_factored(m, H, delta, 1);
  double gain = 0.0;
  for (int j = 0; j < m; j++) gain += gr[j] * delta[j];
  return R_FINITE(gain) && gain > 0.0;
}

/* W = Wold + t delta, t = 1, 1/2, ..., accepted when the penalised observed
 * log-likelihood (top-k gate, expert log densities s->lN) is at least L0.
 * On acceptance s->eta and s->logg hold the gate at the new W and the new
 * value is returned; otherwise W is restored and L0 returned. */
static double topk_search(const moe_data *d, const moe_gate *g, moe_vpar *par,
                          double ridge, double L0, moe_em_work *s, int *iwork)
{
  int n = d->n, K = d->K, m = (K - 1) * d->q;
  for (int j = 0; j < m; j++) s->Wold[j] = par->W[j];
  double t = 1.0;
  for (int h = 0; h < 30; h++, t *= 0.5) {
    for (int j = 0; j < m; j++) par->W[j] = s->Wold[j] + t * s->delta[j];
    gate_logits(d, par->W, s->etal);
    gate_logprob(g, n, K, s->etal, NULL, s->loggl, iwork);
    double L1 = loglik_from(d, s->loggl, s->lN) - gate_ridge_penalty(d, g, par, ridge, NULL);
    if (R_FINITE(L1) && L1 >= L0 - 1e-12 * (1.0 + fabs(L0))) {
      for (R_xlen_t u = 0; u < (R_xlen_t) n * K; u++) {
        s->eta[u] = s->etal[u];
        s->logg[u] = s->loggl[u];
      }
      return L1 > L0 ? L1 : L0;
    }
  }
  for (int j = 0; j < m; j++) par->W[j] = s->Wold[j];
  return L0;
}

/*
 * A coordinate pattern search on the free gating coefficients: each
 * coefficient in turn moves by +-h, h = 1, 1/4, 1/16, 1/64 (the covariates
 * are scaled internally), accepted when the penalised OBSERVED
 * log-likelihood increases. Within a configuration of active sets the
 * gradient of the log-likelihood is that of Q over the active sets, which
 * the Newton steps already zero; moving an active-set boundary changes the
 * likelihood by a jump, which only a search over the observed likelihood
 * sees (without it EM stalls where a boundary should move: an expert that
 * is inactive at z_i has responsibility 0 there and is never pulled in).
 * On return s->eta and s->logg hold the gate at the (possibly new) W.
 */
static double topk_pattern(const moe_data *d, const moe_gate *g, moe_vpar *par,
                           double ridge, double L0, moe_em_work *s, int *iwork)
{
  int n = d->n, K = d->K, m = (K - 1) * d->q;
  for (int j = 0; j < m; j++) {
    double h = 1.0;
    for (int r = 0; r < 4; r++, h *= 0.25) {
      int moved = 0;
      for (int sgn = -1; sgn <= 1 && !moved; sgn += 2) {
        double old = par->W[j];
        par->W[j] = old + sgn * h;
        gate_logits(d, par->W, s->etal);
        gate_logprob(g, n, K, s->etal, NULL, s->loggl, iwork);
        double L1 = loglik_from(d, s->loggl, s->lN) - gate_ridge_penalty(d, g, par, ridge, NULL);
        if (R_FINITE(L1) && L1 > L0 + 1e-10 * (1.0 + fabs(L0))) {
          for (R_xlen_t u = 0; u < (R_xlen_t) n * K; u++) {
            s->eta[u] = s->etal[u];
            s->logg[u] = s->loggl[u];
          }
          L0 = L1;
          moved = 1;
        } else {
          par->W[j] = old;
        }
      }
      if (moved) break;
    }
  }
  return L0;
}

/*
 * One top-k gating M-step. On entry s->logg holds the log gating
 * probabilities at W and s->lN the expert log densities after the expert
 * M-step. Two directions are tried in turn, each accepted by halving on the
 * penalised OBSERVED log-likelihood, so the step may change active sets:
 *  1. Newton on Q over the active sets (the softmax renormalised over each
 *     observation's k active experts; R and pi vanish off them);
 *  2. Newton on the dense softmax's Q, with the responsibilities the dense
 *     softmax would give (every expert). Q over the active sets does not
 *     see the benefit of switching an observation's active set (for k = 1
 *     it is constant: the single active expert has weight 1), this one
 *     does.
 */
static int step_topk(const moe_data *d, const moe_gate *g, moe_vpar *par,
                     const double *R, double ridge, moe_em_work *s, int *iwork)
{
  int n = d->n, K = d->K;
  if (K < 2 || g->topk >= K) {
    /* k = K: the softmax (Newton on Q is exact EM) */
    return level_newton(d, d->Z, d->wt, K, R, par->W, ridge, 1, s);
  }
  double L = loglik_from(d, s->logg, s->lN) - gate_ridge_penalty(d, g, par, ridge, NULL);
  if (topk_direction(d, R, s->logg, par->W, ridge, s))
    L = topk_search(d, g, par, ridge, L, s, iwork);
  /* the dense softmax and its responsibilities (s->Rl) at the current W */
  gate_logits(d, par->W, s->etal);
  gate_logprob_softmax(n, K, s->etal, s->loggl);
  for (int i = 0; i < n; i++) {
    double mx = R_NegInf, acc = 0.0;
    for (int k = 0; k < K; k++) {
      double l = s->loggl[i + (R_xlen_t) k * n] + s->lN[i + (R_xlen_t) k * n];
      s->Rl[i + (R_xlen_t) k * n] = l;
      if (l > mx) mx = l;
    }
    for (int k = 0; k < K; k++) {
      double e = R_FINITE(mx) ? exp(s->Rl[i + (R_xlen_t) k * n] - mx) : 1.0;
      s->Rl[i + (R_xlen_t) k * n] = e;
      acc += e;
    }
    for (int k = 0; k < K; k++) s->Rl[i + (R_xlen_t) k * n] /= acc;
  }
  if (topk_direction(d, s->Rl, s->loggl, par->W, ridge, s))
    L = topk_search(d, g, par, ridge, L, s, iwork);
  topk_pattern(d, g, par, ridge, L, s, iwork);
  return MOE_OK;
}


/* On entry s->logg holds the log gating probabilities at W and s->lN the
 * expert log densities after the expert M-step (em.c). */
static int topk_em_mstep(const moe_data *d, moe_gate *g, moe_vpar *par,
                         const double *tau_prior, const double *R,
                         const moe_em_control *ctl, int first, moe_em_work *s,
                         int *iwork)
{
  (void) tau_prior;
  /* first: a dense softmax fitted to R0 gives the first active sets */
  if (first) return level_newton(d, d->Z, d->wt, d->K, R, par->W, ctl->ridge, 25, s);
  return step_topk(d, g, par, R, ctl->ridge, s, iwork);
}

/* ---- Gibbs ---- */

/* Log-likelihood with the allocations integrated out, from log gating
 * probabilities logg (K x n) and the expert log densities s->lN. */
static double collapsed_ll(const moe_data *d, const double *logg,
                           const moe_gibbs_work *s)
{
  int n = d->n, K = d->K;
  double ll = 0.0;
  for (int i = 0; i < n; i++) {
    const double *lg = logg + (R_xlen_t) i * K, *ln = s->lN + (R_xlen_t) i * K;
    double mx = R_NegInf;
    for (int k = 0; k < K; k++) if (lg[k] + ln[k] > mx) mx = lg[k] + ln[k];
    if (!R_FINITE(mx)) return R_NegInf;
    double acc = 0.0;
    for (int k = 0; k < K; k++) acc += exp(lg[k] + ln[k] - mx);
    ll += s->wi[i] * (mx + log(acc));
  }
  return ll;
}

/*
 * Top-k: random-walk Metropolis on each free gating vector for
 * p(W | alpha, sigma2, y) (allocations integrated out). s->lN holds the
 * expert log densities at the current experts (set by the allocation pass before
 * the expert draw, so recomputed here), s->logg the gate at W. state per
 * block: log scale, lower Cholesky factor of the proposal covariance.
 * During warm-up (adapt) the scales follow Robbins-Monro and the factors
 * are reset every 50 sweeps from the running covariance of the block.
 */
static int update_topk(const moe_data *d, const moe_mcmc_prior *pr,
                       const moe_gate *g, const moe_expert_family *ef,
                       moe_vpar *par, double *state, int adapt, int t,
                       int *acc, moe_gibbs_work *s)
{
  int n = d->n, q = d->q, K = d->K, status = MOE_OK;
  /* expert log densities at the experts just drawn */
  ef->mean(ef, d, par->alpha, s->mu, s->xwork);
  ef->logdens(ef, d, s->mu, par->sigma2, s->lN, K, 1);
  eta_rows(n, q, K, s->Zr, par->W, s->eta);
  for (int i = 0; i < n; i++)
    topk_logprob(g, K, s->eta + (R_xlen_t) i * K, 1, NULL, 1,
                     s->logg + (R_xlen_t) i * K, 1, s->active);
  double lcur = collapsed_ll(d, s->logg, s) + gprior_logdens(pr, q, K, par->W);
  for (int k = 0; k < K - 1; k++) {
    double *st = state + (R_xlen_t) k * (1 + q * q), *L = st + 1;
    double sc = exp(st[0]);
    for (int j = 0; j < q * K; j++) s->Wp[j] = par->W[j];
    for (int a = 0; a < q; a++) s->zq[a] = norm_rand();
    for (int a = 0; a < q; a++) {
      double v = 0.0;
      for (int b = 0; b <= a; b++) v += L[a + b * q] * s->zq[b];
      s->Wp[a + k * q] += sc * v;
    }
    for (R_xlen_t u = 0; u < (R_xlen_t) n * K; u++) s->etap[u] = s->eta[u];
    eta_col(n, q, K, s->Zr, s->Wp, k, s->etap);
    for (int i = 0; i < n; i++)
      topk_logprob(g, K, s->etap + (R_xlen_t) i * K, 1, NULL, 1,
                       s->loggp + (R_xlen_t) i * K, 1, s->active);
    double lnew = collapsed_ll(d, s->loggp, s) + gprior_logdens(pr, q, K, s->Wp);
    double la = lnew - lcur;
    if (R_FINITE(lnew) && log(unif_rand()) < la) {
      for (int a = 0; a < q; a++) par->W[a + k * q] = s->Wp[a + k * q];
      double *tmp = s->eta; s->eta = s->etap; s->etap = tmp;
      tmp = s->logg; s->logg = s->loggp; s->loggp = tmp;
      lcur = lnew;
      if (acc) acc[k]++;
    }
    for (int a = 0; a < q; a++) if (!R_FINITE(par->W[a + k * q])) status |= MOE_NONFINITE;
    if (adapt) {
      adapt_scale(&st[0], R_FINITE(la) ? (la >= 0.0 ? 1.0 : exp(la)) : 0.0, t);
      /* running sums of the block: count, sum (q), sum of products (q x q) */
      double *as = s->asums + (R_xlen_t) k * (1 + q + q * q);
      const double *wk = par->W + (R_xlen_t) k * q;
      as[0] += 1.0;
      for (int a = 0; a < q; a++) {
        as[1 + a] += wk[a];
        for (int b = 0; b < q; b++) as[1 + q + a + b * q] += wk[a] * wk[b];
      }
      if (t % 50 == 0 && as[0] >= 2.0 * q + 10.0) {
        /* the shape of the proposal follows the covariance of the block's
         * draws so far (Haario et al.); its size (the determinant of L) is
         * kept, the Robbins-Monro log scale carries on adapting it */
        double cnt = as[0], ldold = 0.0, ldnew = 0.0;
        for (int a = 0; a < q; a++) {
          ldold += log(L[a + a * q]);
          for (int b = 0; b <= a; b++)
            s->cov[a + b * q] = as[1 + q + a + b * q] / cnt -
              as[1 + a] * as[1 + b] / (cnt * cnt) + (a == b ? 1e-10 : 0.0);
        }
        if (chol_factor_ridge(q, s->cov, s->Psave, 1e-8) >= 0) {
          for (int a = 0; a < q; a++) ldnew += log(s->cov[a + a * q]);
          double f = exp((ldold - ldnew) / q);
          if (R_FINITE(f) && f > 0.0)
            for (int a = 0; a < q; a++)
              for (int b = 0; b < q; b++)
                L[a + b * q] = b <= a ? s->cov[a + b * q] * f : 0.0;
        }
      }
    }
  }
  return status;
}


static int topk_gibbs(const moe_data *d, const moe_mcmc_prior *pr, moe_gate *g,
                      const moe_expert_family *ef, moe_vpar *par,
                      const double *tau_prior, double *state,
                      const moe_gibbs_step *st, moe_gibbs_work *s)
{
  (void) tau_prior;
  int n = d->n, q = d->q, K = d->K;
  if (g->topk < K)
    return update_topk(d, pr, g, ef, par, state, st->warm, st->t, st->block, s);
  /* k = K: the softmax */
  eta_rows(n, q, K, s->Zr, par->W, s->etal);
  return level_update(d, pr, K, s->N, s->wi, s->Zr, par->W, s->etal, st,
                      st->block, s);
}

const moe_gate_ops gate_topk_ops = {
  topk_logprob, topk_state_size, gate_ridge_penalty, topk_em_mstep, topk_gibbs
};
