test_that("moe_prior() has the documented defaults and prints them in words", {
  set.seed(1)
  pr <- moe_prior()
  expect_s3_class(pr, "moe_prior")
  expect_equal(pr[c("s_w", "m_a", "V_a", "c0", "C0", "exchangeable")],
               list(s_w = 5, m_a = 0, V_a = 100, c0 = 1.5, C0 = 0.05, exchangeable = TRUE))
  expect_equal(pr[c("df_shape", "df_rate")], list(df_shape = 2, df_rate = 0.1))
  expect_snapshot(print(pr))
  expect_snapshot(print(moe_prior(s_w = c(2, 1), m_a = c(0, 1), V_a = c(10, 20),
                                  c0 = 1, exchangeable = FALSE)))
  expect_snapshot(print(moe_prior(V_a = diag(2))))
  expect_output(expect_invisible(print(pr)), "Prior of a Bayesian mixture")
})

test_that("moe_prior() rejects invalid settings with classed errors", {
  set.seed(1)
  expect_snapshot(moe_prior(s_w = 0), error = TRUE)
  expect_snapshot(moe_prior(s_w = "a"), error = TRUE)
  expect_snapshot(moe_prior(m_a = NA), error = TRUE)
  expect_snapshot(moe_prior(V_a = -1), error = TRUE)
  expect_snapshot(moe_prior(V_a = matrix(c(1, 2, 2, 1), 2)), error = TRUE)
  expect_snapshot(moe_prior(c0 = 0), error = TRUE)
  expect_snapshot(moe_prior(C0 = Inf), error = TRUE)
  expect_snapshot(moe_prior(exchangeable = NA), error = TRUE)
  expect_error(moe_prior(s_w = -1), class = "bayesmoe_error_input")
})

test_that("prior_internal() expands the settings and checks their lengths", {
  set.seed(1)
  pc <- prior_internal(moe_prior(s_w = 2, m_a = c(1, -1), V_a = c(4, 9)), p = 2, q = 3)
  expect_equal(pc$s_w2, rep(4, 3))
  expect_equal(pc$m_a, c(1, -1))
  expect_equal(pc$Va_inv, diag(c(1 / 4, 1 / 9)))
  expect_equal(pc$Va_inv_m, c(1 / 4, -1 / 9))
  expect_equal(pc$m_Va_inv_m, 1 / 4 + 1 / 9)
  V <- matrix(c(2, 0.5, 0.5, 1), 2)
  pc <- prior_internal(moe_prior(V_a = V), p = 2, q = 1)
  expect_equal(pc$Va_inv, solve(V))
  expect_snapshot(prior_internal(moe_prior(s_w = c(1, 2)), p = 2, q = 3), error = TRUE)
  expect_snapshot(prior_internal(moe_prior(m_a = c(1, 2, 3)), p = 2, q = 3), error = TRUE)
  expect_snapshot(prior_internal(moe_prior(V_a = c(1, 2, 3)), p = 2, q = 3), error = TRUE)
  expect_snapshot(prior_internal(moe_prior(V_a = diag(3)), p = 2, q = 3), error = TRUE)
})

test_that("the conditional gating prior used by the sampler is that of the exchangeable prior", {
  # w = (w_1..w_{K-1}) has covariance s^2 (I + 11') per coordinate; the
  # sampler uses w_k | w_-k ~ N(mean of the other free w_j, s^2 K / (K - 1)).
  set.seed(1)
  s2 <- 3
  for (K in 2:5) {
    m <- K - 1
    Sigma <- s2 * (diag(m) + 1)
    w <- rnorm(m)
    for (k in seq_len(m)) {
      if (m == 1) {
        cond_var <- Sigma[1, 1]
        cond_mean <- 0
      } else {
        cond_var <- Sigma[k, k] - Sigma[k, -k] %*% solve(Sigma[-k, -k], Sigma[-k, k])
        cond_mean <- Sigma[k, -k] %*% solve(Sigma[-k, -k], w[-k])
      }
      expect_equal(drop(cond_var), s2 * K / (K - 1))
      expect_equal(drop(cond_mean), if (m > 1) sum(w[-k]) / (K - 1) else 0)
    }
  }
})

test_that("prior_draw() draws from the stated prior", {
  set.seed(2)
  pc <- prior_internal(moe_prior(s_w = 2, m_a = c(1, -1), V_a = c(4, 9), c0 = 5, C0 = 8),
                       p = 2, q = 1)
  N <- 20000
  d <- replicate(N, unlist(prior_draw(pc, K = 3)))
  # layout: alpha (2 x 3), sigma2 (3), W (1 x 3)
  s2 <- d[7:9, ]
  W <- d[10:12, ]
  expect_equal(W[3, ], rep(0, N))
  # exchangeable: Var(w_k) = 2 s^2, Cov(w_1, w_2) = s^2
  expect_equal(var(W[1, ]), 8, tolerance = 0.05)
  expect_equal(cov(W[1, ], W[2, ]), 4, tolerance = 0.08)
  # InvGamma(5, 8): mean 2, and a_k | s2 ~ N(m_a, s2 V_a)
  expect_equal(mean(s2), 2, tolerance = 0.03)
  z <- (d[1, ] - 1) / sqrt(4 * s2[1, ])
  expect_gt(ks.test(z, "pnorm")$p.value, 0.001)
  z <- (d[4, ] + 1) / sqrt(9 * s2[2, ])
  expect_gt(ks.test(z, "pnorm")$p.value, 0.001)
  pc$exchangeable <- FALSE
  W <- replicate(N, prior_draw(pc, K = 3)$W[1, ])
  expect_equal(var(W[1, ]), 4, tolerance = 0.05)
  expect_lt(abs(cor(W[1, ], W[2, ])), 0.03)
})
