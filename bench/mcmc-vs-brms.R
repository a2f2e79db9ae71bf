# Gibbs sampler of bayesmoe against brms (NUTS) on the same 3-expert,
# one-covariate mixture of experts, and the cost of one Gibbs sweep against
# one log-likelihood pass in C.
#
# Run: Rscript bench/mcmc-vs-brms.R   (or `make bench`; brms and rstan are
# Suggests-only and optional: without them only the bayesmoe part runs).
# Settings: BENCH_N (default 1000), BENCH_ITER (2000), BENCH_CHAINS (4).
#
# Efficiency is measured on label-invariant quantities: the total
# log-likelihood of each draw and the predictive mean E(y | x) at five fixed
# x, by bulk ESS (posterior::ess_bulk) per CPU second of sampling (user +
# system; chains run one after the other on one core, so CPU = elapsed).
# brms' compile time is reported separately. The priors differ (brms
# defaults vs moe_prior() defaults); with n = 1000 both posteriors are
# dominated by the likelihood, and their means are printed side by side.
suppressPackageStartupMessages(library(bayesmoe))
if (!requireNamespace("posterior", quietly = TRUE)) stop("bench needs the posterior package")
n <- as.integer(Sys.getenv("BENCH_N", "1000"))
iter <- as.integer(Sys.getenv("BENCH_ITER", "2000"))
chains <- as.integer(Sys.getenv("BENCH_CHAINS", "4"))
x0 <- c(-2, -1, 0, 1, 2)
cpu <- function(t) sum(t[c("user.self", "sys.self")])

# Truth (original scale): gating logits (-8 x, 4 - 4 x, 0); experts
# y = 4 + x, y = 2 x, y = 6 - x, sd 0.3, 0.4, 0.5; x ~ U(-3, 3).
sim_three <- function(n) {
  x <- runif(n, -3, 3)
  eta <- cbind(-8 * x, 4 - 4 * x, 0)
  g <- exp(eta - apply(eta, 1L, max))
  k <- 1L + rowSums(runif(n) * rowSums(g) > t(apply(g, 1L, cumsum))[, 1:2])
  a <- rbind(c(4, 0, 6), c(1, 2, -1))
  data.frame(x = x, y = a[1L, k] + a[2L, k] * x + c(0.3, 0.4, 0.5)[k] * rnorm(n))
}
set.seed(2024)
d <- sim_three(n)

summ <- function(name, ll, pm, seconds) {
  # ll: [iter, chains]; pm: [iter, chains, 5]
  ess_ll <- posterior::ess_bulk(ll)
  ess_pm <- apply(pm, 3L, posterior::ess_bulk)
  rhat_pm <- apply(pm, 3L, posterior::rhat)
  data.frame(sampler = name, cpu_s = seconds,
             rhat_ll = posterior::rhat(ll), ess_ll = ess_ll, ess_ll_s = ess_ll / seconds,
             rhat_pm_max = max(rhat_pm), ess_pm_min = min(ess_pm),
             ess_pm_s_min = min(ess_pm) / seconds, ess_pm_s_median = median(ess_pm) / seconds)
}

## ---- bayesmoe ----
if (requireNamespace("future", quietly = TRUE)) future::plan(future::sequential)
t_moe <- system.time(fit <- moe_mcmc(y ~ x, data = d, K = 3, chains = chains, iter = iter,
                                     seed = 1, progress = FALSE))
S <- dim(fit$draws)[1L]
pred_mean <- function(draws, x0, K = 3L) {
  # draws: [S, chains, P] in the layout of coef(); predictive mean at x0
  D <- matrix(draws, ncol = dim(draws)[3L])
  p <- 2L
  q <- 2L
  out <- vapply(x0, function(x) {
    eta <- matrix(0, nrow(D), K)
    mu <- matrix(0, nrow(D), K)
    for (k in seq_len(K)) {
      mu[, k] <- D[, (k - 1L) * (p + 1L) + 1L] + x * D[, (k - 1L) * (p + 1L) + 2L]
      if (k < K) eta[, k] <- D[, (p + 1L) * K + (k - 1L) * q + 1L] +
          x * D[, (p + 1L) * K + (k - 1L) * q + 2L]
    }
    g <- exp(eta - apply(eta, 1L, max))
    rowSums(g * mu) / rowSums(g)
  }, numeric(nrow(D)))
  array(out, c(dim(draws)[1:2], length(x0)))
}
pm_moe <- pred_mean(fit$draws, x0)
res <- summ("bayesmoe (Gibbs)", fit$loglik_draws, pm_moe, sum(fit$timing))
cat(sprintf("bayesmoe: n = %d, %d chains x %d iterations; CPU %.2f s in total (EM start included), %.2f s in the chains (%s per chain)\n",
            n, chains, iter, cpu(t_moe), sum(fit$timing),
            paste(sprintf("%.2f", fit$timing), collapse = ", ")))
cat("bayesmoe: mean log-likelihood per chain:", format(colMeans(fit$loglik_draws), nsmall = 2), "\n")

## ---- cost of one sweep against one log-likelihood pass ----
s <- bayesmoe:::scale_data(fit$scaling, fit$y, fit$X, fit$Z)
st <- fit$state[[1L]]
reps <- 2000L
t_ll <- system.time(for (r in seq_len(reps))
  .Call(bayesmoe:::ffi_loglik, s$y, s$X, s$Z, fit$weights, st$alpha, st$sigma2, st$W))
ns_ll <- 1e9 * cpu(t_ll) / (reps * n * 3)
ns_sweep <- 1e9 * sum(fit$timing) / (chains * iter * n * 3)
cat(sprintf("cost per observation per expert: log-likelihood pass %.1f ns, Gibbs sweep %.1f ns, ratio %.1f\n",
            ns_ll, ns_sweep, ns_sweep / ns_ll))

## ---- brms ----
brms_ok <- requireNamespace("brms", quietly = TRUE) && requireNamespace("rstan", quietly = TRUE)
if (!brms_ok) {
  cat("brms or rstan is not installed: brms comparison skipped.\n")
} else {
  suppressPackageStartupMessages(library(brms))
  # Debian keeps the Boost headers in the system include folder rather than
  # in BH: point rstan at it when its own setting is empty.
  bl <- tryCatch(rstan::rstan_options("boost_lib"), error = function(e) NULL)
  if ((is.null(bl) || !nzchar(bl) || !dir.exists(file.path(bl, "boost"))) &&
      dir.exists("/usr/include/boost")) {
    rstan::rstan_options(boost_lib = "/usr/include")
  }
  form <- bf(y ~ 1, mu1 ~ x, mu2 ~ x, mu3 ~ x, theta2 ~ x, theta3 ~ x)
  fam <- mixture(gaussian, gaussian, gaussian)
  t_compile <- system.time(b0 <- brm(form, data = d, family = fam, chains = 0,
                                     silent = 2, refresh = 0))
  cat(sprintf("brms: compile %.1f s elapsed (%.1f s CPU incl. the compiler)\n",
              t_compile[["elapsed"]], sum(t_compile[c(1, 2, 4, 5)], na.rm = TRUE)))
  t_brms <- system.time(b <- update(b0, recompile = FALSE, chains = chains, iter = iter,
                                    cores = 1, seed = 1, refresh = 0, silent = 2))
  el <- rstan::get_elapsed_time(b$fit)
  Sb <- iter - floor(iter / 2)
  ll_b <- matrix(rowSums(log_lik(b)), Sb, chains)
  pm_b <- array(posterior_epred(b, newdata = data.frame(x = x0)), c(Sb, chains, length(x0)))
  res <- rbind(res, summ("brms (NUTS)", ll_b, pm_b, cpu(t_brms)))
  cat(sprintf("brms: sampling CPU %.1f s (Stan warm-up + sampling per chain: %s s)\n",
              cpu(t_brms), paste(sprintf("%.1f", rowSums(el)), collapse = ", ")))
  np <- nuts_params(b)
  cat(sprintf("brms: %d divergent transitions, %d at max treedepth\n",
              sum(np$Value[np$Parameter == "divergent__"]),
              sum(np$Value[np$Parameter == "treedepth__"] >= 10)))
  cat("brms: mean log-likelihood per chain:", format(colMeans(ll_b), nsmall = 2), "\n")
  cat("posterior mean of E(y | x) at x =", x0, "\n")
  print(rbind(bayesmoe = apply(pm_moe, 3L, mean), brms = apply(pm_b, 3L, mean)))
}
print(res, digits = 4, row.names = FALSE)
if (nrow(res) == 2L) {
  cat(sprintf("ESS/s ratio bayesmoe / brms: log-likelihood %.0f x; predictive mean (min over x) %.0f x, (median) %.0f x\n",
              res$ess_ll_s[1] / res$ess_ll_s[2], res$ess_pm_s_min[1] / res$ess_pm_s_min[2],
              res$ess_pm_s_median[1] / res$ess_pm_s_median[2]))
}
