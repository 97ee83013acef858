"""Networks of the evaluator: the Caffe-compatible FCN-8s scorer and the VGG16 trunk it shares with HED
(:mod:`p2ptools.edges.hed`), and DRN-D-105 (:mod:`p2ptools.nets.drn`, fyu/drn's DRNSeg layout)."""
