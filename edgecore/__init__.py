"""Shared core every stage imports and that imports no stage: errors, atomic io, stage manifests and
provenance, the `.tflite` reader and interpreters (TFLite-Micro, tf.lite reference kernels) and the target
specs (device limits, budgets). Stages run one way, data -> teach -> distill -> quantize -> export/firmware ->
benchmarks -> release, and all of them sit on top of this package (tests/test_import_graph.py enforces both)."""
