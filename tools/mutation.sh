#!/usr/bin/env bash
# Mutation check of one module: does the test suite notice when the code is changed?
#
#   tools/mutation.sh MODULE TEST [TEST...]
#   tools/mutation.sh minillm/optim/schedules.py tests/test_schedules.py tests/test_edges_optim.py
#
# mutmut (3.x, the "dev" extra) rewrites MODULE into many mutants (a flipped comparison, a changed
# constant, a dropped call...) and runs the tests that reach each mutated function. A mutant the tests
# do not fail on "survived": either a missing test or an equivalent change. The script prints the kill
# rate and the diff of every survivor.
#
# It works in a throw-away copy under /tmp (never in your working tree): by default a copy of the
# working tree's files (tracked and untracked, minus .gitignore'd), or of a commit with MUTATION_REF.
#
# Environment:
#   MUTATION_REF=<commit>   mutate that commit's files instead of the working tree
#   MUTATION_JOBS=2         parallel test workers (mutmut --max-children)
#   MUTATION_TIME=1800      seconds before the run is stopped (the mutants not reached count as unchecked)
#   MUTATION_KEEP=1         keep the /tmp copy (to inspect it with `mutmut browse` there)
#   MUTATION_TIMEOUT_FACTOR=15 a mutant is stopped (and counted as killed: "timeout") after
#                           2 x factor x (its tests' time + 1 s) of CPU time, e.g. a loop that no longer ends.
#                           Lower it only on an idle machine: on a loaded one a low factor stops
#                           mutants that were merely slow, and counts them as killed.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: tools/mutation.sh MODULE TEST [TEST...]   (e.g. minillm/peft/pattern.py tests/test_peft_pattern.py)" >&2
    exit 2
fi
module=$1; shift
root=$(git rev-parse --show-toplevel)
cd "$root"
[ -f "$module" ] || { echo "mutation.sh: no module $module (give a path relative to $root)" >&2; exit 2; }
for test in "$@"; do
    [ -e "${test%%::*}" ] || { echo "mutation.sh: no test file ${test%%::*}" >&2; exit 2; }
done
mutmut_bin=$(command -v mutmut) || { echo "mutation.sh: mutmut not found; pip install -e '.[dev]'" >&2; exit 2; }

jobs=${MUTATION_JOBS:-2}
limit=${MUTATION_TIME:-1800}
work=$(mktemp -d /tmp/minillm-mutation.XXXXXX)
if [ -z "${MUTATION_KEEP:-}" ]; then trap 'rm -rf "$work"' EXIT; fi

if [ -n "${MUTATION_REF:-}" ]; then
    git archive "$MUTATION_REF" | tar -x -C "$work"
    source_desc="commit $(git rev-parse --short "$MUTATION_REF")"
else
    git ls-files -z --cached --others --exclude-standard \
        | tar --null --ignore-failed-read -T - -c 2>/dev/null | tar -x -C "$work"
    source_desc="working tree at $(git rev-parse --short HEAD) (with uncommitted changes)"
fi

# mutmut reads [tool.mutmut] from pyproject.toml; only the copy gets it.
toml_list() { local sep="" item; printf '['; for item in "$@"; do printf '%s"%s"' "$sep" "$item"; sep=", "; done; printf ']'; }
cat >> "$work/pyproject.toml" <<TOML

[tool.mutmut]
source_paths = ["minillm"]
only_mutate = ["$module"]
pytest_add_cli_args_test_selection = $(toml_list "$@")
pytest_add_cli_args = ["-p", "no:cacheprovider"]
use_git_change_detection = false
timeout_multiplier = ${MUTATION_TIMEOUT_FACTOR:-15}
TOML

echo "mutation.sh: $module against $* ($source_desc), $jobs workers, at most ${limit}s, in $work"
cd "$work"
# PYTHONPATH: a test that starts `python -m minillm` runs the mutated copy too.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONDONTWRITEBYTECODE=1
mkdir -p "$work/mutants"  # before Python starts: a path missing then is never searched again
export PYTHONPATH="$work/mutants${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)
set +e
timeout --signal=INT --kill-after=60 "$limit" nice -n 10 "$mutmut_bin" run --max-children "$jobs" > mutmut.log 2>&1
rc=$?
set -e
elapsed=$(( $(date +%s) - start ))
if [ $rc -ne 0 ]; then
    echo "mutation.sh: mutmut exited with $rc after ${elapsed}s (124/130 = stopped at the time limit); last lines:"
    tail -n 15 mutmut.log | tr '\r' '\n' | tail -n 15
fi

# One line per mutant: "    name: status".
"$mutmut_bin" results --all true 2>/dev/null | sed -n 's/^ *\([^ ]*\): \(.*\)$/\1 \2/p' > statuses.txt || true
survivors=$(awk '$2 == "survived" || $2 == "no" {print $1}' statuses.txt)
if [ -n "$survivors" ]; then
    echo; echo "survivors (each is a missing test or an equivalent mutant; say which):"
    for name in $survivors; do "$mutmut_bin" show "$name" 2>/dev/null | grep -v '^\(---\|+++\)' ; echo; done
fi
python - "$module" "$elapsed" <<'PY'
import collections, sys
module, elapsed = sys.argv[1], sys.argv[2]
rows = [line.split(" ", 1) for line in open("statuses.txt").read().splitlines() if " " in line]
count = collections.Counter(status for _, status in rows)
killed = sum(count[s] for s in ("killed", "timeout", "segfault", "caught by type check"))
checked = sum(n for s, n in count.items() if s not in ("not checked", "skipped", "check was interrupted by user"))
print(f"\n{module}: {len(rows)} mutants in {elapsed}s: " + ", ".join(f"{n} {s}" for s, n in sorted(count.items())))
if checked:
    print(f"kill rate: {killed}/{checked} = {100 * killed / checked:.1f}% of the checked mutants")
    if count["timeout"]:  # a timeout may be a mutant that loops, or one that was merely slow
        decided = checked - count["timeout"]
        print(f"without the {count['timeout']} timeouts: {killed - count['timeout']}/{decided} = "
              f"{100 * (killed - count['timeout']) / max(decided, 1):.1f}%")
else:
    print("kill rate: nothing checked")
PY
