#!/usr/bin/env bash
# The Python packages the GPU machine lacks for the app (pydantic and its three companions, torch-pruning), packed to
# travel beside a repository that leaves under 1 MiB of a device call's 64 MiB: stripped, xz-compressed and split
# into .gpusite/a/part.00 and .gpusite/b/part.01 (each under 0.9 MB) plus .gpusite/c/*.whl. Carry them in three
# calls while the machine stays warm (30 s between calls): the first two copy their part to /tmp/keep there, the
# third runs: cat /tmp/keep/part.* | tar xJ -C /tmp/site; pip install --no-index --no-deps --target /tmp/site
# .gpusite/c/*.whl; PYTHONPATH=$PWD/src:/tmp/site. Run from the repository root (needs a package index).
set -euo pipefail
grep -qx '/.gpusite/' .git/info/exclude || echo '/.gpusite/' >> .git/info/exclude
work=$(mktemp -d) && trap 'rm -rf "$work"' EXIT
wheels() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$1" "${@:2}"
}
wheels "$work/w" "$(python3 -c 'import pydantic; print("pydantic==" + pydantic.VERSION)')" \
  "$(python3 -c 'import pydantic_core; print("pydantic-core==" + pydantic_core.__version__)')" annotated-types typing-inspection
mkdir -p "$work/site" && for f in "$work"/w/*.whl; do unzip -q -o "$f" -d "$work/site"; done
rm -rf "$work"/site/pydantic/v1 "$work"/site/pydantic/experimental && find "$work/site" -name '*.pyi' -delete
strip "$work"/site/pydantic_core/*.so
tar cf - -C "$work/site" . | xz -9e > "$work/site.tar.xz"
rm -rf .gpusite && mkdir -p .gpusite/a .gpusite/b .gpusite/c
half=$(( ($(stat -c %s "$work/site.tar.xz") + 1) / 2 ))
split -b "$half" -d "$work/site.tar.xz" "$work/part."
mv "$work/part.00" .gpusite/a/ && mv "$work/part.01" .gpusite/b/
wheels .gpusite/c "torch-pruning==$(python3 -c 'import importlib.metadata as m; print(m.version("torch-pruning"))')"
ls -l .gpusite/*/
