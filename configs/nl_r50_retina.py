# RetinaNet R50-FPN 1x COCO with one non-local block (embedded Gaussian,
# C/2 inner channels) in c4, on the output of its last-but-one block, i.e.
# right before the last residual block of res4, where the non-local and
# GCNet papers put it for detection.
# Module: backbone.layer3.4.nonlocal_block.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmgc'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        type='PluginResNet',
        plugins=[
            dict(
                cfg=dict(type='NLBlock'),
                stages=(False, False, True, False),
                blocks=(None, None, (-2, ), None),
                position='after_block')
        ]))
