# The call graph between the files of R/ (test-architecture.R and
# tools/r-file-graph.R): every top-level function is mapped to the file that
# defines it, and file A -> file B when a function of A names a function
# defined in B. The files must form a DAG. S3 dispatch makes no edge: a call
# of a generic is an edge to the generic's file, never to its methods'.

# Top-level function definitions of one parsed file: a named list of
# function expressions (`f <- function(...) ...`, `f = function(...)`).
r_file_functions <- function(exprs) {
  out <- list()
  for (e in exprs) {
    if (is.call(e) && length(e) == 3L &&
        (identical(e[[1L]], as.name("<-")) || identical(e[[1L]], as.name("="))) &&
        is.name(e[[2L]]) && is.call(e[[3L]]) &&
        identical(e[[3L]][[1L]], as.name("function"))) {
      out[[as.character(e[[2L]])]] <- e[[3L]]
    }
  }
  out
}

# An empty argument (`x[, 1]`, a formal without default).
r_is_empty <- function(x) is.symbol(x) && !nzchar(as.character(x))

# The names a function refers to: every name in call position, and every
# other name that is not local to it (an argument, a loop variable or a
# variable it assigns, in it or in a function nested in it). `fun` is a
# function or a `function(...) body` expression. Names after `$` and `@`,
# inside formulas and in `pkg::name` are not references.
r_fun_refs <- function(fun) {
  if (is.function(fun)) {
    fm <- formals(fun)
    bd <- body(fun)
  } else {
    fm <- fun[[2L]]
    bd <- fun[[3L]]
  }
  locals <- names(fm)
  calls <- character()
  syms <- character()
  walk <- function(e) {
    if (is.name(e)) {
      syms <<- c(syms, as.character(e))
      return(invisible())
    }
    if (!is.call(e)) return(invisible())
    args <- as.list(e)[-1L]
    head <- e[[1L]]
    if (is.name(head)) {
      h <- as.character(head)
      if (h %in% c("::", ":::", "~")) return(invisible())
      calls <<- c(calls, h)
      if (h %in% c("$", "@")) {
        walk(e[[2L]])
        return(invisible())
      }
      if (h == "function") {
        locals <<- c(locals, names(e[[2L]]))
        args <- c(as.list(e[[2L]]), list(e[[3L]]))
      }
      if (h %in% c("<-", "=", "<<-", "for") && is.name(e[[2L]])) {
        locals <<- c(locals, as.character(e[[2L]]))
      }
    } else {
      walk(head)
    }
    for (i in seq_along(args)) if (!r_is_empty(args[[i]])) walk(args[[i]])
    invisible()
  }
  for (i in seq_along(fm)) if (!r_is_empty(fm[[i]])) walk(fm[[i]])
  walk(bd)
  unique(c(calls, setdiff(syms, locals)))
}

# The file -> file graph of the functions in `funs` (a named list of
# function objects or expressions) defined in `files` (a named character
# vector: function name -> file). Returns a data frame with columns from,
# to, via ("caller -> callee" pairs, comma separated).
r_file_edges <- function(funs, files) {
  rows <- list()
  for (f in names(funs)) {
    used <- intersect(setdiff(r_fun_refs(funs[[f]]), f), names(files))
    for (g in used) {
      if (files[[g]] != files[[f]]) {
        rows[[length(rows) + 1L]] <- data.frame(from = files[[f]], to = files[[g]],
                                                via = paste(f, "->", g))
      }
    }
  }
  if (!length(rows)) return(data.frame(from = character(), to = character(),
                                       via = character()))
  e <- do.call(rbind, rows)
  agg <- stats::aggregate(via ~ from + to, e, function(v) paste(sort(v), collapse = ", "))
  agg[order(agg$from, agg$to), , drop = FALSE]
}

# Strongly connected components with more than one node (Tarjan): each is a
# set of files that call each other in a cycle.
r_file_cycles <- function(edges) {
  nodes <- sort(unique(c(edges$from, edges$to)))
  adj <- split(edges$to, factor(edges$from, levels = nodes))
  index <- setNames(rep(NA_integer_, length(nodes)), nodes)
  low <- index
  on_stack <- setNames(rep(FALSE, length(nodes)), nodes)
  stack <- character()
  counter <- 0L
  comps <- list()
  strong <- function(v) {
    counter <<- counter + 1L
    index[v] <<- low[v] <<- counter
    stack <<- c(stack, v)
    on_stack[v] <<- TRUE
    for (w in adj[[v]]) {
      if (is.na(index[w])) {
        strong(w)
        low[v] <<- min(low[v], low[w])
      } else if (on_stack[w]) {
        low[v] <<- min(low[v], index[w])
      }
    }
    if (low[v] == index[v]) {
      comp <- character()
      repeat {
        w <- stack[length(stack)]
        stack <<- stack[-length(stack)]
        on_stack[w] <<- FALSE
        comp <- c(comp, w)
        if (w == v) break
      }
      if (length(comp) > 1L) comps[[length(comps) + 1L]] <<- sort(comp)
    }
  }
  for (v in nodes) if (is.na(index[v])) strong(v)
  comps
}

# The graph of the R files in directory `dir`: list(edges, cycles).
r_file_graph <- function(dir) {
  paths <- sort(list.files(dir, pattern = "[.][Rr]$", full.names = TRUE))
  funs <- list()
  files <- character()
  for (p in paths) {
    defs <- r_file_functions(parse(p, keep.source = FALSE))
    funs[names(defs)] <- defs
    files[names(defs)] <- basename(p)
  }
  edges <- r_file_edges(funs, files)
  list(edges = edges, cycles = r_file_cycles(edges))
}

# The graph of the functions of an installed namespace, mapped to files by
# their srcrefs (kept only when the package was installed with
# R_KEEP_PKG_SOURCE=yes or options(keep.source.pkgs = TRUE)); NULL when no
# function has one.
r_namespace_graph <- function(ns) {
  files <- character()
  funs <- list()
  for (nm in ls(ns, all.names = TRUE)) {
    f <- get(nm, envir = ns, inherits = FALSE)
    if (!is.function(f) || is.primitive(f)) next
    file <- utils::getSrcFilename(f)
    if (!length(file) || !nzchar(file)) next
    files[nm] <- basename(file)
    funs[[nm]] <- f
  }
  if (!length(funs)) return(NULL)
  edges <- r_file_edges(funs, files)
  list(edges = edges, cycles = r_file_cycles(edges))
}
