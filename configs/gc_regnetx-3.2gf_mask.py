# Mask R-CNN RegNetX-3.2GF-FPN 1x COCO with a GC block (ratio 1/16) in every
# block of c3-c5, after its last norm (bn3) and before the residual sum --
# GCNet's placement -- attached by module path. The backbone is still
# MMDetection's RegNet with its own keys, so its ImageNet weights load.
# Modules: backbone.attached_plugins.layer{2,3,4}.*.bn3.context_block
# (6 + 15 + 2 blocks).
_base_ = 'mmdet::regnet/mask-rcnn_regnetx-3.2GF_fpn_1x_coco.py'
custom_imports = dict(imports=['mmgc'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        type='AttachPlugins',
        base_type='RegNet',  # all other keys are the base config's RegNet
        attach=[
            dict(
                cfg=dict(type='GCBlock', ratio=1. / 16),
                after='layer[234].*.bn3')
        ]))
