# Membership probabilities and hard assignments (moe_membership(),
# predict(type = "membership")).

test_that("EM memberships are the responsibilities at the estimate", {
  set.seed(201)
  em <- em_tone()
  par <- coef(em, matrix = TRUE)
  ref <- resp_ref(par, em$X, em$Z, em$y)
  m <- predict(em, type = "membership")
  expect_equal(dim(m), c(150L, 2L))
  expect_equal(dimnames(m), list(rownames(em$X), c("expert1", "expert2")))
  expect_equal(m, ref, ignore_attr = TRUE)
  expect_equal(unname(rowSums(m)), rep(1, 150))
  expect_identical(moe_membership(em), m)
  # the E-step quantity: gating times density, normalised
  g <- predict(em, type = "gating")
  dens <- sapply(1:2, function(k) dnorm(em$y, predict(em, type = "expert")[, k],
                                        sqrt(par$sigma2[k])))
  expect_equal(m, g * dens / rowSums(g * dens), ignore_attr = TRUE)
  # new data with the response; NA rows give NA
  nd <- tonedata[c(3, 10, 40), ]
  nd$tuned[2] <- NA
  mn <- predict(em, nd, type = "membership")
  expect_equal(mn[c(1, 3), ], m[c(3, 40), ], ignore_attr = TRUE)
  expect_true(all(is.na(mn[2, ])))
  h <- moe_membership(em, nd, type = "hard")
  expect_identical(unname(h), c(max.col(m)[3], NA, max.col(m)[40]))
  expect_equal(names(h), rownames(nd))
})

test_that("hard assignments take the most probable expert; K = 1 puts everything in expert 1", {
  set.seed(202)
  em <- em_tone()
  m <- moe_membership(em)
  h <- moe_membership(em, type = "hard")
  expect_type(h, "integer")
  expect_identical(unname(h), max.col(m, ties.method = "first"))
  expect_equal(names(h), rownames(em$X))
  # both experts are used on the tone data
  expect_equal(sort(unique(unname(h))), 1:2)
  em1 <- moe_em(tuned ~ stretchratio, data = tonedata, K = 1)
  expect_equal(unname(moe_membership(em1)), matrix(1, 150, 1))
  expect_equal(unname(moe_membership(em1, type = "hard")), rep(1L, 150))
})

test_that("MCMC memberships average the responsibilities over relabelled draws", {
  set.seed(203)
  f <- fake_draws_fit()
  D <- true_draws_matrix(f)
  R <- lapply(1:200, function(i) resp_ref(par_unflatten(D[i, ], 2, 2, 2), f$X, f$Z, f$y))
  ref <- Reduce(`+`, R) / 200
  m <- predict(f, type = "membership")
  expect_equal(m, ref, ignore_attr = TRUE)
  expect_equal(dimnames(m), list(rownames(f$X), c("expert1", "expert2")))
  expect_identical(moe_membership(f), m)
  # credible limits: quantiles of the per-draw responsibilities
  ci <- moe_membership(f, interval = "credible", level = 0.9)
  expect_equal(dim(ci), c(150L, 2L, 3L))
  expect_equal(dimnames(ci)[[3]], c("fit", "lwr", "upr"))
  expect_equal(ci[, , "fit"], m)
  V <- vapply(R, function(r) r[7, 1], 0)
  expect_equal(unname(ci[7, 1, c("lwr", "upr")]), quantile(V, c(0.05, 0.95), names = FALSE))
  expect_identical(predict(f, type = "membership", interval = "credible", level = 0.9), ci)
  # hard: the expert with the largest posterior probability
  h <- moe_membership(f, type = "hard")
  expect_identical(unname(h), max.col(m, ties.method = "first"))
  # the labels are those of coef(): the fake fit keeps the EM labels
  expect_equal(mean(h == moe_membership(em_tone(), type = "hard")), 1, tolerance = 0.02)
  # ndraws: evenly spread draws
  idx <- round(seq(1, 200, length.out = 10))
  expect_equal(moe_membership(f, ndraws = 10), Reduce(`+`, R[idx]) / 10, ignore_attr = TRUE)
  # new data: rows without covariate or response are NA
  nd <- data.frame(stretchratio = c(1.5, NA, 2.5, 2), tuned = c(1.9, 2, NA, 2.1))
  mn <- predict(f, nd, type = "membership", interval = "credible")
  expect_true(all(is.na(mn[2:3, , ])))
  des <- new_design(f, nd)
  expect_equal(mn[c(1, 4), , "fit"],
               Reduce(`+`, lapply(1:200, function(i) resp_ref(par_unflatten(D[i, ], 2, 2, 2),
                 des$X[c(1, 4), ], des$Z[c(1, 4), ], des$y[c(1, 4)]))) / 200,
               ignore_attr = TRUE)
})

test_that("memberships of a real fit agree with the EM fit", {
  set.seed(204)
  fit <- real_tone_fit()
  m <- moe_membership(fit)
  expect_equal(unname(rowSums(m)), rep(1, 150))
  expect_gt(mean(moe_membership(fit, type = "hard") == moe_membership(em_tone(), type = "hard")),
            0.9)
})

test_that("membership functions report bad arguments", {
  set.seed(205)
  f <- fake_draws_fit()
  em <- em_tone()
  nd <- data.frame(stretchratio = 2)
  expect_snapshot(error = TRUE, {
    moe_membership(1)
    moe_membership(f, type = "soft")
    moe_membership(em, interval = "credible")
    moe_membership(f, type = "hard", interval = "credible")
    moe_membership(em, ndraws = 10)
    moe_membership(f, ndraws = 0)
    moe_membership(f, level = 1)
    moe_membership(em, nd)
    moe_membership(f, nd)
    predict(em, nd, type = "membership")
    predict(f, nd, type = "membership")
  })
  expect_error(moe_membership(em, nd), class = "bayesmoe_error_input")
})
