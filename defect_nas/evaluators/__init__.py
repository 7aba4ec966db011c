"""Evaluators: data, training, teacher, distillation, metrics, latency."""
