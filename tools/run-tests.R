# Run the installed package's test suite (used by `make sanitize` and
# `make valgrind`, which install an instrumented build first). Exits with a
# non-zero status when a test fails.
library(testthat)
library(bayesmoe)
res <- testthat::test_dir("tests/testthat", package = "bayesmoe",
                          load_package = "installed", reporter = "summary",
                          stop_on_failure = TRUE)
