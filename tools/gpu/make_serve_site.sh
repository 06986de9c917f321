#!/usr/bin/env bash
# What `gesturekit serve --device cuda` and benchmarks/serve_load.py need on the GPU machine beyond its image:
# pydantic (and companions), torch-pruning, numpy < 2 (the wheel's backend stub aborts on requests under the image's
# numpy 2), the Triton gRPC client (tritonclient, python-rapidjson, protobuf 6, grpcio) and, from the nvidia-pytriton
# wheel installed here, only tritonserver, its libraries (no libpython 3.13), the Python backend and the Python 3.12
# stub, stripped. One xz tarball (about 40 MB) split in two halves: .gpusite/p1/gsite.part.00, .gpusite/p2/gsite.part.01.
#
# A device call carries 64 MiB with the working tree (65 MB tracked), so the halves travel one a call while the
# machine stays warm (30 s), with what the GPU runs don't read moved out of the working tree for those calls and
# restored afterwards (git checkout -- src/gesturekit/models/zoo docs experiments): the zoo's INT8 and pruned entries
# (hand-detector-int8, hand-detector-pruned, hand-detector-pruned-int8, gesture-classifier-int8: 20 MiB), and docs/
# and experiments/ (1.2 MB) for a call that carries more than a half (.pack/gpu_test_data beside it, say):
#   first call, carry .gpusite/p1: mkdir -p /tmp/keep && cp .gpusite/p1/* /tmp/keep/
#   second call, carry .gpusite/p2: cp .gpusite/p2/* /tmp/keep/ && mkdir -p /tmp/site &&
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
rm -rf .gpusite/p[0-9]* && split -n 2 -d "$work/gsite.tar.xz" "$work/gsite.part."
mkdir -p .gpusite/p1 .gpusite/p2 && mv "$work/gsite.part.00" .gpusite/p1/ && mv "$work/gsite.part.01" .gpusite/p2/
ls -l .gpusite/p[0-9]*
