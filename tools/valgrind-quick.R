# A short run of every C entry point for valgrind memcheck, when the whole
# test suite under valgrind is too slow:
#   make valgrind VG_SCRIPT=tools/valgrind-quick.R
# Fits (EM, and MCMC with each gating update, K = 1 and 3, random and EM
# starts, continuation, the sized passes with 2 and 3 coefficients), gating variants and FFN experts under EM and MCMC,
# the least-squares form, losses, MTM, marginal likelihoods, Polya-Gamma
# draws at extreme z, the methods, the expert families, threads and a step
# gate (separation), the information subsample (info_obs), the chunked
# Polya-Gamma draws (pg_every = 1, threads = 2), the EM passes on two
# threads, and 40
# randomised malformed calls (tests/testthat/helper-hardening.R).
library(bayesmoe)
set.seed(1)
n <- 120
d <- data.frame(x = runif(n), z = rnorm(n))
d$y <- ifelse(runif(n) < plogis(6 * (d$x - 0.5)), 1 + 2 * d$x, -1 - d$x) + rnorm(n, sd = 0.2)
em <- moe_em(y ~ x, gating = ~ x + z, data = d, K = 2, starts = 3, seed = 1)
em3 <- suppressWarnings(moe_em(y ~ x, data = d, K = 3, starts = 2, seed = 1,
                               control = moe_em_control(maxit = 5)))
X <- cbind(1, d$x)
r <- moe_em_fit(d$y, X, X, K = 2, starts = 2)
for (gu in c("pg+mh", "pg", "mh", "collapsed")) {
  fit <- moe_mcmc(y ~ x, gating = ~ x + z, data = d, K = 2, chains = 2, iter = 60, seed = 1,
                  control = moe_mcmc_control(em_starts = 2, gate_update = gu),
                  progress = FALSE)
}
fit <- moe_mcmc(fit, iter = 20)
f1 <- moe_mcmc(y ~ x, data = d, K = 1, chains = 1, iter = 50, seed = 2, progress = FALSE)
f3 <- moe_mcmc(y ~ x, data = d, K = 3, chains = 1, iter = 50, seed = 3, init = "random",
               progress = FALSE)
m <- moe_mcmc_fit(d$y, X, X, K = 2, chains = 1, iter = 30, seed = 1)
# a sized case of the collapsed passes with 3 coefficients, and moe_exp()
f33 <- moe_mcmc(y ~ x + z, gating = ~ x + z, data = d, K = 3, chains = 1, iter = 40, seed = 4,
                control = moe_mcmc_control(em_starts = 2), progress = FALSE)
ex <- .Call(bayesmoe:::ffi_moe_exp, c(0, -1e-300, -0.5, -699.9, -700, -800, 700, NaN, -Inf), FALSE)
ex2 <- .Call(bayesmoe:::ffi_moe_exp, c(0, -1e-300, -0.5, -699.9, -700, -800, 700, NaN, -Inf), TRUE)
stopifnot(identical(ex, ex2))
pg <- rpolyagamma(240, b = c(1, 3), z = c(0, 1e-8, 0.5, 5, 1e4, -1e4))
nd <- d[1:10, ]
nd$x[2] <- NA
for (ty in c("mean", "gating", "density", "quantile", "expert")) {
  p1 <- predict(em, nd, type = ty)
  if (ty != "expert") p2 <- predict(fit, nd, type = ty, interval = "credible", ndraws = 20)
}
s <- simulate(em, nsim = 2, seed = 1)
s <- simulate(fit, nsim = 2, seed = 1)
ll <- log_lik(fit)
rl <- moe_relabel(f3)
sm <- summary(fit)
res <- tryCatch(moe_em(y ~ x, data = d[1, ], K = 2), error = function(e) conditionMessage(e))
# the collapsed default with continuation
fc <- moe_mcmc(y ~ x, data = d, K = 2, chains = 1, iter = 60, seed = 4, progress = FALSE)
fc <- moe_mcmc(fc, iter = 20)
# gating variants under EM and MCMC
for (g in list(gate_topk(1), gate_temperature(2), gate_temperature(learn = TRUE),
               gate_hierarchical(c(1, 1, 2)))) {
  e <- suppressWarnings(moe_em(y ~ x, data = d, K = 3, starts = 2, seed = 1, gate = g))
  m <- suppressWarnings(moe_mcmc(y ~ x, data = d, K = 3, chains = 1, iter = 40, seed = 1,
                                 gate = g, progress = FALSE))
  p <- predict(m, nd, type = "density", interval = "credible", ndraws = 5)
}
# FFN experts, least-squares form, losses, MTM, marginal likelihood
ef <- suppressWarnings(moe_em(y ~ x, data = d, K = 2, starts = 2, seed = 1,
                              expert = expert_ffn(hidden = 2)))
mf <- suppressWarnings(moe_mcmc(y ~ x, data = d, K = 2, chains = 1, iter = 40, seed = 1,
                                expert = expert_ffn(hidden = 2), progress = FALSE))
ls <- suppressWarnings(moe_ls(y ~ x, data = d, K = 2, starts = 2, seed = 1))
e1 <- moe_em(y ~ x, data = d, K = 2, starts = 2, seed = 1)
tr <- moe_truth(e1)
vl <- voronoi_loss(e1, tr)
vl <- voronoi_loss(fc, tr)
dl <- density_loss(e1, tr)
vs <- voronoi_loss(ls, moe_truth(e1, sd = 0.2))
mt <- moe_mtm(f3, seed = 1)
ml <- moe_marglik(f1, method = "exact")
ml <- moe_marglik(fc, seed = 1, n_comp = 20)
# expert families under EM and MCMC (Student-t, binomial, Poisson with an
# offset)
d$yb <- rbinom(n, 1, plogis(ifelse(d$x > 0.5, 2, -2) + d$z))
d$yc <- rpois(n, exp(ifelse(d$x > 0.5, 1, -0.5) + 0.3 * d$z))
d$expo <- runif(n, 1, 2)
nf <- d[1:10, ]
for (fm in list(list(y ~ x, student_t()), list(y ~ x, student_t(df = 4)),
                list(yb ~ x + z, binomial()), list(yc ~ x + z + offset(log(expo)), poisson()))) {
  e <- suppressWarnings(moe_em(fm[[1]], data = d, K = 2, starts = 2, seed = 1, family = fm[[2]]))
  m <- suppressWarnings(moe_mcmc(fm[[1]], data = d, K = 2, chains = 1, iter = 40, seed = 1,
                                 family = fm[[2]], progress = FALSE))
  p <- predict(m, nf, type = "density", ndraws = 5)
}
# threads over several chunks of the collapsed passes, and a step gate: the
# separation stop of EM (short runs on a subsample), the capped start and
# the warm-up Newton moves of the sampler
nb <- 9000
db <- data.frame(x1 = runif(nb), x2 = runif(nb))
db$y <- ifelse(db$x1 > 0.5, 1 + 2 * db$x2, -1 - db$x2) + rnorm(nb, sd = 0.3)
eb <- suppressWarnings(moe_em(y ~ x1 + x2, data = db, K = 2, seed = 1))
mb <- suppressWarnings(moe_mcmc(y ~ x1 + x2, data = db, K = 2, chains = 1, iter = 16, warmup = 8,
                                seed = 1, progress = FALSE,
                                control = moe_mcmc_control(threads = 2, em_starts = 2)))
# the proposal information from a subsample (info_obs < n): every 9th
# observation, by the blocked pass with the gradient in registers (K = 2)
# and in memory-sized models (K = 4, three covariates), over several chunks
# on two threads
mi <- suppressWarnings(moe_mcmc(y ~ x1 + x2, data = db, K = 2, chains = 1, iter = 16, warmup = 8,
                                seed = 1, progress = FALSE,
                                control = moe_mcmc_control(threads = 2, em_starts = 1,
                                                           info_obs = 1000)))
db$x3 <- rnorm(nb)
mj <- suppressWarnings(moe_mcmc(y ~ x1 + x2 + x3, data = db, K = 4, chains = 1, iter = 12,
                                warmup = 6, seed = 1, progress = FALSE,
                                control = moe_mcmc_control(threads = 2, em_starts = 1,
                                                           info_obs = 1000)))
# the Polya-Gamma draws of the collapsed update by chunks on two threads
# (pg_every = 1: every sweep after warm-up; K = 4, several chunks), and the
# stream generator's PG(1, z) draws at extreme z
mp <- suppressWarnings(moe_mcmc(y ~ x1 + x2 + x3, data = db, K = 4, chains = 1, iter = 10,
                                warmup = 4, seed = 1, progress = FALSE,
                                control = moe_mcmc_control(threads = 2, em_starts = 1,
                                                           pg_every = 1)))
ps <- .Call(bayesmoe:::ffi_rpg1_stream, 200, c(0, 1e-8, 0.5, 5, 1e4, -1e4, 1e300))
# the EM passes by chunks on two threads (9000 observations: two chunks)
et <- suppressWarnings(moe_em(y ~ x1 + x2, data = db, K = 3, starts = 2, seed = 1,
                              control = moe_em_control(threads = 2, maxit = 30)))
if (file.exists("tests/testthat/helper-hardening.R")) {
  env <- new.env()
  sys.source("tests/testthat/helper-hardening.R", envir = env)
  rc <- suppressWarnings(env$random_malformed_calls(40L, seed = 5))
  print(table(rc$kind))
}
cat("valgrind-quick done\n")
