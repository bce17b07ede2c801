# RetinaNet R50-FPN 1x COCO with a CBAM block (channel MLP ratio 1/16, 7x7
# spatial conv) after conv3 (before the residual sum) of every bottleneck in
# c2-c5, as in the CBAM paper's ResNet-50.
# frozen_stages=0 (stem only, instead of mmdet's 1): the CBAM blocks of c2
# have no ImageNet weights and must train.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmgc'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        # mmdet's ResNet (same modules, keys and outputs) that names the bad
        # key, value and allowed values when a placement is wrong
        type='PluginResNet',
        frozen_stages=0,
        plugins=[
            dict(
                cfg=dict(type='CBAMBlock', ratio=1. / 16, kernel_size=7),
                stages=(True, True, True, True),
                position='after_conv3')
        ]))
