# Mask R-CNN R50-FPN 1x COCO with an SE block (ratio 1/16) after conv3 (before
# the residual sum) of every bottleneck in c2-c5, as in SE-ResNet-50.
# frozen_stages=0 (stem only, instead of mmdet's 1): the SE blocks of c2
# have no ImageNet weights and must train.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmgc'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        # mmdet's ResNet (same modules, keys and outputs) that names the bad
        # key, value and allowed values when a placement is wrong
        type='PluginResNet',
        frozen_stages=0,
        plugins=[
            dict(
                cfg=dict(type='SEBlock', ratio=1. / 16),
                stages=(True, True, True, True),
                position='after_conv3')
        ]))
