"""Distillation and compression stages: data -> teacher labels -> student -> full-INT8 model."""
