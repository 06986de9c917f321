#!/usr/bin/env bash
# What `gesturekit serve --device cuda` and benchmarks/serve_load.py need on the GPU machine beyond its image:
# pydantic (and companions), torch-pruning, numpy < 2 (the wheel's backend stub aborts on requests under the image's
# numpy 2), the Triton gRPC client (tritonclient, python-rapidjson, protobuf 6, grpcio) and, from the nvidia-pytriton
# wheel installed here, only tritonserver, its libraries (no libpython 3.13), the Python backend and the Python 3.12
# stub, stripped. One xz tarball split in parts of at most 15 MiB: .gpusite/p1/gsite.part.00, .gpusite/p2/...
#
# A device call carries 64 MiB with the repository (~62 MiB), so the parts travel one a call while the machine stays
# warm (30 s), with the zoo entries the GPU runs don't use (hand-detector-int8, hand-detector-pruned: 16 MiB) moved
# out of the working tree for those calls and back afterwards:
#   each call but the last, carry .gpusite/pK: mkdir -p /tmp/keep && cp .gpusite/pK/* /tmp/keep/
#   the last call, carry its part: cp ... /tmp/keep/ && mkdir -p /tmp/site &&
#           cat /tmp/keep/gsite.part.* | tar xJ -C /tmp/site && export PYTHONPATH=$PWD/src:/tmp/site && ...
# Run from the repository root, with the serve extra installed here (needs a package index).
set -euo pipefail
grep -qx '/.gpusite/' .git/info/exclude || echo '/.gpusite/' >> .git/info/exclude
python3 -c "import numpy, sys; sys.exit(int(numpy.__version__.split('.')[0]) >= 2)" ||
  { echo "numpy here is 2.x: the stub needs numpy < 2 (install gesturekit[serve])" >&2; exit 1; }
work=$(mktemp -d) && trap 'rm -rf "$work"' EXIT
version() { python3 -c "import importlib.metadata as m; print(m.version('$1'))"; }
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$work/w" "pydantic==$(version pydantic)" "pydantic-core==$(version pydantic-core)" annotated-types \
  typing-inspection "torch-pruning==$(version torch-pruning)" "tritonclient==$(version tritonclient)" \
  "python-rapidjson==$(version python-rapidjson)" "protobuf==$(version protobuf)" "grpcio==$(version grpcio)" \
  "numpy==$(version numpy)"
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
rm -rf .gpusite/p[0-9]* && split -b 15M -d "$work/gsite.tar.xz" "$work/gsite.part."
k=1 && for part in "$work"/gsite.part.*; do mkdir -p ".gpusite/p$k" && mv "$part" ".gpusite/p$k/" && k=$((k + 1)); done
ls -l .gpusite/p[0-9]*
