/*
 * polyagamma_dev.c: TEMPORARY development stand-in for src/polyagamma.c.
 * DROP THIS FILE when the exact Devroye-type sampler (src/polyagamma.c) is
 * merged; it only lets the Gibbs sampler compile and run before that.
 *
 * Computes approximate draws of the Polya-Gamma distribution from its
 * infinite-sum representation (Polson, Scott & Windle 2013, eq. 1):
 *   PG(1, z) = 1 / (2 pi^2) sum_{k >= 1} E_k / d_k,
 *   d_k = (k - 1/2)^2 + z^2 / (4 pi^2),  E_k iid Exp(1).
 * The first PGDEV_TERMS terms are drawn exactly; the tail sum_{k > T} E_k/d_k
 * is replaced by a gamma variate with its exact mean
 *   pi^2 tanh(z/2) / z - sum_{k <= T} 1 / d_k
 * (from E PG(1, z) = tanh(z/2) / (2z)) and its variance sum_{k > T} 1/d_k^2
 * approximated by the midpoint-rule integral int_T^Inf dx / (x^2 + c^2)^2,
 * c = |z| / (2 pi). With T = 20 the tail carries about 1% of the mean, so
 * the draws have the exact mean and nearly exact higher moments.
 *   rpg1(z)   one draw of PG(1, z);
 *   rpg(b, z) the sum of b independent PG(1, z) draws (b >= 1).
 * Inputs: z finite. Writes nothing. Precondition: the caller holds
 * GetRNGstate(); draws come from exp_rand() and rgamma() only.
 */
#include "moe.h"

#define PGDEV_TERMS 20
#define PGDEV_PI2 9.8696044010893586188 /* pi^2 */

double rpg1(double z)
{
  double c = fabs(z) / (2.0 * M_PI), c2 = c * c;
  double sum = 0.0, inv_sum = 0.0;
  for (int k = 1; k <= PGDEV_TERMS; k++) {
    double h = k - 0.5, dk = h * h + c2;
    sum += exp_rand() / dk;
    inv_sum += 1.0 / dk;
  }
  double az = fabs(z);
  double total_mean = az < 1e-8 ? PGDEV_PI2 / 2.0 : PGDEV_PI2 * tanh(az / 2.0) / az;
  double tail_mean = total_mean - inv_sum;
  double T = PGDEV_TERMS, tail_var;
  if (c < 1e-3 * T) {
    tail_var = 1.0 / (3.0 * T * T * T);
  } else {
    tail_var = (atan(c / T) / c - T / (T * T + c2)) / (2.0 * c2);
  }
  if (tail_mean > 0.0 && tail_var > 0.0) {
    double shape = tail_mean * tail_mean / tail_var;
    sum += rgamma(shape, tail_var / tail_mean);
  }
  return sum / (2.0 * PGDEV_PI2);
}

double rpg(int b, double z)
{
  double s = 0.0;
  for (int j = 0; j < b; j++) s += rpg1(z);
  return s;
}
