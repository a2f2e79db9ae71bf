test_that("internal scaling round-trips parameters", {
  set.seed(1)
  X <- cbind("(Intercept)" = 1, a = rnorm(20, 5, 3), b = runif(20))
  Z <- cbind("(Intercept)" = 1, a = X[, 2])
  y <- rnorm(20, 10, 4)
  sc <- bayesmoe:::moe_scaling(y, X, Z)
  par <- list(alpha = matrix(rnorm(6), 3), sigma2 = c(0.5, 2), W = cbind(rnorm(2), 0))
  back <- bayesmoe:::par_to_original(sc, bayesmoe:::par_to_internal(sc, par))
  expect_equal(back, par, ignore_attr = TRUE)
  # the scaled means reproduce the original ones
  s <- bayesmoe:::scale_data(sc, y, X, Z)
  pin <- bayesmoe:::par_to_internal(sc, par)
  expect_equal(sc$my + sc$sy * s$X %*% pin$alpha, X %*% par$alpha)
  expect_equal(s$Z %*% pin$W, Z %*% par$W)
})

test_that("formulas without an intercept are scaled, not centred", {
  set.seed(2)
  d <- data.frame(x = runif(200, 1, 2))
  d$y <- ifelse(runif(200) < 0.5, 2 * d$x, -d$x) + rnorm(200, sd = 0.1)
  fit <- moe_em(y ~ x - 1, data = d, K = 2, gating = ~ 1, seed = 1)
  expect_identical(rownames(fit$coefficients$alpha), "x")
  expect_equal(unname(sort(fit$coefficients$alpha[1, ])), c(-1, 2), tolerance = 0.05)
})

test_that("factors, interactions and poly() work, and predict() reuses their bases", {
  set.seed(3)
  d <- data.frame(x = runif(300), f = factor(sample(c("a", "b"), 300, TRUE)))
  d$y <- ifelse(runif(300) < plogis(6 * (d$x - 0.5)), 1 + 2 * d$x, -1 + d$x^2) +
    0.3 * (d$f == "b") + rnorm(300, sd = 0.2)
  fit <- moe_em(y ~ poly(x, 2) * f, data = d, K = 2, gating = ~ x + f, seed = 1)
  expect_identical(ncol(fit$X), 6L)
  nd <- d[c(5, 50, 150), c("x", "f")]
  expect_equal(predict(fit, nd), fitted(fit)[c(5, 50, 150)], ignore_attr = TRUE)
  expect_equal(predict(fit, nd, type = "gating"),
               predict(fit, type = "gating")[c(5, 50, 150), ], ignore_attr = TRUE)
  # a single new row still gets the training polynomial basis
  expect_equal(predict(fit, nd[1, ]), fitted(fit)[5], ignore_attr = TRUE)
  # a level unseen in training is an error from model.frame
  expect_error(predict(fit, data.frame(x = 0.5, f = "zz")))
})

test_that("subset and na.action are honoured and reported", {
  d <- tonedata
  d$tuned[1:3] <- NA
  f <- moe_em(tuned ~ stretchratio, data = d, K = 2, seed = 1)
  expect_identical(nobs(f), 147L)
  expect_length(f$na.action, 3L)
  expect_error(moe_em(tuned ~ stretchratio, data = d, K = 2, na.action = na.fail))
  f2 <- moe_em(tuned ~ stretchratio, data = tonedata, K = 2, seed = 1,
               subset = stretchratio > 1.5)
  expect_identical(nobs(f2), sum(tonedata$stretchratio > 1.5))
})

test_that("variables are found in the calling environment when data is missing", {
  x <- tonedata$stretchratio
  y <- tonedata$tuned
  f <- moe_em(y ~ x, K = 2, seed = 1)
  g <- moe_em(tuned ~ stretchratio, data = tonedata, K = 2, seed = 1)
  expect_equal(as.numeric(logLik(f)), as.numeric(logLik(g)))
})

test_that("a dot in the formula expands over data", {
  d <- data.frame(y = tonedata$tuned, x = tonedata$stretchratio)
  f <- moe_em(y ~ ., data = d, K = 2, seed = 1)
  expect_identical(colnames(f$X), c("(Intercept)", "x"))
  expect_identical(colnames(f$Z), c("(Intercept)", "x"))
})
