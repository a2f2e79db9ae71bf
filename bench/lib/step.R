# The step-gate data set of the scale benches (bench/warmstart.R,
# bench/scale.R): 3 covariates uniform on (0, 1), y on one line when
# x1 > 0.5 and on another otherwise, plus N(0, 0.3^2) noise. The maximum-
# likelihood gating coefficients are infinite (separation).
simulate_step <- function(n, seed) {
  set.seed(seed)
  x1 <- runif(n)
  x2 <- runif(n)
  x3 <- runif(n)
  y <- ifelse(x1 > 0.5, 2 + x1 - x2 + 0.5 * x3, -1 - 2 * x1 + x2) + rnorm(n, sd = 0.3)
  data.frame(y = y, x1 = x1, x2 = x2, x3 = x3)
}
