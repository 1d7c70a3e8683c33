"""RP2040 target: compile a full-INT8 .tflite into plain C (model.c/model.h) over the kernels in firmware/nn."""
