# The rank tests of the simulation-based calibration scripts
# (sbc-gating.R, sbc-glm.R, sbc-t.R source this file; it is not a script of
# its own).

# Two-sided p-value of `x` successes of independent Bernoulli(p_i) trials
# (Poisson-binomial, exact by convolution; outcomes no more likely than x).
pbinom_test <- function(x, p) {
  d <- 1
  for (pi in p) d <- c(d * (1 - pi), 0) + c(0, d * pi)
  min(1, sum(d[d <= d[x + 1L] * (1 + 1e-7)]))
}

# Ranks r (replicates x functionals) on 0..Lr (Lr: one L per replicate).
rank_tests <- function(r, Lr) {
  t(apply(r, 2L, function(v) {
    u <- (v + stats::runif(length(v))) / (Lr + 1)
    counts <- tabulate(pmin(floor(20 * u), 19L) + 1L, 20L)
    ext <- sum(v == 0L | v == Lr)
    pe <- pmin(1, 2 / (Lr + 1))
    c(chisq_p = suppressWarnings(stats::chisq.test(counts))$p.value,
      extreme = ext, extreme_expected = sum(pe), extreme_p = pbinom_test(ext, pe))
  }))
}
