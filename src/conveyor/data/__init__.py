"""Data: ingestion and versioning, statistics, schema, validation, drift and skew, reports.

This is the ML-library layer: it may use pandas, Arrow, DuckDB and scipy, and builds on the
engine's public API only. The standard components that wrap it live in
:mod:`conveyor.components.data`.
"""
