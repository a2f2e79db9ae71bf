# Agreement of moe_marglik() for GLM experts with independent estimates
# (the numbers behind tests/testthat/test-marglik-glm.R, printed): K = 1
# against 2-D quadrature, K = 2 against the tempered SMC estimator
# bayesmoe:::marglik_smc(), for both importance densities.
# Usage: Rscript inst/scripts/marglik-glm-check.R   (about a minute of CPU)
library(bayesmoe)
sim <- function(n, seed) {
  set.seed(seed)
  x <- runif(n)
  k <- rbinom(n, 1, plogis(8 * (x - 0.5)))
  data.frame(x = x, y = rpois(n, exp(ifelse(k == 1, 0.2 + 0.5 * x, 2.5 - 0.5 * x))),
             b = rbinom(n, 1, plogis(ifelse(k == 1, 2.5 - x, -2.5 + x))))
}
quad <- function(fit, loglik, V = 4) {
  sc <- fit$scaling$x
  X <- cbind(1, (fit$X[, 2] - sc$center[2]) / sc$scale[2])
  lq <- function(a) loglik(drop(X %*% a)) + sum(dnorm(a, 0, sqrt(V), log = TRUE))
  opt <- optim(c(0, 0), function(a) -lq(a), hessian = TRUE, method = "BFGS")
  sd <- sqrt(diag(solve(opt$hessian)))
  g1 <- seq(-9, 9, length.out = 241) * sd[1] + opt$par[1]
  g2 <- seq(-9, 9, length.out = 241) * sd[2] + opt$par[2]
  L <- outer(g1, g2, Vectorize(function(u, v) lq(c(u, v))))
  m <- max(L)
  m + log(sum(exp(L - m)) * diff(g1[1:2]) * diff(g2[1:2]))
}
row <- function(what, ref, ref_se, m) {
  data.frame(check = what, proposal = m$proposal, reference = ref, ref_se = ref_se,
             bridge = m$logml, bridge_se = m$se, diff = m$logml - ref,
             z = (m$logml - ref) / sqrt(m$se^2 + ref_se^2))
}
out <- list()
d <- sim(60, 2)
fp <- moe_mcmc(y ~ x, data = d, K = 1, family = poisson(), prior = moe_prior(V_a = 4),
               chains = 2, iter = 1000, seed = 1)
fb <- moe_mcmc(b ~ x, data = d, K = 1, family = binomial(), prior = moe_prior(V_a = 4),
               chains = 2, iter = 1000, seed = 1)
rp <- quad(fp, function(eta) sum(dpois(d$y, exp(eta), log = TRUE)))
rb <- quad(fb, function(eta) sum(dbinom(d$b, 1, plogis(eta), log = TRUE)))
for (pr in c("mixture", "normal")) {
  out[[length(out) + 1]] <- row("K = 1 Poisson vs quadrature", rp, 0, moe_marglik(fp, proposal = pr, seed = 1))
  out[[length(out) + 1]] <- row("K = 1 binomial vs quadrature", rb, 0, moe_marglik(fb, proposal = pr, seed = 1))
}
d <- sim(100, 5)
for (fam in c("poisson", "binomial")) {
  f <- if (fam == "poisson") y ~ x else b ~ x
  fit <- moe_mcmc(f, data = d, K = 2, family = get(fam)(), prior = moe_prior(V_a = 4),
                  chains = 4, iter = 3000, seed = 1)
  sm <- bayesmoe:::marglik_smc(fit, runs = 3, N = 500, moves = 10, seed = 2)
  for (pr in c("mixture", "normal")) {
    out[[length(out) + 1]] <- row(sprintf("K = 2 %s vs SMC", fam), sm$logml, sm$se,
                                  moe_marglik(fit, proposal = pr, seed = 1))
  }
}
print(do.call(rbind, out), digits = 4, row.names = FALSE)
