/*
 * prior.c: the gating prior, the one place its formulas live; every Gibbs
 * update of the gating (the Polya-Gamma draws, the joint refresh, the
 * collapsed update, the temperature and top-k moves) calls it.
 *
 * Prior (moe_mcmc_prior, internal scale): on a softmax level of Kl
 * categories with free coefficients Wf (q x (Kl - 1), column k at Wf + k q;
 * the reference column is zero), per coordinate a the coefficients
 * (w_1a, ..., w_(Kl-1)a) are Gaussian with precision
 *   exchangeable: (I - 11'/Kl) / s_a^2  (u_k iid N(0, s_a^2), w_k = u_k - u_Kl),
 *   independent:  I / s_a^2.
 * The same prior applies to every level of a hierarchical gate (the group
 * level and each group's within-group coefficients).
 *
 * gprior_logdens(): the log density up to a constant;
 * gprior_grad():    adds it to *lp and its gradient to g (m = q (Kl - 1),
 *                   index k q + a);
 * gprior_hess():    adds the precision to the lower triangle of H (m x m);
 * gprior_cond():    mean b0 and variance v of w_ka given the other free
 *                   columns (the prior of one Polya-Gamma column draw).
 */
#include "moe.h"

/* Sum and sum of squares of coordinate a over the free columns. */
static void coord_sums(int q, int Kl, const double *Wf, int a, double *sum,
                       double *ss)
{
  double s = 0.0, s2 = 0.0;
  for (int k = 0; k < Kl - 1; k++) {
    s += Wf[a + k * q];
    s2 += Wf[a + k * q] * Wf[a + k * q];
  }
  *sum = s;
  *ss = s2;
}

double gprior_logdens(const moe_mcmc_prior *pr, int q, int Kl, const double *Wf)
{
  double lp = 0.0, off = pr->exchangeable ? 1.0 / Kl : 0.0, sum, ss;
  for (int a = 0; a < q; a++) {
    coord_sums(q, Kl, Wf, a, &sum, &ss);
    lp -= 0.5 * (1.0 / pr->s_w2[a]) * (ss - off * sum * sum);
  }
  return lp;
}

void gprior_grad(const moe_mcmc_prior *pr, int q, int Kl, const double *Wf,
                 double *g, double *lp)
{
  double off = pr->exchangeable ? 1.0 / Kl : 0.0, sum, ss;
  for (int a = 0; a < q; a++) {
    double prec = 1.0 / pr->s_w2[a];
    coord_sums(q, Kl, Wf, a, &sum, &ss);
    *lp -= 0.5 * prec * (ss - off * sum * sum);
    for (int k = 0; k < Kl - 1; k++) g[k * q + a] -= prec * (Wf[a + k * q] - off * sum);
  }
}

void gprior_hess(const moe_mcmc_prior *pr, int q, int Kl, double *H)
{
  int m = q * (Kl - 1);
  double off = pr->exchangeable ? 1.0 / Kl : 0.0;
  for (int a = 0; a < q; a++) {
    double prec = 1.0 / pr->s_w2[a];
    for (int k = 0; k < Kl - 1; k++)
      for (int l = 0; l <= k; l++)
        H[(k * q + a) + (R_xlen_t) (l * q + a) * m] += prec * ((k == l) - off);
  }
}

void gprior_cond(const moe_mcmc_prior *pr, int q, int Kl, const double *Wl,
                 int k, int a, double *b0, double *v)
{
  double vfac = pr->exchangeable ? (double) Kl / (Kl - 1) : 1.0, m = 0.0;
  if (pr->exchangeable && Kl > 2) {
    for (int j = 0; j < Kl - 1; j++) if (j != k) m += Wl[a + j * q];
    m /= (Kl - 1);
  }
  *b0 = m;
  *v = vfac * pr->s_w2[a];
}
