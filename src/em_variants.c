/*
 * em_variants.c: the generic EM of the gating and expert variants (any gate
 * of moe_gate, any expert family of moe_expert_family). Softmax gating with
 * linear experts keeps the fused EM of em.c.
 *
 * Data (moe_data): y (n), X (n x p), Z (n x q), wt (n >= 0), column-major.
 * Parameters (moe_vpar): alpha (npar x K), sigma2 (K), W (q x K, see below),
 * V (q x G, hierarchical gates only); the temperature in gate->tau.
 * Reference columns: column K - 1 of W for the softmax, top-k and
 * temperature gates; for a hierarchical gate column G - 1 of V and, in W,
 * the column of the last expert of each group.
 *
 * moe_em_variant_run() starts from responsibilities R0 (n x K), does an
 * M-step, then iterates E-step / M-step until the relative change of the
 * log-likelihood is below ctl->tol or ctl->maxit E-steps were done, like
 * moe_em_run(). The M-step updates every expert by its family's mstep (for
 * linear experts the weighted least squares of experts.c), then the gate:
 *  - softmax, and a temperature (fixed or current): ctl->gate_steps Newton
 *    steps with step halving (gate_newton_step() of gating.c) on the
 *    expected complete-data gating log-likelihood Q, the latter with the
 *    design Z / tau (a temperature gate IS the softmax gate of Z / tau);
 *  - learned temperature (tau_prior = (m, s): log tau ~ N(m, s^2)): after the
 *    W steps, a Newton step on log tau for Q - (log tau - m)^2 / (2 s^2)
 *    with step halving, then the exact maximisation of the penalised
 *    objective along (W, tau) -> (c W, c tau), on which the likelihood is
 *    constant (ridge and prior only). The likelihood does not identify tau;
 *    this is the MAP estimate under the prior of log tau and the ridge;
 *  - hierarchical: level by level, each an ordinary softmax. The group
 *    level is Newton on sum_i wt_i sum_g Rg_ig log softmax(z_i'V)_g with
 *    Rg_ig = sum_{k in g} R_ik; group g's level is Newton on sum_i (wt_i
 *    Rg_ig) sum_{k in g} (R_ik / Rg_ig) log softmax_{j in g}(z_i'w_j)_k.
 *    Q is the sum of these terms, so every step keeps EM monotone;
 *  - top-k: a Newton direction for Q over the active sets (the softmax
 *    renormalised over each observation's k active experts: the gradient and
 *    Hessian of Q restricted to them), then step halving on the OBSERVED
 *    (penalised) log-likelihood, so a step may change the active sets and
 *    the log-likelihood never decreases; then the same with the Newton
 *    direction of the dense softmax (which sees the experts an observation
 *    would switch to; for k = 1, Q over the active sets is constant); then
 *    a coordinate pattern search on the observed log-likelihood, which
 *    moves active-set boundaries (topk_pattern()). The
 *    first M-step fits a dense softmax to R0 (from W = 0 every logit ties
 *    and the top-k selection would keep the first k experts everywhere).
 * The ridge ctl->ridge penalises every free gating coefficient (W and V).
 * On return par holds the estimate, R the responsibilities at it, trace[0 ..
 * iter - 1] the log-likelihood after each E-step, *loglik the last one.
 * The objective that never decreases is the log-likelihood minus the ridge
 * penalty (minus the prior penalty of log tau when it is learned);
 * MOE_DECREASE flags a decrease of it beyond rounding.
 * Preconditions: n >= 1, K >= 1, wt >= 0, sigma2 is set here, alpha holds
 * finite starting values, W and V are set here (to 0 before the first
 * M-step). iwork: K ints.
 */
#include "moe.h"

/* ---- linear experts as a family of the generic paths ---- */

static void linear_mean(const moe_expert_family *f, const moe_data *d,
                        const double *alpha, double *mu, double *work)
{
  (void) f;
  (void) work;
  expert_means(d, alpha, mu);
}

static int linear_mstep(const moe_expert_family *f, const moe_data *d,
                        const double *R, int k, double *alpha_k,
                        double *sigma2_k, double *mu_k,
                        const moe_em_control *ctl, double *work)
{
  (void) f;
  return expert_wls(d, R, k, alpha_k, sigma2_k, mu_k, ctl, work);
}

static R_xlen_t linear_work_size(const moe_expert_family *f, const moe_data *d)
{
  (void) f;
  R_xlen_t p = d->p;
  /* expert_wls(): 2 p^2 + p + 2 n; linear_expert_draw(): 2 p^2 + 4 p */
  return 2 * p * p + 4 * p + 2 * (R_xlen_t) d->n;
}

void moe_expert_family_linear(moe_expert_family *f, int p)
{
  f->npar = p;
  f->nstate = 0;
  f->naccept = 0;
  f->info = NULL;
  f->mean = linear_mean;
  f->mstep = linear_mstep;
  f->draw = linear_expert_draw;
  f->work_size = linear_work_size;
}

/* ---- work space ---- */

typedef struct {
  double *eta, *etaV, *logg, *mu, *lN, *Zs;   /* n x K, n x G, n x K, n x K, n x K, n x q */
  double *Rl, *wtl, *etal, *loggl, *Wl;       /* n x K, n, n x K, n x K, q x K */
  double *nwork;                              /* gate_newton_step(): 2 m^2 + 3 m + 2 n + n K */
  double *g, *delta, *H, *Hsave, *Wold;       /* m, m, m x m, m x m, m */
  double *kwork, *xwork;                      /* 2 K, the expert family's work */
} emv_work;

R_xlen_t moe_em_variant_work_size(const moe_data *d, const moe_gate *g,
                                  const moe_expert_family *ef)
{
  R_xlen_t n = d->n, q = d->q, K = d->K, G = g->type == GATE_HIER ? g->G : 0;
  R_xlen_t m = (K - 1) * q;
  return 5 * n * K + n * G + n * q + 3 * n * K + n + q * K +
    (2 * m * m + 3 * m + 2 * n + n * K) + 3 * m + 2 * m * m + 2 * K +
    ef->work_size(ef, d) + 8;
}

static void carve(const moe_data *d, const moe_gate *g, double *w, emv_work *s)
{
  R_xlen_t n = d->n, q = d->q, K = d->K, G = g->type == GATE_HIER ? g->G : 0;
  R_xlen_t m = (K - 1) * q;
  s->eta = w;            w += n * K;
  s->etaV = w;           w += n * G;
  s->logg = w;           w += n * K;
  s->mu = w;             w += n * K;
  s->lN = w;             w += n * K;
  s->Zs = w;             w += n * q;
  s->Rl = w;             w += n * K;
  s->wtl = w;            w += n;
  s->etal = w;           w += n * K;
  s->loggl = w;          w += n * K;
  s->Wl = w;             w += q * K;
  s->nwork = w;          w += 2 * m * m + 3 * m + 2 * n + n * K;
  s->g = w;              w += m;
  s->delta = w;          w += m;
  s->Wold = w;           w += m;
  s->H = w;              w += m * m;
  s->Hsave = w;          w += m * m;
  s->kwork = w;          w += 2 * K;
  s->xwork = w;
}

/* ---- gate evaluation on the data ---- */

/* eta = Z W (and etaV = Z V), then logg; the temperature scales inside
 * gate_logprob(). */
static void gate_eval(const moe_data *d, const moe_gate *g, const moe_vpar *par,
                      emv_work *s, int *iwork)
{
  gate_logits(d, par->W, s->eta);
  if (g->type == GATE_HIER) {
    moe_data dv = *d;
    dv.K = g->G;
    gate_logits(&dv, par->V, s->etaV);
  }
  gate_logprob(g, d->n, d->K, s->eta, g->type == GATE_HIER ? s->etaV : NULL,
               s->logg, iwork);
}

static double sumsq(const double *v, R_xlen_t m)
{
  double s = 0.0;
  for (R_xlen_t j = 0; j < m; j++) s += v[j] * v[j];
  return s;
}

/* The ridge penalty ridge / 2 times the squared free gating coefficients. */
static double gate_penalty(const moe_data *d, const moe_gate *g,
                           const moe_vpar *par, double ridge)
{
  if (ridge == 0.0) return 0.0;
  int q = d->q, K = d->K;
  double s = 0.0;
  if (g->type == GATE_HIER) {
    s = sumsq(par->V, (R_xlen_t) q * g->G);
    s += sumsq(par->W, (R_xlen_t) q * K);  /* reference columns are zero */
  } else {
    s = sumsq(par->W, (R_xlen_t) q * (K - 1));
  }
  return 0.5 * ridge * s;
}

/* Temperature prior penalty (log tau - m)^2 / (2 s^2); 0 when tau is fixed. */
static double tau_penalty(const moe_gate *g, const double *tau_prior)
{
  if (!tau_prior) return 0.0;
  double z = (log(g->tau) - tau_prior[0]) / tau_prior[1];
  return 0.5 * z * z;
}

/* ---- softmax levels: Newton steps of gating.c on a view of the data ---- */

/* ctl->gate_steps Newton steps on the level with design Zl, weights wtl,
 * responsibilities Rl (n x Kl) and coefficients Wl (q x Kl, last column
 * zero). */
static int level_steps(const moe_data *d, const double *Zl, const double *wtl,
                       int Kl, const double *Rl, double *Wl, double ridge,
                       int steps, emv_work *s)
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

static void scale_design(const moe_data *d, double tau, double *Zs)
{
  R_xlen_t nq = (R_xlen_t) d->n * d->q;
  double inv = 1.0 / tau;
  for (R_xlen_t t = 0; t < nq; t++) Zs[t] = d->Z[t] * inv;
}

/* Hierarchical gate: the group level, then each group of >= 2 experts. */
static int mstep_hier(const moe_data *d, const moe_gate *g, moe_vpar *par,
                      const double *R, double ridge, int steps, emv_work *s)
{
  int n = d->n, q = d->q, K = d->K, G = g->G, status = MOE_OK;
  /* group responsibilities Rg (n x G) in Rl */
  for (R_xlen_t t = 0; t < (R_xlen_t) n * G; t++) s->Rl[t] = 0.0;
  for (int k = 0; k < K; k++) {
    double *Rg = s->Rl + (R_xlen_t) g->group[k] * n;
    const double *Rk = R + (R_xlen_t) k * n;
    for (int i = 0; i < n; i++) Rg[i] += Rk[i];
  }
  status |= level_steps(d, d->Z, d->wt, G, s->Rl, par->V, ridge, steps, s);
  /* within each group: weights wt_i Rg_ih, responsibilities R_ik / Rg_ih;
   * the Rg column is copied to wtl first, as Rl is reused below */
  for (int h = 0; h < G; h++) {
    int Kl = 0;
    for (int k = 0; k < K; k++) if (g->group[k] == h) Kl++;
    if (Kl < 2) continue;
    /* recompute Rg_ih (Rl is overwritten by the group's responsibilities) */
    for (int i = 0; i < n; i++) s->wtl[i] = 0.0;
    for (int k = 0; k < K; k++) {
      if (g->group[k] != h) continue;
      const double *Rk = R + (R_xlen_t) k * n;
      for (int i = 0; i < n; i++) s->wtl[i] += Rk[i];
    }
    int j = 0;
    for (int k = 0; k < K; k++) {
      if (g->group[k] != h) continue;
      const double *Rk = R + (R_xlen_t) k * n;
      double *Rj = s->Rl + (R_xlen_t) j * n;
      for (int i = 0; i < n; i++)
        Rj[i] = s->wtl[i] > 0.0 ? Rk[i] / s->wtl[i] : 1.0 / Kl;
      for (int a = 0; a < q; a++) s->Wl[a + j * q] = par->W[a + (R_xlen_t) k * q];
      j++;
    }
    for (int i = 0; i < n; i++) s->wtl[i] *= d->wt[i];
    status |= level_steps(d, d->Z, s->wtl, Kl, s->Rl, s->Wl, ridge, steps, s);
    j = 0;
    for (int k = 0; k < K; k++) {
      if (g->group[k] != h) continue;
      for (int a = 0; a < q; a++) par->W[a + (R_xlen_t) k * q] = s->Wl[a + j * q];
      j++;
    }
  }
  return status;
}

/* ---- learned temperature ---- */

/* Q(s) = sum_i wt_i sum_k R_ik log softmax(eta_i / e^s)_k with its first and
 * second derivatives in s = log tau (eta = Z W, unscaled). */
static double tau_objective(const moe_data *d, const double *R,
                            const double *eta, double lt, double *d1,
                            double *d2)
{
  int n = d->n, K = d->K;
  double inv = exp(-lt), Q = 0.0, g1 = 0.0, g2 = 0.0;
  for (int i = 0; i < n; i++) {
    double w = d->wt[i];
    if (!(w > 0.0)) continue;
    double mx = R_NegInf;
    for (int k = 0; k < K; k++) {
      double u = eta[i + (R_xlen_t) k * n] * inv;
      if (u > mx) mx = u;
    }
    double se = 0.0, su = 0.0, suu = 0.0;
    for (int k = 0; k < K; k++) {
      double u = eta[i + (R_xlen_t) k * n] * inv, e = exp(u - mx);
      se += e;
      su += e * u;
      suu += e * u * u;
    }
    double lse = mx + log(se), ubar = su / se, var = suu / se - ubar * ubar;
    double ru = 0.0, qi = 0.0;
    for (int k = 0; k < K; k++) {
      double r = R[i + (R_xlen_t) k * n];
      if (r <= 0.0) continue;
      double u = eta[i + (R_xlen_t) k * n] * inv;
      ru += r * u;
      qi += r * (u - lse);
    }
    /* sum_k (R_ik - pi_ik) u_ik = ru - ubar, as the R_ik sum to one */
    Q += w * qi;
    g1 -= w * (ru - ubar);
    g2 += w * ((ru - ubar) - (var > 0.0 ? var : 0.0));
  }
  *d1 = g1;
  *d2 = g2;
  return Q;
}

/* Newton step with halving on log tau for Q - (log tau - m)^2 / (2 s^2),
 * then the maximisation along (W, tau) -> (c W, c tau). */
static void mstep_tau(const moe_data *d, moe_gate *g, moe_vpar *par,
                      const double *R, const double *tau_prior, double ridge,
                      emv_work *s)
{
  double m0 = tau_prior[0], s2 = tau_prior[1] * tau_prior[1];
  int q = d->q, K = d->K;
  if (K >= 2) {
    gate_logits(d, par->W, s->eta);
    double lt = log(g->tau), d1, d2;
    double F0 = tau_objective(d, R, s->eta, lt, &d1, &d2) - 0.5 * (lt - m0) * (lt - m0) / s2;
    d1 -= (lt - m0) / s2;
    d2 -= 1.0 / s2;
    double h = -d2 > 1.0 / s2 ? -d2 : 1.0 / s2;
    double step = d1 / h;
    if (step > 2.0) step = 2.0;
    if (step < -2.0) step = -2.0;
    for (int t = 0; t < 30 && fabs(step) > 1e-14; t++, step *= 0.5) {
      double ln = lt + step, e1, e2;
      double F1 = tau_objective(d, R, s->eta, ln, &e1, &e2) - 0.5 * (ln - m0) * (ln - m0) / s2;
      if (R_FINITE(F1) && F1 >= F0) {
        g->tau = exp(ln);
        break;
      }
    }
  }
  /* along (c W, c tau) the likelihood is constant: maximise
   * -ridge/2 e^{2 delta} |W|^2 - (log tau + delta - m)^2 / (2 s^2) */
  double ww = sumsq(par->W, (R_xlen_t) q * (K - 1)), lt = log(g->tau), delta = 0.0;
  if (ridge == 0.0 || ww == 0.0) {
    delta = m0 - lt;
  } else {
    for (int it = 0; it < 100; it++) {
      double a = ridge * exp(2.0 * delta) * ww;
      double f1 = -a - (lt + delta - m0) / s2, f2 = -2.0 * a - 1.0 / s2;
      double st = -f1 / f2;
      delta += st;
      if (fabs(st) < 1e-12) break;
    }
  }
  double c = exp(delta);
  g->tau *= c;
  for (R_xlen_t t = 0; t < (R_xlen_t) q * (K - 1); t++) par->W[t] *= c;
}

/* ---- top-k ---- */

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

static void log_densities(const moe_data *d, const double *mu,
                          const double *sigma2, double *lN)
{
  int n = d->n, K = d->K;
  for (int k = 0; k < K; k++)
    for (int i = 0; i < n; i++)
      lN[i + (R_xlen_t) k * n] = log_dnorm(d->y[i], mu[i + (R_xlen_t) k * n], sigma2[k]);
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
                          const double *W, double ridge, emv_work *s)
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
                          double ridge, double L0, emv_work *s, int *iwork)
{
  int n = d->n, K = d->K, m = (K - 1) * d->q;
  for (int j = 0; j < m; j++) s->Wold[j] = par->W[j];
  double t = 1.0;
  for (int h = 0; h < 30; h++, t *= 0.5) {
    for (int j = 0; j < m; j++) par->W[j] = s->Wold[j] + t * s->delta[j];
    gate_logits(d, par->W, s->etal);
    gate_logprob(g, n, K, s->etal, NULL, s->loggl, iwork);
    double L1 = loglik_from(d, s->loggl, s->lN) - gate_penalty(d, g, par, ridge);
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
                           double ridge, double L0, emv_work *s, int *iwork)
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
        double L1 = loglik_from(d, s->loggl, s->lN) - gate_penalty(d, g, par, ridge);
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
                     const double *R, double ridge, emv_work *s, int *iwork)
{
  int n = d->n, K = d->K;
  if (K < 2 || g->topk >= K) {
    /* k = K: the softmax (Newton on Q is exact EM) */
    return level_steps(d, d->Z, d->wt, K, R, par->W, ridge, 1, s);
  }
  double L = loglik_from(d, s->logg, s->lN) - gate_penalty(d, g, par, ridge);
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

/* ---- the M-step and the loop ---- */

static int mstep(const moe_data *d, moe_gate *g, const moe_expert_family *ef,
                 moe_vpar *par, const double *tau_prior, const double *R,
                 const moe_em_control *ctl, int first, emv_work *s, int *iwork)
{
  int n = d->n, K = d->K, np = ef->npar, status = MOE_OK;
  for (int k = 0; k < K; k++)
    status |= ef->mstep(ef, d, R, k, par->alpha + (R_xlen_t) k * np,
                        par->sigma2 + k, s->mu + (R_xlen_t) k * n, ctl, s->xwork);
  switch (g->type) {
  case GATE_HIER:
    status |= mstep_hier(d, g, par, R, ctl->ridge, ctl->gate_steps, s);
    break;
  case GATE_TEMPERATURE:
    scale_design(d, g->tau, s->Zs);
    status |= level_steps(d, s->Zs, d->wt, K, R, par->W, ctl->ridge, ctl->gate_steps, s);
    if (tau_prior) mstep_tau(d, g, par, R, tau_prior, ctl->ridge, s);
    break;
  case GATE_TOPK:
    if (first) {
      /* a dense softmax fitted to R0 gives the first active sets */
      status |= level_steps(d, d->Z, d->wt, K, R, par->W, ctl->ridge, 25, s);
    } else {
      log_densities(d, s->mu, par->sigma2, s->lN);
      status |= step_topk(d, g, par, R, ctl->ridge, s, iwork);
    }
    break;
  default:
    status |= level_steps(d, d->Z, d->wt, K, R, par->W, ctl->ridge, ctl->gate_steps, s);
  }
  return status;
}

int moe_em_variant_run(const moe_data *d, moe_gate *g,
                       const moe_expert_family *ef, moe_vpar *par,
                       const double *tau_prior, const double *R0,
                       const moe_em_control *ctl, double *R, double *trace,
                       int *iter, double *loglik, double *work, int *iwork)
{
  int q = d->q, K = d->K;
  emv_work s;
  carve(d, g, work, &s);
  for (int k = 0; k < K; k++) par->sigma2[k] = 1.0;
  for (R_xlen_t t = 0; t < (R_xlen_t) q * K; t++) par->W[t] = 0.0;
  if (g->type == GATE_HIER)
    for (R_xlen_t t = 0; t < (R_xlen_t) q * g->G; t++) par->V[t] = 0.0;
  ef->mean(ef, d, par->alpha, s.mu, s.xwork);

  int mstatus = mstep(d, g, ef, par, tau_prior, R0, ctl, 1, &s, iwork);
  int status = MOE_OK, it;
  double ll = R_NegInf, obj_old = R_NegInf;
  for (it = 1; ; it++) {
    R_CheckUserInterrupt();
    gate_eval(d, g, par, &s, iwork);
    ll = moe_estep(d, s.logg, s.mu, par->sigma2, R, NULL, s.kwork);
    trace[it - 1] = ll;
    if (!R_FINITE(ll)) { status |= MOE_NONFINITE; break; }
    double obj = ll - gate_penalty(d, g, par, ctl->ridge) - tau_penalty(g, tau_prior);
    if (it > 1) {
      if (obj < obj_old - 1e-10 * (1.0 + fabs(obj_old))) status |= MOE_DECREASE;
      if (fabs(obj - obj_old) <= ctl->tol * (fabs(obj) + ctl->tol)) break;
    }
    if (it >= ctl->maxit) { status |= MOE_MAXIT; break; }
    obj_old = obj;
    mstatus = mstep(d, g, ef, par, tau_prior, R, ctl, 0, &s, iwork);
  }
  *iter = it;
  *loglik = ll;
  return status | mstatus;
}
