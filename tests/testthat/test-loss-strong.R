# Plain-R reference of the strong Voronoi loss for the fit as given.
strong_loss_r <- function(at, tru, d1 = 2) {
  K <- ncol(at)
  ks <- ncol(tru)
  cell <- vapply(seq_len(K), function(i) {
    which.min(colSums((tru[-1, , drop = FALSE] - at[-1, i])^2))
  }, 1L)
  loss <- 0
  for (j in seq_len(ks)) {
    A <- which(cell == j)
    loss <- loss + abs(sum(exp(at[1, A])) - exp(tru[1, j]))
    for (i in A) {
      s1 <- sum((at[2:d1, i] - tru[2:d1, j])^2) # gating slopes
      se <- sum((at[-(1:d1), i] - tru[-(1:d1), j])^2) # expert parameters
      loss <- loss + exp(at[1, i]) * if (length(A) > 1) s1 + se else sqrt(s1) + sqrt(se)
    }
  }
  loss
}

test_that("the strong Voronoi loss matches plain R and its invariances", {
  set.seed(41)
  truth <- list(alpha = cbind(c(1, 2), c(-1, 0.5)), W = cbind(c(0.5, 3), c(0, 0)))
  tru <- rbind(truth$W, truth$alpha)
  for (r in 1:20) {
    K <- sample(2:4, 1)
    fit <- list(alpha = truth$alpha[, sample(2, K, TRUE), drop = FALSE] + rnorm(2 * K, 0, 0.3),
                W = cbind(matrix(rnorm(2 * (K - 1)), 2), 0))
    at <- rbind(fit$W, fit$alpha)
    l0 <- voronoi_loss_strong(fit, truth, translate = "none")
    expect_equal(as.numeric(l0), strong_loss_r(at, tru), tolerance = 1e-12)
    lr <- voronoi_loss_strong(fit, truth, translate = "reference")
    li <- voronoi_loss_strong(fit, truth)
    expect_lte(as.numeric(lr), as.numeric(l0) + 1e-12)
    expect_lte(as.numeric(li), as.numeric(lr) + 1e-12)
    # reference-expert choice: the minimum of plain-R losses over references
    ref <- min(vapply(seq_len(K), function(k) {
      a <- at
      a[1:2, ] <- a[1:2, ] - a[1:2, k]
      strong_loss_r(a, tru)
    }, 0))
    expect_equal(as.numeric(lr), ref, tolerance = 1e-12)
    # permutation of the experts and translation of the gating leave the
    # infimum unchanged
    o <- sample(K)
    fit2 <- list(alpha = fit$alpha[, o, drop = FALSE], W = fit$W[, o, drop = FALSE] + c(0.7, -1.2))
    expect_equal(as.numeric(voronoi_loss_strong(fit2, truth)), as.numeric(li), tolerance = 1e-6)
    expect_equal(attr(l0, "max_cell"), max(tabulate(
      vapply(seq_len(K), function(i) which.min(colSums((tru[-1, ] - at[-1, i])^2)), 1L), 2)))
  }
  expect_equal(as.numeric(voronoi_loss_strong(truth, truth)), 0)
  # a duplicated atom with split weight is also at distance zero
  split <- list(alpha = truth$alpha[, c(1, 1, 2)],
                W = cbind(truth$W[, 1] - c(log(2), 0), truth$W[, 1] - c(log(2), 0), 0))
  expect_equal(as.numeric(voronoi_loss_strong(split, truth, translate = "none")), 0,
               tolerance = 1e-12)
})

test_that("the strong Voronoi loss canonicalises FFN experts", {
  set.seed(42)
  ex <- expert_ffn(2)
  alpha <- cbind(c(1, -2, 0.5, -0.3, 1, 2, 0.1), c(-1, 3, 0.2, 0.4, -1, 0.5, -0.2))
  truth <- list(alpha = alpha, W = cbind(c(0.5, 2), c(0, 0)))
  # flip the sign of hidden unit 1 of expert 1 and swap the hidden units of expert 2
  fl <- alpha
  fl[c(1, 3, 5), 1] <- -fl[c(1, 3, 5), 1]
  fl[, 2] <- fl[c(2, 1, 4, 3, 6, 5, 7), 2]
  X <- cbind("(Intercept)" = 1, x = seq(-1, 1, length.out = 7))
  expect_equal(bayesmoe:::expert_mean(ex, X, fl), bayesmoe:::expert_mean(ex, X, alpha))
  expect_equal(as.numeric(voronoi_loss_strong(list(alpha = fl, W = truth$W), truth,
                                              translate = "none", expert = ex)), 0,
               tolerance = 1e-12)
  near <- list(alpha = fl + 0.01, W = truth$W)
  can <- bayesmoe:::ffn_canonical(alpha + 0.01, ex)
  expect_gt(as.numeric(voronoi_loss_strong(near, truth, "none", expert = ex)), 0)
})

test_that("the strong Voronoi loss of moe_ls(), moe_em() and moe_mcmc() fits", {
  set.seed(43)
  truth <- list(alpha = cbind(c(1, 2), c(-1, 0.5)), W = cbind(c(0.5, 3), c(0, 0)),
                sd = 0.1, expert = expert_linear())
  s <- bayesmoe:::ls_simulate(truth, 400)
  d <- data.frame(y = s$y, x = s$X[, 2])
  fit <- moe_ls(y ~ x, data = d, K = 2, starts = 2, seed = 1)
  l <- voronoi_loss_strong(fit, truth)
  expect_true(is.finite(l) && l < 0.5)
  # (the mixture density fitted to regression-form data: a near-hard gate,
  # which EM may report as separation)
  em <- suppressWarnings(moe_em(y ~ x, data = d, K = 2, starts = 2, seed = 1),
                         classes = "bayesmoe_warning_separation")
  expect_identical(voronoi_loss_strong(em, truth, "reference"),
                   voronoi_loss_strong(em$coefficients[c("alpha", "W")], truth, "reference"))
  # (a short chain on a near-hard gate: its gating moves may all be rejected)
  mc <- quiet_stall(moe_mcmc(y ~ x, data = d, K = 2, chains = 1, iter = 60, warmup = 30,
                             seed = 1, control = moe_mcmc_control(em_starts = 1)))
  lm <- voronoi_loss_strong(mc, truth, translate = "reference")
  expect_length(lm, 30)
  # each draw's loss is the loss of that draw as a parameter list
  par <- bayesmoe:::par_unflatten(mc$draws[5, 1, ], 2L, 2L, 2L, bayesmoe:::fit_spec(mc))
  expect_equal(lm[5], as.numeric(voronoi_loss_strong(par, truth, "reference")))
  expect_snapshot(error = TRUE, voronoi_loss_strong(1, truth))
  expect_snapshot(error = TRUE, voronoi_loss_strong(fit, list(alpha = 1)))
  expect_snapshot(error = TRUE, voronoi_loss_strong(fit, truth, translate = "shift"))
  expect_snapshot(error = TRUE, voronoi_loss_strong(fit, list(alpha = matrix(1, 3, 2),
                                                              W = truth$W)))
})

test_that("the least-squares regression form: split truths and starts at the truth", {
  truth <- list(alpha = cbind(c(2, 0.5, 1.5, -0.5), c(-3, 1, 1, 0.5)),
                W = cbind(c(0.5, 3), c(0, 0)), sd = 0.1, expert = expert_ffn(1))
  # the split truth of an over-specified start has the truth's regression
  # function and is at loss zero
  sp <- bayesmoe:::ls_split_truth(truth, 3L)
  expect_equal(bayesmoe:::ls_l2(sp, truth), 0, tolerance = 1e-12)
  expect_equal(as.numeric(voronoi_loss_strong(sp, truth, "none", expert = truth$expert)), 0,
               tolerance = 1e-12)
  # a start at the truth is kept when it is the best
  s <- bayesmoe:::ls_simulate(truth, 300)
  f <- moe_ls_fit(s$y, s$X, s$X, K = 2, expert = truth$expert, starts = 1,
                  init = truth[c("alpha", "W")])
  expect_equal(f$starts$type, c("residual", "init"))
  expect_lte(f$rss, min(f$starts$rss) + 1e-10)
})

test_that("a moe_truth() is accepted as the truth of voronoi_loss_strong() and topk_loss()", {
  tru <- moe_truth_example("p4")
  st <- list(alpha = cbind(c(1, 2), c(-1, 0.5)), W = cbind(c(0.5, 3), c(0, 0)))
  p <- truth_par <- list(alpha = rbind(tru$b, tru$a), W = rbind(tru$beta0, tru$beta1))
  expect_equal(voronoi_loss_strong(st, tru), voronoi_loss_strong(st, p))
  expect_snapshot(voronoi_loss_strong(st, moe_truth(beta0 = 0, beta1 = 1,
                                                    eta = matrix(0.1, 4, 2), sigma = c(1, 1),
                                                    expert = expert_ffn(1))), error = TRUE)
  expect_snapshot(voronoi_loss_strong(st, 1:3), error = TRUE)
  tk <- list(alpha = cbind(c(1, 2), c(-1, 1), c(0, -2)), sigma2 = c(0.1, 0.2, 0.15),
             W = cbind(c(0.5, -3), c(0, 3), 0))
  Z <- cbind(1, seq(-2, 2, length.out = 20))
  expect_equal(topk_loss(tk, tru, k = 2, Z = Z),
               topk_loss(tk, c(p, list(sigma2 = tru$sigma2)), k = 2, Z = Z), ignore_attr = TRUE)
})
