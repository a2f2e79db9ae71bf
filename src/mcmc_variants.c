/*
 * mcmc_variants.c: one chain of the Gibbs sampler for the gating and expert
 * variants (any moe_gate, any moe_expert_family); the softmax gate with
 * linear experts keeps the sampler of mcmc.c.
 *
 * Data (moe_data, internal centred/scaled scale): y (n), X (n x p),
 * Z (n x q), column-major; wt (n) whole case weights >= 1 (frequency
 * weights). Parameters (moe_vpar, plus the temperature in gate->tau):
 * alpha (npar x K), sigma2 (K), W (q x K), V (q x G, hierarchical only),
 * reference columns as in em_variants.c; on entry the starting values, on
 * exit the final state. `state` (moe_mcmcv_state_size() doubles) holds the
 * adaptive proposal settings, on entry the values to start from (or to use,
 * when no warm-up is left) and on exit the final ones. Prior (moe_mcmc_prior):
 * the conjugate expert prior and the gating prior (exchangeable or not),
 * applied to W and, for a hierarchical gate, to V and to every group's
 * within-group coefficients (each level with its own number of categories);
 * tau_prior = (m, s): log tau ~ N(m, s^2) when the temperature is learned
 * (NULL when it is fixed). Controls (moe_mcmc_control): as in mcmc.c.
 * Writes: the kept draws (moe_mcmcv_draws) and the total log-likelihood of
 * each, accepted-proposal counts after warm-up per Metropolis block.
 *
 * One sweep, in this order:
 *  1. allocations: counts N_ki ~ Multinomial(wt_i, p_i.), log p_ik =
 *     log g_k(z_i) + log N(y_i; mu_ik, sigma2_k), with the gate's log
 *     probabilities (top-k: -Inf off the k active experts, so allocations are
 *     restricted to them); the same pass gives the log-likelihood of the
 *     previous sweep's draw;
 *  2. experts: the family's draw given the counts (linear experts: the
 *     conjugate Normal / inverse-gamma draw of mcmc.c, an empty expert from
 *     its prior);
 *  3. gate:
 *     - softmax, temperature: the Polya-Gamma (Holmes-Held) draw of every
 *       free gating vector in turn given the counts, with design Z / tau for
 *       a temperature (a fixed temperature is the softmax gate of Z / tau),
 *       then by ctl->gate_mode the joint Metropolis-Hastings refresh of
 *       mcmc.c (Gamerman's Fisher-scoring proposal); a learned temperature
 *       then takes a random-walk Metropolis step on log tau given the counts
 *       and W, and a move along (W, tau) -> (e^d W, e^d tau), d ~ N(0, l^2),
 *       on which the likelihood is constant (accepted by the prior ratio
 *       times the Jacobian e^{d q (K - 1)});
 *     - hierarchical: the same Polya-Gamma draws (and refresh) level by
 *       level: the groups with counts sum_{k in g} N_ki out of wt_i trials,
 *       then every group of >= 2 experts with counts N_ki out of the
 *       group's count (observations with none in the group drop out);
 *     - top-k: the allocations do not give a tractable conditional (an
 *       allocated expert must stay active), so each free gating vector is
 *       updated by random-walk Metropolis on p(W | alpha, sigma2, y), the
 *       allocations integrated out (the sweep's next allocation draw
 *       follows it, so the chain is a valid blocked Gibbs sampler); the
 *       proposal is N(0, l_k^2 L_k L_k') with l_k adapted towards an
 *       acceptance rate of 0.3 and L_k towards the covariance of the block,
 *       during warm-up only (Haario et al., 2001; frozen afterwards and kept
 *       in `state`, so a continued chain is identical to one long run).
 * Preconditions as mcmc.c. The caller does not hold the RNG: the run calls
 * GetRNGstate() / PutRNGstate() once around the loop. Returns moe_status
 * flags: MOE_NOT_PD (a ridge was needed), MOE_NONFINITE (the chain stopped).
 */
#include "moe.h"

#define ACCEPT_TARGET 0.3

/* ---- linear experts: the conjugate draw (moe_expert_family.draw) ---- */

/* work: 2 p^2 + 4 p doubles (stats of one expert at a time). */
int linear_expert_draw(const moe_expert_family *f, const moe_data *d,
                       const moe_mcmc_prior *pr, const int *N, double *alpha,
                       double *sigma2, double *state, int adapt, int *accepted,
                       double *work)
{
  (void) f; (void) state; (void) adapt; (void) accepted;
  int n = d->n, p = d->p, K = d->K, status = MOE_OK;
  double *A = work, *Asave = A + (R_xlen_t) p * p, *b = Asave + (R_xlen_t) p * p;
  double *m = b + p, *z = m + p, *zero = z + p;
  for (int a = 0; a < p; a++) zero[a] = 0.0;
  for (int k = 0; k < K; k++) {
    double nk = 0.0, yty = 0.0;
    for (int a = 0; a < p; a++) {
      b[a] = 0.0;
      for (int c = 0; c <= a; c++) A[a + c * p] = 0.0;
    }
    for (int i = 0; i < n; i++) {
      int c = N[k + (R_xlen_t) i * K];
      if (c == 0) continue;
      double yi = d->y[i];
      nk += c;
      yty += c * yi * yi;
      for (int a = 0; a < p; a++) {
        double xa = c * d->X[i + (R_xlen_t) a * n];
        b[a] += xa * yi;
        for (int e = 0; e <= a; e++) A[a + e * p] += xa * d->X[i + (R_xlen_t) e * n];
      }
    }
    for (int a = 0; a < p; a++) {
      for (int c = 0; c <= a; c++) A[a + c * p] += pr->Va_inv[a + c * p];
      b[a] += pr->Va_inv_m[a];
    }
    int rc = chol_factor_ridge(p, A, Asave, 1e-10);
    if (rc < 0) return status | MOE_NOT_PD | MOE_NONFINITE;
    if (rc > 0) status |= MOE_NOT_PD;
    for (int a = 0; a < p; a++) m[a] = b[a];
    chol_solve_factored(p, A, m, 1);
    double bm = 0.0;
    for (int a = 0; a < p; a++) bm += b[a] * m[a];
    double Q = yty + pr->m_Va_inv_m - bm;
    double shape = pr->c0 + 0.5 * nk, scale = pr->C0 + 0.5 * (Q > 0.0 ? Q : 0.0);
    double s2 = scale / rgamma(shape, 1.0);
    mvn_draw_chol(p, A, zero, z, b);
    double sd = sqrt(s2);
    double *ak = alpha + (R_xlen_t) k * p;
    for (int a = 0; a < p; a++) ak[a] = m[a] + sd * z[a];
    sigma2[k] = s2;
    if (!R_FINITE(s2) || !(s2 > 0.0)) status |= MOE_NONFINITE;
  }
  return status;
}

/* ---- work space ---- */

typedef struct {
  double *Zr, *Zsr;       /* q x n rows of Z and of Z / tau */
  int *wi, *N, *Nl, *bl;  /* n; K x n counts; level counts K x n; trials n */
  int *active;            /* K */
  double *eta, *etaV;     /* K x n and G x n logits, observation-major */
  double *logg, *lN, *mu; /* K x n each; mu n x K column-major */
  double *etal, *Wl;      /* level logits K x n; level coefficients q x K */
  double *Wp, *etap, *loggp; /* top-k proposal: q x K, K x n, K x n */
  double *P, *Psave, *r, *mw, *zq; /* Polya-Gamma block: q x q, q x q, q, q, q */
  double *H0, *H1, *Hsave, *g, *mu2, *tm, *Ws, *pk; /* refresh: m x m x 3, m, m, m + 1, q x K, K */
  double *cov;            /* adaptation: q x q */
  double *asums;          /* top-k adaptation sums: (K - 1) (1 + q + q^2) */
  int *acc_warm;          /* accepted counts during warm-up (discarded) */
  double *xwork;          /* the expert family's work */
} mcv_work;

void moe_mcmcv_work_size(const moe_data *d, const moe_gate *g,
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

static void mcv_carve(const moe_data *d, const moe_gate *g, double *w, int *iw,
                      mcv_work *s)
{
  int G = g->type == GATE_HIER ? g->G : 0;
  R_xlen_t n = d->n, q = d->q, K = d->K, m = (K - 1) * q;
  R_xlen_t KG = K > G ? K : G;
  s->Zr = w;     w += q * n;
  s->Zsr = w;    w += q * n;
  s->eta = w;    w += K * n;
  s->etaV = w;   w += G * n;
  s->logg = w;   w += K * n;
  s->lN = w;     w += K * n;
  s->mu = w;     w += n * K;
  s->etal = w;   w += KG * n;
  s->Wl = w;     w += q * KG;
  s->Wp = w;     w += q * K;
  s->etap = w;   w += K * n;
  s->loggp = w;  w += K * n;
  s->P = w;      w += q * q;
  s->Psave = w;  w += q * q;
  s->r = w;      w += q;
  s->mw = w;     w += q;
  s->zq = w;     w += q;
  s->H0 = w;     w += m * m;
  s->H1 = w;     w += m * m;
  s->Hsave = w;  w += m * m;
  s->g = w;      w += m;
  s->mu2 = w;    w += m;
  s->tm = w;     w += m + 1;
  s->Ws = w;     w += q * K;
  s->pk = w;     w += K;
  s->cov = w;    w += q * q;
  s->asums = w;  w += (K - 1) * (1 + q + q * q);
  s->xwork = w;
  s->wi = iw;    iw += n;
  s->N = iw;     iw += K * n;
  s->Nl = iw;    iw += KG * n;
  s->bl = iw;    iw += n;
  s->active = iw; iw += K;
  s->acc_warm = iw;
}

/* Length of the adaptation state: top-k, per free gating vector, the log
 * scale and the lower Cholesky factor (q x q) of the proposal covariance;
 * a learned temperature, the log scales of its two moves. */
int moe_mcmcv_state_size(const moe_gate *g, int q, int K, int learn_tau)
{
  if (g->type == GATE_TOPK && g->topk < K) return (K - 1) * (1 + q * q);
  if (g->type == GATE_TEMPERATURE && learn_tau) return 2;
  return 0;
}

/* ---- gate evaluation, observation-major ---- */

static void eta_rows(int n, int q, int K, const double *Zr, const double *W,
                     double *eta)
{
  for (int i = 0; i < n; i++) {
    const double *zi = Zr + (R_xlen_t) i * q;
    for (int k = 0; k < K; k++) {
      const double *wk = W + (R_xlen_t) k * q;
      double e = 0.0;
      for (int a = 0; a < q; a++) e += zi[a] * wk[a];
      eta[k + (R_xlen_t) i * K] = e;
    }
  }
}

static void eta_col(int n, int q, int K, const double *Zr, const double *W,
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

/* Logits and log probabilities of the gate at the current parameters; for a
 * temperature the logits are those of Z / tau (so the gate is the softmax
 * of eta). */
static void gate_state_eval(const moe_data *d, const moe_gate *g,
                            const moe_vpar *par, mcv_work *s)
{
  int n = d->n, q = d->q, K = d->K;
  const double *Zr = g->type == GATE_TEMPERATURE ? s->Zsr : s->Zr;
  eta_rows(n, q, K, Zr, par->W, s->eta);
  if (g->type == GATE_HIER) eta_rows(n, q, g->G, s->Zr, par->V, s->etaV);
  moe_gate gs = *g;
  if (gs.type == GATE_TEMPERATURE) gs.type = GATE_SOFTMAX;
  for (int i = 0; i < n; i++)
    gate_logprob_obs(&gs, K, s->eta + (R_xlen_t) i * K, 1,
                     g->type == GATE_HIER ? s->etaV + (R_xlen_t) i * g->G : NULL, 1,
                     s->logg + (R_xlen_t) i * K, 1, s->active);
}

static void scale_rows(const moe_data *d, double tau, mcv_work *s)
{
  R_xlen_t nq = (R_xlen_t) d->n * d->q;
  double inv = 1.0 / tau;
  for (R_xlen_t t = 0; t < nq; t++) s->Zsr[t] = s->Zr[t] * inv;
}

/* ---- allocations ---- */

/* Counts N (when draw) and the log-likelihood sum_i wt_i log p(y_i) at the
 * current parameters (when need_ll); s->lN receives the expert log
 * densities. */
static double mcv_alloc(const moe_data *d, const moe_expert_family *ef,
                        const moe_vpar *par, mcv_work *s, int draw, int need_ll)
{
  int n = d->n, K = d->K;
  ef->mean(ef, d, par->alpha, s->mu, s->xwork);
  double ll = 0.0;
  double *lk = s->pk;
  for (int i = 0; i < n; i++) {
    const double *lg = s->logg + (R_xlen_t) i * K;
    double *lNi = s->lN + (R_xlen_t) i * K;
    int *Ni = s->N + (R_xlen_t) i * K, wi = s->wi[i];
    double mx = R_NegInf;
    int km = 0;
    for (int k = 0; k < K; k++) {
      lNi[k] = log_dnorm(d->y[i], s->mu[i + (R_xlen_t) k * n], par->sigma2[k]);
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
      int rem = wi;
      double rs = acc;
      for (int k = 0; k < K - 1 && rem > 0; k++) {
        double pk = rs > 0.0 ? lk[k] / rs : 0.0;
        int c = pk >= 1.0 ? rem : (pk <= 0.0 ? 0 : (int) rbinom(rem, pk));
        Ni[k] = c;
        rem -= c;
        rs -= lk[k];
      }
      Ni[K - 1] += rem;
    }
  }
  return ll;
}

/* Log-likelihood with the allocations integrated out, from log gating
 * probabilities logg (K x n) and the expert log densities s->lN. */
static double collapsed_ll(const moe_data *d, const double *logg,
                           const mcv_work *s)
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

/* ---- gating prior ---- */

/* Log density (up to a constant) of the gating prior of a level of Kl
 * categories with free coefficients Wf (q x (Kl - 1)): per coordinate a the
 * precision (I - 11'/Kl) / s_a^2 (exchangeable) or I / s_a^2. */
static double level_logprior(const moe_mcmc_prior *pr, int q, int Kl,
                             const double *Wf)
{
  double off = pr->exchangeable ? 1.0 / Kl : 0.0, lp = 0.0;
  for (int a = 0; a < q; a++) {
    double sum = 0.0, ss = 0.0;
    for (int k = 0; k < Kl - 1; k++) {
      double v = Wf[a + k * q];
      sum += v;
      ss += v * v;
    }
    lp -= 0.5 * (ss - off * sum * sum) / pr->s_w2[a];
  }
  return lp;
}

/* ---- Polya-Gamma draws on a softmax level ---- */

/*
 * A softmax level: Kl categories, counts Nl (Kl x n) out of bl (n) trials,
 * design rows Zr (q x n), coefficients Wl (q x Kl, last column zero) and
 * logits etal (Kl x n, kept current). Draws every free column by the
 * Holmes-Held Polya-Gamma step of mcmc.c under the conditional prior of the
 * level (exchangeable: mean of the other free columns, variance Kl / (Kl - 1)
 * s_w2).
 */
static int level_pg(const moe_data *d, const moe_mcmc_prior *pr, int Kl,
                    const int *Nl, const int *bl, const double *Zr, double *Wl,
                    double *etal, mcv_work *s)
{
  int n = d->n, q = d->q, status = MOE_OK;
  if (Kl < 2) return status;
  double *P = s->P, *r = s->r, *mw = s->mw;
  double vfac = pr->exchangeable ? (double) Kl / (Kl - 1) : 1.0;
  for (int k = 0; k < Kl - 1; k++) {
    for (int t = 0; t < q * q; t++) P[t] = 0.0;
    for (int a = 0; a < q; a++) r[a] = 0.0;
    for (int i = 0; i < n; i++) {
      int b = bl[i];
      if (b == 0) continue;
      const double *ei = etal + (R_xlen_t) i * Kl, *zi = Zr + (R_xlen_t) i * q;
      double mx = R_NegInf, acc = 0.0;
      int jm = -1;
      for (int j = 0; j < Kl; j++) if (j != k && ei[j] > mx) { mx = ei[j]; jm = j; }
      for (int j = 0; j < Kl; j++) if (j != k && j != jm) acc += exp(ei[j] - mx);
      double C = mx + log1p(acc), psi = ei[k] - C;
      double om = b == 1 ? rpg1(psi) : rpg(b, psi);
      double t = (Nl[k + (R_xlen_t) i * Kl] - 0.5 * b) + om * C;
      for (int a = 0; a < q; a++) {
        double oz = om * zi[a];
        r[a] += t * zi[a];
        for (int c = 0; c <= a; c++) P[a + c * q] += oz * zi[c];
      }
    }
    for (int a = 0; a < q; a++) {
      double b0 = 0.0, v = vfac * pr->s_w2[a];
      if (pr->exchangeable && Kl > 2) {
        for (int j = 0; j < Kl - 1; j++) if (j != k) b0 += Wl[a + j * q];
        b0 /= (Kl - 1);
      }
      P[a + a * q] += 1.0 / v;
      r[a] += b0 / v;
    }
    int rc = chol_factor_ridge(q, P, s->Psave, 1e-10);
    if (rc < 0) return status | MOE_NOT_PD | MOE_NONFINITE;
    if (rc > 0) status |= MOE_NOT_PD;
    for (int a = 0; a < q; a++) mw[a] = r[a];
    chol_solve_factored(q, P, mw, 1);
    double *wk = Wl + (R_xlen_t) k * q;
    mvn_draw_chol(q, P, mw, wk, s->zq);
    for (int a = 0; a < q; a++) if (!R_FINITE(wk[a])) status |= MOE_NONFINITE;
    eta_col(n, q, Kl, Zr, Wl, k, etal);
  }
  return status;
}

/*
 * Log density of the level's coefficients given the counts (a multinomial
 * logit with bl trials) plus the prior, with gradient g and negative Hessian
 * H (m x m, m = q (Kl - 1), lower triangle). As gate_joint_logpost() of
 * mcmc.c, generalised to a level.
 */
static double level_logpost(const moe_data *d, const moe_mcmc_prior *pr,
                            int Kl, const int *Nl, const int *bl,
                            const double *Zr, const double *Wf, double *g,
                            double *H, double *pk)
{
  int n = d->n, q = d->q, m = q * (Kl - 1);
  double lp = 0.0;
  for (int t = 0; t < m; t++) g[t] = 0.0;
  for (R_xlen_t t = 0; t < (R_xlen_t) m * m; t++) H[t] = 0.0;
  for (int i = 0; i < n; i++) {
    double wi = bl[i];
    if (wi == 0) continue;
    const double *zi = Zr + (R_xlen_t) i * q;
    const int *Ni = Nl + (R_xlen_t) i * Kl;
    double mx = 0.0, acc = 0.0;
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
          int bmax = k == l ? a : q - 1;
          for (int b = 0; b <= bmax; b++) Hc[(R_xlen_t) b * m] += hz * zi[b];
        }
      }
    }
  }
  double off = pr->exchangeable ? 1.0 / Kl : 0.0;
  for (int a = 0; a < q; a++) {
    double prec = 1.0 / pr->s_w2[a], sum = 0.0, ss = 0.0;
    for (int k = 0; k < Kl - 1; k++) {
      sum += Wf[a + k * q];
      ss += Wf[a + k * q] * Wf[a + k * q];
    }
    lp -= 0.5 * prec * (ss - off * sum * sum);
    for (int k = 0; k < Kl - 1; k++) {
      g[k * q + a] -= prec * (Wf[a + k * q] - off * sum);
      for (int l = 0; l <= k; l++)
        H[(k * q + a) + (R_xlen_t) (l * q + a) * m] += prec * ((k == l) - off);
    }
  }
  return lp;
}

static double chol_quad(int m, const double *L, const double *x,
                        const double *mu, double *tmp)
{
  int one = 1;
  for (int a = 0; a < m; a++) tmp[a] = x[a] - mu[a];
  F77_CALL(dtrmv)("L", "T", "N", &m, L, &m, tmp, &one FCONE FCONE FCONE);
  double acc = 0.0;
  for (int a = 0; a < m; a++) acc += tmp[a] * tmp[a];
  return acc;
}

/* Gamerman's joint refresh of a level (gate_mh_step() of mcmc.c). Returns 1
 * when accepted, -1 when a precision could not be factored, 0 otherwise. */
static int level_refresh(const moe_data *d, const moe_mcmc_prior *pr, int Kl,
                         const int *Nl, const int *bl, const double *Zr,
                         double *Wl, mcv_work *s)
{
  int q = d->q, m = q * (Kl - 1);
  if (Kl < 2) return 0;
  double *H0 = s->H0, *H1 = s->H1, *g = s->g, *Ws = s->Ws, *mu = s->mu2,
         *tm = s->tm, *pk = s->pk;
  double lp0 = level_logpost(d, pr, Kl, Nl, bl, Zr, Wl, g, H0, pk);
  if (chol_factor_ridge(m, H0, s->Hsave, 0.0) != 0) return -1;
  for (int t = 0; t < m; t++) mu[t] = g[t];
  chol_solve_factored(m, H0, mu, 1);
  for (int t = 0; t < m; t++) mu[t] += Wl[t];
  mvn_draw_chol(m, H0, mu, Ws, tm);
  double lq_fwd = 0.5 * log_det_chol(m, H0) - 0.5 * chol_quad(m, H0, Ws, mu, tm);
  double lp1 = level_logpost(d, pr, Kl, Nl, bl, Zr, Ws, g, H1, pk);
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

/* Polya-Gamma draws and (mode >= 1) the refresh on one level; the refresh
 * only with mode 2. acc: the level's counter of accepted refreshes. */
static int level_update(const moe_data *d, const moe_mcmc_prior *pr, int Kl,
                        const int *Nl, const int *bl, const double *Zr,
                        double *Wl, double *etal, int mode, int *acc,
                        mcv_work *s)
{
  int status = MOE_OK, q = d->q, n = d->n;
  if (Kl < 2) return status;
  if (mode != 2) status |= level_pg(d, pr, Kl, Nl, bl, Zr, Wl, etal, s);
  if (mode > 0 && !(status & MOE_NONFINITE)) {
    int a = level_refresh(d, pr, Kl, Nl, bl, Zr, Wl, s);
    if (a > 0) {
      if (acc) (*acc)++;
      eta_rows(n, q, Kl, Zr, Wl, etal);
    }
    if (a < 0) status |= MOE_NOT_PD;
  }
  return status;
}

/* ---- the gate updates ---- */

static int update_softmax_like(const moe_data *d, const moe_mcmc_prior *pr,
                               const moe_gate *g, moe_vpar *par, int mode,
                               int *acc, mcv_work *s)
{
  int n = d->n, q = d->q, K = d->K;
  const double *Zr = g->type == GATE_TEMPERATURE ? s->Zsr : s->Zr;
  eta_rows(n, q, K, Zr, par->W, s->etal);
  return level_update(d, pr, K, s->N, s->wi, Zr, par->W, s->etal, mode, acc, s);
}

static int update_hier(const moe_data *d, const moe_mcmc_prior *pr,
                       const moe_gate *g, moe_vpar *par, int mode, int *acc,
                       mcv_work *s)
{
  int n = d->n, q = d->q, K = d->K, G = g->G, status = MOE_OK, slot = 0;
  /* groups: counts per group out of wt_i */
  for (int i = 0; i < n; i++) {
    int *Nl = s->Nl + (R_xlen_t) i * G;
    for (int h = 0; h < G; h++) Nl[h] = 0;
    for (int k = 0; k < K; k++) Nl[g->group[k]] += s->N[k + (R_xlen_t) i * K];
  }
  if (G >= 2) {
    eta_rows(n, q, G, s->Zr, par->V, s->etal);
    status |= level_update(d, pr, G, s->Nl, s->wi, s->Zr, par->V, s->etal, mode,
                           acc ? acc + slot : NULL, s);
    slot++;
  }
  /* within groups: counts N_ki out of the group count; bl takes the counts
   * of the group (copied, as Nl is reused) */
  for (int h = 0; h < G; h++) {
    int Kl = 0;
    for (int k = 0; k < K; k++) if (g->group[k] == h) Kl++;
    if (Kl < 2) continue;
    for (int i = 0; i < n; i++) {
      int tot = 0, j = 0;
      for (int k = 0; k < K; k++) {
        if (g->group[k] != h) continue;
        int c = s->N[k + (R_xlen_t) i * K];
        s->Nl[j + (R_xlen_t) i * Kl] = c;
        tot += c;
        j++;
      }
      s->bl[i] = tot;
    }
    int j = 0;
    for (int k = 0; k < K; k++) {
      if (g->group[k] != h) continue;
      for (int a = 0; a < q; a++) s->Wl[a + j * q] = par->W[a + (R_xlen_t) k * q];
      j++;
    }
    eta_rows(n, q, Kl, s->Zr, s->Wl, s->etal);
    status |= level_update(d, pr, Kl, s->Nl, s->bl, s->Zr, s->Wl, s->etal, mode,
                           acc ? acc + slot : NULL, s);
    slot++;
    j = 0;
    for (int k = 0; k < K; k++) {
      if (g->group[k] != h) continue;
      for (int a = 0; a < q; a++) par->W[a + (R_xlen_t) k * q] = s->Wl[a + j * q];
      j++;
    }
  }
  return status;
}

/* Robbins-Monro step of a log scale towards the target acceptance rate. */
static void adapt_scale(double *logl, double accept_prob, int t)
{
  double gam = 1.0 / pow((double) t + 1.0, 0.6);
  if (gam > 0.5) gam = 0.5;
  *logl += gam * (accept_prob - ACCEPT_TARGET);
  if (*logl > 5.0) *logl = 5.0;
  if (*logl < -15.0) *logl = -15.0;
}

/* log p(tau-related terms | counts, W) for the random walk on log tau: the
 * complete-data gating log-likelihood sum_i sum_k N_ik log softmax(eta_i /
 * tau)_k (eta = Z W unscaled, in s->eta? no: computed here) plus the prior. */
static double tau_logpost(const moe_data *d, const moe_vpar *par, double lt,
                          const double *tau_prior, mcv_work *s)
{
  int n = d->n, q = d->q, K = d->K;
  double inv = exp(-lt), lp = 0.0;
  for (int i = 0; i < n; i++) {
    const double *zi = s->Zr + (R_xlen_t) i * q;
    const int *Ni = s->N + (R_xlen_t) i * K;
    double mx = R_NegInf, acc = 0.0, *e = s->pk;
    for (int k = 0; k < K; k++) {
      double v = 0.0;
      for (int a = 0; a < q; a++) v += zi[a] * par->W[a + (R_xlen_t) k * q];
      e[k] = v * inv;
      if (e[k] > mx) mx = e[k];
    }
    for (int k = 0; k < K; k++) acc += exp(e[k] - mx);
    double lse = mx + log(acc);
    for (int k = 0; k < K; k++) if (Ni[k]) lp += Ni[k] * (e[k] - lse);
  }
  double z = (lt - tau_prior[0]) / tau_prior[1];
  return lp - 0.5 * z * z;
}

/* Learned temperature: a random-walk step on log tau given the counts and
 * W, then the move (e^d W, e^d tau). state[0], state[1]: log scales. */
static void update_tau(const moe_data *d, const moe_mcmc_prior *pr,
                       moe_gate *g, moe_vpar *par, const double *tau_prior,
                       double *state, int adapt, int t, int *acc,
                       mcv_work *s)
{
  int q = d->q, K = d->K, m = q * (K - 1);
  double lt = log(g->tau);
  double l0 = tau_logpost(d, par, lt, tau_prior, s);
  double ln = lt + exp(state[0]) * norm_rand();
  double l1 = tau_logpost(d, par, ln, tau_prior, s);
  double la = l1 - l0, u = log(unif_rand());
  int ok = R_FINITE(l1) && u < la;
  if (ok) { lt = ln; if (acc) acc[0]++; }
  if (adapt) adapt_scale(&state[0], la >= 0.0 ? 1.0 : (R_FINITE(la) ? exp(la) : 0.0), t);
  /* along (e^dl W, e^dl tau) the likelihood is constant */
  if (K >= 2) {
    double dl = exp(state[1]) * norm_rand(), c = exp(dl);
    double p0 = level_logprior(pr, q, K, par->W), z0 = (lt - tau_prior[0]) / tau_prior[1];
    for (int j = 0; j < m; j++) s->Ws[j] = par->W[j] * c;
    double p1 = level_logprior(pr, q, K, s->Ws), z1 = (lt + dl - tau_prior[0]) / tau_prior[1];
    double lb = p1 - p0 - 0.5 * (z1 * z1 - z0 * z0) + m * dl;
    if (log(unif_rand()) < lb) {
      for (int j = 0; j < m; j++) par->W[j] = s->Ws[j];
      lt += dl;
      if (acc) acc[1]++;
    }
    if (adapt) adapt_scale(&state[1], lb >= 0.0 ? 1.0 : exp(lb), t);
  }
  g->tau = exp(lt);
}

/*
 * Top-k: random-walk Metropolis on each free gating vector for
 * p(W | alpha, sigma2, y) (allocations integrated out). s->lN holds the
 * expert log densities at the current experts (set by mcv_alloc() before
 * the expert draw, so recomputed here), s->logg the gate at W. state per
 * block: log scale, lower Cholesky factor of the proposal covariance.
 * During warm-up (adapt) the scales follow Robbins-Monro and the factors
 * are reset every 50 sweeps from the running covariance of the block.
 */
static int update_topk(const moe_data *d, const moe_mcmc_prior *pr,
                       const moe_gate *g, const moe_expert_family *ef,
                       moe_vpar *par, double *state, int adapt, int t,
                       int *acc, mcv_work *s)
{
  int n = d->n, q = d->q, K = d->K, status = MOE_OK;
  /* expert log densities at the experts just drawn */
  ef->mean(ef, d, par->alpha, s->mu, s->xwork);
  for (int i = 0; i < n; i++)
    for (int k = 0; k < K; k++)
      s->lN[k + (R_xlen_t) i * K] =
        log_dnorm(d->y[i], s->mu[i + (R_xlen_t) k * n], par->sigma2[k]);
  eta_rows(n, q, K, s->Zr, par->W, s->eta);
  for (int i = 0; i < n; i++)
    gate_logprob_obs(g, K, s->eta + (R_xlen_t) i * K, 1, NULL, 1,
                     s->logg + (R_xlen_t) i * K, 1, s->active);
  double lcur = collapsed_ll(d, s->logg, s) + level_logprior(pr, q, K, par->W);
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
      gate_logprob_obs(g, K, s->etap + (R_xlen_t) i * K, 1, NULL, 1,
                       s->loggp + (R_xlen_t) i * K, 1, s->active);
    double lnew = collapsed_ll(d, s->loggp, s) + level_logprior(pr, q, K, s->Wp);
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

/* ---- the chain ---- */

static void store(const moe_data *d, const moe_gate *g, int npar,
                  const moe_vpar *par, moe_mcmcv_draws *out, int slot)
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

int moe_mcmcv_run(const moe_data *d, moe_gate *g, const moe_expert_family *ef,
                  const moe_mcmc_prior *pr, const double *tau_prior,
                  const moe_mcmc_control *ctl, moe_vpar *par, double *state,
                  double *xstate, moe_mcmcv_draws *out, double *work, int *iwork)
{
  int n = d->n, q = d->q, K = d->K, status = MOE_OK;
  mcv_work s;
  mcv_carve(d, g, work, iwork, &s);
  for (int i = 0; i < n; i++) {
    for (int a = 0; a < q; a++) s.Zr[a + (R_xlen_t) i * q] = d->Z[i + (R_xlen_t) a * n];
    s.wi[i] = (int) d->wt[i];
  }
  int topk = g->type == GATE_TOPK && g->topk < K;
  int learn = g->type == GATE_TEMPERATURE && tau_prior != NULL;
  int nblocks = out->nblocks;
  for (int b = 0; b < nblocks; b++) out->accept[b] = 0;
  for (R_xlen_t u = 0; u < (R_xlen_t) (K - 1) * (1 + q + q * q); u++) s.asums[u] = 0.0;
  if (g->type == GATE_TEMPERATURE) scale_rows(d, g->tau, &s);
  gate_state_eval(d, g, par, &s);

  int total = ctl->warmup + ctl->iter, kept = 0, pending = -1, t;
  GetRNGstate();
  for (t = 1; t <= total; t++) {
    R_CheckUserInterrupt();
    int warm = t <= ctl->warmup;
    int *acc = warm ? s.acc_warm : out->accept;
    /* the refresh alone (mode 2) can stay stuck where its Fisher-scoring
     * step overshoots (see moe_mcmc_run() in mcmc.c): the Polya-Gamma draws
     * are added in every warm-up sweep and every pg_every-th sweep after */
    int gm = ctl->gate_mode;
    if (gm == 2 && (warm || (ctl->pg_every > 0 &&
                             (ctl->offset + t - ctl->warmup) % ctl->pg_every == 0)))
      gm = 1;
    double ll = mcv_alloc(d, ef, par, &s, 1, pending >= 0);
    if (pending >= 0) {
      out->loglik[pending] = ll;
      if (!R_FINITE(ll)) status |= MOE_NONFINITE;
      pending = -1;
    }
    status |= ef->draw(ef, d, pr, s.N, par->alpha, par->sigma2, xstate, warm,
                       acc + out->expert_slot, s.xwork);
    if (!(status & MOE_NONFINITE)) {
      switch (g->type) {
      case GATE_HIER:
        status |= update_hier(d, pr, g, par, gm, acc, &s);
        break;
      case GATE_TOPK:
        if (topk) {
          status |= update_topk(d, pr, g, ef, par, state, warm, t, acc, &s);
          break;
        }
        /* k = K: the softmax */
        status |= update_softmax_like(d, pr, g, par, gm, acc, &s);
        break;
      case GATE_TEMPERATURE:
        status |= update_softmax_like(d, pr, g, par, gm, acc, &s);
        if (learn && !(status & MOE_NONFINITE)) {
          update_tau(d, pr, g, par, tau_prior, state, warm, t,
                     acc + (ctl->gate_mode > 0 && K >= 2 ? 1 : 0), &s);
          scale_rows(d, g->tau, &s);
        }
        break;
      default:
        status |= update_softmax_like(d, pr, g, par, gm, acc, &s);
      }
      gate_state_eval(d, g, par, &s);
    }
    if (status & MOE_NONFINITE) break;
    if (!warm && (ctl->offset + t - ctl->warmup) % ctl->thin == 0 &&
        kept < out->nkeep) {
      store(d, g, ef->npar, par, out, kept);
      pending = kept++;
    }
    if (ctl->refresh > 0 && (t % ctl->refresh == 0 || t == total))
      Rprintf("chain %d: iteration %d / %d (%s)\n", ctl->chain, t, total,
              warm ? "warm-up" : "sampling");
  }
  PutRNGstate();
  if (pending >= 0) {
    out->loglik[pending] = mcv_alloc(d, ef, par, &s, 0, 1);
    if (!R_FINITE(out->loglik[pending])) status |= MOE_NONFINITE;
  }
  out->nkeep = kept;
  out->done = t > total ? total : t;
  return status;
}
