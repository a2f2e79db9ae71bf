# bayesmoe developer targets. `make demo` and `make check` work on a fresh
# machine with R: they install whatever R packages are missing first.
R       ?= R
RSCRIPT ?= Rscript
PKG     := bayesmoe
VERSION := $(shell sed -n 's/^Version: *//p' DESCRIPTION)
TARBALL := $(PKG)_$(VERSION).tar.gz
CHECKDIR := check

.PHONY: deps demo install document build check bench site sanitize valgrind clean

deps:
	$(RSCRIPT) tools/install-deps.R

install: deps
	$(R) CMD INSTALL --preclean --no-multiarch .
	rm -f src/*.o src/*.so

document:
	$(RSCRIPT) -e 'roxygen2::roxygenise()'
	rm -f src/*.o src/*.so

demo: install
	$(RSCRIPT) -e 'demo("tone", package = "bayesmoe", ask = FALSE, echo = FALSE)'

build: deps
	rm -rf $(CHECKDIR) && mkdir -p $(CHECKDIR)
	cd $(CHECKDIR) && $(R) CMD build ..

# Remote checks (CRAN-incoming URL and archive look-ups, the clock check of
# file time stamps) are off by default so the check does not depend on the
# network; set CRAN_REMOTE=true to run them. The PDF manual needs pdflatex:
# without it the manual is skipped (its Rd sources are still checked).
# The check's installation strips the debug information of the shared
# object (_R_SHLIB_STRIP_ as `R CMD INSTALL --strip` does, with
# `strip --strip-debug`, which keeps the symbol table the compiled-code
# check reads): R's own CFLAGS carry -g, whose debug information is three
# quarters of the installed libs (1.6 MB with it, 0.44 MB without) and would
# push the installed size over the 5 MB of the size NOTE; a package may not
# strip itself in src/Makevars.
CRAN_REMOTE ?= false
MANUAL := $(if $(shell command -v pdflatex 2>/dev/null),,--no-manual)
check: build
	cd $(CHECKDIR) && NOT_CRAN=true _R_CHECK_CRAN_INCOMING_REMOTE_=$(CRAN_REMOTE) \
	  _R_CHECK_SYSTEM_CLOCK_=$(CRAN_REMOTE) _R_SHLIB_STRIP_=true \
	  R_STRIP_SHARED_LIB="strip --strip-debug" \
	  $(R) CMD check --as-cran $(MANUAL) $(TARBALL)

bench: install
	$(RSCRIPT) tools/install-deps.R --bench
	for f in $(filter-out bench/scale.R,$(wildcard bench/*.R)) bench/scale.R; do \
	  echo "== $$f"; $(RSCRIPT) $$f || exit 1; done

# The documentation site (pkgdown) in docs/, not committed: reference pages
# grouped as in _pkgdown.yml with every example run, the vignettes as
# articles, NEWS. pkgdown installs the package into a temporary library;
# pkgdown.internet = FALSE keeps the build off the network (no CRAN look-up
# for the sidebar links).
site:
	$(RSCRIPT) tools/install-deps.R --site
	$(RSCRIPT) -e 'options(pkgdown.internet = FALSE); pkgdown::build_site(preview = FALSE, new_process = FALSE)'
	rm -f src/*.o src/*.so

# Memory checks: the test suite against an instrumented build installed into
# a private library (never the user's). sanitize: ASan + UBSan (the sanitizer
# runtime is preloaded into R; leaks inside R itself are not reported).
# valgrind: memcheck on an ordinary build; slow (about 15-30 minutes).
SAN_LIB := $(CURDIR)/check/sanitize-lib
VG_LIB  := $(CURDIR)/check/valgrind-lib
# the R script run under valgrind; tools/valgrind-quick.R is a short run
# of every C entry point (a few minutes instead of the whole suite)
VG_SCRIPT ?= tools/run-tests.R
sanitize: deps
	rm -rf $(SAN_LIB) && mkdir -p $(SAN_LIB)
	R_MAKEVARS_USER=$(CURDIR)/tools/sanitize.mk $(R) CMD INSTALL --preclean --no-test-load --library=$(SAN_LIB) .
	rm -f src/*.o src/*.so
	NOT_CRAN=true R_LIBS=$(SAN_LIB) ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  $(RSCRIPT) tools/run-tests.R

valgrind: deps
	rm -rf $(VG_LIB) && mkdir -p $(VG_LIB)
	$(R) CMD INSTALL --preclean --library=$(VG_LIB) .
	rm -f src/*.o src/*.so
	NOT_CRAN=true BAYESMOE_VALGRIND=true R_LIBS=$(VG_LIB) $(R) --vanilla -d "valgrind --tool=memcheck --error-exitcode=1 \
	  --leak-check=full --errors-for-leak-kinds=definite --track-origins=yes \
	  --suppressions=$(CURDIR)/tools/valgrind.supp" -f $(VG_SCRIPT) > check/valgrind.log 2>&1; \
	  rc=$$?; grep -E "ERROR SUMMARY|definitely lost" check/valgrind.log; exit $$rc

clean:
	rm -rf $(CHECKDIR) docs src/*.o src/*.so demo-fit.png
