# Mask R-CNN Swin-T-FPN 1x COCO with a GC block (ratio 1/16) on the c3-c5
# stage outputs. Swin's blocks work on tokens [B, H*W, C]; its NCHW maps are
# its stage outputs (after each output norm), so that is where the blocks
# go (outputs=, indices into the backbone's returned tuple). The backbone
# is still MMDetection's SwinTransformer with its own keys, so its ImageNet
# weights load. Modules: backbone.attached_plugins.outputs.{1,2,3}.
# context_block.
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'
custom_imports = dict(imports=['mmgc'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        type='AttachPlugins',
        base_type='SwinTransformer',  # all other keys are the base's Swin
        attach=[
            dict(cfg=dict(type='GCBlock', ratio=1. / 16), outputs=(1, 2, 3))
        ]))
