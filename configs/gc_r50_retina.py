# RetinaNet R50-FPN 1x COCO with a GC block (ratio 1/16) after conv3 of
# every bottleneck in c3-c5 (the placement of gc_r50_mask.py).
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
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
