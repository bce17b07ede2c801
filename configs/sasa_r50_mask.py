# Mask R-CNN R50-FPN 1x COCO with stand-alone self-attention (7x7 window,
# 8 heads) in place of the 3x3 conv2 of every bottleneck in c4 and c5 (the
# stride-2 one of each stage's first block included: attention, then 2x2
# average pooling); convolutional stem, c2 and c3, as the SASA paper
# recommends for detection. The SASA layers start from scratch (no
# attention-pretrained ImageNet weights); the other layers load
# torchvision's ResNet-50.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmgc'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        type='PluginResNet',
        sasa=dict(type='SASAConv', kernel_size=7, num_heads=8),
        stage_with_sasa=(False, False, True, True)))
