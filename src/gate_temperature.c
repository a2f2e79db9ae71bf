/*
 * gate_temperature.c: the temperature gate, g_k(z) = softmax(z'W / tau)_k,
 * with tau fixed or learned (log tau ~ N(m, s^2), tau_prior = (m, s)).
 * A temperature gate IS the softmax gate of the design Z / tau, so the EM
 * and Gibbs updates of W are those of a softmax level (gate.c) on that
 * design. A learned temperature adds:
 *  - EM: after the W steps, a Newton step on log tau for Q - (log tau -
 *    m)^2 / (2 s^2) with step halving, then the exact maximisation of the
 *    penalised objective along (W, tau) -> (c W, c tau), on which the
 *    likelihood is constant (ridge and prior only). The likelihood does not
 *    identify tau: this is the MAP estimate under the prior and the ridge;
 *  - Gibbs: a random-walk Metropolis step on log tau given the counts and W,
 *    then a move along (W, tau) -> (e^d W, e^d tau), d ~ N(0, l^2), accepted
 *    by the prior ratio times the Jacobian e^{d q (K - 1)}; both scales
 *    adapt in warm-up (adapt_scale()) and are the gate's state (2 doubles).
 */
#include "moe.h"

static void temperature_logprob(const moe_gate *g, int K, const double *eta,
                                R_xlen_t se, const double *etaV, R_xlen_t sv,
                                double *logg, R_xlen_t sl, int *active)
{
  (void) etaV; (void) sv; (void) active;
  double inv = 1.0 / g->tau, lse = lse_strided(K, eta, se, NULL, inv);
  for (int k = 0; k < K; k++) logg[k * sl] = eta[k * se] * inv - lse;
}

static int temperature_state_size(const moe_gate *g, int q, int K, int learn_tau)
{
  (void) g; (void) q; (void) K;
  return learn_tau ? 2 : 0;
}

/* The ridge penalty and the prior penalty (log tau - m)^2 / (2 s^2) of a
 * learned temperature. */
static double temperature_penalty(const moe_data *d, const moe_gate *g,
                                  const moe_vpar *par, double ridge,
                                  const double *tau_prior)
{
  double pen = gate_ridge_penalty(d, g, par, ridge, NULL);
  if (!tau_prior) return pen;
  double z = (log(g->tau) - tau_prior[0]) / tau_prior[1];
  return pen + 0.5 * z * z;
}

static void scale_design(const moe_data *d, double tau, double *Zs)
{
  R_xlen_t nq = (R_xlen_t) d->n * d->q;
  double inv = 1.0 / tau;
  for (R_xlen_t t = 0; t < nq; t++) Zs[t] = d->Z[t] * inv;
}

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
                      moe_em_work *s)
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


static int temperature_em_mstep(const moe_data *d, moe_gate *g, moe_vpar *par,
                                const double *tau_prior, const double *R,
                                const moe_em_control *ctl, int first,
                                moe_em_work *s, int *iwork)
{
  (void) first; (void) iwork;
  scale_design(d, g->tau, s->Zs);
  int status = level_newton(d, s->Zs, d->wt, d->K, R, par->W, ctl->ridge,
                            ctl->gate_steps, s);
  if (tau_prior) mstep_tau(d, g, par, R, tau_prior, ctl->ridge, s);
  return status;
}

/* log p(tau-related terms | counts, W) for the random walk on log tau: the
 * complete-data gating log-likelihood sum_i sum_k N_ik log softmax(eta_i /
 * tau)_k (eta = Z W unscaled, in s->eta? no: computed here) plus the prior. */
static double tau_logpost(const moe_data *d, const moe_vpar *par, double lt,
                          const double *tau_prior, moe_gibbs_work *s)
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
                       moe_gibbs_work *s)
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
    double p0 = gprior_logdens(pr, q, K, par->W), z0 = (lt - tau_prior[0]) / tau_prior[1];
    for (int j = 0; j < m; j++) s->Ws[j] = par->W[j] * c;
    double p1 = gprior_logdens(pr, q, K, s->Ws), z1 = (lt + dl - tau_prior[0]) / tau_prior[1];
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


static int temperature_gibbs(const moe_data *d, const moe_mcmc_prior *pr,
                             moe_gate *g, const moe_expert_family *ef,
                             moe_vpar *par, const double *tau_prior,
                             double *state, const moe_gibbs_step *st,
                             moe_gibbs_work *s)
{
  (void) ef;
  int n = d->n, q = d->q, K = d->K, status = MOE_OK;
  R_xlen_t nq = (R_xlen_t) n * q;
  double inv = 1.0 / g->tau;
  for (R_xlen_t t = 0; t < nq; t++) s->Zsr[t] = s->Zr[t] * inv;
  eta_rows(n, q, K, s->Zsr, par->W, s->etal);
  status |= level_update(d, pr, K, s->N, s->wi, s->Zsr, par->W, s->etal, st,
                         st->block, s);
  if (tau_prior && !(status & MOE_NONFINITE))
    update_tau(d, pr, g, par, tau_prior, state, st->warm, st->t,
               st->block ? st->block + (st->mh && K >= 2 ? 1 : 0) : NULL, s);
  return status;
}

const moe_gate_ops gate_temperature_ops = {
  temperature_logprob, temperature_state_size, temperature_penalty,
  temperature_em_mstep, temperature_gibbs
};
