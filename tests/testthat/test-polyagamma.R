# Tests of rpolyagamma() (R/polyagamma.R, src/polyagamma.c).
#
# References in plain R: the exact mean and variance of PG(b, z) and the exact
# CDF of PG(1, z), by two independent series (they must agree, which checks
# the reference itself). Monte Carlo tolerances are 5 standard errors of the
# estimate, so each assertion fails by chance with probability < 1e-6.

pg_mean <- function(b, z) ifelse(z == 0, b / 4, b * tanh(z / 2) / (2 * z))

pg_var <- function(b, z) {
  Z <- abs(z) / 2
  # Below Z = 1e-3 the closed form loses digits to cancellation; use its series.
  v <- ifelse(Z < 1e-3, 1 / 24 - Z^2 / 30,
              ((tanh(Z) / Z)^2 + (tanh(Z) - Z) / Z^3) / 16)
  b * v
}

# CDF of PG(1, z) from the density cosh(z/2) exp(-z^2 x/2) f0(x),
# f0(x) = sum_n (-1)^n (2n+1) / sqrt(2 pi x^3) exp(-(2n+1)^2 / (8x)):
# term n integrates in closed form (inverse Gaussian first-passage CDF with
# level a = n + 1/2 and drift |z|). Written so that nothing overflows.
ppg_left <- function(x, z, terms = 30) {
  nu <- abs(z)
  sx <- sqrt(x)
  out <- numeric(length(x))
  for (n in 0:(terms - 1)) {
    a <- n + 0.5
    t1 <- (exp(-n * nu) + exp(-(n + 1) * nu)) * pnorm((nu * x - a) / sx)
    t2 <- exp((n + 1) * nu + pnorm(-(nu * x + a) / sx, log.p = TRUE)) * (1 + exp(-nu))
    out <- out + (-1)^n * (t1 + t2)
  }
  out
}

# The same CDF from the dual series of J*(1, Z) = 4 PG(1, z), Z = |z|/2:
# 1 - F(x) = cosh(Z) sum_n (-1)^n pi (n+1/2) exp(-4 c_n x) / c_n,
# c_n = Z^2/2 + (n+1/2)^2 pi^2/2. Converges fast for large x.
ppg_right <- function(x, z, terms = 30) {
  Z <- abs(z) / 2
  log_cosh <- Z + log1p(exp(-2 * Z)) - log(2)
  s <- numeric(length(x))
  for (n in 0:(terms - 1)) {
    cn <- Z^2 / 2 + (n + 0.5)^2 * pi^2 / 2
    s <- s + (-1)^n * pi * (n + 0.5) * exp(log_cosh - 4 * cn * x) / cn
  }
  1 - s
}

ppg <- function(x, z) {
  ifelse(x < 0.25, ppg_left(pmin(x, 0.25), z), ppg_right(pmax(x, 0.25), z))
}

# Standardised errors of the sample mean and variance of x against PG(b, z).
pg_zscores <- function(x, b, z) {
  N <- length(x)
  m <- mean(x)
  c(mean = (m - pg_mean(b, z)) / sqrt(pg_var(b, z) / N),
    var = (var(x) - pg_var(b, z)) / (sd((x - m)^2) / sqrt(N)))
}

# For every (b, z) of the grid, N draws of PG(b, z): finite, positive, and
# sample mean and variance within 5 standard errors of the exact moments.
expect_pg_moments <- function(N, bs, zs) {
  for (b in bs) {
    for (z in zs) {
      x <- rpolyagamma(N, b = b, z = z)
      expect_true(all(is.finite(x) & x > 0))
      zsc <- pg_zscores(x, b, z)
      expect_lt(abs(zsc[["mean"]]), 5, label = sprintf("mean z-score (b = %g, z = %g)", b, z))
      expect_lt(abs(zsc[["var"]]), 5, label = sprintf("var z-score (b = %g, z = %g)", b, z))
    }
  }
}

# KS p-value of draws against the exact CDF. R's uniforms have 32-bit
# resolution, so 1e4+ draws can contain a tie; ks.test() warns about it,
# harmlessly for a continuous law.
pg_ks_p <- function(x, z) {
  suppressWarnings(stats::ks.test(x, ppg, z = z, exact = FALSE)$p.value)
}

test_that("the reference CDF series agree and integrate to the mean", {
  # Both series converge on this range (the right one loses digits below it).
  x <- c(0.05, 0.1, 0.2, 0.25, 0.4, 1, 3)
  for (z in c(0, 0.3, 1, 5, 20, 100)) {
    expect_equal(ppg_left(x, z), ppg_right(x, z), tolerance = 1e-10)
  }
  # E X = int (1 - F), E X^2 = int 2 x (1 - F): checks pg_mean() and pg_var().
  for (z in c(0, 1, 5)) {
    m1 <- stats::integrate(function(x) 1 - ppg(x, z), 0, Inf, rel.tol = 1e-10)$value
    m2 <- stats::integrate(function(x) 2 * x * (1 - ppg(x, z)), 0, Inf, rel.tol = 1e-10)$value
    expect_equal(m1, pg_mean(1, z), tolerance = 1e-7)
    expect_equal(m2 - m1^2, pg_var(1, z), tolerance = 1e-6)
  }
  # pg_var() switches from its Taylor series to the closed form at Z = 1e-3.
  expect_equal(pg_var(1, 2e-3 * (1 - 1e-9)), pg_var(1, 2e-3 * (1 + 1e-9)), tolerance = 1e-9)
})

test_that("PG(b, z) draws have the exact mean and variance", {
  set.seed(20240101)
  expect_pg_moments(N = 1e5, bs = c(1, 3), zs = c(0, 0.1, 1, 2.5, 10, 50, -3))
})

test_that("PG(1, z) draws follow the exact CDF (KS test)", {
  set.seed(20240102)
  for (z in c(0, 1, 3.2, 20)) {
    x <- rpolyagamma(2e4, b = 1, z = z)
    expect_gt(pg_ks_p(x, z), 1e-3, label = sprintf("KS p-value at z = %g", z))
  }
})

# PG(1, z) draws through rpg1_rng() from one stream of the fast generator
# of src/moe_rng.h (xoshiro256+; exponentials -log(U), normals by the polar
# method), as the fused sampler's chunked Polya-Gamma draws make them.
rpg1_stream <- function(n, z) .Call(bayesmoe:::ffi_rpg1_stream, as.numeric(n), as.numeric(z))

test_that("PG(1, z) draws from the threads' generator have the exact law", {
  set.seed(20240110)
  # z = 0.5 and 20 take the Levy proposal and the inverse Gaussian (normal
  # variates) of the left piece; every z takes the right piece
  for (z in c(0, 0.5, 3.2, 20, -7)) {
    x <- rpg1_stream(1e5, z)
    expect_true(all(is.finite(x) & x > 0))
    zsc <- pg_zscores(x, 1, z)
    expect_lt(abs(zsc[["mean"]]), 5, label = sprintf("stream mean z-score (z = %g)", z))
    expect_lt(abs(zsc[["var"]]), 5, label = sprintf("stream var z-score (z = %g)", z))
    expect_gt(pg_ks_p(x[1:2e4], z), 1e-3, label = sprintf("stream KS p-value at z = %g", z))
  }
  # the stream is seeded from R's generator: reproducible with set.seed(),
  # a new stream at every call, and R's stream moves on by two uniforms
  set.seed(3)
  a <- rpg1_stream(50, c(1, -2))
  b <- rpg1_stream(50, c(1, -2))
  u <- runif(1)
  set.seed(3)
  expect_identical(rpg1_stream(50, c(1, -2)), a)
  expect_false(any(a == b))
  invisible(runif(2))
  expect_identical(runif(1), u)
  expect_identical(rpg1_stream(0, 1), numeric(0))
})

test_that("extreme z gives finite positive draws with mean 1/(2|z|)", {
  set.seed(20240103)
  N <- 2e4
  for (z in c(1e3, 1e4, -1e4)) {
    x <- rpolyagamma(N, z = z)
    expect_true(all(is.finite(x) & x > 0))
    expect_lt(abs(pg_zscores(x, 1, z)[["mean"]]), 5)
    expect_equal(mean(x), 1 / (2 * abs(z)), tolerance = 1e-3)
  }
  # PG(1, z) concentrates at 1/(2|z|) with sd (2/|z|)^(3/2)/4: at 1e200 every
  # draw is 5e-201 to many digits, and nothing overflowed.
  x <- rpolyagamma(1000, b = 2, z = c(1e200, -1e300))
  expect_true(all(is.finite(x) & x > 0))
  expect_equal(x * abs(c(1e200, -1e300)), rep(1, 1000), tolerance = 1e-12)
})

test_that("draws are reproducible and the stream continues across calls", {
  set.seed(11)
  x <- rpolyagamma(200, b = 1, z = c(-2, 0, 7, 0.3))
  set.seed(11)
  y <- c(rpolyagamma(100, b = 1, z = c(-2, 0, 7, 0.3)),
         rpolyagamma(100, b = 1, z = c(-2, 0, 7, 0.3)))
  expect_identical(x, y)
  set.seed(11)
  expect_identical(rpolyagamma(200, b = 1, z = c(2, 0, -7, -0.3)), x)  # depends on |z|
})

test_that("b and z are recycled and PG(b, z) is a sum of b PG(1, z)", {
  b <- c(1, 2)
  z <- c(-1, 0, 3)
  set.seed(4)
  x <- rpolyagamma(6, b = b, z = z)
  set.seed(4)
  y <- vapply(1:6, function(i) rpolyagamma(1, b[(i - 1) %% 2 + 1], z[(i - 1) %% 3 + 1]), 0)
  expect_identical(x, y)
  set.seed(7)
  x <- rpolyagamma(1, b = 3, z = 1.5)
  set.seed(7)
  expect_equal(x, sum(rpolyagamma(3, b = 1, z = 1.5)), tolerance = 1e-14)
})

# ---- large b: the hybrid sampler (series above b = 20, normal from 2^28) ----

test_that("large b: the exact mean and variance for b up to 1e8 and a range of z", {
  set.seed(20240105)
  expect_pg_moments(N = 4e4, bs = c(21, 50, 1e3, 1e6, 1e8, 2^28, .Machine$integer.max),
                    zs = c(0, 0.05, 1, 4, -12, 60, 400, 3e3, 1e9))
})

test_that("the switch points are continuous: KS tests against the exact sum", {
  set.seed(20240106)
  ks_p <- function(x, y) suppressWarnings(stats::ks.test(x, y, exact = FALSE)$p.value)
  for (z in c(0, 2, 30, 400)) {
    # b = 21 (series) against b = 21 drawn exactly as 20 + 1 (sums of PG(1, z))
    series <- rpolyagamma(2e4, b = 21, z = z)
    exact <- rpolyagamma(2e4, b = 20, z = z) + rpolyagamma(2e4, b = 1, z = z)
    expect_gt(ks_p(series, exact), 1e-3, label = sprintf("KS p-value at b = 21, z = %g", z))
    # the same at b = 40 (two exact PG(20, z) draws)
    series <- rpolyagamma(2e4, b = 40, z = z)
    exact <- rpolyagamma(2e4, b = 20, z = z) + rpolyagamma(2e4, b = 20, z = z)
    expect_gt(ks_p(series, exact), 1e-3, label = sprintf("KS p-value at b = 40, z = %g", z))
    # the normal law from b = 2^28 against the series just below, standardised
    b <- 2^28
    lo <- (rpolyagamma(2e4, b = b - 1, z = z) - pg_mean(b - 1, z)) / sqrt(pg_var(b - 1, z))
    hi <- (rpolyagamma(2e4, b = b, z = z) - pg_mean(b, z)) / sqrt(pg_var(b, z))
    expect_gt(ks_p(lo, hi), 1e-3, label = sprintf("KS p-value at b = 2^28, z = %g", z))
  }
  # the normal law from |z| = 2 pi 1e8 against the series just below
  z0 <- 2 * pi * 1e8
  lo <- (rpolyagamma(2e4, b = 30, z = z0 * (1 - 1e-9)) - pg_mean(30, z0)) / sqrt(pg_var(30, z0))
  hi <- (rpolyagamma(2e4, b = 30, z = z0) - pg_mean(30, z0)) / sqrt(pg_var(30, z0))
  expect_gt(ks_p(lo, hi), 1e-3)
})

test_that("draws for b <= 20 are still exact sums; b = 1 draws are unchanged", {
  set.seed(8)
  x <- rpolyagamma(1, b = 20, z = 0.7)
  set.seed(8)
  expect_equal(x, sum(rpolyagamma(20, b = 1, z = 0.7)), tolerance = 1e-14)
  # the draws of the exact sampler (bayesmoe before the hybrid sampler)
  set.seed(1)
  expect_equal(rpolyagamma(3, b = 1, z = c(0, 2, -5)),
               c(0.3994508900431070, 0.1178337911355300, 0.0696161621722755),
               tolerance = 1e-14)
  set.seed(2)
  expect_equal(rpolyagamma(4, b = c(2, 5, 20, 7), z = c(0.3, -1, 4, 0)),
               c(0.41925580024448805, 0.88194005911943152, 1.90512782717054674,
                 1.52070304068308593), tolerance = 1e-14)
})

test_that("huge b costs no more than b = 20: finite draws right away", {
  set.seed(9)
  for (b in c(1e9, .Machine$integer.max)) {
    x <- rpolyagamma(5, b = b)
    expect_true(all(is.finite(x) & x > 0))
    expect_equal(mean(x), b / 4, tolerance = 1e-3)
  }
  x <- rpolyagamma(8, b = .Machine$integer.max, z = c(0, 1, -30, 1e3, 1e10, 1e200, -1e300, 5))
  expect_true(all(is.finite(x) & x > 0))
})

test_that("n can be zero, an integer or a vector giving the length", {
  expect_identical(rpolyagamma(0), numeric(0))
  expect_identical(rpolyagamma(0, b = 1:3, z = 1:2), numeric(0))
  expect_length(rpolyagamma(3L), 3)
  expect_length(rpolyagamma(c(5, 1, 9)), 3)
  expect_type(rpolyagamma(2, b = 2L, z = 1L), "double")
})

test_that("rpolyagamma() rejects bad arguments with classed errors", {
  expect_error(rpolyagamma(-1), class = "bayesmoe_error_input")
  expect_error(rpolyagamma(2, b = 0.5), class = "bayesmoe_error_input")
  expect_error(rpolyagamma(2, z = NA), class = "bayesmoe_error_input")
  expect_error(rpolyagamma(4, z = 1:3), class = "bayesmoe_error_input")
  expect_snapshot(rpolyagamma(-1), error = TRUE)
  expect_snapshot(rpolyagamma(2.5), error = TRUE)
  expect_snapshot(rpolyagamma(NA), error = TRUE)
  expect_snapshot(rpolyagamma(Inf), error = TRUE)
  expect_snapshot(rpolyagamma("3"), error = TRUE)
  expect_snapshot(rpolyagamma(numeric(0)), error = TRUE)
  expect_snapshot(rpolyagamma(2, b = 0), error = TRUE)
  expect_snapshot(rpolyagamma(2, b = 1.5), error = TRUE)
  expect_snapshot(rpolyagamma(2, b = NA), error = TRUE)
  expect_snapshot(rpolyagamma(2, b = c(1, 2.5)), error = TRUE)
  expect_snapshot(rpolyagamma(2, b = c(1, Inf)), error = TRUE)
  expect_snapshot(rpolyagamma(2, b = "1"), error = TRUE)
  expect_snapshot(rpolyagamma(2, b = integer(0)), error = TRUE)
  expect_snapshot(rpolyagamma(2, b = 3e9), error = TRUE)
  expect_snapshot(rpolyagamma(2, z = Inf), error = TRUE)
  expect_snapshot(rpolyagamma(2, z = c(0, NaN)), error = TRUE)
  expect_snapshot(rpolyagamma(2, z = c(0, NA, 1)), error = TRUE)
  expect_snapshot(rpolyagamma(2, z = "0"), error = TRUE)
  expect_snapshot(rpolyagamma(2, z = NULL), error = TRUE)
  expect_snapshot(rpolyagamma(10, b = 1:3), error = TRUE)
  expect_snapshot(rpolyagamma(2, z = c(1, 2, 3)), error = TRUE)
})

test_that("slow: PG means to 3-4 digits, variances and KS over a wide z grid", {
  skip_if_not(Sys.getenv("BAYESMOE_SLOW_TESTS") == "true", "BAYESMOE_SLOW_TESTS is not true")
  set.seed(20240104)
  zs <- c(0, 0.01, 0.5, 1, 1.5, 2, 3.1, 3.2, 5, 10, 20, 50, 100, 500)
  for (z in zs) {
    x <- rpolyagamma(1e6, b = 1, z = z)
    sc <- pg_zscores(x, 1, z)
    expect_lt(abs(sc[["mean"]]), 5, label = sprintf("mean z-score at z = %g", z))
    expect_lt(abs(sc[["var"]]), 5, label = sprintf("var z-score at z = %g", z))
    # 5 standard errors are at most 0.4% of the mean (at z = 0), less for larger z.
    expect_lt(abs(mean(x) / pg_mean(1, z) - 1), 4.5e-3)
    expect_gt(pg_ks_p(x[1:1e5], z), 1e-3, label = sprintf("KS p-value at z = %g", z))
  }
  for (b in c(2, 5, 10)) {
    for (z in c(0, 2, -8)) {
      x <- rpolyagamma(2e5, b = b, z = z)
      sc <- pg_zscores(x, b, z)
      expect_lt(abs(sc[["mean"]]), 5, label = sprintf("mean z-score, b = %g, z = %g", b, z))
      expect_lt(abs(sc[["var"]]), 5, label = sprintf("var z-score, b = %g, z = %g", b, z))
    }
  }
})
