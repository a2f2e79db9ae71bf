/*
 * em.c: THE EM driver, for any gate (moe_gate and its moe_gate_ops) and any
 * expert family (moe_expert_family), and its generic kernel.
 *
 * Data (moe_data): y (n), X (n x p, the family's design), Z (n x q), wt
 * (n >= 0), column-major. Parameters (moe_vpar): alpha (npar x K), sigma2
 * (K), W (q x K), V (q x G, hierarchical gates only); the temperature in
 * gate->tau. tau_prior = (m, s): log tau ~ N(m, s^2) when a temperature is
 * learned (NULL otherwise).
 *
 * moe_em_run() starts from responsibilities R0 (n x K), makes an M-step,
 * then iterates E-step / M-step until the relative change of the objective
 * (the log-likelihood minus the gate's penalty: ridge on the free gating
 * coefficients, prior of a learned temperature) is below ctl->tol or
 * ctl->maxit E-steps were done. Every M-step step is an ascent step of the
 * expected complete-data objective, so the objective never decreases;
 * MOE_DECREASE flags a decrease beyond rounding.
 * Separation: when the largest free gating coefficient |W| (on the scale of
 * the data given, standardised by the R side) exceeds ctl->sep_bound and
 * grew in the last M-step, the gating is numerically a step whose maximum
 * likelihood coefficients are infinite; the run stops there (after the
 * E-step, so that par, R and *loglik agree) with MOE_SEPARATION, which a
 * run converging with |W| above the bound also carries.
 * The kernel that computes the steps is chosen here:
 *  - the softmax gate with linear Gaussian experts: the fused kernel of
 *    em_fused.c (one pass per iteration for the E-step and every sum of the
 *    M-step);
 *  - anything else: the generic kernel below. E-step: the gate's log
 *    probabilities (gate_logprob()), the family's log densities, then the
 *    responsibilities (estep_logdens()). M-step: the family's mstep for
 *    every expert, then the gate's em_mstep.
 * On return par holds the estimate, R the responsibilities at it,
 * trace[0 .. min(iter, ctl->trace_len) - 1] the log-likelihood after each
 * E-step, *loglik the last one. Preconditions: n >= 1, K >= 1, wt >= 0;
 * alpha holds finite starting values; sigma2, W and V are set here (1, 0
 * and 0 before the first M-step). work: moe_em_work_size() doubles; iwork:
 * K + 1 ints.
 */
#include "moe.h"

/*
 * Responsibilities R (n x K, column-major) from the log gating
 * probabilities logg and the expert log densities lN (both n x K), in log
 * space. When no term of an observation is finite its responsibilities are
 * 1 / K. Returns sum_i wt_i log p(y_i), observations of weight 0 left out
 * (so one of them cannot make the total -Inf).
 */
double estep_logdens(const moe_data *d, const double *logg, const double *lN,
                     double *R)
{
  int n = d->n, K = d->K;
  double total = 0.0;
  for (int i = 0; i < n; i++) {
    double mx = R_NegInf;
    for (int k = 0; k < K; k++) {
      R_xlen_t u = i + (R_xlen_t) k * n;
      double l = logg[u] + lN[u];
      R[u] = l;
      if (l > mx) mx = l;
    }
    if (!R_FINITE(mx)) {
      for (int k = 0; k < K; k++) R[i + (R_xlen_t) k * n] = 1.0 / K;
      if (d->wt[i] > 0.0) total += d->wt[i] * mx;
      continue;
    }
    double s = 0.0;
    for (int k = 0; k < K; k++) {
      R_xlen_t u = i + (R_xlen_t) k * n;
      double e = exp(R[u] - mx);
      R[u] = e;
      s += e;
    }
    double inv = 1.0 / s;
    for (int k = 0; k < K; k++) R[i + (R_xlen_t) k * n] *= inv;
    if (d->wt[i] > 0.0) total += d->wt[i] * (mx + log(s));
  }
  return total;
}

/* ---- the generic kernel ---- */

typedef struct {
  const moe_data *d;
  moe_gate *g;
  const moe_expert_family *ef;
  moe_vpar *par;
  const double *tau_prior, *R0;
  const moe_em_control *ctl;
  double *R;
  moe_em_work s;
  int *iwork;
} em_generic;

static R_xlen_t generic_work_size(const moe_data *d, const moe_gate *g,
                                  const moe_expert_family *ef)
{
  R_xlen_t n = d->n, q = d->q, K = d->K, G = g->type == GATE_HIER ? g->G : 0;
  R_xlen_t m = (K - 1) * q;
  return 5 * n * K + n * G + n * q + 3 * n * K + n + q * K +
    (2 * m * m + 3 * m + 2 * n + n * K) + 3 * m + 2 * m * m + 2 * K +
    ef->work_size(ef, d) + 8;
}

static void carve(const moe_data *d, const moe_gate *g, double *w, moe_em_work *s)
{
  R_xlen_t n = d->n, q = d->q, K = d->K, G = g->type == GATE_HIER ? g->G : 0;
  R_xlen_t m = (K - 1) * q;
  s->eta = moe_take(&w, n * K);  s->etaV = moe_take(&w, n * G);
  s->logg = moe_take(&w, n * K);  s->mu = moe_take(&w, n * K);
  s->lN = moe_take(&w, n * K);  s->Zs = moe_take(&w, n * q);
  s->Rl = moe_take(&w, n * K);  s->wtl = moe_take(&w, n);
  s->etal = moe_take(&w, n * K);  s->loggl = moe_take(&w, n * K);
  s->Wl = moe_take(&w, q * K);
  s->nwork = moe_take(&w, 2 * m * m + 3 * m + 2 * n + n * K);
  s->g = moe_take(&w, m);  s->delta = moe_take(&w, m);  s->Wold = moe_take(&w, m);
  s->H = moe_take(&w, m * m);  s->Hsave = moe_take(&w, m * m);
  s->kwork = moe_take(&w, 2 * K);
  s->xwork = w;
}

/* eta = Z W (and etaV = Z V), then the log gating probabilities. */
static void gate_eval(em_generic *e)
{
  const moe_data *d = e->d;
  moe_gate *g = e->g;
  gate_logits(d, e->par->W, e->s.eta);
  if (g->type == GATE_HIER) {
    moe_data dv = *d;
    dv.K = g->G;
    gate_logits(&dv, e->par->V, e->s.etaV);
  }
  gate_logprob(g, d->n, d->K, e->s.eta, g->type == GATE_HIER ? e->s.etaV : NULL,
               e->s.logg, e->iwork);
}

/* Every expert by its family's M-step (s.mu receives the new means), the
 * log densities at them, then the gate. */
static int generic_mstep(void *ctx, int first)
{
  em_generic *e = (em_generic *) ctx;
  const moe_data *d = e->d;
  const moe_expert_family *ef = e->ef;
  const double *R = first ? e->R0 : e->R;
  int n = d->n, K = d->K, np = ef->npar, status = MOE_OK;
  for (int k = 0; k < K; k++)
    status |= ef->mstep(ef, d, R, k, e->par->alpha + (R_xlen_t) k * np,
                        e->par->sigma2 + k, e->s.mu + (R_xlen_t) k * n, e->ctl,
                        e->s.xwork);
  ef->logdens(ef, d, e->s.mu, e->par->sigma2, e->s.lN, 1, n);
  status |= e->g->ops->em_mstep(d, e->g, e->par, e->tau_prior, R, e->ctl, first,
                                &e->s, e->iwork);
  return status;
}

static double generic_estep(void *ctx, int *mstatus)
{
  (void) mstatus;
  em_generic *e = (em_generic *) ctx;
  gate_eval(e);
  /* s.lN holds the log densities at the current experts (generic_mstep()) */
  return estep_logdens(e->d, e->s.logg, e->s.lN, e->R);
}

static void generic_finish(void *ctx, double *R)
{
  (void) ctx;
  (void) R;  /* the E-steps wrote R itself */
}

static void generic_init(em_kernel *k, const moe_data *d, moe_gate *g,
                         const moe_expert_family *ef, moe_vpar *par,
                         const double *tau_prior, const double *R0,
                         const moe_em_control *ctl, double *R, double *work,
                         int *iwork)
{
  em_generic *e = (em_generic *) R_alloc(1, sizeof(em_generic));
  e->d = d; e->g = g; e->ef = ef; e->par = par; e->tau_prior = tau_prior;
  e->R0 = R0; e->ctl = ctl; e->R = R; e->iwork = iwork;
  carve(d, g, work, &e->s);
  int q = d->q, K = d->K;
  for (int j = 0; j < K; j++) par->sigma2[j] = 1.0;
  for (R_xlen_t t = 0; t < (R_xlen_t) q * K; t++) par->W[t] = 0.0;
  if (g->type == GATE_HIER)
    for (R_xlen_t t = 0; t < (R_xlen_t) q * g->G; t++) par->V[t] = 0.0;
  ef->mean(ef, d, par->alpha, e->s.mu, e->s.xwork);
  k->ctx = e;
  k->mstep = generic_mstep;
  k->estep = generic_estep;
  k->finish = generic_finish;
}

/* ---- the driver ---- */

/* Largest |W| over the gating coefficients (q x K; the reference column of
 * the softmax gate is zero and does not matter). */
static double gate_coef_max(const moe_data *d, const moe_vpar *par)
{
  double m = 0.0;
  for (R_xlen_t t = 0; t < (R_xlen_t) d->q * d->K; t++) {
    double a = fabs(par->W[t]);
    if (a > m) m = a;
  }
  return m;
}

R_xlen_t moe_em_work_size(const moe_data *d, const moe_gate *g,
                          const moe_expert_family *ef)
{
  return moe_use_fused(g, ef) ? em_fused_work_size(d) : generic_work_size(d, g, ef);
}

int moe_em_run(const moe_data *d, moe_gate *g, const moe_expert_family *ef,
               moe_vpar *par, const double *tau_prior, const double *R0,
               const moe_em_control *ctl, double *R, double *trace, int *iter,
               double *loglik, double *work, int *iwork)
{
  em_kernel k;
  if (moe_use_fused(g, ef)) em_fused_init(&k, d, par, R0, ctl, work);
  else generic_init(&k, d, g, ef, par, tau_prior, R0, ctl, R, work, iwork);

  int mstatus = k.mstep(k.ctx, 1);
  int status = MOE_OK, it;
  double ll = R_NegInf, obj_old = R_NegInf, wmax_old = R_PosInf;
  for (it = 1; ; it++) {
    R_CheckUserInterrupt();
    ll = k.estep(k.ctx, &mstatus);
    if (it <= ctl->trace_len) trace[it - 1] = ll;
    if (!R_FINITE(ll)) { status |= MOE_NONFINITE; break; }
    double obj = ll - g->ops->penalty(d, g, par, ctl->ridge, tau_prior);
    double wmax = gate_coef_max(d, par);
    int runaway = wmax > ctl->sep_bound;
    if (it > 1) {
      if (obj < obj_old - 1e-10 * (1.0 + fabs(obj_old))) status |= MOE_DECREASE;
      if (fabs(obj - obj_old) <= ctl->tol * (fabs(obj) + ctl->tol)) {
        if (runaway) status |= MOE_SEPARATION;
        break;
      }
    }
    if (runaway && wmax > wmax_old) { status |= MOE_SEPARATION; break; }
    wmax_old = wmax;
    if (it >= ctl->maxit) { status |= MOE_MAXIT; break; }
    obj_old = obj;
    mstatus = k.mstep(k.ctx, 0);
  }
  k.finish(k.ctx, R);
  *iter = it;
  *loglik = ll;
  return status | mstatus;
}
