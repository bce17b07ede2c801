# RetinaNet R50-FPN 1x COCO with SASA (7x7 window, 8 heads) in place of
# conv2 of every bottleneck in c3-c5 and of every 3x3 FPN conv (the P3-P5
# output convs and the stride-2 P6/P7 convs): the SASA paper's attention
# backbone (convolutional stem and c2) with an attention FPN. The RetinaNet
# head keeps its convolutions. SASA layers start from scratch.
_base_ = './sasa_r50_retina.py'

model = dict(
    backbone=dict(stage_with_sasa=(False, True, True, True)),
    neck=dict(
        type='PluginFPN',
        fpn_conv_cfg=dict(type='SASAConv', kernel_size=7, num_heads=8)))
