/*
 * gate_hier.c: the hierarchical (two-level) softmax gate. The K experts are
 * in G groups (g->group[k] in 0..G-1, every group non-empty):
 *     g_k(z) = softmax_h(z'V)_{h(k)} softmax_{j in h(k)}(z'W)_k,
 * V (q x G, column G - 1 the reference) the group coefficients and W
 * (q x K) the within-group ones, the last expert of each group its
 * reference. Every level is an ordinary softmax level (gate.c):
 *  - EM: Newton on the group level with responsibilities Rg_ig = sum_{k in
 *    g} R_ik, then on group g's level with weights wt_i Rg_ig and
 *    responsibilities R_ik / Rg_ig; Q is the sum of these terms, so every
 *    step keeps EM monotone;
 *  - Gibbs: the group level with counts sum_{k in g} N_ki out of wt_i
 *    trials, then every group of >= 2 experts with counts N_ki out of the
 *    group's count (observations with none in the group drop out).
 */
#include "moe.h"

static void hier_logprob(const moe_gate *g, int K, const double *eta,
                         R_xlen_t se, const double *etaV, R_xlen_t sv,
                         double *logg, R_xlen_t sl, int *active)
{
  (void) active;
  int G = g->G;
  double lseV = lse_strided(G, etaV, sv, NULL, 1.0);
  for (int h = 0; h < G; h++) {
    double mx = R_NegInf;
    for (int k = 0; k < K; k++)
      if (g->group[k] == h && eta[k * se] > mx) mx = eta[k * se];
    double acc = 0.0;
    for (int k = 0; k < K; k++)
      if (g->group[k] == h) acc += exp(eta[k * se] - mx);
    double base = etaV[h * sv] - lseV - (mx + log(acc));
    for (int k = 0; k < K; k++)
      if (g->group[k] == h) logg[k * sl] = base + eta[k * se];
  }
}

/* Copy the coefficients of group h's experts between W (q x K) and the
 * level's Wl (q x Kl, in expert order): to_level 1 W -> Wl, 0 Wl -> W. */
static void group_columns(const moe_gate *g, int h, int q, int K, double *W,
                          double *Wl, int to_level)
{
  for (int k = 0, j = 0; k < K; k++) {
    if (g->group[k] != h) continue;
    double *wk = W + (R_xlen_t) k * q, *wj = Wl + (R_xlen_t) j * q;
    for (int a = 0; a < q; a++) {
      if (to_level) wj[a] = wk[a];
      else wk[a] = wj[a];
    }
    j++;
  }
}

/* The ridge on V and on W (its reference columns are zero). */
static double hier_penalty(const moe_data *d, const moe_gate *g,
                           const moe_vpar *par, double ridge,
                           const double *tau_prior)
{
  (void) tau_prior;
  if (ridge == 0.0) return 0.0;
  double s = sumsq(par->V, (R_xlen_t) d->q * g->G);
  s += sumsq(par->W, (R_xlen_t) d->q * d->K);
  return 0.5 * ridge * s;
}

/* Hierarchical gate: the group level, then each group of >= 2 experts. */
static int mstep_hier(const moe_data *d, const moe_gate *g, moe_vpar *par,
                      const double *R, double ridge, int steps, moe_em_work *s)
{
  int n = d->n, q = d->q, K = d->K, G = g->G, status = MOE_OK;
  /* group responsibilities Rg (n x G) in Rl */
  for (R_xlen_t t = 0; t < (R_xlen_t) n * G; t++) s->Rl[t] = 0.0;
  for (int k = 0; k < K; k++) {
    double *Rg = s->Rl + (R_xlen_t) g->group[k] * n;
    const double *Rk = R + (R_xlen_t) k * n;
    for (int i = 0; i < n; i++) Rg[i] += Rk[i];
  }
  status |= level_newton(d, d->Z, d->wt, G, s->Rl, par->V, ridge, steps, s);
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
      j++;
    }
    group_columns(g, h, q, K, par->W, s->Wl, 1);
    for (int i = 0; i < n; i++) s->wtl[i] *= d->wt[i];
    status |= level_newton(d, d->Z, s->wtl, Kl, s->Rl, s->Wl, ridge, steps, s);
    group_columns(g, h, q, K, par->W, s->Wl, 0);
  }
  return status;
}


static int hier_em_mstep(const moe_data *d, moe_gate *g, moe_vpar *par,
                         const double *tau_prior, const double *R,
                         const moe_em_control *ctl, int first, moe_em_work *s,
                         int *iwork)
{
  (void) tau_prior; (void) first; (void) iwork;
  return mstep_hier(d, g, par, R, ctl->ridge, ctl->gate_steps, s);
}

static int hier_gibbs(const moe_data *d, const moe_mcmc_prior *pr,
                      moe_gate *g, const moe_expert_family *ef, moe_vpar *par,
                      const double *tau_prior, double *state,
                      const moe_gibbs_step *st, moe_gibbs_work *s)
{
  (void) ef; (void) tau_prior; (void) state;
  int n = d->n, q = d->q, K = d->K, G = g->G, status = MOE_OK, slot = 0;
  int *acc = st->block;
  /* groups: counts per group out of wt_i */
  for (int i = 0; i < n; i++) {
    int *Nl = s->Nl + (R_xlen_t) i * G;
    for (int h = 0; h < G; h++) Nl[h] = 0;
    for (int k = 0; k < K; k++) Nl[g->group[k]] += s->N[k + (R_xlen_t) i * K];
  }
  if (G >= 2) {
    eta_rows(n, q, G, s->Zr, par->V, s->etal);
    status |= level_update(d, pr, G, s->Nl, s->wi, s->Zr, par->V, s->etal, st,
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
    group_columns(g, h, q, K, par->W, s->Wl, 1);
    eta_rows(n, q, Kl, s->Zr, s->Wl, s->etal);
    status |= level_update(d, pr, Kl, s->Nl, s->bl, s->Zr, s->Wl, s->etal, st,
                           acc ? acc + slot : NULL, s);
    slot++;
    group_columns(g, h, q, K, par->W, s->Wl, 0);
  }
  return status;
}


const moe_gate_ops gate_hier_ops = {
  hier_logprob, gate_no_state, hier_penalty, hier_em_mstep, hier_gibbs
};
