"""`bgeimg analyze`: where an image's bytes are, what is wasted, and how two images differ.

sources.py reads an image (engine, `docker save` archive, OCI layout, registry) into plain values; layers.py scans
one layer tar as a stream; report.py builds the per-layer report and waste; compare.py puts two reports side by
side; gates.py checks CI thresholds; output.py renders with rich.
"""

from bgeimg.analyze.compare import Comparison, compare
from bgeimg.analyze.report import SCHEMA_VERSION, ImageReport, analyze, build_report

__all__ = ["SCHEMA_VERSION", "Comparison", "ImageReport", "analyze", "build_report", "compare"]
