"""Deployment: the model folder (save, load without pickle, model card), ONNX export and session,
int8 quantization. Importable without the search or the trainer (an import-linter contract), so a
line PC can run a model with just this."""
