#!/usr/bin/env Rscript
# The call graph between the files of R/: every top-level function is mapped
# to the file that defines it, and file A -> file B when a function of A names
# a function defined in B. The files must form a DAG (low-level files never
# call high-level ones). S3 dispatch (UseMethod, NextMethod, generic calls that
# reach a method in another file) makes no edge: only names that are
# themselves top-level functions count.
#
# Usage: Rscript tools/r-file-graph.R [R-directory]
#   prints the edges with the functions behind them, then the cycles
#   (strongly connected components of more than one file); exits 1 when
#   there is a cycle.

# The graph code lives in tests/testthat/helper-architecture.R, shared with
# the test that fails on a cycle.
local({
  file_arg <- grep("^--file=", commandArgs(FALSE), value = TRUE)
  here <- if (length(file_arg)) dirname(sub("^--file=", "", file_arg[1L])) else "tools"
  sys.source(file.path(here, "..", "tests", "testthat", "helper-architecture.R"),
             envir = globalenv())
})

args <- commandArgs(trailingOnly = TRUE)
dir <- if (length(args)) args[1L] else "R"
g <- r_file_graph(dir)
for (i in seq_len(nrow(g$edges))) {
  cat(sprintf("%s -> %s: %s\n", g$edges$from[i], g$edges$to[i], g$edges$via[i]))
}
if (length(g$cycles)) {
  cat(sprintf("\n%d cycle(s):\n", length(g$cycles)))
  for (comp in g$cycles) cat("  ", paste(comp, collapse = ", "), "\n")
  quit(status = 1L)
}
# the files by level: level 0 calls no other file, level L only files of
# lower levels
files <- sub("[.][Rr]$", "", basename(list.files(dir, pattern = "[.][Rr]$")))
files <- paste0(files, ".R")
level <- setNames(rep(NA_integer_, length(files)), files)
while (anyNA(level)) {
  for (f in names(level)[is.na(level)]) {
    to <- g$edges$to[g$edges$from == f]
    if (all(!is.na(level[to]))) level[f] <- if (length(to)) max(level[to]) + 1L else 0L
  }
}
cat("\nno cycles; files by level:\n")
for (l in sort(unique(level))) {
  cat(sprintf("  %2d: %s\n", l, paste(sort(names(level)[level == l]), collapse = ", ")))
}
