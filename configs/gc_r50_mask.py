# Mask R-CNN R50-FPN 1x COCO with a GC block (ratio 1/16) after conv3 of
# every bottleneck in c3-c5: mmgc's counterpart of MMDetection's
# gcnet/mask-rcnn_r50-gcb-r16-c3-c5_fpn_1x_coco.py (published: 39.7 box AP,
# 35.9 mask AP). Data in data/coco/ as MMDetection expects.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmgc'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        # mmdet's ResNet (same modules, keys and outputs) that names the bad
        # key, value and allowed values when a placement is wrong
        type='PluginResNet',
        plugins=[
            dict(
                cfg=dict(type='GCBlock', ratio=1. / 16),
                stages=(False, True, True, True),
                position='after_conv3')
        ]))
