# Checkpointed studies (R/checkpoint.R): a study killed part way and resumed
# equals an uninterrupted one; any future plan gives the same results;
# another study is refused in the same directory; a failing task is reported
# with its stream and the others kept.

# A tiny EM study: 2 sample sizes x 3 replicates = 6 tasks.
ck_study <- function(...) {
  moe_contraction(moe_truth_example("p4"), n = c(100, 200), reps = 3, starts = 1,
                  losses = "D", seed = 11, ...)
}

# The study without what legitimately differs between runs: CPU seconds.
no_time <- function(x) {
  x$runs$seconds <- NULL
  x
}

# A fresh directory name (not created), removed when the calling test ends.
local_tempdir <- function(env = parent.frame()) {
  d <- tempfile("bayesmoe-ckpt-")
  do.call(on.exit, list(substitute(unlink(d, recursive = TRUE), list(d = d)), add = TRUE),
          envir = env)
  d
}

# untrace() a function of the namespace `ns` if it is traced.
untrace_quietly <- function(what, ns) {
  if (inherits(get(what, envir = ns), "functionWithTrace")) {
    suppressMessages(untrace(what, where = ns))
  }
}

task_files <- function(dir) list.files(dir, pattern = "^task-[0-9]+[.]rds$")

test_that("fingerprints ignore environments and see every value", {
  fp <- bayesmoe:::checkpoint_fingerprint
  f1 <- local(y ~ x)
  f2 <- local(y ~ x)
  expect_identical(fp(list(f1, 1)), fp(list(f2, 1)))
  expect_false(identical(fp(list(f1, 1)), fp(list(f1, 1 + 1e-15))))
  expect_false(identical(fp(list(y ~ x)), fp(list(y ~ z))))
  expect_false(identical(fp(data.frame(a = 1:3)), fp(data.frame(a = c(1L, 2L, 4L)))))
  expect_match(fp(list(1)), "^[0-9a-f]{32}$")
})

test_that("a run killed part way and resumed is identical to an uninterrupted run", {
  skip_on_cran()
  full <- ck_study()
  dir <- local_tempdir()
  # the child process kills itself (SIGKILL, no clean-up) when task 3 starts,
  # i.e. after two tasks were written
  script <- tempfile(fileext = ".R")
  on.exit(unlink(script), add = TRUE)
  writeLines(c(
    sprintf(".libPaths(c(%s, .libPaths()))", paste(deparse(.libPaths()), collapse = "")),
    "library(bayesmoe)",
    "trace('contraction_task', where = asNamespace('bayesmoe'), print = FALSE,",
    sprintf("      tracer = quote(if (length(list.files(%s, pattern = '^task-')) >= 2L)",
            deparse(dir)),
    "        tools::pskill(Sys.getpid(), tools::SIGKILL)))",
    "moe_contraction(moe_truth_example('p4'), n = c(100, 200), reps = 3, starts = 1,",
    sprintf("                losses = 'D', seed = 11, checkpoint = %s)", deparse(dir)),
    "cat('not killed\\n')"), script)
  out <- suppressWarnings(system2(file.path(R.home("bin"), "Rscript"), script, stdout = TRUE,
                                  stderr = TRUE))
  expect_false("not killed" %in% out)
  expect_identical(task_files(dir), sprintf("task-%05d.rds", 1:2))
  # resume: the 4 missing tasks run, the result equals the uninterrupted run
  resumed <- ck_study(checkpoint = dir)
  expect_identical(task_files(dir), sprintf("task-%05d.rds", 1:6))
  expect_identical(no_time(resumed), no_time(full))
  # and a run with everything in the checkpoint runs nothing
  again <- ck_study(checkpoint = dir)
  expect_identical(again, resumed)
})

test_that("a run interrupted (SIGINT, as Ctrl-C) resumes to the uninterrupted run", {
  skip_on_cran()
  full <- ck_study()
  dir <- local_tempdir()
  script <- tempfile(fileext = ".R")
  on.exit(unlink(script), add = TRUE)
  writeLines(c(
    sprintf(".libPaths(c(%s, .libPaths()))", paste(deparse(.libPaths()), collapse = "")),
    "library(bayesmoe)",
    "suppressMessages(trace('contraction_task', where = asNamespace('bayesmoe'), print = FALSE,",
    "  tracer = quote(if (i == 3L) {",
    "    tools::pskill(Sys.getpid(), tools::SIGINT)",
    "    Sys.sleep(5)",
    "  })))",
    "r <- tryCatch(moe_contraction(moe_truth_example('p4'), n = c(100, 200), reps = 3,",
    sprintf("  starts = 1, losses = 'D', seed = 11, checkpoint = %s),", deparse(dir)),
    "  interrupt = function(e) 'interrupted')",
    "cat(identical(r, 'interrupted'), '\n')"), script)
  out <- suppressWarnings(system2(file.path(R.home("bin"), "Rscript"), script, stdout = TRUE,
                                  stderr = TRUE))
  expect_true("TRUE " %in% out)
  expect_identical(task_files(dir), sprintf("task-%05d.rds", 1:2))
  expect_identical(no_time(ck_study(checkpoint = dir)), no_time(full))
})

test_that("an interrupted sequential run resumes under multisession and a PSOCK cluster", {
  skip_on_cran()
  skip_if_not_installed("future")
  skip_if_not_installed("future.apply")
  old <- future::plan(future::sequential)
  on.exit(future::plan(old), add = TRUE)
  full <- ck_study()
  dir <- local_tempdir()
  part <- ck_study(checkpoint = dir, task_ids = c(1, 4))
  expect_identical(sort(unique(paste(part$results$n, part$results$rep))),
                   c("100 1", "200 1"))
  # (b) plan(multisession): from scratch, and resuming two sequential tasks
  future::plan(future::multisession, workers = 2)
  expect_identical(no_time(ck_study()), no_time(full))
  expect_identical(no_time(ck_study(checkpoint = dir)), no_time(full))
  expect_length(task_files(dir), 6L)
  # moe_select()'s fits as futures, data from the formula's environment
  tuned <- tonedata$tuned
  ratio <- tonedata$stretchratio
  sel <- function() {
    suppressWarnings(moe_select(tuned ~ ratio, K = 1:2, method = c("posterior", "bic"),
                                chains = 1, iter = 60, seed = 3))
  }
  s_multi <- sel()
  future::plan(future::sequential)
  s_seq <- sel()
  expect_identical(s_multi$table, s_seq$table)
  expect_identical(s_multi$fits$mcmc$K2$draws, s_seq$fits$mcmc$K2$draws)
  expect_identical(s_multi$warnings, s_seq$warnings)
  # (c) plan(cluster) on a 2-worker PSOCK cluster
  cl <- parallel::makeCluster(2L)
  on.exit(parallel::stopCluster(cl), add = TRUE, after = FALSE)
  parallel::clusterCall(cl, function(p) .libPaths(c(p, .libPaths())), .libPaths())
  future::plan(future::cluster, workers = cl)
  dir2 <- local_tempdir()
  expect_identical(no_time(ck_study(checkpoint = dir2)), no_time(full))
  expect_length(task_files(dir2), 6L)
  # a random-K study (one future per task) under the cluster, resumed
  rk <- function(...) {
    moe_contraction(moe_truth_example("p4"), n = 100, reps = 2, K = prior_K(K_max = 2),
                    method = "mcmc", mcmc = list(chains = 1, iter = 40), density_draws = 3,
                    seed = 4, ...)
  }
  dir3 <- local_tempdir()
  a <- rk(checkpoint = dir3, task_ids = 2)
  future::plan(future::sequential)
  b <- rk()
  c3 <- rk(checkpoint = dir3)
  expect_identical(c3$results, b$results)
  expect_identical(c3$K_est, b$K_est)
  expect_identical(c3$K_post[names(c3$K_post) != "cpu"], b$K_post[names(b$K_post) != "cpu"])
})

test_that("a worker killed part way: a classed error, the finished tasks kept, resumed", {
  skip_on_cran()
  skip_if_not_installed("future")
  skip_if_not_installed("future.apply")
  old <- future::plan(future::sequential)
  on.exit(future::plan(old), add = TRUE)
  full <- ck_study()
  # each worker of a PSOCK cluster kills itself (SIGKILL) when it starts its
  # third task (the EM tasks go in one chunk of 3 per worker)
  cl <- parallel::makeCluster(2L)
  on.exit(try(parallel::stopCluster(cl), silent = TRUE), add = TRUE, after = FALSE)
  parallel::clusterCall(cl, function(p) .libPaths(c(p, .libPaths())), .libPaths())
  parallel::clusterEvalQ(cl, {
    suppressMessages(trace("rmoe", where = asNamespace("bayesmoe"), print = FALSE,
                           tracer = quote({
                             k <- get0(".bayesmoe_calls", globalenv(), ifnotfound = 0) + 1
                             assign(".bayesmoe_calls", k, envir = globalenv())
                             if (k == 3) tools::pskill(Sys.getpid(), tools::SIGKILL)
                           })))
    NULL
  })
  future::plan(future::cluster, workers = cl)
  dir <- local_tempdir()
  e <- tryCatch(ck_study(checkpoint = dir), error = function(e) e)
  expect_s3_class(e, "bayesmoe_error_worker")
  expect_match(conditionMessage(e), "run the same call again", fixed = TRUE)
  saved <- task_files(dir)
  expect_true(all(sprintf("task-%05d.rds", 1:2) %in% saved))
  expect_false(any(sprintf("task-%05d.rds", c(3, 6)) %in% saved))
  future::plan(future::sequential)
  expect_identical(no_time(ck_study(checkpoint = dir)), no_time(full))
})

test_that("another study is refused in the same directory; drop_n may change", {
  dir <- local_tempdir()
  a <- ck_study(checkpoint = dir)
  expect_error(moe_contraction(moe_truth_example("p4"), n = c(100, 200), reps = 3,
                               starts = 1, losses = "D", seed = 12, checkpoint = dir),
               class = "bayesmoe_error_checkpoint")
  expect_error(ck_study(checkpoint = dir, cells = TRUE), class = "bayesmoe_error_checkpoint")
  expect_error(moe_contraction(moe_truth_example("p4"), n = c(100, 200), reps = 2,
                               starts = 1, losses = "D", seed = 11, checkpoint = dir),
               class = "bayesmoe_error_checkpoint")
  b <- ck_study(checkpoint = dir, drop_n = 0)
  expect_identical(b$results, a$results)
  # a seed is needed, and `checkpoint` / `task_ids` are checked
  expect_error(moe_contraction(moe_truth_example("p4"), n = 100, reps = 1, checkpoint = dir),
               class = "bayesmoe_error_input")
  expect_error(ck_study(checkpoint = c("a", "b")), class = "bayesmoe_error_input")
  expect_error(ck_study(task_ids = 7), class = "bayesmoe_error_input")
  expect_error(ck_study(task_ids = c(1, 1)), class = "bayesmoe_error_input")
  # a file of another study in the directory is not taken for a task
  saveRDS(list(task = 1L, fingerprint = "other", value = NULL),
          file.path(dir, "task-00001.rds"))
  expect_identical(no_time(ck_study(checkpoint = dir)), no_time(a))
})

test_that("a failing task is reported with its stream, the others are kept", {
  full <- ck_study()
  dir <- local_tempdir()
  ns <- asNamespace("bayesmoe")
  suppressMessages(trace("contraction_task", where = ns, print = FALSE,
                         tracer = quote(if (i == 3L) stop("injected failure"))))
  on.exit(untrace_quietly("contraction_task", ns), add = TRUE)
  w <- NULL
  x <- withCallingHandlers(ck_study(checkpoint = dir), bayesmoe_warning_task = function(cnd) {
    w <<- cnd
    invokeRestart("muffleWarning")
  })
  untrace_quietly("contraction_task", ns)
  expect_s3_class(w, "bayesmoe_warning_task")
  expect_match(conditionMessage(w), "task 3 (n = 100, rep = 3): injected failure", fixed = TRUE)
  expect_match(conditionMessage(w), "task_ids = c(3)", fixed = TRUE)
  f <- x$failed
  expect_identical(f$task, 3L)
  expect_identical(f$n, 100L)
  expect_identical(f$rep, 3L)
  expect_identical(f$message, "injected failure")
  # the stream is the one the task sets: the 3rd L'Ecuyer stream of the seed
  expect_identical(f$stream, paste(bayesmoe:::rng_streams(11, 6)[[3L]], collapse = " "))
  expect_identical(w$failed, f)
  # the other tasks are kept (in the result and the checkpoint)
  keep <- !(full$results$n == 100 & full$results$rep == 3)
  expect_identical(x$results, `rownames<-`(full$results[keep, ], NULL))
  expect_length(task_files(dir), 5L)
  expect_output(print(x), "1 task failed")
  # the failed task alone, then the whole study from the checkpoint
  alone <- ck_study(task_ids = f$task)
  expect_identical(alone$results, `rownames<-`(full$results[!keep, ], NULL))
  expect_identical(no_time(ck_study(checkpoint = dir, task_ids = f$task)), no_time(full))
})

test_that("a resumed study still reports one progress step per task", {
  skip_if_not_installed("progressr")
  dir <- local_tempdir()
  ck_study(checkpoint = dir, task_ids = 1:2)
  old <- options(progressr.enable = TRUE)
  on.exit(options(old), add = TRUE)
  msgs <- character()
  steps <- 0
  withCallingHandlers(ck_study(checkpoint = dir), progression = function(cnd) {
    if (cnd$type == "update" && cnd$amount > 0) {
      steps <<- steps + cnd$amount
      msgs <<- c(msgs, conditionMessage(cnd))
    }
  })
  expect_equal(steps, 6)
  expect_setequal(grep("from the checkpoint", msgs, value = TRUE),
                  sprintf("n = 100, replicate %d of 3 (from the checkpoint)", 1:2))
})

test_that("moe_select() resumes from its checkpoint and refuses another call", {
  sel <- function(...) {
    suppressWarnings(moe_select(tuned ~ stretchratio, data = tonedata, K = 1:2,
                                method = c("posterior", "bic"), chains = 1, iter = 100,
                                seed = 3, ...))
  }
  full <- sel()
  dir <- local_tempdir()
  a <- sel(checkpoint = dir)
  expect_length(task_files(dir), 4L)
  expect_identical(a$table, full$table)
  # lose the MCMC fit of K = 2 (task 4): it alone is made again
  unlink(file.path(dir, "task-00004.rds"))
  b <- sel(checkpoint = dir)
  expect_identical(b$table, full$table)
  expect_identical(b$warnings, full$warnings)
  expect_identical(b$fits$mcmc$K2$draws, full$fits$mcmc$K2$draws)
  expect_identical(b$fits$em$K2$par, full$fits$em$K2$par)
  expect_error(sel(checkpoint = dir, starts = 2), class = "bayesmoe_error_checkpoint")
  expect_error(moe_select(tuned ~ stretchratio, data = tonedata, K = 1:2, method = "bic",
                          checkpoint = local_tempdir()), class = "bayesmoe_error_input")
})

test_that("a failing fit of moe_select() is reported after the others are saved", {
  dir <- local_tempdir()
  ns <- asNamespace("bayesmoe")
  suppressMessages(trace("moe_em", where = ns, print = FALSE,
                         tracer = quote(if (K == 2L) stop("no EM today"))))
  on.exit(untrace_quietly("moe_em", ns), add = TRUE)
  e <- tryCatch(moe_select(tuned ~ stretchratio, data = tonedata, K = 1:3, method = "bic",
                           starts = 1, seed = 3, checkpoint = dir),
                bayesmoe_error_task = function(e) e)
  untrace_quietly("moe_em", ns)
  expect_s3_class(e, "bayesmoe_error_task")
  expect_identical(e$failed$K, 2L)
  expect_identical(e$failed$message, "no EM today")
  expect_length(task_files(dir), 2L)
  s <- suppressWarnings(moe_select(tuned ~ stretchratio, data = tonedata, K = 1:3,
                                   method = "bic", starts = 1, seed = 3, checkpoint = dir))
  s0 <- suppressWarnings(moe_select(tuned ~ stretchratio, data = tonedata, K = 1:3,
                                    method = "bic", starts = 1, seed = 3))
  expect_identical(s$table, s0$table)
})

test_that("messages of checkpointed studies", {
  dir <- local_tempdir()
  ck_study(checkpoint = dir, task_ids = 1)
  mask <- function(x) {
    x <- gsub(normalizePath(dir), "<dir>", x, fixed = TRUE)
    x <- gsub("fingerprint [0-9a-f]{12}", "fingerprint <md5>", x)
    gsub("begun [0-9-]+ [0-9:]+ [A-Z]+", "begun <time>", x)
  }
  expect_snapshot(error = TRUE, transform = mask,
                  moe_contraction(moe_truth_example("p4"), n = c(100, 200), reps = 3,
                                  starts = 1, losses = "D", seed = 12, checkpoint = dir))
  expect_snapshot(error = TRUE, moe_contraction(moe_truth_example("p4"), n = 100, reps = 1,
                                                checkpoint = dir))
  expect_snapshot(error = TRUE, ck_study(checkpoint = 1))
  expect_snapshot(error = TRUE, ck_study(task_ids = c(0, 2)))
  ns <- asNamespace("bayesmoe")
  suppressMessages(trace("contraction_task", where = ns, print = FALSE,
                         tracer = quote(if (i %in% c(2L, 5L)) stop("injected failure"))))
  on.exit(untrace_quietly("contraction_task", ns), add = TRUE)
  expect_snapshot(x <- ck_study())
})

test_that("tasks a worker could not save are saved by the main process", {
  dir <- local_tempdir()
  ns <- asNamespace("bayesmoe")
  # writing fails in the task (as on a worker that does not see the
  # directory), not in run_tasks() (the main process)
  suppressMessages(trace("checkpoint_write", where = ns, print = FALSE,
                         tracer = quote({
                           in_task <- vapply(sys.calls(), function(cl) {
                             identical(cl[[1L]], as.name("save"))
                           }, TRUE)
                           if (any(in_task)) stop("cannot write")
                         })))
  on.exit(untrace_quietly("checkpoint_write", ns), add = TRUE)
  a <- ck_study(checkpoint = dir)
  untrace_quietly("checkpoint_write", ns)
  expect_length(task_files(dir), 6L)
  expect_identical(no_time(ck_study(checkpoint = dir)), no_time(a))
})
