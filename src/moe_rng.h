/*
 * moe_rng.h: a small fast generator for the bulk random numbers of the
 * fused sampler (mcmc_fused.c): the allocation uniforms and the Polya-Gamma
 * draws of the gating made by threads.
 *
 * xoshiro256+ (Blackman and Vigna 2018), seeded from a 64-bit value through
 * splitmix64. The seed itself always comes from R's generator
 * (moe_xrng_base(): two unif_rand() draws), so every draw stays a function
 * of R's random number stream alone: set.seed() reproduces a chain and a
 * chain restarted from its stored R RNG state continues exactly.
 * Streams: moe_xrng_seed(r, base, s) gives stream s of the base seed, for
 * fixed pieces of work (the chunks of observations of a pass), so the
 * draws of a piece do not depend on which thread makes it. The streams of
 * one base start from distinct seeds (base xor a bijective hash of s), and
 * the seeds of different bases coincide with probability 2^-64 per pair;
 * from distinct seeds, splitmix64 gives unrelated points of xoshiro's
 * period of 2^256 - 1, far apart compared with the few million numbers a
 * stream is used for.
 * Variates: moe_xrng_unif() in (0, 1) (53 bits, never 0 or 1);
 * moe_xrng_exp() standard exponential, -log(U); moe_xrng_norm() standard
 * normal by Marsaglia's polar method (the second normal of a pair is kept
 * in the state). moe_xrng_pg(): the generator as the variates of a
 * Polya-Gamma draw (a pg_rng for rpg1_rng(), moe.h).
 * Everything is inline and uses no global state: one moe_xrng per thread
 * (per chunk) is thread-safe.
 */
#ifndef BAYESMOE_MOE_RNG_H
#define BAYESMOE_MOE_RNG_H

#include <math.h>
#include <stdint.h>
#include <Rmath.h>
#include "moe.h"   /* pg_rng */

typedef struct {
  uint64_t s[4];
  double spare;    /* the second normal of the polar method */
  int has_spare;
} moe_xrng;

static inline uint64_t moe_splitmix64(uint64_t *x)
{
  uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/* A 64-bit seed from two draws of R's generator (the caller holds it). */
static inline uint64_t moe_xrng_base(void)
{
  uint64_t a = (uint64_t) (unif_rand() * 4294967296.0);
  uint64_t b = (uint64_t) (unif_rand() * 4294967296.0);
  return (a << 32) ^ b;
}

/* Stream `stream` of the seed `base`; stream 0 is seeded from base itself. */
static inline void moe_xrng_seed(moe_xrng *r, uint64_t base, uint64_t stream)
{
  uint64_t x = base;
  if (stream > 0) {
    uint64_t h = stream * 0xD1B54A32D192ED03ULL;
    x ^= moe_splitmix64(&h);
  }
  for (int k = 0; k < 4; k++) r->s[k] = moe_splitmix64(&x);
  r->has_spare = 0;
  r->spare = 0.0;
}

static inline double moe_xrng_unif(moe_xrng *r)
{
  uint64_t *s = r->s, res = s[0] + s[3], t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = (s[3] << 45) | (s[3] >> 19);
  return ((double) (res >> 11) + 0.5) * 0x1.0p-53;
}

static inline double moe_xrng_exp(moe_xrng *r)
{
  return -log(moe_xrng_unif(r));
}

static inline double moe_xrng_norm(moe_xrng *r)
{
  if (r->has_spare) {
    r->has_spare = 0;
    return r->spare;
  }
  double u, v, s;
  do {
    u = 2.0 * moe_xrng_unif(r) - 1.0;
    v = 2.0 * moe_xrng_unif(r) - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  double f = sqrt(-2.0 * log(s) / s);
  r->spare = v * f;
  r->has_spare = 1;
  return u * f;
}

/* The generator r as the variates of a Polya-Gamma draw (rpg1_rng()). */
static inline double moe_xrng_unif_v(void *r) { return moe_xrng_unif((moe_xrng *) r); }
static inline double moe_xrng_exp_v(void *r) { return moe_xrng_exp((moe_xrng *) r); }
static inline double moe_xrng_norm_v(void *r) { return moe_xrng_norm((moe_xrng *) r); }

static inline pg_rng moe_xrng_pg(moe_xrng *r)
{
  pg_rng g = {moe_xrng_unif_v, moe_xrng_exp_v, moe_xrng_norm_v, r};
  return g;
}

#endif
