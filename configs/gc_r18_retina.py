# RetinaNet R18-FPN 1x COCO with a GC block (ratio 1/16) in every
# BasicBlock of c3-c5, after conv2 and its norm, before the residual sum
# (where a bottleneck has GC after conv3). MMDetection's ResNet refuses
# plugins in ResNet-18/34; PluginResNet takes them. Modules:
# backbone.layer{2,3,4}.{0,1}.context_block.
_base_ = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'
custom_imports = dict(imports=['mmgc'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        type='PluginResNet',
        plugins=[
            dict(
                cfg=dict(type='GCBlock', ratio=1. / 16),
                stages=(False, True, True, True),
                position='after_conv2')
        ]))
