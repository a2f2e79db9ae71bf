# Gate and expert objects, the parameter layout of the variants and the
# plain-R gate evaluation.

all_specs <- function(K = 4L) {
  list(
    softmax = make_spec(gate_softmax(), expert_linear()),
    topk = make_spec(gate_topk(2), NULL),
    temperature = make_spec(gate_temperature(0.7), NULL),
    learned = make_spec(gate_temperature(0.7, learn = TRUE), NULL),
    hierarchical = make_spec(gate_resolve(gate_hierarchical(c(1, 1, 2, 2)), K), NULL)
  )
}

random_par <- function(spec, p, q, K, sd = 1) {
  nm <- par_names(paste0("x", seq_len(p)), paste0("z", seq_len(q)), K, spec)
  th <- rnorm(length(nm), sd = sd)
  th[grepl("sigma2$", nm)] <- exp(th[grepl("sigma2$", nm)])
  th[nm == "tau"] <- exp(th[nm == "tau"] / 3)
  par_unflatten(th, p, q, K, spec)
}

test_that("gate and expert constructors validate and print", {
  expect_snapshot({
    gate_softmax()
    gate_topk(2)
    gate_temperature(0.5)
    gate_temperature(2, learn = TRUE, prior = c(0, 0.5))
    gate_hierarchical(2)
    gate_hierarchical(c(1, 1, 2, 2, 2))
    expert_linear()
  })
  expect_snapshot(error = TRUE, gate_topk())
  expect_snapshot(error = TRUE, gate_topk(0))
  expect_snapshot(error = TRUE, gate_topk(1.5))
  expect_snapshot(error = TRUE, gate_temperature(0))
  expect_snapshot(error = TRUE, gate_temperature(1, learn = NA))
  expect_snapshot(error = TRUE, gate_temperature(1, prior = c(0, -1)))
  expect_snapshot(error = TRUE, gate_hierarchical())
  expect_snapshot(error = TRUE, gate_hierarchical(c(1, 3)))
  expect_snapshot(error = TRUE, gate_hierarchical(0))
  expect_error(gate_topk("a"), class = "bayesmoe_error_input")
})

test_that("gates are checked against the number of experts", {
  expect_snapshot(error = TRUE,
                  moe_em(tuned ~ stretchratio, data = tonedata, K = 2, gate = gate_topk(3)))
  expect_snapshot(error = TRUE,
                  moe_em(tuned ~ stretchratio, data = tonedata, K = 3,
                         gate = gate_hierarchical(2)))
  expect_snapshot(error = TRUE,
                  moe_em(tuned ~ stretchratio, data = tonedata, K = 3,
                         gate = gate_hierarchical(c(1, 2))))
  expect_snapshot(error = TRUE,
                  moe_em(tuned ~ stretchratio, data = tonedata, K = 2, gate = "softmax"))
  expect_snapshot(error = TRUE,
                  moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2, expert = list()))
  g <- gate_resolve(gate_hierarchical(2), 4)
  expect_identical(g$groups, c(1L, 1L, 2L, 2L))
})

test_that("every parameter list has a spec; the default keeps the original layout", {
  sp <- make_spec(NULL, NULL)
  expect_identical(sp, make_spec(gate_softmax(), expert_linear()))
  expect_true(is_softmax_linear(sp))
  expect_false(is_softmax_linear(make_spec(gate_topk(1), NULL)))
  expect_false(is_softmax_linear(make_spec(NULL, expert_ffn())))
  set.seed(1)
  th <- rnorm(3 * 3 + 2 * 2)
  a <- par_unflatten(th, 2, 2, 3)
  expect_identical(a$spec, sp)
  expect_identical(par_flatten(a), th)
  # the original layout: expert blocks (coefficients, variance), then the
  # free gating columns
  expect_identical(a$alpha, matrix(th[c(1, 2, 4, 5, 7, 8)], 2))
  expect_identical(a$sigma2, th[c(3, 6, 9)])
  expect_identical(a$W, cbind(matrix(th[10:13], 2), 0))
  expect_identical(par_names(c("a", "b"), c("a", "b"), 3),
                   c(paste0("expert", rep(1:3, each = 3), ":", c("a", "b", "sigma2")),
                     paste0("gate", rep(1:2, each = 2), ":", c("a", "b"))))
})

test_that("flatten and unflatten are inverse for every gate", {
  set.seed(2)
  for (nm in names(all_specs())) {
    spec <- all_specs()[[nm]]
    if (is.null(spec)) next
    for (K in if (nm == "hierarchical") 4L else 1:4) {
      if (nm == "topk" && K < 2L) next
      par <- random_par(spec, 3, 2, K)
      th <- par_flatten(par)
      expect_length(th, length(par_names(letters[1:3], letters[1:2], K, spec)))
      expect_identical(par_flatten(par_unflatten(th, 3, 2, K, spec)), th)
      # the reference columns are zero
      if (nm == "hierarchical") {
        expect_true(all(par$V[, 2] == 0))
        expect_true(all(par$W[, c(2, 4)] == 0))
      } else {
        expect_true(all(par$W[, K] == 0))
      }
    }
  }
  sp <- all_specs()$hierarchical
  expect_identical(par_names("x", "z", 4, sp),
                   c("expert1:x", "expert1:sigma2", "expert2:x", "expert2:sigma2",
                     "expert3:x", "expert3:sigma2", "expert4:x", "expert4:sigma2",
                     "group1:z", "gate1:z", "gate3:z"))
  expect_identical(tail(par_names("x", "z", 3, all_specs()$learned), 2), c("gate2:z", "tau"))
})

test_that("gate probabilities sum to one and match their definitions", {
  set.seed(3)
  n <- 50
  Z <- cbind(1, rnorm(n))
  for (spec in all_specs()) {
    if (is.null(spec)) next
    par <- random_par(spec, 2, 2, 4, sd = 2)
    lg <- gate_log_prob(spec$gate, Z, par)
    expect_equal(rowSums(exp(lg)), rep(1, n))
    expect_false(anyNA(lg))
  }
  # top-k by brute force: k largest logits, ties to the lower index
  par <- random_par(all_specs()$topk, 2, 2, 4)
  eta <- Z %*% par$W
  ref <- t(apply(eta, 1, function(e) {
    keep <- order(-e, seq_along(e))[1:2]
    out <- rep(-Inf, length(e))
    out[keep] <- e[keep] - log(sum(exp(e[keep])))
    out
  }))
  expect_equal(gate_log_prob(gate_topk(2), Z, par), ref, ignore_attr = TRUE)
  expect_true(all(rowSums(is.finite(ref)) == 2))
  # ties go to the lower index
  tie <- list(W = matrix(0, 2, 4))
  expect_identical(is.finite(gate_log_prob(gate_topk(2), Z[1:2, ], tie)),
                   matrix(c(TRUE, TRUE, FALSE, FALSE), 2, 4, byrow = TRUE))
})

test_that("k = K, temperature 1 and one group are the softmax", {
  set.seed(4)
  Z <- cbind(1, rnorm(30), rnorm(30))
  for (K in 1:4) {
    par <- random_par(NULL, 2, 3, K, sd = 2)
    sm <- log_softmax_rows(Z %*% par$W)
    expect_equal(gate_log_prob(gate_topk(K), Z, par), sm)
    expect_equal(gate_log_prob(gate_temperature(1), Z, par), sm)
    hp <- c(par, list(V = matrix(0, 3, 1)))
    expect_equal(gate_log_prob(gate_resolve(gate_hierarchical(1), K), Z, hp), sm)
  }
  # a temperature is the softmax of Z / tau
  expect_equal(gate_log_prob(gate_temperature(0.3), Z, par),
               log_softmax_rows((Z / 0.3) %*% par$W))
})

test_that("huge logits give no NaN", {
  Z <- cbind(1, c(-1, 0, 1))
  W <- cbind(c(0, 1e4), c(1e4, 0), 0, 0)
  par <- list(W = W, V = cbind(c(1e4, -1e4), 0))
  g2 <- gate_resolve(gate_hierarchical(2), 4)
  for (gate in list(gate_softmax(), gate_topk(2), gate_temperature(0.01), g2)) {
    lg <- gate_log_prob(gate, Z, par)
    expect_false(anyNA(lg))
    expect_equal(rowSums(exp(lg)), rep(1, 3))
  }
})

test_that("permutations keep the gating probabilities, respecting groups", {
  set.seed(5)
  Z <- cbind(1, rnorm(20))
  K <- 4
  for (spec in all_specs()) {
    if (is.null(spec)) next
    par <- random_par(spec, 2, 2, K)
    perms <- if (inherits(spec$gate, "moe_gate_hierarchical")) {
      list(c(2, 1, 3, 4), c(3, 4, 1, 2), c(4, 3, 2, 1), c(1, 2, 4, 3))
    } else list(c(2, 1, 3, 4), c(4, 3, 2, 1), c(1, 4, 2, 3))
    for (pm in perms) {
      pp <- permute_par(par, pm)
      expect_equal(gate_log_prob(spec$gate, Z, pp),
                   gate_log_prob(spec$gate, Z, par)[, pm])
      expect_equal(pp$alpha, par$alpha[, pm])
      M <- perm_matrix(pm, 2, 2, K, spec)
      expect_equal(drop(M %*% par_flatten(par)), par_flatten(pp))
    }
  }
  expect_error(permute_par(par_unflatten(rnorm(14), 2, 2, 4, all_specs()$hierarchical),
                           c(1, 3, 2, 4)), "internal error")
})

test_that("assignments under a hierarchical gate keep the groups", {
  set.seed(6)
  groups <- c(1L, 1L, 2L, 2L, 3L)
  # cost favouring the (disallowed) swap of experts 2 and 3
  C <- array(runif(10 * 25), c(10, 5, 5))
  C[, 2, 3] <- C[, 3, 2] <- -10
  pm <- assign_hierarchical(C, groups)
  for (i in seq_len(nrow(pm))) {
    sig <- groups[pm[i, ]]
    expect_true(all(sig[groups == 1] == sig[groups == 1][1]))
    expect_true(all(sig[groups == 2] == sig[groups == 2][1]))
    expect_identical(pm[i, 5], 5L)
  }
  # against brute force over the allowed permutations
  allowed <- all_permutations(5)
  ok <- apply(allowed, 1, function(pi) {
    g <- groups[pi]
    all(vapply(1:3, function(h) length(unique(g[groups == h])) == 1L, TRUE))
  })
  allowed <- allowed[ok, ]
  for (i in 1:10) {
    tot <- apply(allowed, 1, function(pi) sum(C[cbind(i, 1:5, pi)]))
    expect_equal(sum(C[cbind(i, 1:5, pm[i, ])]), min(tot))
  }
})

test_that("the C evaluation of every gate matches the plain-R reference", {
  set.seed(7)
  same <- function(a, b) {
    expect_identical(is.finite(a), is.finite(b))
    expect_equal(a[is.finite(a)], b[is.finite(b)], tolerance = 1e-12)
  }
  for (K in 1:5) {
    n <- 60
    Z <- cbind(1, rnorm(n), rnorm(n))
    gates <- list(gate_softmax(), gate_temperature(0.37), gate_temperature(3))
    for (k in seq_len(K)) gates <- c(gates, list(gate_topk(k)))
    for (G in seq_len(K)) {
      gates <- c(gates, list(gate_resolve(gate_hierarchical(sort(rep_len(seq_len(G), K))), K)))
    }
    for (gate in gates) {
      spec <- make_spec(gate, NULL)
      par <- random_par(spec, 1, 3, K, sd = 3)
      if (is.null(par$V)) par$V <- matrix(0, 3, 1)
      same(gate_log_prob.moe_gate(gate, Z, par), gate_log_prob_r(gate, Z, par))
    }
  }
  # ties in the top-k selection, and logits of 1e4
  Z <- cbind(1, c(0, 0, 1, -1))
  W <- cbind(c(0, 0), c(0, 0), c(0, 1e4), 0)
  for (k in 1:4) {
    a <- gate_log_prob.moe_gate(gate_topk(k), Z, list(W = W))
    same(a, gate_log_prob_r(gate_topk(k), Z, list(W = W)))
    expect_false(anyNA(a))
  }
  a <- gate_log_prob.moe_gate(gate_temperature(1e-3), Z, list(W = W))
  expect_false(anyNA(a))
  expect_equal(rowSums(exp(a)), rep(1, 4))
})
