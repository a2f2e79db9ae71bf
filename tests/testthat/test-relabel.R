test_that("all_permutations() enumerates every permutation, the identity first", {
  set.seed(1)
  for (K in 1:5) {
    P <- all_permutations(K)
    expect_equal(nrow(P), factorial(K))
    expect_equal(P[1, ], seq_len(K))
    expect_equal(nrow(unique(P)), nrow(P))
    expect_true(all(apply(P, 1, function(r) all(sort(r) == seq_len(K)))))
  }
})

random_par <- function(p, q, K) {
  W <- matrix(rnorm(q * K), q, K)
  W[, K] <- 0
  list(alpha = matrix(rnorm(p * K), p, K), sigma2 = rexp(K) + 0.1, W = W)
}

test_that("permutation matrices match the plain-R permutation with re-referencing", {
  set.seed(2)
  for (K in 2:4) for (pq in list(c(1, 1), c(2, 3), c(3, 2))) {
    p <- pq[1]
    q <- pq[2]
    par <- random_par(p, q, K)
    theta <- par_flatten(par)
    for (m in seq_len(nrow(all_permutations(K)))) {
      pi <- all_permutations(K)[m, ]
      ref <- par_flatten(permute_par_ref(par, pi))
      expect_equal(drop(perm_matrix(pi, p, q, K) %*% theta), ref)
    }
  }
})

test_that("re-referencing keeps gating probabilities, expert means and the density", {
  set.seed(3)
  K <- 4
  p <- 2
  q <- 2
  X <- cbind(1, rnorm(50))
  Z <- cbind(1, rnorm(50))
  y <- rnorm(50)
  par <- random_par(p, q, K)
  D <- matrix(par_flatten(par), 6, length(par_flatten(par)), byrow = TRUE)
  perms <- all_permutations(K)[c(1, 5, 9, 13, 20, 24), ]
  Dp <- permute_rows(D, perms, p, q, K)
  g0 <- exp(moe_components(par, X, Z)$log_gate)
  m0 <- moe_components(par, X, Z)$mean
  for (i in seq_len(nrow(Dp))) {
    pp <- par_unflatten(Dp[i, ], p, q, K)
    expect_equal(pp$W[, K], rep(0, q))
    cm <- moe_components(pp, X, Z)
    expect_equal(exp(cm$log_gate), g0[, perms[i, ]])
    expect_equal(cm$mean, m0[, perms[i, ]])
    expect_equal(moe_log_density(pp, X, Z, y), moe_log_density(par, X, Z, y))
  }
})

test_that("moe_relabel() recovers the labels of switched draws (K = 2 and K = 3)", {
  set.seed(4)
  for (em in list(em_tone(), em_sim3())) {
    f <- fake_mcmc_fit(em, iter = 150, chains = 3, switch = 0.4, seed = 5)
    expect_gt(mean(f$true_perm[, , 1] != 1), 0.2)
    r <- moe_relabel(f)
    expect_equal(r$draws, f$true_draws, tolerance = 1e-12)
    expect_true(r$relabel$converged)
    expect_equal(r$relabel$pivot, "em")
    # the stored permutations map the draws as sampled to the relabelled ones
    expect_equal(permute_draws(f$draws, r$relabel$permutations, ncol(em$X), ncol(em$Z), em$K),
                 r$draws)
    # composing the true switch with the relabelling gives the identity
    N <- prod(dim(f$draws)[1:2])
    tp <- matrix(f$true_perm, N)
    rp <- matrix(r$relabel$permutations, N)
    comp <- t(vapply(seq_len(N), function(i) tp[i, rp[i, ]], integer(em$K)))
    expect_true(all(comp == matrix(seq_len(em$K), N, em$K, byrow = TRUE)))
    expect_equal(r$relabel$switched, mean(rowSums(tp != col(tp)) > 0))
    # one pass against the pivot is enough for well separated experts
    expect_equal(moe_relabel(f, method = "pivot")$draws, f$true_draws, tolerance = 1e-12)
  }
})

test_that("without an EM pivot the labels agree up to one global permutation", {
  set.seed(6)
  em <- em_sim3()
  f <- fake_mcmc_fit(em, iter = 100, chains = 2, switch = 0.5, seed = 7)
  f$em <- NULL
  r <- moe_relabel(f)
  expect_equal(r$relabel$pivot, "maxlik")
  N <- prod(dim(f$draws)[1:2])
  tp <- matrix(f$true_perm, N)
  rp <- matrix(r$relabel$permutations, N)
  comp <- t(vapply(seq_len(N), function(i) tp[i, rp[i, ]], integer(3)))
  expect_equal(nrow(unique(comp)), 1L)
  glob <- array(matrix(comp[1, ], N, 3, byrow = TRUE), c(dim(f$draws)[1:2], 3))
  expect_equal(r$draws, permute_draws(f$true_draws, glob, 2, 2, 3), tolerance = 1e-12)
  # a user pivot in the true labelling recovers the truth
  u <- moe_relabel(f, pivot = coef(em, matrix = TRUE))
  expect_equal(u$relabel$pivot, "user")
  expect_equal(u$draws, f$true_draws, tolerance = 1e-12)
})

test_that("relabelling leaves label-invariant quantities unchanged", {
  set.seed(8)
  em <- em_sim3()
  f <- fake_mcmc_fit(em, iter = 40, chains = 2, switch = 0.5, seed = 9)
  r <- moe_relabel(f)
  D0 <- draws_matrix(f)
  D1 <- draws_matrix(r)
  ll1 <- vapply(seq_len(nrow(D1)), function(i)
    sum(moe_log_density(par_unflatten(D1[i, ], 2, 2, 3), f$X, f$Z, f$y)), 0)
  expect_equal(ll1, as.vector(f$loglik_draws))
  nd <- data.frame(x = c(-1.5, 0, 1.5), y = c(4, 0, -4))
  expect_equal(predict(r, nd), predict(f, nd))
  expect_equal(predict(r, nd, type = "density"), predict(f, nd, type = "density"))
  expect_equal(log_lik(r), log_lik(f))
  # per draw, gating probabilities are those of the permuted experts
  perm <- matrix(r$relabel$permutations, nrow(D0))
  des <- new_design(f, nd)
  for (i in c(1, 17, 33, 80)) {
    g0 <- predict_par(par_unflatten(D0[i, ], 2, 2, 3), des, "gating", K = 3)
    g1 <- predict_par(par_unflatten(D1[i, ], 2, 2, 3), des, "gating", K = 3)
    expect_equal(unname(g1), unname(g0[, perm[i, ]]))
  }
})

test_that("a relabelled fit is trusted only for its own draws; relabelling composes", {
  set.seed(10)
  f <- fake_mcmc_fit(em_sim3(), iter = 50, chains = 2, switch = 0.5, seed = 11)
  r <- moe_relabel(f)
  expect_true(is_relabelled(r))
  expect_false(is_relabelled(f))
  expect_identical(relabelled_draws(r), r$draws)
  expect_equal(relabelled_draws(f), r$draws)
  # relabelling again changes nothing and keeps permutations relative to
  # the draws as sampled
  rr <- moe_relabel(r)
  expect_equal(rr$draws, r$draws)
  expect_equal(rr$relabel$permutations, r$relabel$permutations)
  expect_equal(rr$relabel$switched, 0)
  # stale record: draws changed after relabelling
  s <- r
  s$draws <- f$draws
  expect_false(is_relabelled(s))
  expect_equal(relabelled_draws(s), r$draws)
})

# ---- the assignment solver (R/assign.R, src/assign.c) ----------------------

# Reference implementations: every permutation (lexicographic order, the first
# optimum kept, as the earlier exhaustive search did) and the greedy
# assignment improved by pairwise swaps that the package used for K > 7.
brute_assignment <- function(C) {
  K <- nrow(C)
  P <- all_permutations(K)
  tot <- vapply(seq_len(nrow(P)), function(m) sum(C[cbind(seq_len(K), P[m, ])]), 0)
  list(perm = P[which.min(tot), ], cost = min(tot))
}

greedy_assignment <- function(C) {
  K <- nrow(C)
  perm <- integer(K)
  Cw <- C
  for (s in seq_len(K)) {
    ij <- arrayInd(which.min(Cw), dim(Cw))
    perm[ij[1L]] <- ij[2L]
    Cw[ij[1L], ] <- Inf
    Cw[, ij[2L]] <- Inf
  }
  repeat {
    changed <- FALSE
    for (a in seq_len(K - 1L)) for (b in (a + 1L):K) {
      if (C[a, perm[b]] + C[b, perm[a]] < C[a, perm[a]] + C[b, perm[b]] - 1e-12) {
        perm[c(a, b)] <- perm[c(b, a)]
        changed <- TRUE
      }
    }
    if (!changed) break
  }
  perm
}

assignment_cost <- function(C, perm) sum(C[cbind(seq_len(nrow(C)), perm)])

test_that("the assignment solver equals brute force for K <= 7, ties included", {
  set.seed(12)
  for (K in 1:7) {
    reps <- if (K <= 5) 60 else 15
    for (r in seq_len(reps)) {
      C <- switch(r %% 5 + 1,
                  matrix(rexp(K * K), K),
                  matrix(sample(0:2, K * K, replace = TRUE), K),   # many ties
                  matrix(0, K, K),                                 # all tied
                  matrix(rnorm(K * K, sd = 1e6), K),               # negative, large
                  outer(1:K, 1:K, function(i, j) (i - j)^2))       # identity optimal
      bf <- brute_assignment(C)
      got <- solve_assignment(C)
      expect_setequal(got, seq_len(K))
      expect_equal(assignment_cost(C, got), bf$cost, tolerance = 1e-12,
                   info = paste(K, r))
      # a unique optimum is found exactly; the identity is kept when optimal
      costs <- apply(all_permutations(K), 1L, function(p) assignment_cost(C, p))
      if (sum(costs == bf$cost) == 1L || assignment_cost(C, seq_len(K)) == bf$cost) {
        expect_identical(got, bf$perm, info = paste(K, r))
      }
    }
  }
  expect_identical(solve_assignment(matrix(0, 4, 4)), 1:4)
  expect_identical(best_assignment(matrix(5, 1, 1)), 1L)
})

test_that("draws of a cost array are solved independently", {
  set.seed(19)
  K <- 5
  C <- array(rexp(300 * K * K), c(300, K, K))
  P <- solve_assignment(C)
  expect_identical(dim(P), c(300L, 5L))
  for (n in c(1, 77, 300)) {
    expect_identical(P[n, ], brute_assignment(matrix(C[n, , ], K))$perm)
  }
  # clearly separated costs: the planted permutation
  truth <- t(replicate(300, sample.int(K)))
  C2 <- array(1 + runif(300 * K * K), c(300, K, K))
  C2[cbind(rep(1:300, K), rep(1:K, each = 300), as.vector(truth))] <- runif(300 * K, 0, 0.1)
  expect_identical(solve_assignment(C2), truth)
})

test_that("for large K the solver is optimal: dual certificate, never worse than greedy", {
  set.seed(20)
  for (K in c(8, 12, 30, 50)) {
    for (r in 1:4) {
      C <- switch(r,
                  matrix(rexp(K * K), K),
                  matrix(sample(0:3, K * K, replace = TRUE), K),
                  matrix(runif(K * K, 0, 1e-8) + 1e3, K),
                  abs(outer(rnorm(K), rnorm(K), "-")))
      res <- solve_assignment(array(C, c(1, K, K)), duals = TRUE)
      perm <- res$perm[1, ]
      u <- res$u[1, ]
      v <- res$v[1, ]
      expect_setequal(perm, seq_len(K))
      tol <- 1e-9 * max(1, abs(C))
      # dual feasibility u_k + v_j <= C[k, j] and a zero duality gap prove
      # optimality without enumerating K! permutations
      expect_true(all(outer(u, v, "+") <= C + tol), info = paste(K, r))
      expect_equal(sum(u) + sum(v), assignment_cost(C, perm), tolerance = 1e-12)
      expect_lte(assignment_cost(C, perm), assignment_cost(C, greedy_assignment(C)) + tol)
    }
  }
  # greedy with pairwise swaps is a local optimum only: on random 8 x 8
  # costs it is often strictly worse, the solver never
  gap <- replicate(50, {
    C <- matrix(rexp(64), 8)
    assignment_cost(C, greedy_assignment(C)) - assignment_cost(C, solve_assignment(C))
  })
  expect_true(all(gap >= -1e-12))
  expect_gt(sum(gap > 1e-9), 0)
})

test_that("non-finite costs count as worse than any finite assignment", {
  C <- matrix(c(Inf, 1, 1, NaN), 2)
  expect_identical(solve_assignment(C), c(2L, 1L))
  expect_identical(solve_assignment(matrix(Inf, 3, 3)), 1:3)
})

test_that("K = 8 recovers switched labels", {
  set.seed(13)
  K <- 8
  n <- 400
  x <- runif(n, -1, 1)
  k <- sample.int(K, n, replace = TRUE)
  d <- data.frame(x = x, y = 3 * k + (k - 4) * x + 0.2 * rnorm(n))
  em <- suppressWarnings(moe_em(y ~ x, gating = ~ 1, data = d, K = K, starts = 3, seed = 1))
  f <- fake_mcmc_fit(em, iter = 20, chains = 2, switch = 0.5, spread = 0.2, seed = 14)
  r <- moe_relabel(f)
  expect_equal(r$draws, f$true_draws, tolerance = 1e-12)
})

test_that("K = 1 fits relabel trivially", {
  set.seed(15)
  em <- moe_em(tuned ~ stretchratio, data = tonedata, K = 1)
  f <- fake_mcmc_fit(em, iter = 20, chains = 2)
  r <- moe_relabel(f)
  expect_equal(r$draws, f$draws)
  expect_equal(r$relabel$switched, 0)
  expect_true(all(r$relabel$permutations == 1L))
})

test_that("moe_relabel() reports bad arguments", {
  set.seed(16)
  f <- fake_mcmc_fit(em_tone(), iter = 20, chains = 2)
  g <- f
  g$em <- NULL
  expect_snapshot(error = TRUE, {
    moe_relabel(em_tone())
    moe_relabel(f, method = "ecr")
    moe_relabel(f, pivot = "best")
    moe_relabel(f, pivot = list(alpha = 1))
    moe_relabel(g, pivot = "em")
    moe_relabel(f, maxit = 0)
  })
  expect_error(moe_relabel(f, method = "ecr"), class = "bayesmoe_error_input")
})

test_that("the pivot may be a moe_em_fit() result; NA draws keep their labels", {
  set.seed(17)
  em <- em_sim3()
  f <- fake_mcmc_fit(em, iter = 60, chains = 2, switch = 0.5, seed = 18)
  f$em <- moe_em_fit(em$y, em$X, em$Z, K = 3, starts = 2)
  # the labels of an EM run may differ; align the truth to it
  r <- moe_relabel(f)
  expect_equal(r$relabel$pivot, "em")
  f$em <- list(par = coef(em, matrix = TRUE))
  expect_equal(moe_relabel(f)$draws, f$true_draws, tolerance = 1e-12)
  # a chain stopped early leaves NA draws
  f$draws[51:60, 2, ] <- NA
  f$loglik_draws[51:60, 2] <- NA
  r <- moe_relabel(f)
  expect_true(all(is.na(r$draws[51:60, 2, ])))
  expect_true(all(r$relabel$permutations[51:60, 2, ] == rep(1:3, each = 10)))
  expect_equal(r$draws[1:50, 2, ], f$true_draws[1:50, 2, ], tolerance = 1e-12)
  expect_true(is_relabelled(r))
})
