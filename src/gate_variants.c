/*
 * gate_variants.c: log gating probabilities of every gate (moe_gate in
 * moe.h), beside the softmax of gating.c.
 *
 * Inputs: the logits eta_ik = z_i'w_k of the K experts and, for a
 * hierarchical gate, the logits etaV_ig = z_i'v_g of the G groups, either
 * column-major (n x K and n x G, gate_logprob()) or one observation at a time
 * with strides (gate_logprob_obs(), used by the samplers, whose arrays are
 * observation-major). The gate:
 *  - GATE_SOFTMAX: logg_k = eta_k - lse_j eta_j;
 *  - GATE_TOPK (g->topk = k): the k largest logits are active (on ties the
 *    lower index wins), logg_k = eta_k - lse_{j active} eta_j for the active
 *    ones and -Inf for the others;
 *  - GATE_TEMPERATURE: the softmax of eta / g->tau;
 *  - GATE_HIER (g->G groups, g->group[k] in 0..G-1): logg_k =
 *    etaV_h - lse_g etaV_g + eta_k - lse_{j in h} eta_j with h = group[k].
 * Writes logg (same layout as eta). Everything is in log space with the
 * largest term factored out, so logits of 1e4 give 0 and -1e4 (never NaN).
 * Preconditions: K >= 1, 1 <= topk <= K, tau > 0, every group non-empty.
 * `active` (K ints, may be NULL for the other gates) is scratch.
 */
#include "moe.h"

/* log sum_{k : keep[k]} exp(v[k s]) (every k when keep is NULL); -Inf if
 * no term is finite. */
static double lse_strided(int K, const double *v, R_xlen_t s, const int *keep,
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

void gate_logprob_obs(const moe_gate *g, int K, const double *eta, R_xlen_t se,
                      const double *etaV, R_xlen_t sv, double *logg,
                      R_xlen_t sl, int *active)
{
  switch (g->type) {
  case GATE_TOPK:
    if (g->topk < K) {
      gate_topk_active(K, g->topk, eta, se, active);
      double lse = lse_strided(K, eta, se, active, 1.0);
      for (int k = 0; k < K; k++)
        logg[k * sl] = active[k] ? eta[k * se] - lse : R_NegInf;
      return;
    }
    break; /* k = K: the softmax */
  case GATE_TEMPERATURE: {
    double inv = 1.0 / g->tau, lse = lse_strided(K, eta, se, NULL, inv);
    for (int k = 0; k < K; k++) logg[k * sl] = eta[k * se] * inv - lse;
    return;
  }
  case GATE_HIER: {
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
    return;
  }
  default:
    break;
  }
  double lse = lse_strided(K, eta, se, NULL, 1.0);
  for (int k = 0; k < K; k++) logg[k * sl] = eta[k * se] - lse;
}

void gate_logprob(const moe_gate *g, int n, int K, const double *eta,
                  const double *etaV, double *logg, int *active)
{
  if (g->type == GATE_SOFTMAX) {
    gate_logprob_softmax(n, K, eta, logg);
    return;
  }
  for (int i = 0; i < n; i++)
    gate_logprob_obs(g, K, eta + i, n, etaV ? etaV + i : NULL, n, logg + i, n,
                     active);
}
