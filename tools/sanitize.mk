# Compiler flags for `make sanitize` (passed as R_MAKEVARS_USER): the package
# is built with AddressSanitizer and UndefinedBehaviorSanitizer; any undefined
# behaviour aborts the run.
CFLAGS = -g -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -Wall -Wextra
LDFLAGS = -fsanitize=address,undefined
