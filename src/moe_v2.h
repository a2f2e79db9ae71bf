/*
 * moe_v2.h: pairs of doubles for the passes of the collapsed sampler
 * (mcmc_fused.c), which compute two observations at once in the two lanes
 * of a 128-bit vector (SSE2 on x86-64, NEON on arm64) through the vector
 * extensions of GCC and clang.
 *
 * Each lane makes exactly the operations that the scalar code makes for
 * one observation, in the same order (vector arithmetic is IEEE arithmetic
 * lane by lane), so a pass gives the same bits with or without the vector
 * code: moe_exp_v2() is moe_exp() of moe_exp.h lane by lane (the integer
 * steps are done on the bits instead of through a conversion, with the
 * same results; arguments outside (-700, 700) and NaN go to exp(), as
 * there). Other compilers, and builds with -DMOE_NO_V2, get MOE_HAVE_V2 0
 * and the scalar code only. tests/testthat/test-mcmc.R compares the two on
 * the same build (the switch ffi_set_v2(), tests only: mcmc_fused_set_v2()
 * in mcmc_fused.c).
 */
#ifndef BAYESMOE_MOE_V2_H
#define BAYESMOE_MOE_V2_H

#include "moe_exp.h"

#if (defined(__GNUC__) || defined(__clang__)) && !defined(MOE_NO_V2)
#define MOE_HAVE_V2 1

typedef double moe_v2 __attribute__((vector_size(16)));
typedef int64_t moe_i2 __attribute__((vector_size(16)));
typedef uint64_t moe_u2 __attribute__((vector_size(16)));

static inline moe_v2 moe_v2_set(double a, double b)
{
  moe_v2 v = {a, b};
  return v;
}

static inline moe_v2 moe_v2_splat(double a)
{
  moe_v2 v = {a, a};
  return v;
}

/* e where e > m, else m (lane by lane): the `if (e > m) m = e` of the
 * scalar code (a NaN in e is not taken) */
static inline moe_v2 moe_v2_max_gt(moe_v2 e, moe_v2 m)
{
  moe_i2 s = e > m;
  return (moe_v2) (((moe_i2) e & s) | ((moe_i2) m & ~s));
}

/* both lanes finite */
static inline int moe_v2_finite(moe_v2 v)
{
  moe_v2 z = v - v; /* 0 when finite, NaN otherwise */
  return z[0] == 0.0 && z[1] == 0.0;
}

static inline moe_v2 moe_exp_v2(moe_v2 x)
{
  /* the statements of moe_exp(), so that a compiler that contracts a * b + c
   * within one expression (clang's -ffp-contract=on on arm64) treats both
   * alike */
  moe_v2 kb = x * 0x1.71547652b82fep+7;
  kb = kb + 0x1.8p52;                              /* 1.5 2^52 + k */
  moe_v2 kf = kb - 0x1.8p52;                       /* k, exactly */
  moe_v2 r = (x - kf * 0x1.62e42fee00000p-8) - kf * 0x1.a39ef35793c76p-40;
  /* k + 2^40 from the bits of kb (those of 1.5 2^52 plus k), as in moe_exp() */
  moe_u2 k = (moe_u2) kb - (0x4338000000000000ULL - ((uint64_t) 1 << 40));
  moe_u2 j = k & 127;
  moe_u2 e = (k >> 7) - ((uint64_t) 1 << 33);
  moe_v2 pm1 = r + r * r * (0.5 + r * (0x1.5555555555555p-3 +
               r * (0x1.5555555555555p-5 + r * 0x1.1111111111111p-7)));
  moe_v2 s = moe_v2_set(moe_exp_tab[j[0]], moe_exp_tab[j[1]]);
  s = (moe_v2) ((moe_u2) s + (e << 52));
  moe_v2 y = s + s * pm1;
  /* both lanes in range (false for NaN) in one test, as a rule */
  moe_i2 in = (x > -700.0) & (x < 700.0);
  if (__builtin_expect(!(in[0] & in[1]), 0)) {
    if (!in[0]) y[0] = exp(x[0]);
    if (!in[1]) y[1] = exp(x[1]);
  }
  return y;
}

#else
#define MOE_HAVE_V2 0
#endif

#endif
