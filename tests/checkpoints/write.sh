#!/usr/bin/env bash
# Writes one file of the checkpoint corpus with the dlrun of a given commit:
#   tests/checkpoints/write.sh COMMIT NAME [OVERRIDES...]    (COMMIT . : this working tree)
# The run is `dlrun experiment=smoke` (two epochs) with a tiny model, so the files stay small;
# its last.pt (weights, record and training state) becomes NAME.pt. NAME.json keeps what that
# same version measured with the file: its evaluation (task=eval) and its resume to a third
# epoch, which tests/test_checkpoint_formats.py asks of the present dlrun. A commit's dlrun runs
# from a git worktree with this checkout's Python environment.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel)
commit=$1 name=$2
shift 2
work=$(mktemp -d)
trap 'git -C "$repo" worktree remove --force "$work/src" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
if [ "$commit" = . ]; then
  src=$repo/src made="the working tree on $(git -C "$repo" rev-parse --short HEAD)"
else
  git -C "$repo" worktree add --detach "$work/src" "$commit" >/dev/null 2>&1
  src=$work/src/src made=$(git -C "$repo" rev-parse --short "$commit")
fi
cd "$work"
dlrun() {
  PYTHONPATH="$src" OMP_NUM_THREADS=1 "${PYTHON:-$repo/.venv/bin/python}" -m dlrun trainer.progress=false plots=[] \
    report=false "$@" >"$work/log" 2>&1 || { cat "$work/log"; exit 1; }
}
dlrun experiment=smoke hydra.run.dir="$work/run" "$@"
cp "$work/run/checkpoints/last.pt" "$here/$name.pt"
dlrun task=eval ckpt_path="$work/run/checkpoints/last.pt" hydra.run.dir="$work/eval"
dlrun experiment=smoke ckpt_path="$work/run/checkpoints/last.pt" trainer.max_epochs=3 hydra.run.dir="$work/resumed" "$@"
"${PYTHON:-$repo/.venv/bin/python}" - "$work" "$made" "$here/$name.json" "$@" <<'PY'
import json, sys
from pathlib import Path

work, made, out, overrides = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4:]
evaluated = json.loads((work / "eval" / "summary.json").read_text())
resumed = json.loads((work / "resumed" / "summary.json").read_text())
out.write_text(json.dumps({
    "written_by": made, "overrides": ["experiment=smoke", *overrides],
    "test": {k: v for k, v in evaluated["test"].items() if isinstance(v, float)},
    "resumed": {"epochs_run": resumed["epochs_run"], "objective": resumed["objective"]},
}, indent=1) + "\n")
PY
echo "$name.pt: $made, $*"
