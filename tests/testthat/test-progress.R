# Progress reporting through progressr (R/progress.R): one progressor per
# call, a labelled step per chain / fit / task, nothing shown without handlers.

# The progression conditions signalled while evaluating `expr`.
progressions <- function(expr) {
  old <- options(progressr.enable = TRUE)
  on.exit(options(old))
  log <- list()
  value <- withCallingHandlers(expr, progression = function(cnd) {
    log[[length(log) + 1L]] <<- cnd
  })
  list(value = value, log = log,
       types = vapply(log, function(c) c$type, ""),
       steps = sum(vapply(log, function(c) if (c$type == "update") c$amount else 0, 0)),
       messages = unlist(lapply(log, function(c) if (c$type == "update" && c$amount > 0)
         conditionMessage(c))),
       initiate = Filter(function(c) c$type == "initiate", log))
}

test_that("moe_mcmc() reports one step per chain, labelled", {
  skip_if_not_installed("progressr")
  set.seed(1)
  p <- progressions(moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2, chains = 3,
                             iter = 40, seed = 1, progress = FALSE))
  expect_s3_class(p$value, "moe_mcmc")
  expect_length(p$initiate, 1L)
  expect_equal(p$initiate[[1L]]$steps, 3)
  expect_equal(p$steps, 3)
  expect_setequal(p$messages, sprintf("K = 2: chain %d of 3 done", 1:3))
  # continuing a fit is one more progressor
  p2 <- progressions(moe_mcmc(p$value, iter = 10, progress = FALSE))
  expect_length(p2$initiate, 1L)
  expect_equal(p2$steps, 3)
})

test_that("progress is silent without handlers", {
  skip_if_not_installed("progressr")
  expect_silent(moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2, chains = 2,
                         iter = 20, seed = 1, progress = FALSE))
})

test_that("moe_select() is one progressor with a step per fit", {
  skip_if_not_installed("progressr")
  p <- progressions(moe_select(tuned ~ stretchratio, data = tonedata, K = 1:2,
                               method = c("mtm", "bic"), chains = 2, iter = 40, seed = 1,
                               starts = 2))
  expect_length(p$initiate, 1L)
  expect_equal(p$initiate[[1L]]$steps, 4)
  expect_equal(p$steps, 4)
  expect_identical(p$messages, c("EM, K = 1", "EM, K = 2",
                                 "MCMC, K = 2 (over-fitted, for MTM)",
                                 "Merge-Truncate-Merge"))
  # the chains of the MCMC fit are messages of the same progressor
  chain_msgs <- unlist(lapply(p$log, function(c)
    if (c$type == "update" && c$amount == 0) conditionMessage(c)))
  expect_setequal(chain_msgs, sprintf("K = 2: chain %d of 2 done", 1:2))
  expect_length(unique(vapply(p$log, function(c) c$progressor_uuid, "")), 1L)
})

test_that("moe_select(progress = TRUE) prints one line per step", {
  expect_snapshot(invisible(moe_select(tuned ~ stretchratio, data = tonedata, K = 1:2,
                                       method = "bic", seed = 1, starts = 2,
                                       progress = TRUE)))
  expect_snapshot(error = TRUE, moe_select(tuned ~ stretchratio, data = tonedata, K = 1:2,
                                           method = "bic", progress = "yes"))
})

test_that("moe_contraction() reports one step per task", {
  skip_if_not_installed("progressr")
  tru <- moe_truth_example("p4")
  p <- progressions(moe_contraction(tru, n = c(100, 200), reps = 2, starts = 1, seed = 9,
                                    losses = "D"))
  expect_length(p$initiate, 1L)
  expect_equal(p$initiate[[1L]]$steps, 4)
  expect_equal(p$steps, 4)
  expect_setequal(p$messages, c("n = 100, replicate 1 of 2", "n = 100, replicate 2 of 2",
                                "n = 200, replicate 1 of 2", "n = 200, replicate 2 of 2"))
})

test_that("the reporter of a call is closed when it exits, also on error", {
  skip_if_not_installed("progressr")
  expect_null(getOption("bayesmoe.progress"))
  f <- function() {
    tick <- bayesmoe:::progress_open(2, "test")
    on.exit(bayesmoe:::progress_close(tick), add = TRUE)
    expect_identical(getOption("bayesmoe.progress"), tick)
    # a call inside reports to it without opening a progressor
    inner <- bayesmoe:::progress_open(5, "inner")
    expect_false(identical(inner, tick))
    expect_identical(getOption("bayesmoe.progress"), tick)
    stop("boom")
  }
  expect_error(progressions(f()), "boom")
  expect_null(getOption("bayesmoe.progress"))
})
