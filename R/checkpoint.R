# Tasks of a study (the (n, replicate) tasks of moe_contraction(), the fits
# of moe_select()) run through future.apply, each on its own random number
# stream, and optionally checkpointed: every finished task is saved at once
# in a directory, so that a rerun after an interruption runs only the rest
# and gives the same results.
#
# A checkpoint directory holds
#   study.rds        list(what, fingerprint, n_tasks, labels, created,
#                    version): the study it belongs to;
#   task-<i>.rds     list(task = i, fingerprint, value): the value of task i;
#   .task-*.tmp      files being written (ignored; a killed writer leaves one).
# Task files are written to a temporary file in the same directory and then
# renamed (file.rename() within one file system is atomic), so a task file
# is complete or absent, whoever is killed when. Task files are written by
# the process that ran the task (a future's worker) as soon as it finishes,
# when the directory is visible to the workers (any local plan; a shared
# file system on a cluster); otherwise by the main process when the value
# comes back (for chunked futures: when the chunk does).
#
# The fingerprint is the MD5 sum of a canonical serialisation of everything
# the results depend on (arguments, truth, data, seeds and streams):
# environments are left out and functions and formulas enter as their text,
# so it is the same in every R session and R version that reads the same
# arguments.

# The canonical form of `x` for fingerprints: environments become a
# placeholder, functions and language objects (formulas, terms) their text;
# lists and attributes are canonicalised recursively.
checkpoint_canon <- function(x) {
  if (is.environment(x)) return("<environment>")
  if (is.function(x) || is.language(x)) return(paste(deparse(x), collapse = "\n"))
  at <- attributes(x)
  if (is.list(x)) {
    x <- lapply(unclass(x), checkpoint_canon)
    attributes(x) <- NULL
  }
  if (!is.null(at)) attributes(x) <- lapply(at, checkpoint_canon)
  x
}

# MD5 sum (32 hex digits) of the canonical form of `key`. The serialisation
# header (which records the R version) is dropped.
checkpoint_fingerprint <- function(key) {
  bytes <- serialize(checkpoint_canon(key), NULL, xdr = TRUE, version = 2L)
  f <- tempfile("bayesmoe-fingerprint-")
  on.exit(unlink(f), add = TRUE)
  writeBin(bytes[-seq_len(14L)], f)
  unname(tools::md5sum(f))
}

# Write `value` to `path` atomically: saveRDS() to a temporary file in the
# same directory, then file.rename().
checkpoint_save <- function(value, path) {
  tmp <- tempfile(pattern = paste0(".", sub("[.]rds$", "", basename(path)), "-"),
                  tmpdir = dirname(path), fileext = ".tmp")
  on.exit(if (file.exists(tmp)) unlink(tmp), add = TRUE)
  saveRDS(value, tmp)
  if (!file.rename(tmp, path)) {
    stop(sprintf("could not rename %s to %s", tmp, path), call. = FALSE)
  }
  invisible(path)
}

checkpoint_task_path <- function(ck, i) file.path(ck$dir, sprintf("task-%05d.rds", i))

# Open (create or resume) the checkpoint directory `dir` of a study of kind
# `what` ("moe_contraction", "moe_select") with `n_tasks` tasks labelled
# `labels`, whose results depend on `key`. Returns list(dir, fingerprint),
# or NULL when `dir` is NULL. A directory holding another study is refused
# with an error of class bayesmoe_error_checkpoint.
checkpoint_open <- function(dir, what, key, n_tasks, labels, call = NULL) {
  if (is.null(dir)) return(NULL)
  if (!is.character(dir) || length(dir) != 1L || is.na(dir) || !nzchar(dir)) {
    abort(sprintf("`checkpoint` must be a directory name (a string) or NULL, not %s.",
                  describe(dir)), call = call, arg = "checkpoint")
  }
  if (file.exists(dir) && !dir.exists(dir)) {
    abort(sprintf("`checkpoint` must be a directory, not the file \"%s\".", dir),
          kind = "checkpoint", call = call, arg = "checkpoint")
  }
  if (!dir.exists(dir) && !dir.create(dir, recursive = TRUE, showWarnings = FALSE)) {
    abort(sprintf("`checkpoint`: the directory \"%s\" could not be created.", dir),
          kind = "checkpoint", call = call, arg = "checkpoint")
  }
  dir <- normalizePath(dir, mustWork = TRUE)
  fp <- checkpoint_fingerprint(c(list(what = what), key))
  study <- file.path(dir, "study.rds")
  if (file.exists(study)) {
    old <- tryCatch(readRDS(study), error = function(e) NULL)
    if (!identical(old$fingerprint, fp)) {
      abort(sprintf("`checkpoint` (\"%s\") holds another study: %s, fingerprint %s, %s tasks, begun %s; this call is %s, fingerprint %s, %d tasks. Use a new directory for a new study (or delete that one to start it again).",
                    dir, if (is.null(old$what)) "unreadable" else old$what,
                    if (is.null(old$fingerprint)) "?" else substr(old$fingerprint, 1L, 12L),
                    if (is.null(old$n_tasks)) "?" else format(old$n_tasks),
                    if (is.null(old$created)) "?" else format(old$created, usetz = TRUE),
                    what, substr(fp, 1L, 12L), n_tasks),
            kind = "checkpoint", call = call, arg = "checkpoint",
            fingerprint = fp, found = old$fingerprint)
    }
  } else {
    if (length(list.files(dir, pattern = "^task-[0-9]+[.]rds$"))) {
      abort(sprintf("`checkpoint` (\"%s\") holds task files but no study.rds: it is not a checkpoint of this package's studies, or it was damaged; use a new directory.",
                    dir), kind = "checkpoint", call = call, arg = "checkpoint")
    }
    checkpoint_save(list(what = what, fingerprint = fp, n_tasks = n_tasks, labels = labels,
                         created = Sys.time(),
                         version = as.character(utils::packageVersion("bayesmoe"))),
                    study)
  }
  list(dir = dir, fingerprint = fp)
}

# The tasks among `ids` whose values are in the checkpoint, with the values:
# list(ids, values). Unreadable files, or files of another study, count as
# not done (the task runs again and overwrites them).
checkpoint_load <- function(ck, ids) {
  if (is.null(ck)) return(list(ids = integer(), values = list()))
  have <- ids[file.exists(checkpoint_task_path(ck, ids))]
  values <- lapply(have, function(i) {
    v <- tryCatch(readRDS(checkpoint_task_path(ck, i)), error = function(e) NULL)
    if (is.list(v) && identical(v$fingerprint, ck$fingerprint) && identical(v$task, i)) v else NULL
  })
  ok <- !vapply(values, is.null, TRUE)
  list(ids = have[ok], values = lapply(values[ok], `[[`, "value"))
}

checkpoint_write <- function(ck, i, value) {
  checkpoint_save(list(task = i, fingerprint = ck$fingerprint, value = value),
                  checkpoint_task_path(ck, i))
}

# `FUN(i, ...)` as a task: an error is returned as a "bayesmoe_task_failure"
# (the task, the message and the call) instead of stopping the other tasks;
# a value is written to the checkpoint `ck` (when not NULL) before it is
# returned (if this process cannot write there, run_tasks() writes it when
# the value reaches the main process). Interrupts are not errors: they stop the run, and the tasks
# written so far stay in the checkpoint.
checkpointed_task <- function(FUN, ck) {
  force(FUN)
  force(ck)
  save <- checkpoint_write
  function(i, ...) {
    res <- tryCatch(FUN(i, ...), error = function(e) {
      structure(list(task = i, message = conditionMessage(e),
                     call = paste(deparse(conditionCall(e), nlines = 1L), collapse = "")),
                class = "bayesmoe_task_failure")
    })
    # a worker that cannot write the directory (not shared with it) leaves
    # the writing to the main process, when the value comes back
    if (!is.null(ck) && !inherits(res, "bayesmoe_task_failure")) {
      tryCatch(save(ck, i, res), error = function(e) NULL)
    }
    res
  }
}

# A stream (.Random.seed value) as text, e.g. "10407 -1418264093 ...".
stream_text <- function(s) paste(s, collapse = " ")

# Run the tasks `ids` of a study: read every task found in the checkpoint
# `ck`, and run `FUN(i, ..., streams = streams)` for the tasks i among `ids`
# not found there, through future.apply::future_lapply() when
# installed (any plan: the tasks' values do not depend on it, each task
# setting its own random number stream `streams[[i]]`), lapply() otherwise.
# `scheduling` is future.apply's `future.scheduling`; `on_resume(ids)` is
# called with the tasks found in the checkpoint (for progress). `info` is a
# data frame with one row per task describing it (for the failure report).
#
# Returns list(values, ran, resumed, failed): `values` a list with one
# element per task (NULL for the tasks not run and the failed ones), `ran`
# the tasks run now, `resumed` those read from the checkpoint, `failed` a
# data frame (task, the columns of `info`, stream, message) of the tasks
# whose code raised an error. The caller's random number state is left as it
# was. When a future itself fails (a worker died),
# the error is of class bayesmoe_error_worker and says how many tasks the
# checkpoint holds.
run_tasks <- function(FUN, ids, ..., streams, ck = NULL, scheduling = 1, info = NULL,
                      on_resume = NULL, call = NULL) {
  restore <- save_rng()
  on.exit(restore(), add = TRUE)
  n_tasks <- length(streams)
  values <- vector("list", n_tasks)
  found <- checkpoint_load(ck, seq_len(n_tasks))
  values[found$ids] <- found$values
  if (length(found$ids) && !is.null(on_resume)) on_resume(found$ids)
  todo <- setdiff(ids, found$ids)
  task <- checkpointed_task(FUN, ck)
  res <- tryCatch({
    if (!length(todo)) list() else if (requireNamespace("future.apply", quietly = TRUE)) {
      future.apply::future_lapply(todo, task, ..., streams = streams,
                                  future.seed = streams[todo],
                                  future.packages = "bayesmoe",
                                  future.scheduling = scheduling)
    } else {
      lapply(todo, task, ..., streams = streams)
    }
  }, FutureError = function(e) {
    saved <- if (is.null(ck)) 0L else length(checkpoint_load(ck, seq_len(n_tasks))$ids)
    abort(sprintf("A worker failed while running the tasks: %s\n%s", conditionMessage(e),
                  if (is.null(ck)) "The results of the finished tasks are lost: give a `checkpoint` directory to keep them." else
                    sprintf("The checkpoint \"%s\" holds %d of %d tasks; run the same call again to run the rest.",
                            ck$dir, saved, n_tasks)),
          kind = "worker", call = call, parent = e)
  })
  failed <- vapply(res, inherits, TRUE, "bayesmoe_task_failure")
  values[todo[!failed]] <- res[!failed]
  if (!is.null(ck)) {
    for (i in todo[!failed]) {
      if (!file.exists(checkpoint_task_path(ck, i))) checkpoint_write(ck, i, values[[i]])
    }
  }
  fail <- res[failed]
  failed_df <- data.frame(task = vapply(fail, `[[`, 0L, "task"))
  if (!is.null(info)) failed_df <- cbind(failed_df, info[failed_df$task, , drop = FALSE])
  failed_df$stream <- vapply(failed_df$task, function(i) stream_text(streams[[i]]), "")
  failed_df$message <- vapply(fail, `[[`, "", "message")
  rownames(failed_df) <- NULL
  list(values = values, ran = todo, resumed = found$ids, failed = failed_df)
}

# One line per failed task for messages: "task 3 (n = 200, rep = 1): <message>".
failed_text <- function(failed, info_cols = setdiff(names(failed), c("task", "stream", "message"))) {
  desc <- if (length(info_cols)) {
    apply(failed[info_cols], 1L, function(r) paste(sprintf("%s = %s", info_cols, trimws(r)),
                                                    collapse = ", "))
  } else rep("", nrow(failed))
  sprintf("task %d%s: %s", failed$task, ifelse(nzchar(desc), sprintf(" (%s)", desc), ""),
          failed$message)
}
