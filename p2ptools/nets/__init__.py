"""Networks used by the tools: the Caffe-compatible FCN-8s scorer and HED edge detector."""
