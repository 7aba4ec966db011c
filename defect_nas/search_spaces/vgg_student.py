"""``vgg-student``: Kim et al.'s (2020) student network (their Table 1).

Five "conv3-C_i + maxpool" layers, FC-4096, FC-classes; their search halved every width from
VGG's (64, 128, 256, 512, 512) down to (4, 8, 16, 4, 4). Convs carry biases and no BatchNorm,
as in the paper (this reproduces their 858,380 parameters at 224x224x3, 12 classes); the search
may switch BatchNorm on.
"""

from __future__ import annotations

from typing import Any

from defect_nas.core.spec import ArchSpec, Conv, Head
from defect_nas.search_spaces.base import Space, Task, register

WIDTHS = [4, 8, 16, 32, 64, 128, 256, 512]
VGG_WIDTHS = (64, 128, 256, 512, 512)


def student(task: Task, widths: tuple[int, ...], fc: int = 4096, norm: bool = False, name: str = "") -> ArchSpec:
    stage = tuple(Conv(w, 3, 1, act="relu", norm=norm, pool=2) for w in widths)
    return ArchSpec(task.in_channels, task.input_size, task.num_classes, (), (stage,), Head("flatten", (fc,)), name)


class VGGStudentSpace(Space):
    name = "vgg-student"
    description = "Kim et al.'s student: five conv3+maxpool layers with widths C1..C5, FC, FC"

    def backbone(self, trial: Any, task: Task) -> ArchSpec:
        widths = tuple(trial.suggest_categorical(f"c{i + 1}", WIDTHS) for i in range(5))
        fc = trial.suggest_categorical("fc", [256, 1024, 4096])
        norm = trial.suggest_categorical("batchnorm", [False, True])
        return student(task, widths, fc, norm, "vgg-student")

    def backbone_prototypes(self, task: Task) -> dict[str, ArchSpec]:
        sixteenth = tuple(w // 16 for w in VGG_WIDTHS)
        return {
            "vgg-student/16": student(task, sixteenth, name="vgg-student/16"),
            "vgg-student-4-8-16-4-4": student(task, (4, 8, 16, 4, 4), name="vgg-student-4-8-16-4-4"),
        }


register(VGGStudentSpace())
