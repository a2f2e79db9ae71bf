/*
 * mcmc.c: THE Gibbs driver, one chain for any gate (moe_gate and its
 * moe_gate_ops) and any expert family (moe_expert_family), and its generic
 * sweep kernel.
 *
 * Data (moe_data, internal centred/scaled scale): y (n), X (n x p, the
 * family's design), Z (n x q), column-major; wt (n) whole case weights >= 1
 * (frequency weights). Parameters (moe_vpar, the temperature in gate->tau):
 * on entry the starting values, on exit the final state. `state`
 * (moe_gibbs_state_size() doubles) holds the gate's adaptive proposal
 * settings and `xstate` (ef->nstate) the family's, on entry the values to
 * start from (or to use, when no warm-up is left) and on exit the final
 * ones. Prior (moe_mcmc_prior): the expert prior and the gating prior
 * (prior.c); tau_prior = (m, s) when a temperature is learned. Controls
 * (moe_mcmc_control, moe.h). Writes the kept draws and the total
 * log-likelihood of each (moe_gibbs_draws), the gating move counts
 * (out->moves) and the accepted proposals per Metropolis block after
 * warm-up (out->accept).
 *
 * moe_gibbs_run() runs `warmup` + `iter` sweeps; a sweep is made by the
 * kernel chosen here:
 *  - the softmax gate with linear Gaussian experts: the fused kernel of
 *    mcmc_fused.c (also the collapsed gating update, gate_mode 3);
 *  - anything else: the generic kernel below. One sweep: (1) allocations
 *    N_ki ~ Multinomial(wt_i, p_i.), log p_ik = log g_k(z_i) + the family's
 *    log density (top-k: -Inf off the active experts, so allocations stay on
 *    them); the same pass gives the log-likelihood of the previous sweep's
 *    draw; (2) the family's draw given the counts; (3) the gate's Gibbs
 *    update (gate_mode 0: Polya-Gamma draws, 1: and the joint refresh, 2:
 *    the refresh; 3 runs as 1).
 * The driver owns what every kernel shares: the random number stream
 * (GetRNGstate() / PutRNGstate() once around the loop), interrupts,
 * thinning ((offset + t) % thin == 0 after warm-up, so a continued chain
 * keeps the phase of one long run), the log-likelihood of each kept draw
 * (from the next sweep's first pass, or a last pass), progress, and the
 * schedule of the Polya-Gamma draws when the gating moves are Metropolis-
 * Hastings moves (modes 2 and 3):
 *  - in warm-up, every sweep once MOE_STALL_SWEEPS sweeps in a row accepted
 *    no gating move. A proposal built from the current point (a Newton or
 *    Fisher-scoring step) can overshoot so far from a poor start that the
 *    reverse move is never proposed; the Polya-Gamma draw is a Gibbs step
 *    that always moves. Warm-up draws are discarded, so this
 *    history-dependent choice does not change the posterior;
 *  - after warm-up, every pg_every-th sweep (a fixed schedule keeps the
 *    kernel invariant), or every sweep when fewer than MOE_STALL_RATE of the
 *    moves were accepted in the second half of warm-up (typically an expert
 *    with nearly no gate weight, where the gating prior is flat up to a
 *    steep wall); chosen once, at the end of warm-up, returned in
 *    out->pg_every and passed back by continuations.
 * Returns moe_status flags: MOE_NOT_PD (a ridge was needed), MOE_NONFINITE
 * (the chain stopped; out->done and out->nkeep say how far it got).
 * work, iwork: moe_gibbs_work_size().
 */
#include "moe.h"

/* ---- the generic kernel ---- */

typedef struct {
  const moe_data *d;
  moe_gate *g;
  const moe_expert_family *ef;
  const moe_mcmc_prior *pr;
  const double *tau_prior;
  moe_vpar *par;
  double *state, *xstate;
  int expert_slot;
  moe_gibbs_work s;
} gibbs_generic;

static void generic_work_size(const moe_data *d, const moe_gate *g,
                              const moe_expert_family *ef, int nblocks,
                              R_xlen_t *ndouble, R_xlen_t *nint)
{
  R_xlen_t G = g->type == GATE_HIER ? g->G : 0;
  R_xlen_t n = d->n, q = d->q, K = d->K, m = (K - 1) * q, KG = K > G ? K : G;
  *ndouble = 2 * q * n + K * n + G * n + 3 * K * n + KG * n + q * KG +
    q * K + 2 * K * n + 2 * q * q + 3 * q + 3 * m * m + 3 * m + 1 + q * K + K +
    q * q + (K - 1) * (1 + q + q * q) + ef->work_size(ef, d) + 8;
  *nint = n + K * n + KG * n + n + K + nblocks + 8;
}

static void carve(const moe_data *d, const moe_gate *g, double *w, int *iw,
                      moe_gibbs_work *s)
{
  int G = g->type == GATE_HIER ? g->G : 0;
  R_xlen_t n = d->n, q = d->q, K = d->K, m = (K - 1) * q;
  R_xlen_t KG = K > G ? K : G;
  s->Zr = moe_take(&w, q * n);  s->Zsr = moe_take(&w, q * n);
  s->eta = moe_take(&w, K * n);  s->etaV = moe_take(&w, G * n);
  s->logg = moe_take(&w, K * n);  s->lN = moe_take(&w, K * n);
  s->mu = moe_take(&w, n * K);  s->etal = moe_take(&w, KG * n);
  s->Wl = moe_take(&w, q * KG);  s->Wp = moe_take(&w, q * K);
  s->etap = moe_take(&w, K * n);  s->loggp = moe_take(&w, K * n);
  s->P = moe_take(&w, q * q);  s->Psave = moe_take(&w, q * q);
  s->r = moe_take(&w, q);  s->mw = moe_take(&w, q);  s->zq = moe_take(&w, q);
  s->H0 = moe_take(&w, m * m);  s->H1 = moe_take(&w, m * m);
  s->Hsave = moe_take(&w, m * m);
  s->g = moe_take(&w, m);  s->mu2 = moe_take(&w, m);  s->tm = moe_take(&w, m + 1);
  s->Ws = moe_take(&w, q * K);  s->pk = moe_take(&w, K);
  s->cov = moe_take(&w, q * q);  s->asums = moe_take(&w, (K - 1) * (1 + q + q * q));
  s->xwork = w;
  s->wi = iw;    iw += n;
  s->N = iw;     iw += K * n;
  s->Nl = iw;    iw += KG * n;
  s->bl = iw;    iw += n;
  s->active = iw;
}

/* Logits and log probabilities of the gate at the current parameters. */
static void gate_state_eval(const moe_data *d, const moe_gate *g,
                            const moe_vpar *par, moe_gibbs_work *s)
{
  int n = d->n, q = d->q, K = d->K;
  eta_rows(n, q, K, s->Zr, par->W, s->eta);
  if (g->type == GATE_HIER) eta_rows(n, q, g->G, s->Zr, par->V, s->etaV);
  for (int i = 0; i < n; i++)
    g->ops->logprob(g, K, s->eta + (R_xlen_t) i * K, 1,
                    g->type == GATE_HIER ? s->etaV + (R_xlen_t) i * g->G : NULL, 1,
                    s->logg + (R_xlen_t) i * K, 1, s->active);
}

/* Counts N (when draw) and the log-likelihood sum_i wt_i log p(y_i) at the
 * current parameters (when need_ll); s->lN receives the expert log
 * densities. */
static double alloc_pass(const moe_data *d, const moe_expert_family *ef,
                        const moe_vpar *par, moe_gibbs_work *s, int draw, int need_ll)
{
  int n = d->n, K = d->K;
  ef->mean(ef, d, par->alpha, s->mu, s->xwork);
  ef->logdens(ef, d, s->mu, par->sigma2, s->lN, K, 1);
  double ll = 0.0;
  double *lk = s->pk;
  for (int i = 0; i < n; i++) {
    const double *lg = s->logg + (R_xlen_t) i * K;
    double *lNi = s->lN + (R_xlen_t) i * K;
    int *Ni = s->N + (R_xlen_t) i * K, wi = s->wi[i];
    double mx = R_NegInf;
    int km = 0;
    for (int k = 0; k < K; k++) {
      double l = lg[k] + lNi[k];
      lk[k] = l;
      if (l > mx) { mx = l; km = k; }
    }
    double acc = 0.0;
    for (int k = 0; k < K; k++) {
      lk[k] = k == km ? 1.0 : exp(lk[k] - mx);
      acc += lk[k];
    }
    if (need_ll) ll += wi * (mx + log(acc));
    if (!draw) continue;
    for (int k = 0; k < K; k++) Ni[k] = 0;
    if (K == 1) {
      Ni[0] = wi;
    } else if (wi == 1) {
      /* never an expert of probability 0 (inactive under top-k) */
      double u = unif_rand() * acc, cum = 0.0;
      int k = km;
      for (int j = 0; j < K; j++) {
        if (!(lk[j] > 0.0)) continue;
        cum += lk[j];
        k = j;
        if (cum >= u) break;
      }
      Ni[k] = 1;
    } else {
      alloc_multinomial(K, wi, lk, acc, Ni);
    }
  }
  return ll;
}

static double generic_sweep(void *ctx, const moe_gibbs_step *st, int need_ll,
                            int *status)
{
  gibbs_generic *e = (gibbs_generic *) ctx;
  const moe_data *d = e->d;
  const moe_expert_family *ef = e->ef;
  moe_vpar *par = e->par;
  double ll = alloc_pass(d, ef, par, &e->s, 1, need_ll);
  if (need_ll && !R_FINITE(ll)) *status |= MOE_NONFINITE;
  *status |= ef->draw(ef, d, e->pr, e->s.N, par->alpha, par->sigma2, e->xstate,
                      st->warm, st->block + e->expert_slot, e->s.xwork);
  if (!(*status & MOE_NONFINITE)) {
    *status |= e->g->ops->gibbs(d, e->pr, e->g, ef, par, e->tau_prior, e->state,
                                st, &e->s);
    gate_state_eval(d, e->g, par, &e->s);
  }
  return ll;
}

/* ---- the chain ---- */

static void store_draw(const moe_data *d, const moe_gate *g, int npar,
                  const moe_vpar *par, moe_gibbs_draws *out, int slot)
{
  int q = d->q, K = d->K;
  R_xlen_t pa = (R_xlen_t) npar * K, qa = (R_xlen_t) q * K;
  for (R_xlen_t t = 0; t < pa; t++) out->alpha[t + slot * pa] = par->alpha[t];
  for (int k = 0; k < K; k++) out->sigma2[k + (R_xlen_t) slot * K] = par->sigma2[k];
  for (R_xlen_t t = 0; t < qa; t++) out->W[t + slot * qa] = par->W[t];
  if (g->type == GATE_HIER) {
    R_xlen_t va = (R_xlen_t) q * g->G;
    for (R_xlen_t t = 0; t < va; t++) out->V[t + slot * va] = par->V[t];
  }
  out->tau[slot] = g->tau;
}

static void generic_store(void *ctx, moe_gibbs_draws *out, int slot)
{
  gibbs_generic *e = (gibbs_generic *) ctx;
  store_draw(e->d, e->g, e->ef->npar, e->par, out, slot);
}

static double generic_loglik(void *ctx)
{
  gibbs_generic *e = (gibbs_generic *) ctx;
  return alloc_pass(e->d, e->ef, e->par, &e->s, 0, 1);
}

static void generic_init(gibbs_kernel *k, const moe_data *d, moe_gate *g,
                         const moe_expert_family *ef, const moe_mcmc_prior *pr,
                         const double *tau_prior, moe_vpar *par, double *state,
                         double *xstate, int expert_slot, double *work,
                         int *iwork)
{
  gibbs_generic *e = (gibbs_generic *) R_alloc(1, sizeof(gibbs_generic));
  int n = d->n, q = d->q, K = d->K;
  e->d = d; e->g = g; e->ef = ef; e->pr = pr; e->tau_prior = tau_prior;
  e->par = par; e->state = state; e->xstate = xstate;
  e->expert_slot = expert_slot;
  moe_gibbs_work *s = &e->s;
  carve(d, g, work, iwork, s);
  for (int i = 0; i < n; i++) {
    for (int a = 0; a < q; a++) s->Zr[a + (R_xlen_t) i * q] = d->Z[i + (R_xlen_t) a * n];
    s->wi[i] = (int) d->wt[i];
  }
  for (R_xlen_t u = 0; u < (R_xlen_t) (K - 1) * (1 + q + q * q); u++) s->asums[u] = 0.0;
  gate_state_eval(d, g, par, s);
  k->ctx = e;
  k->sweep = generic_sweep;
  k->store = generic_store;
  k->loglik = generic_loglik;
}

/* ---- the driver ---- */

void moe_gibbs_work_size(const moe_data *d, const moe_gate *g,
                         const moe_expert_family *ef, int nblocks,
                         R_xlen_t *ndouble, R_xlen_t *nint)
{
  if (moe_use_fused(g, ef)) mcmc_fused_work_size(d, ndouble, nint);
  else generic_work_size(d, g, ef, nblocks, ndouble, nint);
}

int moe_gibbs_state_size(const moe_gate *g, int q, int K, int learn_tau)
{
  return g->ops->state_size(g, q, K, learn_tau);
}

int moe_gibbs_run(const moe_data *d, moe_gate *g, const moe_expert_family *ef,
                  const moe_mcmc_prior *pr, const double *tau_prior,
                  const moe_mcmc_control *ctl, moe_vpar *par, double *state,
                  double *xstate, moe_gibbs_draws *out, double *work,
                  int *iwork)
{
  int K = d->K, status = MOE_OK, mode = ctl->gate_mode;
  gibbs_kernel k;
  if (moe_use_fused(g, ef)) {
    mcmc_fused_init(&k, d, pr, ctl, par, work, iwork);
  } else {
    if (mode == 3) mode = 1;  /* the collapsed update is the fused kernel's */
    generic_init(&k, d, g, ef, pr, tau_prior, par, state, xstate,
                 out->expert_slot, work, iwork);
  }
  int nblocks = out->nblocks;
  int *acc_warm = (int *) R_alloc(nblocks + 1, sizeof(int));
  for (int b = 0; b < nblocks; b++) out->accept[b] = acc_warm[b] = 0;
  int *cnt = out->moves;
  for (int a = 0; a < MOE_NACC; a++) cnt[a] = 0;
  int total = ctl->warmup + ctl->iter, kept = 0, pending = -1, t;
  int stalled = 0, pg_every = ctl->pg_every, acc_late = 0, prop_late = 0;

  GetRNGstate();
  for (t = 1; t <= total; t++) {
    R_CheckUserInterrupt();
    int warm = t <= ctl->warmup;
    moe_gibbs_step st;
    st.warm = warm;
    st.t = t;
    st.block = warm ? acc_warm : out->accept;
    st.acc = cnt + (warm ? MOE_ACC_WARMUP : MOE_ACC_SAMPLING);
    st.prop = cnt + (warm ? MOE_PROP_WARMUP : MOE_PROP_SAMPLING);
    st.mh = mode >= 1;
    /* the Polya-Gamma draws of the gating in this sweep (see the head of
     * the file) */
    st.pg = mode <= 1 ||
      (K > 1 && (warm ? stalled >= MOE_STALL_SWEEPS :
                 pg_every > 0 && (ctl->offset + t - ctl->warmup) % pg_every == 0));
    int acc0 = *st.acc, prop0 = *st.prop;
    double ll = k.sweep(k.ctx, &st, pending >= 0, &status);
    if (pending >= 0) {
      out->loglik[pending] = ll;
      pending = -1;
    }
    if (K > 1 && st.pg && mode >= 2) cnt[warm ? MOE_PG_WARMUP : MOE_PG_SAMPLING]++;
    stalled = *st.acc > acc0 ? 0 : stalled + 1;
    if (warm && 2 * t > ctl->warmup) {
      acc_late += *st.acc - acc0;
      prop_late += *st.prop - prop0;
      if (t == ctl->warmup && K > 1 && mode >= 2 && prop_late > 0 &&
          acc_late < MOE_STALL_RATE * prop_late)
        pg_every = 1;
    }
    if (status & MOE_NONFINITE) break;
    if (!warm && (ctl->offset + t - ctl->warmup) % ctl->thin == 0 &&
        kept < out->nkeep) {
      k.store(k.ctx, out, kept);
      pending = kept++;
    }
    if (ctl->refresh > 0 && (t % ctl->refresh == 0 || t == total))
      Rprintf("chain %d: iteration %d / %d (%s)\n", ctl->chain, t, total,
              warm ? "warm-up" : "sampling");
  }
  PutRNGstate();
  if (pending >= 0) {
    out->loglik[pending] = k.loglik(k.ctx);
    if (!R_FINITE(out->loglik[pending])) status |= MOE_NONFINITE;
  }
  out->nkeep = kept;
  out->done = t > total ? total : t;
  out->pg_every = pg_every;
  return status;
}
