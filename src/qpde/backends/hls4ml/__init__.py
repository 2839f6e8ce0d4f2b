"""QGraph → hls4ml project (io_stream), with every precision set from the graph (never `auto`)."""

from qpde.backends.hls4ml.convert import HLSProject, build_project, layer_list

__all__ = ["HLSProject", "build_project", "layer_list"]
