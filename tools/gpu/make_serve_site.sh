#!/usr/bin/env bash
# What `gesturekit serve --device cuda` and benchmarks/serve_load.py need on the GPU machine beyond its image:
# pydantic (and companions), torch-pruning, the Triton gRPC client (tritonclient, python-rapidjson, protobuf 6,
# grpcio) and, from the nvidia-pytriton wheel installed here, only tritonserver, its libraries (no libpython 3.13),
# the Python backend and the Python 3.12 stub, stripped. One xz tarball split in two halves,
# .gpusite/p1/gsite.part.00 and .gpusite/p2/gsite.part.01 (~15 MB each).
#
# A device call carries 64 MiB with the repository (~62 MiB), so the halves travel in two calls while the machine
# stays warm (30 s), with the zoo entries the GPU runs don't use (hand-detector-int8, hand-detector-pruned: 16 MiB)
# moved out of the working tree for those calls and back afterwards:
#   call 1, carry .gpusite/p1: mkdir -p /tmp/keep && cp .gpusite/p1/* /tmp/keep/
#   call 2, carry .gpusite/p2: cp .gpusite/p2/* /tmp/keep/ && mkdir -p /tmp/site &&
#           cat /tmp/keep/gsite.part.* | tar xJ -C /tmp/site && export PYTHONPATH=$PWD/src:/tmp/site && ...
# Run from the repository root, with the serve extra installed here (needs a package index).
set -euo pipefail
grep -qx '/.gpusite/' .git/info/exclude || echo '/.gpusite/' >> .git/info/exclude
work=$(mktemp -d) && trap 'rm -rf "$work"' EXIT
version() { python3 -c "import importlib.metadata as m; print(m.version('$1'))"; }
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$work/w" "pydantic==$(version pydantic)" "pydantic-core==$(version pydantic-core)" annotated-types \
  typing-inspection "torch-pruning==$(version torch-pruning)" "tritonclient==$(version tritonclient)" \
  "python-rapidjson==$(version python-rapidjson)" "protobuf==$(version protobuf)" "grpcio==$(version grpcio)"
site="$work/site" && mkdir -p "$site" && for f in "$work"/w/*.whl; do unzip -q -o "$f" -d "$site"; done
rm -rf "$site"/pydantic/v1 "$site"/pydantic/experimental "$site"/*.dist-info/RECORD && find "$site" -name '*.pyi' -delete
wheel=$(python3 -c "import pathlib, pytriton; print(pathlib.Path(pytriton.__file__).parent)")
server="$site/pytriton/tritonserver" && mkdir -p "$server/python_backend_stubs" "$server/backends/python"
: > "$site/pytriton/__init__.py"  # gesturekit only locates the server through the package
cp -a "$wheel/tritonserver/bin" "$server/" && cp -a "$wheel/tritonserver/python_backend_stubs/3.12" "$server/python_backend_stubs/"
cp "$wheel"/tritonserver/backends/python/{libtriton_python.so,triton_python_backend_utils.py} "$server/backends/python/"
cp -a "$wheel/../nvidia_pytriton.libs" "$site/" && rm -f "$site"/nvidia_pytriton.libs/libpython3-*
find "$site" \( -name '*.so' -o -name '*.so.*' -o -name tritonserver -o -name triton_python_backend_stub \) -type f \
  -exec strip --strip-unneeded {} + 2>/dev/null || true
tar cf - -C "$site" . | xz -9 -T2 > "$work/gsite.tar.xz"
rm -rf .gpusite/p1 .gpusite/p2 && mkdir -p .gpusite/p1 .gpusite/p2
split -n 2 -d "$work/gsite.tar.xz" "$work/gsite.part."
mv "$work/gsite.part.00" .gpusite/p1/ && mv "$work/gsite.part.01" .gpusite/p2/
ls -l .gpusite/p1 .gpusite/p2
