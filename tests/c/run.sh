#!/usr/bin/env bash
# Build and run the C-level tests under AddressSanitizer and UBSan.
#
# Every tests/c/test_*.c is linked against all of csrc/ except the Python
# binding, the CUDA backend and the zygote module's CPython-API input parser
# (csrc/sandbox/literal.c, tested from Python), and run; a test prints its
# own checks and exits non-zero on failure. Usage: tests/c/run.sh [PYTHON]
#
# Two builds, each compiling csrc/ once and linking every test against it:
# "debug" (-O1, the clearest reports) and "shipped", the optimisation flags
# setup.py builds the extension with (-O3, -ffp-contract=fast and, unless
# AZR_PORTABLE=1, -march=native), so the vectorised and FMA paths that ship
# run under the sanitizers too. Keep SHIPPED in step with setup.py.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="${1:-python3}"
build="$here/build"
mkdir -p "$build"
blas_inc="$("$py" -c 'import scipy_openblas32 as s; print(s.get_include_dir())')"
blas_lib="$("$py" -c 'import scipy_openblas32 as s; print(s.get_lib_dir())')"
blas_name="$("$py" -c 'import scipy_openblas32 as s; print(s.get_library())')"
mapfile -t srcs < <(find "$root/csrc" -name '*.c' -not -path '*/python/*' -not -path '*/cuda/*' \
                      -not -path '*/sandbox/literal.c' | sort)
cflags=(-std=c11 -g -fopenmp -fsanitize=address,undefined -fno-sanitize-recover=undefined
        -fno-omit-frame-pointer -Wall -Wextra -Wno-unused-parameter -Wno-psabi -Werror=implicit-function-declaration
        -D_GNU_SOURCE -DAZR_BLAS_PREFIX_SCIPY -I"$root/csrc" -I"$blas_inc")
ldflags=(-L"$blas_lib" -l"$blas_name" -Wl,-rpath,"$blas_lib" -lm -fsanitize=address,undefined -fopenmp)
DEBUG=(-O1)
SHIPPED=(-O3 -ffp-contract=fast -fno-math-errno -fno-strict-aliasing)
if [ "${AZR_PORTABLE:-}" != "1" ]; then
    SHIPPED+=(-march=native)
fi
# The sandbox test forks; LeakSanitizer in forked children is noise.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export AZR_TEST_DATA_DIR="${AZR_SHARED_DATA:-$root/../shared/data}"
status=0
passed=0
failed=0
for variant in debug shipped; do
    if [ "$variant" = debug ]; then opt=("${DEBUG[@]}"); else opt=("${SHIPPED[@]}"); fi
    objdir="$build/$variant"
    mkdir -p "$objdir"
    echo "== compiling csrc/ ($variant: ${opt[*]}; ASan+UBSan)"
    objs=()
    for s in "${srcs[@]}"; do
        rel="${s#"$root"/csrc/}"
        o="$objdir/${rel//\//_}.o"
        gcc "${cflags[@]}" "${opt[@]}" -c "$s" -o "$o"
        objs+=("$o")
    done
    for t in "$here"/test_*.c; do
        name="$(basename "$t" .c)"
        echo "== building $name ($variant)"
        gcc "${cflags[@]}" "${opt[@]}" "$t" "${objs[@]}" -o "$objdir/$name" "${ldflags[@]}"
        echo "== running $name ($variant)"
        if OMP_NUM_THREADS=2 "$objdir/$name"; then
            passed=$((passed + 1))
        else
            echo "!! $name ($variant) failed"
            failed=$((failed + 1))
            status=1
        fi
    done
done
echo "C tests: $passed passed, $failed failed"
exit $status
