"""TFLite variants of a SavedModel's raw-feature signature: conversion, before/after measurement, publish gate.

TFX-free: the ModelOptimizer component (components/model_optimizer/) only adapts this library.
"""
