p4 <- function() moe_truth_example("p4")

test_that("a small study has the documented structure and is reproducible with a seed", {
  tru <- p4()
  st <- moe_contraction(tru, n = c(200, 400, 800), reps = 2, starts = 2, seed = 3,
                        losses = c("D", "hellinger", "tv"))
  expect_s3_class(st, "moe_contraction")
  expect_named(st$results, c("n", "rep", "loss", "statistic", "value"))
  expect_equal(nrow(st$results), 3 * 2 * 3)
  expect_setequal(unique(st$results$loss), c("D1", "hellinger", "tv"))
  expect_true(all(st$results$statistic == "estimate"))
  expect_named(st$slopes, c("D1", "hellinger", "tv"))
  expect_null(st$cells)
  expect_equal(nrow(st$runs), 6L)
  # identical with the same seed
  st2 <- moe_contraction(tru, n = c(200, 400, 800), reps = 2, starts = 2, seed = 3,
                         losses = c("D", "hellinger", "tv"))
  expect_identical(st$results, st2$results)
  # each value is the loss of an EM fit of the data that the task's stream simulates
  streams <- bayesmoe:::rng_streams(3L, 6L)
  restore <- bayesmoe:::save_rng()
  assign(".Random.seed", streams[[4]], envir = globalenv())  # n = 400, rep 2
  sim <- rmoe(400, tru)
  X <- cbind("(Intercept)" = 1, x = sim$x)
  fit <- moe_em_fit(sim$y, X, X, K = 2, starts = 2, control = moe_em_control(maxit = 2000))
  restore()
  lay <- list(p = 2L, q = 2L, d = 1L, covariates = "x", x_int = 1L, x_cov = 2L, z_int = 1L,
              z_cov = 2L)
  tf <- bayesmoe:::truth_from_par(fit$par, lay)
  got <- st$results[st$results$n == 400 & st$results$rep == 2, ]
  expect_equal(got$value[got$loss == "D1"], as.numeric(voronoi_loss(tf, tru)))
  expect_equal(got$value[got$loss == "hellinger"], density_loss(tf, tru))
})

test_that("the caller's random numbers are left alone with a seed, advanced without", {
  RNGkind("Mersenne-Twister", "Inversion", "Rejection")
  set.seed(1)
  before <- runif(1)
  set.seed(1)
  moe_contraction(p4(), n = c(100, 200), reps = 1, starts = 1, seed = 9, losses = "D")
  expect_equal(runif(1), before)
  expect_equal(RNGkind()[1], "Mersenne-Twister")
  set.seed(1)
  a <- moe_contraction(p4(), n = c(100, 200), reps = 1, starts = 1, losses = "D")
  b <- moe_contraction(p4(), n = c(100, 200), reps = 1, starts = 1, losses = "D")
  expect_false(identical(a$settings$seed, b$settings$seed))
  set.seed(1)
  a2 <- moe_contraction(p4(), n = c(100, 200), reps = 1, starts = 1, losses = "D")
  expect_identical(a$results, a2$results)
})

test_that("results do not depend on the future plan", {
  skip_if_not_installed("future.apply")
  skip_if_not(Sys.getenv("BAYESMOE_SLOW_TESTS") == "true", "slow: starts worker processes")
  old <- future::plan(future::multisession, workers = 2)
  on.exit(future::plan(old), add = TRUE)
  a <- moe_contraction(p4(), n = c(200, 400), reps = 2, starts = 2, seed = 4)
  future::plan(future::sequential)
  b <- moe_contraction(p4(), n = c(200, 400), reps = 2, starts = 2, seed = 4)
  expect_identical(a$results, b$results)
  # a random K: one future per task (MCMC), same results
  rk <- function() moe_contraction(p4(), n = c(100, 200), reps = 2, K = prior_K(K_max = 2),
                                   method = "mcmc", mcmc = list(chains = 1, iter = 40),
                                   density_draws = 3, seed = 4)
  future::plan(future::multisession, workers = 2)
  c1 <- rk()
  future::plan(future::sequential)
  c2 <- rk()
  expect_identical(c1$results, c2$results)
  expect_identical(c1$K_est, c2$K_est)
})

test_that("near-truth starts: a random onto map with the last expert on the reference", {
  set.seed(5)
  tru <- p4()
  for (r in 1:20) {
    par <- bayesmoe:::near_truth_par(tru, 4, 1000)
    expect_equal(par$W[, 4], c(0, 0))
    # every true atom is used: some expert near each true slope
    expect_true(all(vapply(1:2, function(j) any(abs(par$alpha[2, ] - tru$a[1, j]) < 0.5), TRUE)))
    # variances are the true variances plus small positive noise
    near <- vapply(par$sigma2, function(s) min(s - tru$sigma2[s - tru$sigma2 >= 0]), 0)
    expect_true(all(near >= 0 & near < 0.005))
  }
  st <- moe_contraction(tru, n = c(300, 600), reps = 2, K = 3, init = "near_truth",
                        starts = 1, seed = 2)
  expect_named(st$slopes, c("D2", "hellinger"))
  expect_true(st$settings$translation)
  expect_named(st$cells, c("n", "rep", "statistic", "cell_size", "beta1", "a", "b", "sigma2"))
  expect_true(all(st$cells$cell_size >= 2))
  expect_true(all(st$runs$status != "error"))
})

test_that("the largest cell and its largest per-parameter distances", {
  # two parameter sets of K = 3 atoms; set 1: cells (1, 2, 2); set 2: (1, 1, 1)
  cl <- data.frame(cell = c(1L, 2L, 2L, 1L, 1L, 1L), cell_size = c(1L, 2L, 2L, 3L, 3L, 3L),
                   beta1 = c(9, 1, 2, 3, 4, 5), a = c(9, 6, 5, 1, 1, 1),
                   b = c(9, 0.1, 0.2, 2, 2, 7), sigma2 = c(9, 1, 1, 0, 0, 1))
  got <- bayesmoe:::largest_cell_stats(cl, 3L)
  expect_equal(got$cell_size, c(2L, 3L))
  expect_equal(got$beta1, c(2, 5))
  expect_equal(got$a, c(6, 1))
  expect_equal(got$b, c(0.2, 7))
  expect_equal(got$sigma2, c(1, 1))
})

# A study object whose losses follow a known power law.
synthetic_study <- function(slope, noise, n = round(10^seq(2, 5, length.out = 12)), reps = 10,
                            drop = 0) {
  res <- do.call(rbind, lapply(n, function(nn) {
    data.frame(n = nn, rep = seq_len(reps), loss = "D1", statistic = "estimate",
               value = 3 * nn^slope * exp(rnorm(reps, 0, noise)), stringsAsFactors = FALSE)
  }))
  x <- structure(list(results = res, cells = NULL,
                      runs = data.frame(n = res$n, rep = res$rep, seconds = 0, iter = 1L,
                                        loglik = 0, status = "ok", message = NA_character_),
                      truth = p4(),
                      settings = list(n = n, reps = reps, K = 2L, method = "em", losses = "D",
                                      init = "default", starts = 1L, drop_n = drop, seed = 1L,
                                      rbar = c(1, 4, 6))),
                 class = "moe_contraction")
  x
}

test_that("slopes are recovered on synthetic losses that follow a power law", {
  set.seed(6)
  exact <- synthetic_study(-0.5, 0)
  sl <- moe_contraction_slopes(exact)
  expect_equal(sl$slope, -0.5, tolerance = 1e-12)
  expect_equal(exp(sl$intercept), 3, tolerance = 1e-10)
  expect_equal(sl$theory, -0.5)
  noisy <- synthetic_study(-0.25, 0.3)
  expect_lt(abs(moe_contraction_slopes(noisy)$slope + 0.25), 0.05)
  # a pre-asymptotic bump at the two smallest n is removed by dropping them
  bump <- synthetic_study(-0.5, 0)
  small <- bump$results$n <= sort(unique(bump$results$n))[2]
  bump$results$value[small] <- bump$results$value[small] * 10
  expect_false(isTRUE(all.equal(moe_contraction_slopes(bump)$slope, -0.5)))
  sl2 <- moe_contraction_slopes(bump, drop = 2)
  expect_equal(sl2$slope, -0.5, tolerance = 1e-12)
  expect_equal(sl2$sizes, 10L)
  expect_equal(sl2$n_min, sort(unique(bump$results$n))[3])
})

test_that("per-parameter cell slopes use the two-atom cells and their theory", {
  set.seed(7)
  st <- synthetic_study(-0.5, 0)
  n <- st$settings$n
  st$cells <- do.call(rbind, lapply(n, function(nn) {
    data.frame(n = nn, rep = 1:2, statistic = "estimate", cell_size = c(2L, 3L),
               beta1 = nn^(-1 / 8), a = nn^(-1 / 4), b = 2 * nn^(-1 / 8), sigma2 = nn^(-1 / 4))
  }))
  sl <- moe_contraction_slopes(st)
  cs <- sl[sl$kind == "cell", ]
  expect_equal(cs$loss, c("beta1", "a", "b", "sigma2"))
  expect_equal(cs$slope, c(-1 / 8, -1 / 4, -1 / 8, -1 / 4), tolerance = 1e-12)
  expect_equal(cs$theory, c(-1 / 8, -1 / 4, -1 / 8, -1 / 4))
})

test_that("print(), summary() and plot()", {
  st <- moe_contraction(p4(), n = c(200, 400, 800), reps = 2, starts = 1, seed = 1)
  expect_snapshot(print(st))
  s <- summary(st)
  expect_s3_class(s, "summary.moe_contraction")
  expect_equal(nrow(s$table), 6L)
  expect_snapshot(print(s, digits = 3))
  pdf(NULL)
  on.exit(dev.off())
  expect_identical(plot(st), st)
  st3 <- moe_contraction(p4(), n = c(300, 600), reps = 2, K = 3, init = "near_truth",
                         starts = 1, seed = 2)
  expect_snapshot(print(st3))
  expect_silent(plot(st3, what = "cells"))
  expect_silent(plot(st3, losses = "D2", drop = 0))
})

test_that("EM D1 slope on the reference truth lies in [-0.7, -0.35] (acceptance check)", {
  # 10 log-spaced n from 500 to 20,000, 8 replicates; about 7 s of CPU
  n <- round(exp(seq(log(500), log(20000), length.out = 10)))
  st <- moe_contraction(p4(), n = n, reps = 8, seed = 1, losses = "D")
  expect_gte(st$slopes[["D1"]], -0.7)
  expect_lte(st$slopes[["D1"]], -0.35)
})

test_that("EM D1 and Hellinger slopes over several seeds (slow)", {
  skip_if_not(Sys.getenv("BAYESMOE_SLOW_TESTS") == "true", "slow statistical test")
  n <- round(exp(seq(log(500), log(20000), length.out = 10)))
  for (seed in 2:4) {
    st <- moe_contraction(p4(), n = n, reps = 8, seed = seed)
    expect_gte(st$slopes[["D1"]], -0.7)
    expect_lte(st$slopes[["D1"]], -0.35)
    expect_gte(st$slopes[["hellinger"]], -0.65)
    expect_lte(st$slopes[["hellinger"]], -0.4)
  }
})

test_that("the MCMC branch summarises the losses of every posterior draw", {
  tru <- p4()
  mc_args <- list(chains = 2, iter = 30, warmup = 10,
                  control = moe_mcmc_control(em_starts = 2))
  st <- list(method = "mcmc", losses = c("D", "hellinger"), K = 3L, rbar = c(1, 4, 6),
             reference = "best", translation = TRUE, cells = TRUE, probs = 0.9,
             density_draws = 4L, loss_name = "D2", mcmc = mc_args,
             x_design = "uniform")
  streams <- bayesmoe:::rng_streams(1L, 1L)
  restore <- bayesmoe:::save_rng()
  out <- bayesmoe:::contraction_task(1L, data.frame(n = 300L, rep = 1L), tru, st, streams)
  # the same simulated data and posterior draws, rebuilt by hand
  assign(".Random.seed", streams[[1]], envir = globalenv())
  sim <- rmoe(300, tru)
  mseed <- sample.int(.Machine$integer.max, 1L)
  mc <- suppressWarnings(do.call(moe_mcmc, c(list(y ~ x, data = sim, K = 3L, seed = mseed,
                                                  progress = FALSE), mc_args)))
  restore()
  expect_equal(dim(mc$draws)[1:2], c(20L, 2L))
  D <- voronoi_loss(mc, tru, translation = TRUE)
  expect_length(D, 40L)
  v <- out$values
  expect_equal(v$statistic, c("mean", "q90", "mean", "q90"))
  expect_equal(v$value[v$loss == "D2"],
               c(mean(D), quantile(D, 0.9, names = FALSE)))
  idx <- unique(round(seq(1, 40, length.out = 4)))
  H <- density_loss(mc, tru)[idx]
  expect_equal(v$value[v$loss == "hellinger"], c(mean(H), quantile(H, 0.9, names = FALSE)))
  expect_equal(out$cells$statistic, c("mean", "q90"))
  expect_equal(out$run$loglik, mean(mc$loglik_draws))
})

test_that("method = \"mcmc\" summarises the loss of every posterior draw", {
  st <- moe_contraction(p4(), n = c(300, 600), reps = 2, method = "mcmc", seed = 1,
                        mcmc = list(chains = 1, iter = 200, warmup = 100),
                        density_draws = 20)
  expect_setequal(unique(st$results$statistic), c("mean", "q90"))
  expect_named(st$slopes, c("D1", "hellinger"))
  m <- st$results[st$results$statistic == "mean", "value"]
  expect_true(all(is.finite(m) & m > 0))
  expect_true(all(st$runs$status != "error"))
})

test_that("errors of moe_contraction() and moe_contraction_slopes()", {
  tru <- p4()
  expect_snapshot(error = TRUE, {
    moe_contraction(list(), n = 100)
    moe_contraction(tru)
    moe_contraction(tru, n = c(5, 100))
    moe_contraction(tru, n = 100, reps = 0)
    moe_contraction(tru, n = 100, K = 1.5)
    moe_contraction(tru, n = 100, method = "vb")
    moe_contraction(tru, n = 100, losses = "kl")
    moe_contraction(tru, n = 100, init = "near_truth", K = 1)
    moe_contraction(tru, n = 100, starts = 0)
    moe_contraction(tru, n = c(100, 200), drop_n = 1)
    moe_contraction(tru, n = 100, probs = 2)
    moe_contraction(tru, n = 100, control = list())
    moe_contraction(tru, n = 100, mcmc = 1)
    moe_contraction(tru, n = 100, translation = "yes")
    moe_contraction(tru, n = 100, seed = "a")
  })
  st <- synthetic_study(-0.5, 0)
  expect_snapshot(error = TRUE, {
    moe_contraction_slopes(list())
    moe_contraction_slopes(st, drop = 11)
    moe_contraction_slopes(st, statistic = "mean")
    plot(st, what = "cells")
    plot(st, losses = "D2")
  })
})

# ---------------------------------------------------------------------------
# method = "ls": the least-squares regression form

ffn_truth <- function() {
  moe_truth(beta0 = 0, beta1 = -4, eta = cbind(c(5, 2.5, 1.5, 0), c(-5, 2.5, 1, 0.5)),
            sigma = c(0.05, 0.05), expert = expert_ffn(1))
}

test_that("method = \"ls\" fits the regression form and its losses shrink with n", {
  set.seed(1)
  tru <- ffn_truth()
  st <- moe_contraction(tru, n = c(200, 5000), reps = 3, method = "ls", seed = 5)
  expect_s3_class(st, "moe_contraction")
  expect_equal(st$settings$method, "ls")
  expect_equal(st$settings$losses, c("D", "l2"))
  expect_equal(st$settings$init, "near_truth")
  expect_named(st$results, c("n", "rep", "loss", "statistic", "value"))
  expect_equal(nrow(st$results), 2L * 3L * 2L)
  expect_setequal(unique(st$results$loss), c("D_strong", "l2"))
  expect_equal(unique(st$results$statistic), "estimate")
  expect_true(all(is.finite(st$results$value) & st$results$value >= 0))
  expect_null(st$cells)
  expect_named(st$slopes, c("D_strong", "l2"))
  expect_equal(nrow(st$runs), 6L)
  expect_true(all(st$runs$status != "error"))
  # the regression-form data and the truth of the harness are those of ls_simulate()
  lt <- st$settings$ls_truth
  expect_equal(lt$sd, 0.05)
  expect_equal(lt$W, rbind("(Intercept)" = c(0, 0), x = c(-4, 0)))
  expect_identical(bayesmoe:::ls_l2(lt, lt), 0)
  # losses shrink from n = 200 to n = 5000 (medians over replicates)
  med <- with(st$results, tapply(value, list(n, loss), median))
  expect_true(all(med["5000", ] < med["200", ]))
  # the slope machinery, print, summary and plot work on it
  sl <- moe_contraction_slopes(st)
  expect_equal(sl$slope, unname(st$slopes))
  expect_output(print(st), "least squares \\(regression form\\)")
  expect_output(print(summary(st)), "D_strong")
  grDevices::pdf(NULL)
  on.exit(grDevices::dev.off())
  expect_identical(plot(st), st)
})

test_that("method = \"ls\" is reproducible and matches a fit done by hand", {
  set.seed(2)
  tru <- moe_truth(beta0 = 0.5, beta1 = 3, a = c(2, -0.5), b = c(1, -1), sigma = c(0.1, 0.2),
                   sd = 0.1)
  a <- moe_contraction(tru, n = c(100, 200), reps = 1, K = 3, method = "ls", seed = 8,
                       losses = "D", starts = 1)
  b <- moe_contraction(tru, n = c(100, 200), reps = 1, K = 3, method = "ls", seed = 8,
                       losses = "D", starts = 1)
  expect_identical(a$results, b$results)
  expect_equal(unique(a$results$loss), "D_strong")
  # rebuild the first task: ls_simulate() data on the task's stream, the
  # split truth as the extra start, the strong Voronoi loss
  restore <- bayesmoe:::save_rng()
  streams <- bayesmoe:::rng_streams(8, 2L)
  assign(".Random.seed", streams[[1]], envir = globalenv())
  lt <- a$settings$ls_truth
  s <- bayesmoe:::ls_simulate(lt, 100)
  fit <- moe_ls_fit(s$y, s$X, s$X, K = 3, starts = 1, control = moe_ls_control(maxit = 500),
                    init = bayesmoe:::ls_split_truth(lt, 3L))
  restore()
  expect_equal(a$results$value[1],
               as.numeric(voronoi_loss_strong(fit$par[c("alpha", "W")], lt[c("alpha", "W")])))
  expect_equal(a$runs$loglik[1], fit$loglik)
})

test_that("errors of method = \"ls\"", {
  tru <- ffn_truth()
  two <- moe_truth(beta0 = 0, beta1 = cbind(c(1, 1)), a = cbind(c(1, 1), c(0, 0)),
                   b = c(0, 0), sigma = c(1, 1))
  expect_snapshot(error = TRUE, {
    moe_contraction(tru, n = 100)
    moe_contraction(tru, n = 100, method = "mcmc")
    moe_contraction(tru, n = 100, method = "ls", losses = "hellinger")
    moe_contraction(moe_truth_example("p4"), n = 100, method = "ls")
    moe_contraction(two, n = 100, method = "ls")
    moe_contraction(tru, n = 100, method = "ls", cells = TRUE)
    moe_contraction(tru, n = 100, method = "ls", x_design = "grid")
    moe_contraction(tru, n = 100, method = "ls", control = moe_em_control())
  })
})

test_that("arguments meant for moe_mcmc() are checked before any fit", {
  tr <- moe_truth_example("p4")
  run <- function(m, method = "mcmc") moe_contraction(tr, n = c(20, 30), reps = 2,
                                                       method = method, mcmc = m)
  expect_snapshot(run(list(iter = -1)), error = TRUE)
  expect_snapshot(run(list(bogus = 1)), error = TRUE)
  expect_snapshot(run(list(iter = 10, warmup = 10)), error = TRUE)
  expect_snapshot(run(list(prior = 1)), error = TRUE)
  expect_snapshot(run(list(iter = 20), method = "em"), error = TRUE)
  expect_error(run(list(seed = 1)), class = "bayesmoe_error_input")
  expect_error(run(list(gate = 3)), class = "bayesmoe_error_input")
})

# ---- a random number of experts ------------------------------------------

test_that("a prior on K with all its mass on one K gives the fixed-K study", {
  tr <- moe_truth_example("p4")
  mc <- list(chains = 1, iter = 60, control = moe_mcmc_control(em_starts = 1))
  fixed <- moe_contraction(tr, n = c(100, 150), reps = 2, K = 2, method = "mcmc",
                           losses = c("hellinger", "tv"), mcmc = mc, density_draws = 7,
                           seed = 5)
  point <- moe_contraction(tr, n = c(100, 150), reps = 2,
                           K = prior_K("custom", probs = c(0, 1, 0)), method = "mcmc",
                           mcmc = mc, density_draws = 7, seed = 5)
  # same losses of every replicate (mean and 90% quantile), same slopes
  expect_identical(point$results, fixed$results)
  expect_identical(point$slopes, fixed$slopes)
  expect_equal(unique(point$K_post$K), 2L)
  expect_true(all(point$K_post$post == 1))
  expect_true(all(point$K_est$p_true[point$K_est$strategy == "posterior"] == 1))
  expect_equal(point$runs$loglik, fixed$runs$loglik)
})

test_that("a random-K study: posterior weights sum to one, tables agree", {
  tr <- moe_truth_example("p4")
  st <- moe_contraction(tr, n = c(100, 200), reps = 2, K = prior_K(K_max = 3),
                        method = "mcmc", mcmc = list(chains = 2, iter = 60),
                        density_draws = 5, seed = 11)
  expect_s3_class(st, "moe_contraction")
  kp <- st$K_post
  expect_identical(sort(unique(kp$K)), 1:3)
  sums <- tapply(kp$post, list(kp$n, kp$rep), sum)
  expect_equal(as.vector(sums), rep(1, 4), tolerance = 1e-12)
  expect_true(all(kp$post >= 0 & kp$post <= 1))
  # the posterior is p(k) p(y | k), normalised
  g <- kp[kp$n == 200 & kp$rep == 1, ]
  lp <- g$logml + log(g$prior / sum(g$prior))
  expect_equal(g$post, exp(lp - max(lp)) / sum(exp(lp - max(lp))))
  # K = 1 is exact (no Monte Carlo error); the data favour two experts
  expect_true(all(kp$logml_se[kp$K == 1] == 0))
  expect_true(all(kp$post[kp$K == 1] < 1e-6))
  est <- st$K_est
  pe <- est[est$strategy == "posterior", ]
  expect_equal(pe$p_true, kp$post[kp$K == 2])
  expect_equal(pe$mean_K, as.vector(tapply(kp$post * kp$K, list(kp$rep, kp$n), sum)))
  expect_setequal(unique(est$strategy), c("posterior", "mtm"))
  tab <- st$K_table
  expect_equal(tab$p_true[tab$strategy == "posterior"],
               as.vector(tapply(pe$p_true, pe$n, mean)))
  expect_identical(moe_contraction_K(st), tab)
  # reweighting by the study's own prior reproduces the posterior rows
  rw <- moe_contraction_K(st, prior = prior_K(K_max = 3))
  expect_equal(rw[c("p_true", "mean_K")], tab[tab$strategy == "posterior", c("p_true", "mean_K")],
               ignore_attr = TRUE)
  # a prior favouring more experts moves mass up
  up <- moe_contraction_K(st, prior = prior_K("custom", probs = c(0.01, 0.01, 0.98)))
  expect_true(all(up$mean_K > rw$mean_K))
  expect_identical(names(st$slopes), c("hellinger", "tv"))
  expect_true(all(is.finite(st$slopes)))
  # the same seed gives the same study
  st2 <- moe_contraction(tr, n = c(100, 200), reps = 2, K = prior_K(K_max = 3),
                         method = "mcmc", mcmc = list(chains = 2, iter = 60),
                         density_draws = 5, seed = 11)
  expect_identical(st2$results, st$results)
  expect_identical(st2$K_post[names(kp) != "cpu"], kp[names(kp) != "cpu"])
  expect_output(print(st), "P\\(K = 2 \\| data\\)")
  expect_output(print(summary(st)), "K_hat_true")
  grDevices::pdf(NULL)
  on.exit(grDevices::dev.off())
  expect_identical(plot(st), st)
  expect_identical(plot(st, what = "K"), st)
})

test_that("the model-averaged mean and quantile pool the draws with the posterior weights", {
  v <- list(c(4, 1, 3, 2), c(20, 10))
  w <- c(0.25, 0.75)
  # draw weights 1/16 and 3/8: one copy of each first-fit draw, six of each
  # second-fit draw
  pooled <- c(v[[1]], rep(v[[2]], each = 6))
  expect_equal(bayesmoe:::model_avg_mean(v, w), mean(pooled))
  for (p in c(0.05, 0.2, 0.25, 0.3, 0.5, 0.9, 1)) {
    expect_equal(bayesmoe:::model_avg_quantile(v, w, p), unname(quantile(pooled, p, type = 1)))
  }
  expect_identical(bayesmoe:::model_avg_quantile(v[1], 1, 0.9), quantile(v[[1]], 0.9, names = FALSE))
  expect_equal(bayesmoe:::model_avg_mean(list(c(1, NA, 3)), 1), 2)
})

test_that("malformed priors on K and settings a random K cannot take get classed errors", {
  tr <- moe_truth_example("p4")
  run <- function(K, ...) moe_contraction(tr, n = c(20, 30), reps = 1, K = K, method = "mcmc", ...)
  bad <- prior_K(K_max = 3)
  bad$probs <- c(0.5, 0.6, 0.1)
  expect_snapshot(error = TRUE, {
    run(list(probs = c(0.5, 0.5)))
    run(bad)
    run(prior_K(K_max = 9))
    moe_contraction(tr, n = c(20, 30), K = prior_K(K_max = 3), method = "em")
    run(prior_K(K_max = 3), losses = c("D", "hellinger"))
    run(prior_K(K_max = 3), cells = TRUE)
    run(prior_K(K_max = 3), mcmc = list(gate = gate_topk(1)))
    run(prior_K(K_max = 3), mcmc = list(prior = moe_prior(exchangeable = FALSE)))
    run(prior_K(K_max = 3), mcmc = list(prior = moe_prior(K = prior_K(K_max = 3))))
  })
  bad2 <- prior_K(K_max = 2)
  bad2$probs <- c(NA, 1)
  expect_error(run(bad2), class = "bayesmoe_error_input")
  bad3 <- prior_K(K_max = 2)
  bad3$K_max <- 3L
  expect_error(run(bad3), class = "bayesmoe_error_input")
  expect_error(run(structure(list(), class = "moe_prior_K")), class = "bayesmoe_error_input")
  fixed <- moe_contraction(tr, n = c(50, 60), reps = 1, seed = 1, losses = "hellinger")
  expect_snapshot(error = TRUE, moe_contraction_K(fixed))
  expect_error(moe_contraction_K(1), class = "bayesmoe_error_input")
})
