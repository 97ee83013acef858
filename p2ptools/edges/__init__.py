"""How the edges2shoes / edges2handbags inputs are made, in one place.

- :mod:`p2ptools.edges.hed`: the HED network (VGG16 trunk, five side outputs, learned upsampling,
  fusion) loading the BSDS caffemodel or its safetensors conversion, and :func:`detect_edges`;
- :mod:`p2ptools.edges.postprocess`: pix2pix's ``PostprocessHED`` (NMS, threshold, thinning, small
  component removal) plus the Canny and Sobel alternatives.

Only the edges builders (``p2ptools_datasets.edges``) and ``p2ptools hed convert`` use this package.
"""
