# The files of R/ form a DAG by function calls: low-level files (conditions,
# RNG, scaling, the variant generics) never call high-level ones (front
# ends, methods, the harness). The graph code is in helper-architecture.R;
# tools/r-file-graph.R prints the whole graph.

expect_no_cycles <- function(g) {
  msg <- vapply(g$cycles, function(comp) {
    inside <- g$edges[g$edges$from %in% comp & g$edges$to %in% comp, , drop = FALSE]
    paste0("cycle: ", paste(comp, collapse = ", "), "\n",
           paste0("  ", inside$from, " -> ", inside$to, ": ", inside$via, collapse = "\n"))
  }, "")
  expect(length(g$cycles) == 0L, paste(msg, collapse = "\n"))
  invisible(g)
}

test_that("the graph code finds calls, ignores locals and reports cycles", {
  f <- function(x, gate_mode) {
    gate_mode <- gate_mode[1L]
    y <- lapply(x, helper_b)
    helper_c(x$helper_d, y)
  }
  refs <- r_fun_refs(f)
  expect_true(all(c("lapply", "helper_b", "helper_c") %in% refs))
  expect_false(any(c("gate_mode", "helper_d", "x", "y") %in% refs))
  funs <- list(a1 = function() b1(), b1 = function() c1(), c1 = function() a1(),
               d1 = function() a1())
  files <- c(a1 = "a.R", b1 = "b.R", c1 = "c.R", d1 = "d.R")
  e <- r_file_edges(funs, files)
  expect_setequal(paste(e$from, e$to), c("a.R b.R", "b.R c.R", "c.R a.R", "d.R a.R"))
  expect_identical(r_file_cycles(e), list(c("a.R", "b.R", "c.R")))
  expect_length(r_file_cycles(e[e$from != "c.R", ]), 0L)
})

test_that("the R files call each other without cycles", {
  dir <- test_path("..", "..", "R")
  if (dir.exists(dir)) {
    g <- r_file_graph(dir)
    expect_gt(nrow(g$edges), 0L)
    expect_no_cycles(g)
  } else {
    # an installed package (R CMD check): the files from the srcrefs
    g <- r_namespace_graph(asNamespace("bayesmoe"))
    if (is.null(g)) skip("neither the R/ sources nor srcrefs are available")
    expect_no_cycles(g)
  }
})
