# topk_loss(): the Voronoi loss of top-k gating (R/loss-topk.R).

truth3 <- function() {
  list(alpha = cbind(c(1, 2), c(-1, 1), c(0, -2)), sigma2 = c(0.1, 0.2, 0.15),
       W = cbind(c(0.5, -3), c(0, 3), 0))
}
zgrid <- function() cbind(1, seq(-2, 2, length.out = 41))

test_that("the loss is zero at the truth and D1 for single-atom cells", {
  set.seed(1)
  tr <- truth3()
  expect_equal(as.numeric(topk_loss(tr, tr, k = 2, Z = zgrid())), 0)
  par <- tr
  par$alpha <- par$alpha + matrix(rnorm(6, 0, 0.05), 2)
  par$sigma2 <- par$sigma2 + c(0.01, -0.02, 0.03)
  par$W[, 1:2] <- par$W[, 1:2] + matrix(rnorm(4, 0, 0.05), 2)
  # plain D1: one atom per cell, the matching labels
  d1 <- sum(abs(exp(par$W[1, ]) - exp(tr$W[1, ]))) +
    sum(exp(par$W[1, ]) * (abs(par$W[2, ] - tr$W[2, ]) + abs(par$alpha[2, ] - tr$alpha[2, ]) +
                             abs(par$alpha[1, ] - tr$alpha[1, ]) + abs(par$sigma2 - tr$sigma2)))
  expect_equal(as.numeric(topk_loss(par, tr, k = 2, Z = zgrid())), d1)
  # invariant under relabelling and re-referencing of the fit
  for (perm in list(c(2, 1, 3), c(2, 3, 1), c(3, 1, 2))) {
    pp <- list(alpha = par$alpha[, perm], sigma2 = par$sigma2[perm],
               W = par$W[, perm] - par$W[, perm[3]])
    expect_equal(as.numeric(topk_loss(pp, tr, k = 2, Z = zgrid())), d1)
  }
})

test_that("experts the selection never activates are left out; split cells use rbar", {
  set.seed(2)
  tr <- truth3()
  # a fourth expert that is never in the top 2 on the grid: no effect
  par <- list(alpha = cbind(tr$alpha[, 1:2], c(5, 5), tr$alpha[, 3]),
              sigma2 = c(tr$sigma2[1:2], 1, tr$sigma2[3]),
              W = cbind(tr$W[, 1:2], c(-50, 0), 0))
  l <- topk_loss(par, tr, k = 2, Z = zgrid())
  expect_equal(as.numeric(l), 0)
  expect_equal(attr(l, "active"), c(1L, 2L, 4L))
  # with k = 4 every expert is active; the fourth (far) atom joins a cell
  l4 <- topk_loss(par, tr, k = 4, Z = zgrid())
  expect_equal(attr(l4, "active"), 1:4)
  expect_gt(as.numeric(l4), 0)
  # split the third true atom into two atoms (fitted 3 and the reference 4):
  # cell 3 holds two atoms, whose terms use rbar(2) = 4 and rbar(2) / 2 = 2
  da <- c(0.1, -0.2)
  sp <- list(alpha = cbind(tr$alpha, tr$alpha[, 3] + da),
             sigma2 = c(tr$sigma2, tr$sigma2[3] + 0.05),
             W = cbind(tr$W[, 1:2], c(-1, 0.3), 0))
  l4 <- topk_loss(sp, tr, k = 4, Z = zgrid())
  expect_equal(unname(attr(l4, "cells")), c(1L, 2L, 3L, 3L))
  # the fit is first translated: cell 3 (the truth's reference) gets
  # weight 1 and mean gating slope 0
  w <- c(exp(-1), 1) / (1 + exp(-1))
  b1 <- c(0.3, 0) - sum(w * c(0.3, 0))
  ref <- abs(sum(w) - 1) +                               # weight of cell 3: 0
    w[1] * (abs(b1[1])^4 + 0 + 0 + 0) +                  # atom 3: gating slope only
    w[2] * (abs(b1[2])^4 + abs(da[1])^4 + abs(da[2])^2 + 0.05^2)
  # atoms 1 and 2 moved by the translation
  sh <- c(log(1 + exp(-1)), sum(c(exp(-1), 1) * c(0.3, 0)) / (1 + exp(-1)))
  for (j in 1:2) {
    wj <- exp(tr$W[1, j] - sh[1])
    ref <- ref + abs(wj - exp(tr$W[1, j])) + wj * abs(sh[2])
  }
  expect_equal(as.numeric(l4), ref)
  # too many atoms in a cell: NA with a classed warning
  expect_warning(l5 <- topk_loss(sp, tr, k = 4, Z = zgrid(), rbar = 1),
                 class = "bayesmoe_warning_loss")
  expect_true(is.na(l5))
})

test_that("a top-k fit gives its own k and covariates; the loss shrinks with n", {
  set.seed(3)
  tr <- truth3()
  sim <- function(n) {
    x <- runif(n, -2, 2)
    Z <- cbind(1, x)
    g <- exp(gate_log_prob_r(gate_topk(2), Z, tr))
    kk <- apply(g, 1, function(p) sample.int(3, 1, prob = p))
    data.frame(x = x, y = tr$alpha[1, kk] + tr$alpha[2, kk] * x + sqrt(tr$sigma2[kk]) * rnorm(n))
  }
  f1 <- moe_em(y ~ x, data = sim(300), K = 3, gate = gate_topk(2), seed = 1)
  f2 <- moe_em(y ~ x, data = sim(3000), K = 3, gate = gate_topk(2), seed = 1)
  l1 <- topk_loss(f1, tr)
  l2 <- topk_loss(f2, tr)
  expect_equal(as.numeric(l1), as.numeric(topk_loss(coef(f1, matrix = TRUE), tr, k = 2, Z = f1$Z)))
  expect_true(is.finite(l2) && l2 < l1)
})

test_that("topk_loss() errors name the argument", {
  tr <- truth3()
  expect_snapshot(error = TRUE, topk_loss(list(alpha = 1), tr, k = 2, Z = zgrid()))
  expect_snapshot(error = TRUE, topk_loss(tr, tr, Z = zgrid()))
  expect_snapshot(error = TRUE, topk_loss(tr, tr, k = 4, Z = zgrid()))
  expect_snapshot(error = TRUE, topk_loss(tr, tr, k = 2, Z = matrix(1, 3, 3)))
  expect_snapshot(error = TRUE, topk_loss(tr, tr, k = 2, Z = zgrid(), rbar = -1))
  expect_snapshot(error = TRUE, topk_loss(tr, list(alpha = tr$alpha, sigma2 = tr$sigma2,
                                                   W = tr$W + 1), k = 2, Z = zgrid()))
  expect_snapshot(error = TRUE, topk_loss(tr, list(alpha = matrix(0, 3, 3), sigma2 = c(1, 1, 1),
                                                   W = tr$W), k = 2, Z = zgrid()))
  fit <- moe_em(tuned ~ stretchratio, data = tonedata, K = 2, seed = 1,
                gate = gate_temperature(0.5))
  expect_snapshot(error = TRUE, topk_loss(fit, tr))
})

test_that("voronoi_loss(), density_loss() and moe_truth() of gate variants use the right model", {
  tru <- moe_truth_example("p4")
  set.seed(31)
  sim <- rmoe(300, tru)
  # a fixed temperature: compared through its softmax logits W / tau
  ft <- moe_em(y ~ x, data = sim, K = 2, gate = gate_temperature(2), starts = 2, seed = 1)
  p <- coef(ft, matrix = TRUE)
  as_softmax <- list(beta0 = p$W[1, ] / 2, beta1 = p$W[2, , drop = FALSE] / 2,
                     a = p$alpha[2, , drop = FALSE], b = p$alpha[1, ], sigma2 = p$sigma2)
  expect_equal(voronoi_loss(ft, tru), voronoi_loss(as_softmax, tru))
  expect_equal(density_loss(ft, tru), density_loss(as_softmax, tru))
  expect_equal(unname(moe_truth(ft)$beta1), unname(as_softmax$beta1))
  # a learned temperature under MCMC: draw by draw, with that draw's tau
  m <- moe_mcmc(y ~ x, data = sim, K = 2, gate = gate_temperature(learn = TRUE), chains = 1,
                iter = 20, seed = 1, progress = FALSE)
  th <- matrix(m$draws, ncol = dim(m$draws)[3L], dimnames = list(NULL, dimnames(m$draws)[[3L]]))
  s <- 7
  tau <- th[s, "tau"]
  d7 <- list(beta0 = c(th[s, "gate1:(Intercept)"] / tau, 0), beta1 = cbind(th[s, "gate1:x"] / tau, 0),
             a = cbind(th[s, "expert1:x"], th[s, "expert2:x"]),
             b = c(th[s, "expert1:(Intercept)"], th[s, "expert2:(Intercept)"]),
             sigma2 = c(th[s, "expert1:sigma2"], th[s, "expert2:sigma2"]))
  expect_equal(voronoi_loss(m, tru)[s], voronoi_loss(d7, tru))
  expect_equal(density_loss(m, tru)[s], density_loss(d7, tru))
  # top-k with k < K: the Voronoi loss of top-k gating; no softmax density
  # three experts for two: a spike expert, warned of (test-em.R), not tested here
  fs <- suppressWarnings(moe_em(y ~ x, data = sim, K = 3, gate = gate_topk(2), starts = 2,
                                seed = 1), classes = "bayesmoe_warning_degenerate")
  expect_equal(voronoi_loss(fs, tru), topk_loss(fs, bayesmoe:::truth_par(tru)))
  expect_error(density_loss(fs, tru), class = "bayesmoe_error_gate")
  expect_error(voronoi_cells(fs, tru), class = "bayesmoe_error_gate")
  expect_error(moe_truth(fs), class = "bayesmoe_error_gate")
  # a hierarchical gate with several groups is not a softmax: refused
  fh <- moe_em(y ~ x, data = sim, K = 3, gate = gate_hierarchical(c(1, 1, 2)), starts = 2,
               seed = 1)
  mh <- moe_mcmc(y ~ x, data = sim, K = 3, gate = gate_hierarchical(c(1, 1, 2)), chains = 1,
                 iter = 20, seed = 1, progress = FALSE)
  for (f in list(fh, mh)) {
    expect_error(voronoi_loss(f, tru), class = "bayesmoe_error_gate")
    expect_error(density_loss(f, tru), class = "bayesmoe_error_gate")
  }
  expect_snapshot(voronoi_loss(fh, tru), error = TRUE)
  # one group is the softmax: same optimum and loss as the softmax fit
  f1 <- moe_em(y ~ x, data = sim, K = 2, gate = gate_hierarchical(1), starts = 2, seed = 1)
  f0 <- moe_em(y ~ x, data = sim, K = 2, starts = 2, seed = 1)
  expect_equal(voronoi_loss(f1, tru), voronoi_loss(f0, tru), tolerance = 1e-5)
})
