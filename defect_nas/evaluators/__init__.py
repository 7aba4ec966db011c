"""Train and score one candidate: the fast trainer, augmentation, distillation, scoring, metrics,
and the ImageNet-initialised teachers."""
