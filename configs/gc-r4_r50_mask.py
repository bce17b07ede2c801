# Mask R-CNN R50-FPN 1x COCO with a GC block of bottleneck ratio 1/4 after
# conv3 of every bottleneck in c3-c5: MMDetection's
# gcnet/mask-rcnn_r50-gcb-r4-c3-c5_fpn_1x_coco.py (published: 39.9 box AP,
# 36.0 mask AP). +10,000,909 parameters over baseline_r50_mask.py.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmgc'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        # mmdet's ResNet (same modules, keys and outputs) that names the bad
        # key, value and allowed values when a placement is wrong
        type='PluginResNet',
        plugins=[
            dict(
                cfg=dict(type='GCBlock', ratio=1. / 4),
                stages=(False, True, True, True),
                position='after_conv3')
        ]))
