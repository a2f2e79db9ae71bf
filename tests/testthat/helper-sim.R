# Simulate from a softmax-gated linear-Gaussian MoE with one covariate x on
# [0, 1]; `alpha` (2 x K: intercepts, slopes), `W` (2 x K, last column 0).
sim_moe <- function(n, alpha, sigma, W, seed = 1) {
  set.seed(seed)
  x <- runif(n)
  X <- cbind(1, x)
  eta <- X %*% W
  g <- exp(eta - apply(eta, 1, max))
  g <- g / rowSums(g)
  k <- apply(g, 1, function(p) sample.int(length(p), 1, prob = p))
  y <- rowSums(X * t(alpha[, k])) + rnorm(n, sd = sigma[k])
  data.frame(x = x, y = y, k = k)
}

three_experts <- function(n = 2000, seed = 1) {
  sim_moe(n, alpha = cbind(c(0, 4), c(3, -2), c(-2, 1)), sigma = c(0.3, 0.3, 0.3),
          W = cbind(c(3, -6), c(-3, 6), c(0, 0)), seed = seed)
}
