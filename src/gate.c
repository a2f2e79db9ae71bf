/*
 * gate.c: the softmax gate, the softmax-level machinery every gate reuses,
 * and the table of gates.
 *
 * Data: Z (n x q, column-major) gating design (rows Zr, q x n, in the
 * sampler), wt (n) case weights, R (n x K) responsibilities (rows sum to
 * one), N (K x n, observation-major) allocation counts. Coefficients W
 * (q x K) whose last column is the zero reference.
 *
 * Kernels:
 *  - gate_logits(), gate_logprob_softmax(), gate_logprob(): eta = Z W and
 *    log gating probabilities by log-sum-exp (a logit of 1e4 gives 0 and
 *    -1e4, never NaN); gate_logprob() dispatches through the gate's table;
 *  - EM: gate_expected_loglik() Q(W) = sum_i wt_i sum_k R_ik logg_ik,
 *    gate_newton_direction() / gate_newton_step() a damped Newton step on
 *    the penalised Q over the K - 1 free columns, level_newton() steps on
 *    one softmax level (a view of the data with its own design, weights and
 *    responsibilities);
 *  - Gibbs on one softmax level of Kl categories with counts Nl out of bl
 *    trials: level_pg() the Polya-Gamma (Holmes-Held) draw of every free
 *    column in turn, level_logpost() log p(W | counts) with gradient and
 *    Fisher information, level_refresh() Gamerman's joint Metropolis-
 *    Hastings refresh, level_update() both as a sweep asks;
 *  - the softmax gate's table (gate_softmax_ops) and moe_gate_init().
 * The other gates (gate_temperature.c, gate_hier.c, gate_topk.c) are built
 * from these levels. The gating prior is prior.c's.
 */
#include "moe.h"
#include "moe_exp.h"

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

/* log sum_{k : keep[k]} exp(v[k s]) (every k when keep is NULL); -Inf if
 * no term is finite. */
double lse_strided(int K, const double *v, R_xlen_t s, const int *keep,
                          double scale)
{
  double mx = R_NegInf;
  for (int k = 0; k < K; k++)
    if (!keep || keep[k]) {
      double e = v[k * s] * scale;
      if (e > mx) mx = e;
    }
  if (!R_FINITE(mx)) return mx;
  double acc = 0.0;
  for (int k = 0; k < K; k++)
    if (!keep || keep[k]) acc += exp(v[k * s] * scale - mx);
  return mx + log(acc);
}


void gate_logprob(const moe_gate *g, int n, int K, const double *eta,
                  const double *etaV, double *logg, int *active)
{
  if (g->type == GATE_SOFTMAX) {
    gate_logprob_softmax(n, K, eta, logg);
    return;
  }
  for (int i = 0; i < n; i++)
    g->ops->logprob(g, K, eta + i, n, etaV ? etaV + i : NULL, n, logg + i, n,
                    active);
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

double sumsq(const double *v, R_xlen_t m)
{
  double s = 0.0;
  for (R_xlen_t j = 0; j < m; j++) s += v[j] * v[j];
  return s;
}

/* ctl->gate_steps Newton steps on the level with design Zl, weights wtl,
 * responsibilities Rl (n x Kl) and coefficients Wl (q x Kl, last column
 * zero). */
int level_newton(const moe_data *d, const double *Zl, const double *wtl,
                 int Kl, const double *Rl, double *Wl, double ridge,
                 int steps, moe_em_work *s)
{
  if (Kl < 2) return MOE_OK;
  moe_data dl = *d;
  dl.K = Kl;
  dl.Z = Zl;
  dl.wt = wtl;
  gate_logits(&dl, Wl, s->etal);
  gate_logprob_softmax(d->n, Kl, s->etal, s->loggl);
  int status = MOE_OK;
  for (int t = 0; t < steps; t++)
    status |= gate_newton_step(&dl, Rl, Wl, s->etal, s->loggl, ridge, s->nwork);
  /* a step that was not an ascent is the end of the search, not a failure */
  return status & ~MOE_GATE_STEP;
}


/* ---- Gibbs on a softmax level ---- */

/* ---- gate evaluation, observation-major ----
 * eta (K x n) holds the logits z_i'w_k (z_i the rows Zr, q x n); eta_col()
 * updates one expert k. */

void eta_rows(int n, int q, int K, const double *Zr, const double *W,
              double *eta)
{
  for (int k = 0; k < K; k++) eta_col(n, q, K, Zr, W, k, eta);
}

void eta_col(int n, int q, int K, const double *Zr, const double *W,
                    int k, double *eta)
{
  const double *wk = W + (R_xlen_t) k * q;
  for (int i = 0; i < n; i++) {
    const double *zi = Zr + (R_xlen_t) i * q;
    double e = 0.0;
    for (int a = 0; a < q; a++) e += zi[a] * wk[a];
    eta[k + (R_xlen_t) i * K] = e;
  }
}

/* The Polya-Gamma term of observation i (logits ei, Kl) for column k:
 * C = log sum_{j != k} exp(eta_ij) (its largest term is exp(0) = 1) and
 * psi = eta_ik - C, the argument of omega_i ~ PG(b_i, psi). With `fast`,
 * the exponentials are moe_exp()'s (the fused sampler's passes), otherwise
 * the C library's (level_pg(), whose draws this keeps as they were). */
double pg_offset(const double *ei, int Kl, int k, int fast, double *psi)
{
  double mx = R_NegInf, acc = 0.0;
  int jm = -1;
  for (int j = 0; j < Kl; j++) if (j != k && ei[j] > mx) { mx = ei[j]; jm = j; }
  for (int j = 0; j < Kl; j++)
    if (j != k && j != jm) acc += fast ? moe_exp(ei[j] - mx) : exp(ei[j] - mx);
  double C = mx + log1p(acc);
  *psi = ei[k] - C;
  return C;
}

/* The draw of column k of Wl given the Polya-Gamma sums: P (q x q, lower
 * triangle) = sum_i omega_i z_i z_i' and r (q) = sum_i (N_ik - b_i / 2 +
 * omega_i C_ik) z_i on entry; adds the conditional prior, factorises and
 * draws w_k ~ N(m_k, V_k) into Wl (the logits are the caller's). */
int pg_column_draw(int q, const moe_mcmc_prior *pr, int Kl, double *Wl, int k,
                   double *P, double *Psave, double *r, double *mw, double *zq)
{
  int status = MOE_OK;
  for (int a = 0; a < q; a++) {
    double b0, v;
    gprior_cond(pr, q, Kl, Wl, k, a, &b0, &v);
    P[a + a * q] += 1.0 / v;
    r[a] += b0 / v;
  }
  int rc = chol_factor_ridge(q, P, Psave, 1e-10);
  if (rc < 0) return status | MOE_NOT_PD | MOE_NONFINITE;
  if (rc > 0) status |= MOE_NOT_PD;
  for (int a = 0; a < q; a++) mw[a] = r[a];
  chol_solve_factored(q, P, mw, 1);
  double *wk = Wl + (R_xlen_t) k * q;
  mvn_draw_chol(q, P, mw, wk, zq);
  for (int a = 0; a < q; a++) if (!R_FINITE(wk[a])) status |= MOE_NONFINITE;
  return status;
}

/*
 * The Polya-Gamma draw on a softmax level: for k < Kl - 1 in turn, with
 * C_ik = log sum_{j != k} exp(eta_ij), omega_i ~ PG(bl_i, eta_ik - C_ik),
 * kappa_i = N_ki - bl_i / 2, then w_k ~ N(m_k, V_k), V_k^{-1} = Z' Omega Z +
 * B0^{-1}, m_k = V_k (Z'(kappa + Omega C_k) + B0^{-1} b0), (b0, B0) the
 * conditional prior of w_k given the other columns (gprior_cond()).
 * Observations with bl_i = 0 drop out. etal (Kl x n) holds the logits at
 * Wl on entry and is kept current. Work: P, Psave (q x q), r, mw, zq (q).
 */
int level_pg(int n, int q, const moe_mcmc_prior *pr, int Kl, const int *Nl,
             const int *bl, const double *Zr, double *Wl, double *etal,
             double *P, double *Psave, double *r, double *mw, double *zq)
{
  int status = MOE_OK;
  if (Kl < 2) return status;
  for (int k = 0; k < Kl - 1; k++) {
    for (int t = 0; t < q * q; t++) P[t] = 0.0;
    for (int a = 0; a < q; a++) r[a] = 0.0;
    for (int i = 0; i < n; i++) {
      int b = bl[i];
      if (b == 0) continue;
      const double *ei = etal + (R_xlen_t) i * Kl, *zi = Zr + (R_xlen_t) i * q;
      double psi, C = pg_offset(ei, Kl, k, 0, &psi);
      double om = b == 1 ? rpg1(psi) : rpg(b, psi);
      double t = (Nl[k + (R_xlen_t) i * Kl] - 0.5 * b) + om * C;
      for (int a = 0; a < q; a++) {
        double oz = om * zi[a];
        r[a] += t * zi[a];
        for (int c = 0; c <= a; c++) P[a + c * q] += oz * zi[c];
      }
    }
    int st = pg_column_draw(q, pr, Kl, Wl, k, P, Psave, r, mw, zq);
    status |= st;
    if (st & MOE_NONFINITE) return status;
    eta_col(n, q, Kl, Zr, Wl, k, etal);
  }
  return status;
}

/*
 * Log density of the level's free coefficients Wf (q x (Kl - 1)) given the
 * counts, a multinomial logit with bl trials, plus the gating prior, up to a
 * constant: sum_i sum_k N_ki eta_ik - bl_i log sum_k exp(eta_ik). Writes the
 * gradient g (m = q (Kl - 1)) and the negative Hessian H (m x m, lower
 * triangle; the Fisher information, as the model is a multinomial logit),
 * rows and columns ordered (k, a) -> k q + a. pk: Kl doubles of scratch.
 */
double level_logpost(int n, int q, const moe_mcmc_prior *pr, int Kl,
                     const int *Nl, const int *bl, const double *Zr,
                     const double *Wf, double *g, double *H, double *pk)
{
  int m = q * (Kl - 1);
  double lp = 0.0;
  for (int t = 0; t < m; t++) g[t] = 0.0;
  for (R_xlen_t t = 0; t < (R_xlen_t) m * m; t++) H[t] = 0.0;
  for (int i = 0; i < n; i++) {
    double wi = bl[i];
    if (wi == 0) continue;
    const double *zi = Zr + (R_xlen_t) i * q;
    const int *Ni = Nl + (R_xlen_t) i * Kl;
    double mx = 0.0, acc = 0.0;  /* the reference logit is 0 */
    int km = Kl - 1;
    for (int k = 0; k < Kl - 1; k++) {
      double e = 0.0;
      for (int a = 0; a < q; a++) e += zi[a] * Wf[a + k * q];
      pk[k] = e;
      lp += Ni[k] * e;
      if (e > mx) { mx = e; km = k; }
    }
    pk[Kl - 1] = 0.0;
    for (int k = 0; k < Kl; k++) {
      pk[k] = k == km ? 1.0 : exp(pk[k] - mx);
      acc += pk[k];
    }
    lp -= wi * (mx + log(acc));
    for (int k = 0; k < Kl - 1; k++) {
      pk[k] /= acc;
      double rr = Ni[k] - wi * pk[k];
      for (int a = 0; a < q; a++) g[k * q + a] += rr * zi[a];
    }
    for (int k = 0; k < Kl - 1; k++) {
      for (int l = 0; l <= k; l++) {
        double h = wi * pk[k] * ((k == l ? 1.0 : 0.0) - pk[l]);
        for (int a = 0; a < q; a++) {
          double hz = h * zi[a];
          double *Hc = H + (R_xlen_t) (l * q) * m + k * q + a;
          int bmax = k == l ? a : q - 1;  /* lower triangle only */
          for (int b = 0; b <= bmax; b++) Hc[(R_xlen_t) b * m] += hz * zi[b];
        }
      }
    }
  }
  gprior_grad(pr, q, Kl, Wf, g, &lp);
  gprior_hess(pr, q, Kl, H);
  return lp;
}

/* (x - mu)' L L' (x - mu) for a lower Cholesky factor L (m x m); tmp: m. */
double chol_quad(int m, const double *L, const double *x, const double *mu,
                 double *tmp)
{
  int one = 1;
  for (int a = 0; a < m; a++) tmp[a] = x[a] - mu[a];
  F77_CALL(dtrmv)("L", "T", "N", &m, L, &m, tmp, &one FCONE FCONE FCONE);
  double acc = 0.0;
  for (int a = 0; a < m; a++) acc += tmp[a] * tmp[a];
  return acc;
}

/*
 * Metropolis-Hastings refresh of all free columns of a level at once,
 * targeting p(W | counts) with Gamerman's (1997) proposal: one
 * Fisher-scoring step from the current value, W* ~ N(W + H^{-1} g, H^{-1})
 * (g, H at W), accepted with the Metropolis-Hastings ratio, whose reverse
 * move uses the step from W*. It complements the one-column-at-a-time
 * Polya-Gamma draws where they mix slowly (steep gates, correlated
 * columns). Work: H0, H1, Hsave (m x m), g, mu (m), tm (m + 1), Ws (q x Kl),
 * pk (Kl). Returns 1 when accepted, -1 when a precision could not be
 * factorised (nothing changed), 0 otherwise.
 */
int level_refresh(int n, int q, const moe_mcmc_prior *pr, int Kl,
                  const int *Nl, const int *bl, const double *Zr, double *Wl,
                  moe_gibbs_work *s)
{
  int m = q * (Kl - 1);
  if (Kl < 2) return 0;
  double *H0 = s->H0, *H1 = s->H1, *g = s->g, *Ws = s->Ws, *mu = s->mu2,
         *tm = s->tm, *pk = s->pk;
  double lp0 = level_logpost(n, q, pr, Kl, Nl, bl, Zr, Wl, g, H0, pk);
  if (chol_factor_ridge(m, H0, s->Hsave, 0.0) != 0) return -1;
  for (int t = 0; t < m; t++) mu[t] = g[t];
  chol_solve_factored(m, H0, mu, 1);
  for (int t = 0; t < m; t++) mu[t] += Wl[t];
  mvn_draw_chol(m, H0, mu, Ws, tm);
  double lq_fwd = 0.5 * log_det_chol(m, H0) - 0.5 * chol_quad(m, H0, Ws, mu, tm);
  double lp1 = level_logpost(n, q, pr, Kl, Nl, bl, Zr, Ws, g, H1, pk);
  if (!R_FINITE(lp1) || chol_factor_ridge(m, H1, s->Hsave, 0.0) != 0) return 0;
  for (int t = 0; t < m; t++) mu[t] = g[t];
  chol_solve_factored(m, H1, mu, 1);
  for (int t = 0; t < m; t++) mu[t] += Ws[t];
  double lq_rev = 0.5 * log_det_chol(m, H1) - 0.5 * chol_quad(m, H1, Wl, mu, tm);
  if (log(unif_rand()) < lp1 - lp0 + lq_rev - lq_fwd) {
    for (int t = 0; t < m; t++) Wl[t] = Ws[t];
    return 1;
  }
  return 0;
}

/* A level's update in a sweep: the Polya-Gamma draws (st->pg), then the
 * refresh (st->mh), counted in st->acc / st->prop and in *block. */
int level_update(const moe_data *d, const moe_mcmc_prior *pr, int Kl,
                 const int *Nl, const int *bl, const double *Zr, double *Wl,
                 double *etal, const moe_gibbs_step *st, int *block,
                 moe_gibbs_work *s)
{
  int status = MOE_OK, q = d->q, n = d->n;
  if (Kl < 2) return status;
  if (st->pg)
    status |= level_pg(n, q, pr, Kl, Nl, bl, Zr, Wl, etal, s->P, s->Psave,
                       s->r, s->mw, s->zq);
  if (st->mh && !(status & MOE_NONFINITE)) {
    (*st->prop)++;
    int a = level_refresh(n, q, pr, Kl, Nl, bl, Zr, Wl, s);
    if (a > 0) {
      (*st->acc)++;
      if (block) (*block)++;
      eta_rows(n, q, Kl, Zr, Wl, etal);
    }
    if (a < 0) status |= MOE_NOT_PD;
  }
  return status;
}

/* Robbins-Monro step of a log scale towards an acceptance rate of 0.3. */
void adapt_scale(double *logl, double accept_prob, int t)
{
  double gam = 1.0 / pow((double) t + 1.0, 0.6);
  if (gam > 0.5) gam = 0.5;
  *logl += gam * (accept_prob - 0.3);
  if (*logl > 5.0) *logl = 5.0;
  if (*logl < -15.0) *logl = -15.0;
}

/* ---- the softmax gate ---- */

static void softmax_logprob(const moe_gate *g, int K, const double *eta,
                            R_xlen_t se, const double *etaV, R_xlen_t sv,
                            double *logg, R_xlen_t sl, int *active)
{
  (void) g; (void) etaV; (void) sv; (void) active;
  double lse = lse_strided(K, eta, se, NULL, 1.0);
  for (int k = 0; k < K; k++) logg[k * sl] = eta[k * se] - lse;
}

int gate_no_state(const moe_gate *g, int q, int K, int learn_tau)
{
  (void) g; (void) q; (void) K; (void) learn_tau;
  return 0;
}

/* The ridge penalty ridge / 2 times the squared free gating coefficients. */
double gate_ridge_penalty(const moe_data *d, const moe_gate *g,
                          const moe_vpar *par, double ridge,
                          const double *tau_prior)
{
  (void) g; (void) tau_prior;
  if (ridge == 0.0) return 0.0;
  return 0.5 * ridge * sumsq(par->W, (R_xlen_t) d->q * (d->K - 1));
}

static int softmax_em_mstep(const moe_data *d, moe_gate *g, moe_vpar *par,
                            const double *tau_prior, const double *R,
                            const moe_em_control *ctl, int first,
                            moe_em_work *s, int *iwork)
{
  (void) g; (void) tau_prior; (void) first; (void) iwork;
  return level_newton(d, d->Z, d->wt, d->K, R, par->W, ctl->ridge,
                      ctl->gate_steps, s);
}

static int softmax_gibbs(const moe_data *d, const moe_mcmc_prior *pr,
                         moe_gate *g, const moe_expert_family *ef,
                         moe_vpar *par, const double *tau_prior, double *state,
                         const moe_gibbs_step *st, moe_gibbs_work *s)
{
  (void) g; (void) ef; (void) tau_prior; (void) state;
  int n = d->n, q = d->q, K = d->K;
  eta_rows(n, q, K, s->Zr, par->W, s->etal);
  return level_update(d, pr, K, s->N, s->wi, s->Zr, par->W, s->etal, st,
                      st->block, s);
}

const moe_gate_ops gate_softmax_ops = {
  softmax_logprob, gate_no_state, gate_ridge_penalty, softmax_em_mstep, softmax_gibbs
};

void moe_gate_init(moe_gate *g)
{
  switch (g->type) {
  case GATE_TOPK: g->ops = &gate_topk_ops; break;
  case GATE_TEMPERATURE: g->ops = &gate_temperature_ops; break;
  case GATE_HIER: g->ops = &gate_hier_ops; break;
  default: g->ops = &gate_softmax_ops;
  }
}
